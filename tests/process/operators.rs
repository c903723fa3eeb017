//! What an operator sees in the first hour: a mistyped log level is refused, access lines carry
//! client, query, User-Agent and Referer (the client named by trusted proxies only), start-up
//! says which configuration it read, every start-up failure is one line and exit 2, shutdown
//! says how it ended, the prehash summary counts what it did, and the healthcheck costs nothing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::common::process::{self, Site};
use crate::common::*;

#[test]
fn a_log_level_that_is_not_a_level_is_a_start_up_error_naming_the_nearest() {
    let site = Site::new();
    for (how, meant) in [
        ("--log-level warning", "warn"),
        ("--log-level verbose", "debug"),
    ] {
        let word = how.split(' ').nth(1).unwrap();
        let line = process::config_error(site.path(), |c| {
            c.arg("--root")
                .arg(site.root())
                .arg("--log-level")
                .arg(word);
        });
        assert!(line.contains("log_level"), "{how}: {line}");
        assert!(
            line.contains(&format!("did you mean \"{meant}\"")),
            "{how}: {line}"
        );
    }
    let line = process::config_error(site.path(), |c| {
        c.arg("--root")
            .arg(site.root())
            .env("RANGESERVE_LOG_LEVEL", "verbose");
    });
    assert!(line.contains("did you mean \"debug\""), "{line}");
    let line = process::config_error(site.path(), |c| {
        c.arg("--root").arg(site.root()).env("RUST_LOG", "warning");
    });
    assert!(line.starts_with("rangeserve: error: RUST_LOG:"), "{line}");
    // Directives keep working, and the access log with them.
    let run = site.serve(|c| {
        c.arg("--log-level").arg("info,rangeserve=debug");
    });
    run.get("/f.txt", &[]);
    run.log_shows("rangeserve::access");
}

#[test]
fn access_lines_carry_client_query_user_agent_and_referer_null_when_absent() {
    let site = Site::new();
    let run = site.serve(|c| {
        c.args(["--log-format", "json"]);
    });
    run.get(
        "/f.txt?a=1&b=two",
        &[
            ("User-Agent", "tester/1.0"),
            ("Referer", "https://example.com/page"),
        ],
    );
    run.get("/f.txt", &[]);
    let lines = run.json_access_lines(2);
    let first = &lines[0]["fields"];
    assert_eq!(first["client"], "127.0.0.1", "{first}");
    assert_eq!(first["path"], "/f.txt");
    assert_eq!(first["query"], "a=1&b=two");
    assert_eq!(first["user_agent"], "tester/1.0");
    assert_eq!(first["referer"], "https://example.com/page");
    assert_eq!(first["status"], 200);
    assert!(first["request_id"].is_string(), "{first}");
    let second = &lines[1]["fields"];
    for absent in ["query", "user_agent", "referer", "range"] {
        assert_eq!(
            second[absent],
            serde_json::Value::Null,
            "{absent}: {second}"
        );
    }
    // In text lines, an absent value is `-`.
    let text = Site::new();
    let run = text.serve(|_| {});
    run.get("/f.txt?x=y", &[("User-Agent", "ua")]);
    let log = run.log_shows("rangeserve::access");
    let line = log
        .lines()
        .find(|l| l.contains("rangeserve::access"))
        .unwrap();
    for part in [
        "client=127.0.0.1",
        "query=x=y",
        "user_agent=ua",
        "referer=-",
        "range=-",
    ] {
        assert!(line.contains(part), "{part}: {line}");
    }
}

