//! The binary: help text, start-up errors (exit code 2, one line, nothing listening), and the
//! configuration layers defaults < config file < environment < flags.

use crate::common::*;

use std::time::Duration;

use crate::common::process::*;

/// A start-up failure ([`config_error`]) with these flags and variables; its one line.
fn assert_config_error(site: &Site, args: &[&str], envs: &[(&str, &str)]) -> String {
    config_error(site.path(), |c| {
        c.args(args).envs(envs.iter().copied());
    })
}

#[test]
fn help_mentions_every_flag_and_variable() {
    let site = Site::new();
    let mut c = command(site.path());
    c.arg("--help");
    let (st, out, _) = run_to_exit(c, &site.logs());
    assert_eq!(st.code(), Some(0));
    for key in [
        "config",
        "listen",
        "root",
        "index_files",
        "show_hidden",
        "follow_symlinks",
        "listing",
        "max_ranges",
        "cache_control",
        "log_level",
        "shutdown_grace",
        "state_dir",
        "prehash",
        "watch",
        "precompressed",
    ] {
        let flag = format!("--{}", key.replace('_', "-"));
        let var = format!("RANGESERVE_{}", key.to_uppercase());
        assert!(out.contains(&flag), "help lacks {flag}:\n{out}");
        assert!(out.contains(&var), "help lacks {var}:\n{out}");
    }
}

#[test]
fn unknown_config_key_is_one_line_naming_it() {
    let site = Site::new();
    let cfg = site.write("c.toml", "cache_control = \"fine\"\nbogus_key = 1\n");
    let root = site.root();
    let err = assert_config_error(
        &site,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
        &[],
    );
    assert!(err.contains("bogus_key"), "{err}");
}

#[test]
fn bad_config_values_are_one_line_naming_the_key() {
    let site = Site::new();
    let root = site.root();
    let cases = [
        ("max_ranges = \"x\"\n", "max_ranges"),
        ("listen = \"nope\"\n", "listen"),
        ("shutdown_grace = -1\n", "shutdown_grace"),
        ("show_hidden = \"yes\"\n", "show_hidden"),
        ("max_ranges = 0\n", "max_ranges"),
        ("cache_control = \"a\\nb\"\n", "cache_control"),
        ("index_files = [\"../x\"]\n", "index_files"),
        ("log_level = \"[[[\"\n", "log_level"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        // A valid key before the bad one, so naming "a key" is not enough.
        let cfg = site.write(
            &format!("c{i}.toml"),
            format!("follow_symlinks = false\n{text}"),
        );
        let err = assert_config_error(
            &site,
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--root",
                root.to_str().unwrap(),
            ],
            &[],
        );
        assert!(err.contains(key), "{text:?}: {err}");
        assert!(!err.contains("follow_symlinks"), "{text:?}: {err}");
    }
}

#[test]
fn missing_root_is_one_line_naming_the_path() {
    let site = Site::new();
    let missing = site.path().join("no-such-root");
    let err = assert_config_error(&site, &["--root", missing.to_str().unwrap()], &[]);
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    // Same from the config file and from the environment.
    let cfg = site.write(
        "c.toml",
        format!("root = \"{}\"\n", missing.to_str().unwrap()),
    );
    let err = assert_config_error(&site, &["--config", cfg.to_str().unwrap()], &[]);
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    let err = assert_config_error(
        &site,
        &[],
        &[("RANGESERVE_ROOT", missing.to_str().unwrap())],
    );
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    // A root that is a file is refused too.
    let file = site.root().join("f.txt");
    let err = assert_config_error(&site, &["--root", file.to_str().unwrap()], &[]);
    assert!(err.contains(file.to_str().unwrap()), "{err}");
}

#[test]
fn no_root_anywhere_defaults_to_www_relative_to_the_working_directory() {
    // The temp working directory has no `www`: the default root is missing.
    let site = Site::new();
    let err = assert_config_error(&site, &[], &[]);
    assert!(err.contains("www"), "{err}");
    // With a `www` there, it is served.
    site.write("www/w.txt", "from www");
    let run = start(site.path(), &site.logs(), |port, c| {
        c.arg("--listen").arg(format!("127.0.0.1:{port}"));
    });
    let r = run.get("/w.txt", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"from www");
}

