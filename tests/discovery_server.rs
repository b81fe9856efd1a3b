//! The real `reflow-discovery` binary over real sockets: the contract, TTL,
//! replacement, every kind of bad input, and process lifecycle.

mod discovery_support;

use std::process::Command;

use discovery_support::*;

#[test]
fn a_registration_is_listed_with_a_server_stamped_last_seen() {
    let server = ServerProcess::start(&[]);
    register(server.addr, "alpha", "alpha-1", "127.0.0.1:9100");
    let list = networks(server.addr);
    assert_eq!(list.len(), 1);
    let entry = &list[0];
    assert_eq!(entry["network_id"], "alpha");
    assert_eq!(entry["instance_id"], "alpha-1");
    assert_eq!(entry["endpoint"], "127.0.0.1:9100");
    assert_eq!(entry["capabilities"], serde_json::json!(["actor_messaging"]));
    let last_seen = entry["last_seen"].as_str().expect("string");
    assert_eq!(last_seen.len(), "2026-04-28T22:48:32.123Z".len(), "{last_seen}");
    assert!(
        last_seen.ends_with('Z') && last_seen.as_bytes()[10] == b'T',
        "{last_seen}"
    );
}

#[test]
fn entries_expire_after_the_ttl_and_are_swept() {
    let mut server = ServerProcess::start(&["--entry-ttl-secs", "1", "--prune-interval-secs", "1"]);
    register(server.addr, "alpha", "alpha-1", "127.0.0.1:9100");
    assert_eq!(networks(server.addr).len(), 1);
    wait_until("the entry to expire", || networks(server.addr).is_empty());
    server.wait_for_log("network alpha expired: instance alpha-1 at 127.0.0.1:9100");
    wait_until("the sweep to count it", || {
        http(server.addr, "GET", "/metrics", None)
            .body
            .contains("reflow_discovery_pruned_total 1")
    });
}

#[test]
fn a_wildcard_endpoint_is_listed_at_the_request_source() {
    let mut server = ServerProcess::start(&[]);
    let body = r#"{"network_id":"rf","instance_id":"rf-1","endpoint":"0.0.0.0:7123","capabilities":[]}"#;
    let answer = http(server.addr, "POST", "/register", Some(body));
    assert_eq!(answer.status, 200, "{answer:?}");
    let list = networks(server.addr);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (&list[0]["network_id"], &list[0]["endpoint"]),
        (&serde_json::json!("rf"), &serde_json::json!("127.0.0.1:7123"))
    );
    let line = server.wait_for_log("registered the wildcard endpoint 0.0.0.0:7123");
    assert!(line.contains("INFO") && line.contains("127.0.0.1:7123"), "{line}");

    let body = r#"{"network_id":"rf6","instance_id":"rf6-1","endpoint":"[::]:7123","capabilities":[]}"#;
    assert_eq!(http(server.addr, "POST", "/register", Some(body)).status, 200);
    let list = networks(server.addr);
    let rf6 = list
        .iter()
        .find(|n| n["network_id"] == "rf6")
        .expect("rf6 listed");
    assert_eq!(rf6["endpoint"], "127.0.0.1:7123");

    let body = r#"{"network_id":"rf0","instance_id":"rf0-1","endpoint":"0.0.0.0:0","capabilities":[]}"#;
    let answer = http(server.addr, "POST", "/register", Some(body));
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.error().contains("port 0"), "{answer:?}");
    assert_eq!(networks(server.addr).len(), 2);
}

