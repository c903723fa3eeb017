//! The tree shows the architecture: each top-level module uses only the layers below it, and no
//! two source files depend on each other, directly or around a cycle. Read from the sources
//! (`crate::` and `super::` paths outside comments and test modules), so a new import that
//! breaks the layering fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top: a module may use those before it, never those after.
const LAYERS: [&str; 7] = ["ops", "http", "fs", "files", "transport", "config", "app"];

/// Every source file's module path (`files::listing::render`), and the text that counts.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into()).collect();
        if parts.last().is_some_and(|l| l == "mod") {
            parts.pop();
        }
        let module = match parts.as_slice() {
            [one] if one == "lib" => "crate".to_string(),
            _ => parts.join("::"),
        };
        let text = std::fs::read_to_string(&f).unwrap();
        // Test modules may reach anywhere; comments do not count.
        let text = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        out.insert(module, code);
    }
    out
}

/// The file modules `module`'s code refers to (the longest known module path each reference
/// starts with), itself excluded.
fn uses(module: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let own: Vec<&str> = module.split("::").collect();
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    for (start, prefix) in [
        ("crate::", None),
        ("super::", Some(1)),
        ("rangeserve::", None),
    ] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let mut end = from;
            while end < bytes.len() && is_ident(bytes[end]) {
                end += 1;
            }
            let rest: Vec<&str> = code[from..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .collect();
            let mut path: Vec<String> = match prefix {
                // `super::` from a file module is its parent (mod.rs files are their module).
                Some(_) => own[..own.len().saturating_sub(1)]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                None => Vec::new(),
            };
            path.extend(rest.iter().map(|s| s.to_string()));
            while !path.is_empty() {
                let candidate = path.join("::");
                if known.contains(&candidate) {
                    if candidate != module {
                        found.insert(candidate);
                    }
                    break;
                }
                path.pop();
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources();
    let known: BTreeSet<String> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(m, code)| (m.clone(), uses(m, code, &known)))
        .collect()
}

fn layer(module: &str) -> Option<usize> {
    let top = module.split("::").next().unwrap();
    LAYERS.iter().position(|l| *l == top)
}

#[test]
fn each_layer_uses_only_the_layers_below() {
    let mut wrong = Vec::new();
    for (m, deps) in graph() {
        let Some(own) = layer(&m) else { continue };
        for d in deps {
            if let Some(theirs) = layer(&d) {
                if theirs > own {
                    wrong.push(format!("{m} -> {d}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "a layer uses one above it: {wrong:#?}");
}

#[test]
fn no_source_files_depend_on_each_other_in_a_cycle() {
    let g = graph();
    // Tarjan's strongly connected components; any with more than one file is a cycle.
    struct State<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        cycles: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let l = s.low[w].min(s.low[v]);
                s.low.insert(v, l);
            } else if s.on.contains(w) {
                let l = s.index[w].min(s.low[v]);
                s.low.insert(v, l);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.cycles.push(comp);
            }
        }
    }
    let mut s = State {
        g: &g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        cycles: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    assert!(s.cycles.is_empty(), "modules in a cycle: {:#?}", s.cycles);
}

#[test]
fn the_check_sees_a_cycle_and_a_layer_violation() {
    // The reader of the sources, on made-up ones: it must find what it is there to find.
    let known: BTreeSet<String> = ["fs::a", "fs::b", "files", "files::c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let a = uses(
        "fs::a",
        "use crate::fs::b::X;\nfn f() { crate::files::c::go() }",
        &known,
    );
    assert_eq!(
        a,
        ["files::c", "fs::b"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let b = uses("fs::b", "use super::a::Y;", &known);
    assert_eq!(b, ["fs::a"].iter().map(|s| s.to_string()).collect());
    assert!(layer("files::c") > layer("fs::a"));
}