#[test]
fn bad_flag_and_variable_values_exit_2() {
    let site = Site::new();
    let root = site.root();
    let root = root.to_str().unwrap();
    for (args, envs) in [
        (vec!["--root", root, "--max-ranges", "x"], vec![]),
        (vec!["--root", root], vec![("RANGESERVE_MAX_RANGES", "x")]),
        (vec!["--root", root, "--shutdown-grace", "soon"], vec![]),
        (vec!["--root", root, "--no-such-flag"], vec![]),
    ] {
        let port = free_port();
        let mut c = command(site.path());
        c.args(&args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        for (k, v) in &envs {
            c.env(k, v);
        }
        let (st, out, err) = run_to_exit(c, &site.logs());
        assert_eq!(st.code(), Some(2), "{args:?} {envs:?}: {err}");
        // No "listening" line (see `config_error` on why the port is not probed).
        assert!(out.is_empty(), "{args:?} {envs:?}: {out}");
    }
    // Config-layer checks on a flag value are one line, like the file's.
    let err = assert_config_error(&site, &["--root", root, "--index-files", "a,../b"], &[]);
    assert!(err.contains("index_files"), "{err}");
    let err = assert_config_error(&site, &["--root", root, "--max-ranges", "0"], &[]);
    assert!(err.contains("max_ranges"), "{err}");
}

#[test]
fn cache_control_precedence_defaults_file_env_flag() {
    let site = Site::new();
    let cfg = site.write("c.toml", "cache_control = \"from-file\"\n");
    // (file, env, flag) -> expected
    let cases = [
        (false, false, false, "no-cache"),
        (true, false, false, "from-file"),
        (false, true, false, "from-env"),
        (false, false, true, "from-flag"),
        (true, true, false, "from-env"),
        (true, false, true, "from-flag"),
        (false, true, true, "from-flag"),
        (true, true, true, "from-flag"),
    ];
    for (file, env, flag, want) in cases {
        let run = site.serve(|c| {
            if file {
                c.arg("--config").arg(&cfg);
            }
            if env {
                c.env("RANGESERVE_CACHE_CONTROL", "from-env");
            }
            if flag {
                c.arg("--cache-control").arg("from-flag");
            }
        });
        let r = run.get("/f.txt", &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello from root\n");
        assert_eq!(
            r.header("cache-control"),
            Some(want),
            "file={file} env={env} flag={flag}"
        );
    }
}

#[test]
fn empty_cache_control_flag_overrides_the_file_and_sends_none() {
    let site = Site::new();
    let cfg = site.write("c.toml", "cache_control = \"from-file\"\n");
    let root = site.root();
    let run = start(site.path(), &site.logs(), |port, c| {
        c.arg(format!("--listen=127.0.0.1:{port}"))
            .arg("--root")
            .arg(&root)
            .arg("--config")
            .arg(&cfg)
            .arg("--cache-control=");
    });
    let r = run.get("/f.txt", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), None);
}

#[test]
fn config_file_root_and_listen_are_used_without_flags() {
    let site = Site::new();
    site.write("site/page.txt", "page from the file's root\n");
    let root = site.path().join("site");
    let cfg = site.path().join("c.toml");
    let run = start(site.path(), &site.logs(), |port, c| {
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:{port}\"\nroot = \"{}\"\n",
                root.to_str().unwrap()
            ),
        )
        .unwrap();
        c.arg("--config").arg(&cfg);
    });
    let r = run.get("/page.txt", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"page from the file's root\n");
    assert_eq!(run.get("/f.txt", &[]).status, 404);
}

#[test]
fn config_toml_in_the_working_directory_is_read_by_default() {
    let site = Site::new();
    site.write("rel-site/page.txt", "relative root\n");
    let cfg = site.path().join("config.toml");
    let run = start(site.path(), &site.logs(), |port, _no_flags| {
        // `root` relative to the working directory.
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:{port}\"\nroot = \"rel-site\"\ncache_control = \"from-cwd\"\n"
            ),
        )
        .unwrap();
    });
    let r = run.get("/page.txt", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"relative root\n");
    assert_eq!(r.header("cache-control"), Some("from-cwd"));
}

#[test]
fn explicit_config_replaces_the_working_directory_one() {
    let site = Site::new();
    // Were ./config.toml read, start-up would fail on the unknown key.
    site.write("config.toml", "not_a_key = true\n");
    let other = site.write("other.toml", "cache_control = \"from-other\"\n");
    let root = site.root();
    for via_env in [false, true] {
        let run = site.serve(|c| {
            if via_env {
                c.env("RANGESERVE_CONFIG", &other);
            } else {
                c.arg("--config").arg(&other);
            }
        });
        let r = run.get("/f.txt", &[]);
        assert_eq!(
            r.header("cache-control"),
            Some("from-other"),
            "env={via_env}"
        );
    }
    // And without --config the bad ./config.toml is indeed read and refused.
    let err = assert_config_error(&site, &["--root", root.to_str().unwrap()], &[]);
    assert!(err.contains("not_a_key"), "{err}");
}