#[test]
fn forwarding_headers_name_the_client_only_from_trusted_proxies() {
    let xff = [("X-Forwarded-For", "198.51.100.9, 203.0.113.7")];
    let forwarded = [(
        "Forwarded",
        "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\"",
    )];
    // Untrusted (no trusted_proxies): the socket's address, whatever the headers say.
    let site = Site::new();
    let run = site.serve(|c| {
        c.args(["--log-format", "json"]);
    });
    run.get("/f.txt", &xff);
    run.get("/f.txt", &forwarded);
    for l in run.json_access_lines(2) {
        assert_eq!(l["fields"]["client"], "127.0.0.1", "{l}");
    }
    // Trusted: the nearest address that is not a trusted proxy.
    let site = Site::new();
    let run = site.serve(|c| {
        c.args([
            "--log-format",
            "json",
            "--trusted-proxies",
            "127.0.0.1,203.0.113.0/24",
        ]);
    });
    run.get("/f.txt", &xff);
    run.get("/f.txt", &forwarded);
    run.get("/f.txt", &[]);
    let lines = run.json_access_lines(3);
    assert_eq!(lines[0]["fields"]["client"], "198.51.100.9", "{}", lines[0]);
    assert_eq!(lines[1]["fields"]["client"], "2001:db8::1", "{}", lines[1]);
    assert_eq!(lines[2]["fields"]["client"], "127.0.0.1", "{}", lines[2]);
    // A bad entry is a start-up error.
    let line = process::config_error(site.path(), |c| {
        c.arg("--root")
            .arg(site.root())
            .args(["--trusted-proxies", "10.0.0.0/99"]);
    });
    assert!(line.contains("trusted_proxies"), "{line}");
}

#[test]
fn start_up_names_the_configuration_file_or_none() {
    let site = Site::new();
    let run = site.serve(|_| {});
    run.log_shows("configuration: no file");
    site.write("config.toml", "show_hidden = false\n");
    let run = site.serve(|_| {});
    run.log_shows("configuration: config.toml");
}

#[test]
fn a_port_in_use_is_one_line_and_exit_2_before_listening() {
    let site = Site::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let certs = tls::self_signed(site.path());
    let tls_args = vec![
        "--tls-cert".to_string(),
        certs.cert.display().to_string(),
        "--tls-key".to_string(),
        certs.key.display().to_string(),
    ];
    for (key, mut args) in [
        ("metrics_listen", vec!["--metrics-listen".to_string()]),
        ("tls.redirect_listen", tls_args),
    ] {
        if key == "tls.redirect_listen" {
            args.push("--tls-redirect-listen".to_string());
        }
        args.push(format!("127.0.0.1:{port}"));
        let line = process::config_error(site.path(), |c| {
            c.arg("--root").arg(site.root()).args(&args);
        });
        assert!(
            line.contains(key) && line.contains("in use"),
            "{key}: {line}"
        );
    }
    // A bad certificate: one line too.
    let line = process::config_error(site.path(), |c| {
        c.arg("--root")
            .arg(site.root())
            .arg("--tls-cert")
            .arg(site.root().join("f.txt"))
            .arg("--tls-key")
            .arg(&certs.key);
    });
    assert!(line.contains("tls.cert"), "{line}");
    // The main listener: its own port in use.
    let mut c = process::command(site.path());
    c.arg("--root")
        .arg(site.root())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"));
    let (st, out, err) = process::run_to_exit(c, &site.logs());
    assert_eq!(st.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("listen") && err.contains("in use"), "{err}");
    assert!(!out.contains("listening"), "{out}");
}

#[test]
fn shutdown_ends_with_a_stopped_line_counting_what_was_in_flight() {
    let site = Site::new();
    let big = pattern(64 << 20);
    site.write("root/big.bin", &big);
    let run = site.serve(|c| {
        c.args(["--shutdown-grace", "1"]);
    });
    // Nothing in flight.
    run.sigterm();
    let mut run = run;
    assert!(run.wait_exit(Duration::from_secs(10)).success());
    assert!(
        run.log().contains("stopped: no response was in flight"),
        "{}",
        run.log()
    );

    // A download that does not read: in flight at shutdown, cut at the end of the grace.
    let run = site.serve(|c| {
        c.args(["--shutdown-grace", "1"]);
    });
    run.get("/big.bin", &[("Range", "bytes=0-0")]); // hashed before the slow request
    let mut slow = TcpStream::connect(process::addr(run.port)).unwrap();
    slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1024];
    assert!(slow.read(&mut first).unwrap() > 0);
    run.sigterm();
    let mut run = run;
    assert!(run.wait_exit(Duration::from_secs(15)).success());
    let log = run.log();
    assert!(
        log.contains("stopped: 1 responses were in flight at shutdown: 0 finished, 1 cut"),
        "{log}"
    );
}

