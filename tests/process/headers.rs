//! `[[headers]]` rules the binary refuses to start with. (Rules on the wire:
//! `http/headers.rs`.)

use crate::common::process::*;

#[test]
fn bad_rules_stop_the_server_with_one_line_naming_the_rule() {
    let site = Site::empty();
    let root = site.root();
    for (toml, needle) in [
        ("[[headers]]\npath = \"dl/*\"\n", "headers[1].path"),
        (
            "[[headers]]\npath = \"/a\"\n[[headers]]\npath = \"/dl/[\"\n",
            "headers[2].path",
        ),
        (
            "[[headers]]\npath = \"/a\"\nset = { \"Content-Length\" = \"1\" }\n",
            "headers[1].set: Content-Length",
        ),
        (
            "[[headers]]\npath = \"/a\"\nset = { \"Access-Control-Allow-Origin\" = \"*\" }\n",
            "[cors]",
        ),
        (
            "[[headers]]\npath = \"/a\"\nset = { \"X-A\" = \"a\\nb\" }\n",
            "headers[1].set: X-A",
        ),
        (
            "[[headers]]\npath = \"/a\"\nset = { \"Bad Name\" = \"1\" }\n",
            "headers[1].set",
        ),
        (
            "[[headers]]\npath = \"/a\"\nset = { \"X-A\" = 1 }\n",
            "line 3: key `set`",
        ),
        ("[[headers]]\npattern = \"/a\"\n", "pattern"),
    ] {
        let cfg = site.path().join("c.toml");
        std::fs::write(&cfg, toml).unwrap();
        let err = config_error(site.path(), |c| {
            c.arg("--config").arg(&cfg).arg("--root").arg(&root);
        });
        assert!(err.contains(needle), "{toml}: {err}");
    }
}