#[test]
fn listen_and_root_from_the_environment() {
    let site = Site::new();
    let root = site.root();
    let run = start(site.path(), &site.logs(), |port, c| {
        c.env("RANGESERVE_LISTEN", format!("127.0.0.1:{port}"))
            .env("RANGESERVE_ROOT", &root);
    });
    let r = run.get("/f.txt", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello from root\n");
}

#[test]
fn boolean_settings_follow_the_same_precedence() {
    let site = Site::new();
    std::fs::write(site.root().join(".env"), b"hidden").unwrap();
    let cfg = site.write("c.toml", "show_hidden = true\n");
    // (file, env, flag) -> status of /.env
    let cases: [(bool, Option<&str>, Option<&str>, u16); 5] = [
        (false, None, None, 404),
        (true, None, None, 200),
        (true, Some("false"), None, 404),
        (true, Some("false"), Some("--show-hidden"), 200),
        (false, Some("true"), Some("--show-hidden=false"), 404),
    ];
    for (file, env, flag, want) in cases {
        let run = site.serve(|c| {
            if file {
                c.arg("--config").arg(&cfg);
            }
            if let Some(v) = env {
                c.env("RANGESERVE_SHOW_HIDDEN", v);
            }
            if let Some(f) = flag {
                c.arg(f);
            }
        });
        let r = run.get("/.env", &[]);
        assert_eq!(r.status, want, "file={file} env={env:?} flag={flag:?}");
        if want == 200 {
            assert_eq!(r.body, b"hidden");
        }
    }
}

#[test]
fn other_flags_take_effect() {
    let site = Site::new();
    let root = site.root();
    std::fs::write(root.join("a.htm"), b"index a").unwrap();
    std::fs::write(root.join("b.htm"), b"index b").unwrap();
    std::fs::write(site.path().join("outside.txt"), b"outside").unwrap();
    std::os::unix::fs::symlink(site.path().join("outside.txt"), root.join("out")).unwrap();
    let data = pattern(1000);
    std::fs::write(root.join("d.bin"), &data).unwrap();

    let run = site.serve(|c| {
        c.args(["--index-files", "b.htm,a.htm"])
            .args(["--max-ranges", "1"])
            .arg("--follow-symlinks");
    });
    let r = run.get("/", &[]);
    assert_eq!((r.status, &r.body[..]), (200, &b"index b"[..]));
    let r = run.get("/out", &[]);
    assert_eq!((r.status, &r.body[..]), (200, &b"outside"[..]));
    // Two ranges > max_ranges 1: the whole file; one range is still honoured.
    let r = run.get("/d.bin", &[("Range", "bytes=0-1,10-11")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    let r = run.get("/d.bin", &[("Range", "bytes=10-11")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[10..12]);
    drop(run);

    // Defaults for the same three, for contrast.
    let run = site.serve(|_| {});
    assert_eq!(run.get("/", &[]).status, 404);
    assert_eq!(run.get("/out", &[]).status, 404);
    let r = run.get("/d.bin", &[("Range", "bytes=0-1,10-11")]);
    assert_eq!(r.status, 206);
}

#[test]
fn log_level_controls_the_log() {
    let site = Site::new();
    // Default (info): the start-up line and one access line per response, on stdout.
    let run = site.serve(|_| {});
    assert_eq!(run.get("/f.txt", &[]).status, 200);
    let listening = format!("listening on http://127.0.0.1:{}/", run.port);
    let log = read_text(&run.stdout);
    assert!(log.contains(&listening), "{log}");
    run.log_shows("/f.txt");
    assert!(read_text(&run.stderr).is_empty());
    drop(run);

    // warn: the start-up line is gone (it is written before the first response can be).
    let run = site.serve(|c| {
        c.args(["--log-level", "warn"]);
    });
    assert_eq!(run.get("/f.txt", &[]).status, 200);
    let log = read_text(&run.stdout);
    assert!(!log.contains("listening on"), "{log}");
}

/// Pinned to one CPU (a container's cpuset, `taskset`), the server runs tokio's single-threaded
/// scheduler; what uses the blocking pool (hashing, prehash, watch) and the graceful shutdown
/// work there too.
#[test]
fn one_cpu_runs_the_single_threaded_scheduler() {
    use std::os::unix::process::CommandExt;
    // The first CPU this test may run on: a CI runner's cpuset need not contain CPU 0.
    // SAFETY: sched_getaffinity fills the zeroed set we own.
    let cpu = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &set))
            .unwrap()
    };
    let site = Site::new();
    let root = site.root();
    let first = pattern(100_000);
    std::fs::write(root.join("first.bin"), &first).unwrap();
    let mut run = site.serve(|c| {
        c.args(["--prehash", "--watch"]);
        // SAFETY: only async-signal-safe calls between fork and exec (sched_setaffinity).
        unsafe {
            c.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                match libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
        }
    });
    run.log_shows("prehash: done");
    assert!(
        run.log()
            .contains("scheduler=\"single-threaded (one CPU)\""),
        "{}",
        run.log()
    );
    let etag = etag_of(&first);
    let r = run.get("/first.bin", &[]);
    assert_eq!((r.status, r.header("etag")), (200, Some(&etag[..])));
    assert_eq!(r.body, first);
    let r = run.get("/first.bin", &[("If-None-Match", &etag)]);
    assert_eq!((r.status, r.body.len()), (304, 0));
    let r = run.get("/first.bin", &[("Range", "bytes=99990-")]);
    assert_eq!((r.status, &r.body[..]), (206, &first[99_990..]));
    // A file dropped in while serving: hashed on the blocking pool when asked for.
    let second = pattern(70_001);
    std::fs::write(root.join("second.bin"), &second).unwrap();
    let r = run.get("/second.bin", &[]);
    let etag = etag_of(&second);
    assert_eq!((r.status, r.header("etag")), (200, Some(&etag[..])));
    assert_eq!(r.body, second);
    run.sigterm();
    assert!(run.wait_exit(Duration::from_secs(10)).success());
}
