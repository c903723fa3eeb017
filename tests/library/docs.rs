//! The configuration reference (docs/configuration.md) names every key of config.toml, every
//! `RANGESERVE_*` variable and every flag; and the keys follow the one naming scheme: `foo_bar`
//! is `RANGESERVE_FOO_BAR` (and, in a `[section]`, `RANGESERVE_SECTION_KEY`).

use std::collections::BTreeSet;

use clap::{CommandFactory, Parser};
use rangeserve::config::Cli;

fn reference() -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    std::fs::read_to_string(p).unwrap()
}

/// The keys the config file accepts (in `section`, or at the top when empty): what the loader
/// lists when it refuses an unknown one.
fn file_keys(section: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let text = match section {
        "" => "no_such_key = 1\n".to_string(),
        s => format!("[{s}]\nno_such_key = 1\n"),
    };
    std::fs::write(&path, text).unwrap();
    let os = std::ffi::OsStr::new;
    let cli = Cli::try_parse_from([os("rangeserve"), os("--config"), path.as_os_str()]).unwrap();
    let e = cli.load().unwrap_err().to_string();
    // serde says "expected one of `a`, `b`", or "expected `a` or `b`" for two.
    let (_, expected) = e
        .split_once("expected ")
        .unwrap_or_else(|| panic!("no key list in {e:?}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Every `(variable, flag)` the command line knows.
fn cli_settings() -> Vec<(String, String)> {
    Cli::command()
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_str()?.to_owned();
            let flag = format!("--{}", a.get_long()?);
            Some((env, flag))
        })
        .collect()
}

fn documented(doc: &str, name: &str) -> bool {
    doc.contains(&format!("`{name}`"))
}

#[test]
fn every_key_variable_and_flag_is_in_the_reference() {
    let doc = reference();
    let cli = cli_settings();
    let envs: BTreeSet<&str> = cli.iter().map(|(e, _)| e.as_str()).collect();
    let mut missing = Vec::new();
    let sections = ["lab", "cors", "tls", "s3", "upload"];
    let mut keys: Vec<(String, String)> = file_keys("")
        .into_iter()
        .filter(|k| !sections.contains(&k.as_str()) && k != "headers")
        .map(|k| (String::new(), k))
        .collect();
    for s in sections {
        keys.extend(file_keys(s).into_iter().map(|k| (s.to_string(), k)));
    }
    assert!(keys.len() > 25, "too few keys found: {keys:?}");
    for (section, key) in &keys {
        let env = match section.as_str() {
            "" => format!("RANGESERVE_{}", key.to_uppercase()),
            s => format!("RANGESERVE_{}_{}", s.to_uppercase(), key.to_uppercase()),
        };
        // The naming scheme: the variable exists under exactly that name.
        if !envs.contains(env.as_str()) {
            missing.push(format!(
                "{section}.{key}: no variable {env} (the naming scheme)"
            ));
        }
        if !documented(&doc, key) {
            missing.push(format!("key `{key}`"));
        }
    }
    for (env, flag) in &cli {
        if !documented(&doc, env) {
            missing.push(format!("variable `{env}`"));
        }
        if !documented(&doc, flag) {
            missing.push(format!("flag `{flag}`"));
        }
    }
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md: {missing:#?}"
    );
}

#[test]
fn the_check_would_notice_a_missing_key() {
    // The same test, on a reference without one line: it must be found missing.
    let doc: String = reference()
        .lines()
        .filter(|l| !l.contains("`max_ranges`"))
        .collect();
    assert!(!documented(&doc, "max_ranges"));
    assert!(file_keys("").contains(&"max_ranges".to_string()));
}

/// The shipped config.toml loads as it is (with the root it names replaced by one that exists
/// here): every value in it is a valid setting, the empty `[s3]` ones included.
#[test]
fn the_shipped_config_file_loads() {
    let root = tempfile::tempdir().unwrap();
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let os = std::ffi::OsStr::new;
    let cli = Cli::try_parse_from([
        os("rangeserve"),
        os("--config"),
        file.as_os_str(),
        os("--root"),
        root.path().as_os_str(),
    ])
    .unwrap();
    let config = cli.load().unwrap_or_else(|e| panic!("config.toml: {e}"));
    assert!(config.bucket().is_none());
    assert_eq!(config.s3.endpoint, None);
}