#[test]
fn delete_removes_an_entry_only_for_the_instance_holding_it() {
    let mut server = ServerProcess::start(&[]);
    register(server.addr, "alpha", "alpha-1", "127.0.0.1:9100");
    register(server.addr, "alpha", "alpha-2", "127.0.0.1:9101");
    // The old instance shutting down late must not remove its successor.
    let answer = http(server.addr, "DELETE", "/networks/alpha?instance_id=alpha-1", None);
    assert_eq!(answer.status, 409, "{answer:?}");
    assert!(answer.error().contains("alpha-2"), "{answer:?}");
    assert_eq!(networks(server.addr).len(), 1);

    let answer = http(server.addr, "GET", "/networks/alpha", None);
    assert_eq!(answer.status, 405, "{answer:?}");
    assert!(answer.head.contains("Allow: DELETE"), "{answer:?}");
    let answer = http(server.addr, "DELETE", "/networks/alpha", None);
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.error().contains("instance_id"), "{answer:?}");

    let answer = http(
        server.addr,
        "DELETE",
        "/networks/alpha",
        Some(r#"{"instance_id":"alpha-2"}"#),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["status"], "deregistered");
    assert!(
        networks(server.addr).is_empty(),
        "gone at once, not after the TTL"
    );
    server.wait_for_log("deregistered network alpha: instance alpha-2 at 127.0.0.1:9101");

    let answer = http(server.addr, "DELETE", "/networks/alpha?instance_id=alpha-2", None);
    assert_eq!(answer.status, 404, "{answer:?}");
    assert!(answer.error().contains("not registered"), "{answer:?}");
    assert!(
        http(server.addr, "GET", "/metrics", None)
            .body
            .contains("reflow_discovery_deregistrations_total 1")
    );
}

#[test]
fn registrations_and_takeovers_are_logged_and_a_live_rival_at_warn() {
    let mut server = ServerProcess::start(&[]);
    register(server.addr, "alpha", "alpha-1", "127.0.0.1:9100");
    let line = server.wait_for_log("registered network alpha: instance alpha-1 at 127.0.0.1:9100");
    assert!(line.contains("INFO"), "{line}");
    // alpha-1 registered a moment ago: well within TTL/2, so still live.
    register(server.addr, "alpha", "alpha-2", "127.0.0.1:9101");
    let line = server.wait_for_log(
        "two live instances claim network alpha: alpha-1 at 127.0.0.1:9100 and alpha-2 at 127.0.0.1:9101",
    );
    assert!(line.contains("WARN"), "{line}");
    register(server.addr, "alpha", "alpha-1", "127.0.0.1:9100");
    server.wait_for_log(
        "two live instances claim network alpha: alpha-2 at 127.0.0.1:9101 and alpha-1 at 127.0.0.1:9100",
    );
    // The same instance moving is a replacement, not a rival.
    register(server.addr, "alpha", "alpha-1", "127.0.0.1:9102");
    let line = server.wait_for_log(
        "replaced network alpha: instance alpha-1 at 127.0.0.1:9100 by instance alpha-1 at 127.0.0.1:9102",
    );
    assert!(line.contains("INFO"), "{line}");
}

#[test]
fn a_new_instance_replaces_the_old_entry_at_once() {
    let server = ServerProcess::start(&[]);
    register(server.addr, "alpha", "alpha-1", "127.0.0.1:9100");
    register(server.addr, "beta", "beta-1", "127.0.0.1:9200");
    register(server.addr, "alpha", "alpha-2", "127.0.0.1:9101");
    let list = networks(server.addr);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["instance_id"], "alpha-2");
    assert_eq!(list[0]["endpoint"], "127.0.0.1:9101");
}

#[test]
fn bad_registrations_get_400_with_a_reason() {
    let server = ServerProcess::start(&[]);
    let cases = [
        ("{\"network_id\": ", "malformed JSON"),
        ("\"just a string\"", "expected a JSON object"),
        (
            r#"{"instance_id":"a-1","endpoint":"h:1"}"#,
            "missing field `network_id`",
        ),
        (
            r#"{"network_id":"a","endpoint":"h:1"}"#,
            "missing field `instance_id`",
        ),
        (
            r#"{"network_id":"a","instance_id":"a-1"}"#,
            "missing field `endpoint`",
        ),
        (
            r#"{"network_id":"","instance_id":"a-1","endpoint":"h:1"}"#,
            "field `network_id` is empty",
        ),
        (
            r#"{"network_id":"a","instance_id":"a-1","endpoint":""}"#,
            "field `endpoint` is empty",
        ),
        (
            r#"{"network_id":"a","instance_id":"a-1","endpoint":"no-port"}"#,
            "is not host:port",
        ),
        (
            r#"{"network_id":"a","instance_id":"a-1","endpoint":"h:99999"}"#,
            "is not host:port",
        ),
        (
            r#"{"network_id":"a","instance_id":"a-1","endpoint":"0.0.0.0:0"}"#,
            "has port 0",
        ),
        (
            r#"{"network_id":["a"],"instance_id":"a-1","endpoint":"h:1"}"#,
            "bad field type",
        ),
    ];
    for (body, expected) in cases {
        let answer = http(server.addr, "POST", "/register", Some(body));
        assert_eq!(answer.status, 400, "{body}: {answer:?}");
        assert!(
            answer.head.contains("Content-Type: application/json"),
            "{answer:?}"
        );
        let error = answer.error();
        assert!(
            error.contains(expected),
            "{body}: {error:?} should mention {expected:?}"
        );
    }
    assert!(networks(server.addr).is_empty());
}

#[test]
fn wrong_methods_get_405_and_unknown_paths_404() {
    let server = ServerProcess::start(&[]);
    let answer = http(server.addr, "GET", "/register", None);
    assert_eq!(answer.status, 405);
    assert!(answer.head.contains("Allow: POST"), "{answer:?}");
    assert!(answer.error().contains("use POST"));
    let answer = http(server.addr, "POST", "/networks", Some("{}"));
    assert_eq!(answer.status, 405);
    assert!(answer.head.contains("Allow: GET"), "{answer:?}");
    let answer = http(server.addr, "GET", "/nope", None);
    assert_eq!(answer.status, 404);
    assert!(answer.error().contains("/nope"));
}