#[test]
fn prehash_reports_found_hashed_and_known_with_a_rate_over_hashed_bytes_only() {
    let site = Site::new();
    site.write("root/a.bin", pattern(300_000));
    site.write("root/b.bin", pattern(200_000));
    let state = site.path().join("state");
    let args = |c: &mut std::process::Command| {
        c.arg("--prehash")
            .arg("--state-dir")
            .arg(site.path().join("state"));
    };
    let mut run = site.serve(args);
    let log = run.log_shows("prehash: done");
    let done = log.lines().find(|l| l.contains("prehash: done")).unwrap();
    // f.txt, a.bin, b.bin.
    assert!(done.contains("3 files found, 3 hashed"), "{done}");
    assert!(done.contains("0 already known"), "{done}");
    assert!(done.contains("MB/s"), "{done}");
    run.sigterm();
    run.wait_exit(Duration::from_secs(10));
    assert!(state.join("digests-v1").exists());
    // After a restart nothing is hashed, and no rate is made up from stat calls.
    let run = site.serve(args);
    let log = run.log_shows("prehash: done");
    let done = log.lines().find(|l| l.contains("prehash: done")).unwrap();
    assert!(done.contains("3 files found, 0 hashed (0.0 MB)"), "{done}");
    assert!(done.contains("3 already known"), "{done}");
    assert!(!done.contains("MB/s"), "{done}");
}

#[test]
fn an_aborted_body_is_logged_with_its_path_and_client() {
    let site = Site::new();
    let data = pattern(8 << 20);
    let path = site.write("root/big.bin", &data);
    let run = site.serve(|_| {});
    run.get("/big.bin", &[("Range", "bytes=0-0")]); // hashed first
    let mut c = TcpStream::connect(process::addr(run.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    assert!(c.read(&mut buf).unwrap() > 0);
    // Rewritten in place mid-response: the server must not finish the body.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &pattern(8 << 20)[1..1000], 0).unwrap();
    drop(f);
    let mut got = 0;
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
        got += n;
    }
    assert!(got < data.len(), "the whole body arrived");
    let log = run.log_shows("aborting response body");
    let line = log
        .lines()
        .find(|l| l.contains("aborting response body"))
        .unwrap();
    assert!(line.contains("path=/big.bin"), "{line}");
    assert!(line.contains("client=127.0.0.1"), "{line}");
}

/// `tcp_congestion`: the algorithm the accepted connections get is in the "listening" line
/// (read back from the socket); by default a loopback listener uses cubic when the kernel
/// allows it (asked of the kernel here, not of the server); a name the kernel lacks, or a
/// malformed one, is one line and exit 2.
#[test]
fn tcp_congestion_is_in_the_listening_line_and_a_bad_one_is_one_line_and_exit_2() {
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
            .unwrap()
            .trim()
            .to_string()
    };
    let system = sysctl("tcp_congestion_control");
    // Whether the kernel lets a process of this user set cubic (in the allowed list, or any
    // available one with CAP_NET_ADMIN, as root has): asked on a socket of this test's own.
    let cubic_settable = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .unwrap()
        .set_tcp_congestion(b"cubic")
        .is_ok();
    let site = Site::new();
    let auto = match cubic_settable {
        true => "cubic".to_string(),
        false => system.clone(),
    };
    for (args, want) in [
        (vec![], auto),
        (vec!["--tcp-congestion", "system"], system),
        (vec!["--tcp-congestion", "reno"], "reno".to_string()),
    ] {
        let run = site.serve(|c| {
            c.args(&args);
        });
        run.log_shows(&format!("tcp_congestion=\"{want}\""));
        assert_eq!(run.get("/f.txt", &[]).status, 200, "{args:?}");
    }
    let line = process::config_error(site.path(), |c| {
        c.arg("--root")
            .arg(site.root())
            .args(["--tcp-congestion", "nosuchcc"]);
    });
    assert!(
        line.contains("listen 127.0.0.1:")
            && line.contains("tcp_congestion \"nosuchcc\": not in this kernel (available: "),
        "{line}"
    );
    let line = process::config_error(site.path(), |c| {
        c.arg("--root")
            .arg(site.root())
            .args(["--tcp-congestion", "cu bic"]);
    });
    assert!(
        line.starts_with("rangeserve: error: tcp_congestion: \"cu bic\" is not"),
        "{line}"
    );
}