#[test]
fn a_huge_declared_body_gets_413_without_being_read() {
    let server = ServerProcess::start(&["--max-body-bytes", "1024"]);
    // Declares a terabyte and sends none of it: the answer comes from the
    // declared length alone, at once.
    let answer = raw(
        server.addr,
        b"POST /register HTTP/1.1\r\nHost: t\r\nContent-Length: 1099511627776\r\n\r\n",
    );
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.error().contains("1024 bytes"), "{answer:?}");
    // A body sent in full but over the limit is refused the same way.
    let big = format!(
        r#"{{"network_id":"a","instance_id":"a-1","endpoint":"h:1","pad":"{}"}}"#,
        "x".repeat(4000)
    );
    assert_eq!(http(server.addr, "POST", "/register", Some(&big)).status, 413);
    // A body of exactly the limit is fine.
    let body = registration("alpha", "alpha-1", "127.0.0.1:9100");
    let exact = format!("{body}{}", " ".repeat(1024 - body.len()));
    assert_eq!(http(server.addr, "POST", "/register", Some(&exact)).status, 200);
    assert_eq!(networks(server.addr).len(), 1);
}

#[test]
fn garbage_and_unsupported_framing_get_clear_errors() {
    let server = ServerProcess::start(&[]);
    let answer = raw(server.addr, b"\x16\x03\x01 binary garbage\r\n\r\n");
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.error().contains("malformed HTTP request"));
    let answer = raw(
        server.addr,
        b"POST /register HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(answer.status, 411, "{answer:?}");
    let answer = raw(server.addr, b"GET /networks HTTP/3.0\r\n\r\n");
    assert_eq!(answer.status, 505, "{answer:?}");
    let long = format!("GET /networks HTTP/1.1\r\nX: {}\r\n\r\n", "y".repeat(20_000));
    let answer = raw(server.addr, long.as_bytes());
    assert_eq!(answer.status, 431, "{answer:?}");
    // Still serving.
    assert_eq!(http(server.addr, "GET", "/healthz", None).status, 200);
}

#[test]
fn health_and_metrics_report_the_roster_and_statuses() {
    let server = ServerProcess::start(&[]);
    let health = http(server.addr, "GET", "/healthz", None);
    assert_eq!(
        (health.status, health.json()["status"].as_str()),
        (200, Some("ok"))
    );
    register(server.addr, "alpha", "alpha-1", "127.0.0.1:9100");
    register(server.addr, "alpha", "alpha-1", "127.0.0.1:9100");
    assert_eq!(http(server.addr, "GET", "/nope", None).status, 404);
    let metrics = http(server.addr, "GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.head.contains("Content-Type: text/plain; version=0.0.4"),
        "{metrics:?}"
    );
    let body = metrics.body;
    assert!(
        body.contains("# TYPE reflow_discovery_networks gauge\nreflow_discovery_networks 1\n"),
        "{body}"
    );
    assert!(
        body.contains("reflow_discovery_registrations_total 2\n"),
        "{body}"
    );
    assert!(
        body.contains("reflow_discovery_http_responses_total{status=\"200\"} 3\n"),
        "{body}"
    );
    assert!(
        body.contains("reflow_discovery_http_responses_total{status=\"404\"} 1\n"),
        "{body}"
    );
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = ServerProcess::start(&[]);
    let body = registration("alpha", "alpha-1", "127.0.0.1:9100");
    let pipelined = format!(
        "POST /register HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}\
         GET /networks HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut s = std::net::TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    std::io::Write::write_all(&mut s, pipelined.as_bytes()).expect("send");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut s, &mut out).expect("read");
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert!(out.contains("\"endpoint\":\"127.0.0.1:9100\""), "{out}");
}

#[test]
fn sigterm_and_sigint_stop_the_server_with_exit_0() {
    for signal in ["TERM", "INT"] {
        let mut server = ServerProcess::start(&[]);
        // An open idle connection must not hold the shutdown up.
        let _idle = std::net::TcpStream::connect(server.addr).expect("connect");
        register(server.addr, "alpha", "alpha-1", "127.0.0.1:9100");
        server.signal(signal);
        let status = server.wait_exit();
        assert_eq!(status.code(), Some(0), "SIG{signal}: {status:?}");
        server.wait_for_log("stopped");
    }
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let bin = env!("CARGO_BIN_EXE_reflow-discovery");
    for (args, needle) in [
        (&["--bogus"][..], "--bogus"),
        (&["--entry-ttl-secs", "soon"], "--entry-ttl-secs"),
        (&["--prune-interval-secs", "0"], "--prune-interval-secs"),
        (&["--bind", "nonsense"], "--bind"),
        (&["--bind"], "--bind"),
    ] {
        let out = Command::new(bin).args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let help = Command::new(bin).arg("--help").output().expect("run");
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--entry-ttl-secs"));
    let version = Command::new(bin).arg("--version").output().expect("run");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("reflow-discovery "));
}

#[test]
fn a_port_in_use_exits_1_with_a_reason() {
    let server = ServerProcess::start(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_reflow-discovery"))
        .args(["--bind", &server.addr.to_string()])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
}
