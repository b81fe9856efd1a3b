//! Every kind of configuration error names the file, the line and the key.

use std::ffi::OsString;

use reflow_distributed::peer_config::{AUTH_TOKEN_ENV, ConfigErrorKind, PeerConfig};

fn error_with_env(text: &str, env: impl Fn(&str) -> Option<OsString>) -> String {
    match PeerConfig::from_str_with_env(text, "alpha.toml", env) {
        Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
        Err(err) => err.to_string(),
    }
}

fn error(text: &str) -> String {
    error_with_env(text, |_| None)
}

#[test]
fn missing_network_id() {
    assert_eq!(error(""), "alpha.toml: missing required key `network_id`");
    assert_eq!(
        error("bind_port = 9100\n"),
        "alpha.toml: missing required key `network_id`"
    );
}

#[test]
fn unknown_key_with_a_suggestion() {
    let text = "network_id = \"alpha\"\n\n\n\n\n\nheartbeat_intervl_ms = 5\n";
    let err = error(text);
    assert!(
        err.starts_with(
            "alpha.toml:7: unknown key `heartbeat_intervl_ms`, did you mean `heartbeat_interval_ms`? \
             (expected one of: network_id, instance_id,"
        ),
        "{err}"
    );
}

#[test]
fn unknown_key_far_from_any_known_one() {
    let err = error("network_id = \"alpha\"\ncolour = \"blue\"\n");
    assert!(
        err.starts_with("alpha.toml:2: unknown key `colour` (expected one of: "),
        "{err}"
    );
}

#[test]
fn unknown_keys_inside_tables() {
    let err = error("network_id = \"alpha\"\n[reconnect]\nmax_attempt = 3\n");
    assert!(
        err.starts_with("alpha.toml:3: unknown key `[reconnect] max_attempt`, did you mean `max_attempts`?")
    );
    let err = error("network_id = \"alpha\"\n[[remote_actor]]\nactor = \"r\"\nnetwork_id = \"b\"\n");
    assert!(
        err.starts_with("alpha.toml:3: unknown key `[[remote_actor]] actor`"),
        "{err}"
    );
}

#[test]
fn wrong_types() {
    assert_eq!(
        error("network_id = \"alpha\"\n\nbind_port = \"abc\"\n"),
        "alpha.toml:3: `bind_port` must be an integer 0..=65535, got \"abc\""
    );
    assert_eq!(
        error("network_id = 5\n"),
        "alpha.toml:1: `network_id` must be a string, got 5"
    );
    assert_eq!(
        error("network_id = \"a\"\nauto_connect = \"yes\"\n"),
        "alpha.toml:2: `auto_connect` must be true or false, got \"yes\""
    );
    assert_eq!(
        error("network_id = \"a\"\nheartbeat_interval_ms = 1.5\n"),
        "alpha.toml:2: `heartbeat_interval_ms` must be an integer 1..=86400000, got 1.5"
    );
    assert_eq!(
        error("network_id = \"a\"\ndiscovery_endpoints = \"127.0.0.1:9000\"\n"),
        "alpha.toml:2: `discovery_endpoints` must be an array of strings, got \"127.0.0.1:9000\""
    );
    assert_eq!(
        error("network_id = \"a\"\nreconnect = 5\n"),
        "alpha.toml:2: `reconnect` must be a table ([reconnect]), got 5"
    );
    assert_eq!(
        error("network_id = \"a\"\nconnect = \"127.0.0.1:9100\"\n"),
        "alpha.toml:2: `connect` must be an array of tables ([[connect]]), got \"127.0.0.1:9100\""
    );
}

#[test]
fn values_out_of_range() {
    let cases = [
        (
            "bind_port = 70000",
            "`bind_port` must be an integer 0..=65535, got 70000",
        ),
        (
            "bind_port = -1",
            "`bind_port` must be an integer 0..=65535, got -1",
        ),
        (
            "heartbeat_interval_ms = 0",
            "`heartbeat_interval_ms` must be an integer 1..=86400000, got 0",
        ),
        (
            "max_connections = 0",
            "`max_connections` must be an integer 1..=65535, got 0",
        ),
        (
            "inbox_capacity = 0",
            "`inbox_capacity` must be an integer 1..=1048576, got 0",
        ),
        ("workers = 0", "`workers` must be an integer 1..=1024, got 0"),
        (
            "max_frame_bytes = 10",
            "`max_frame_bytes` must be an integer 1024..=1073741824, got 10",
        ),
        (
            "discovery_refresh_ms = 0",
            "`discovery_refresh_ms` must be an integer 1..=86400000, got 0",
        ),
    ];
    for (line, expected) in cases {
        let text = format!("network_id = \"alpha\"\n{line}\n");
        assert_eq!(error(&text), format!("alpha.toml:2: {expected}"));
    }
}

#[test]
fn bad_values() {
    let cases = [
        (
            "network_id = \"al pha\"",
            "`network_id` must be an id of 1 to 256 bytes without whitespace, control or invisible \
             format characters, `@`, `:` or `/`, got \"al pha\", which contains whitespace (U+0020) at byte 2",
        ),
        (
            "instance_id = \"a@b\"",
            "`instance_id` must be an id of 1 to 256 bytes without whitespace, control or invisible \
             format characters, `@`, `:` or `/`, got \"a@b\", which contains '@' at byte 1 \
             ('@' separates actor and network)",
        ),
        (
            "bind_address = \"localhost\"",
            "`bind_address` must be an IP address such as 127.0.0.1 or 0.0.0.0, got \"localhost\"",
        ),
        (
            "advertise_address = \"0.0.0.0\"",
            "`advertise_address` must be a host name or IP address without a port, and not 0.0.0.0 or ::, got \"0.0.0.0\"",
        ),
        (
            "advertise_address = \"h:9100\"",
            "`advertise_address` must be a host name or IP address without a port, and not 0.0.0.0 or ::, got \"h:9100\"",
        ),
        (
            "discovery_endpoints = [\"https://d:9000\"]",
            "`discovery_endpoints` must be an http://host:port URL, a bare host:port, or an etcd member etcd://host:port[/prefix] (https is not supported), got \"https://d:9000\"",
        ),
        (
            "auth_token = \"\"",
            "`auth_token` must be a non-empty string (remove the key to accept anyone), got a string",
        ),
    ];
    for (line, expected) in cases {
        let text = if line.starts_with("network_id") {
            format!("# peer\n{line}\n")
        } else {
            format!("network_id = \"alpha\"\n{line}\n")
        };
        assert_eq!(error(&text), format!("alpha.toml:2: {expected}"));
    }
}

#[test]
fn bad_connect_endpoint() {
    let text = "network_id = \"beta\"\n\n[[connect]]\n\nendpoint = \"nohost\"\n";
    assert_eq!(
        error(text),
        "alpha.toml:5: `[[connect]] endpoint` must be host:port, got \"nohost\""
    );
    let text = "network_id = \"beta\"\n[[connect]]\nendpoint = \"h:1\"\n[[connect]]\nendpoint = \"h:0\"\n";
    assert_eq!(
        error(text),
        "alpha.toml:5: `[[connect]] endpoint` must be host:port, got \"h:0\""
    );
}

#[test]
fn missing_and_duplicate_table_entries() {
    let text = "network_id = \"beta\"\n[[connect]]\nendpoint = \"h:1\"\n\n[[connect]]\n";
    assert_eq!(
        error(text),
        "alpha.toml:5: missing required key `[[connect]] endpoint`"
    );
    let text = "network_id = \"beta\"\n[[connect]]\nendpoint = \"h:1\"\n[[connect]]\nendpoint = \"h:1\"\n";
    assert_eq!(error(text), "alpha.toml:4: duplicate `[[connect]] endpoint` h:1");
    let actor = "[[remote_actor]]\nactor_id = \"r\"\nnetwork_id = \"alpha\"\n";
    let text = format!("network_id = \"beta\"\n{actor}{actor}");
    assert_eq!(error(&text), "alpha.toml:5: duplicate `[[remote_actor]]` r@alpha");
}

#[test]
fn remote_actor_rules() {
    let text = "network_id = \"alpha\"\n[[remote_actor]]\nactor_id = \"r\"\nnetwork_id = \"alpha\"\n";
    assert_eq!(
        error(text),
        "alpha.toml:4: `[[remote_actor]] network_id` must be another peer's network, \
         not this peer's own (\"alpha\"), got \"alpha\""
    );
    let text = "network_id = \"beta\"\n[[remote_actor]]\nactor_id = \"\"\nnetwork_id = \"alpha\"\n";
    assert!(
        error(text).starts_with("alpha.toml:3: `[[remote_actor]] actor_id` must be an id of 1 to 256 bytes")
    );
    assert!(
        error(text).ends_with("got \"\", which is empty"),
        "{}",
        error(text)
    );
}

/// Each id rule is named in the error, and the offending value is shown
/// escaped: a hostile id cannot break the `FILE:LINE: message` line.
#[test]
fn id_errors_name_the_rule() {
    let long = "n".repeat(257);
    let cases = [
        (
            "network_id = \"a:b\"",
            "which contains ':' at byte 1 (':' separates the parts of a --send target)",
        ),
        (
            "network_id = \"a/b\"",
            "which contains '/' at byte 1 ('/' separates network and actor",
        ),
        (
            "network_id = \"a\\nINFO fake\"",
            "got \"a\\nINFO fake\", which contains a control character (U+000A) at byte 1",
        ),
        (
            "network_id = \"al\\u202Epha\"",
            "got \"al\\u{202e}pha\", which contains an invisible format character (U+202E) at byte 2",
        ),
        (
            "network_id = \"zero\\u200Bwidth\"",
            "which contains an invisible format character (U+200B) at byte 4",
        ),
        (
            "network_id = \"tab\\t\"",
            "which contains a control character (U+0009) at byte 3",
        ),
        (
            "network_id = \"nb\\u00A0sp\"",
            "which contains whitespace (U+00A0) at byte 2",
        ),
        (
            &*format!("network_id = \"{long}\""),
            "which is 257 bytes long; the limit is 256",
        ),
    ];
    for (line, expected) in cases {
        let err = error(&format!("{line}\n"));
        assert!(
            err.starts_with("alpha.toml:1: `network_id` must be an id"),
            "{err}"
        );
        assert!(err.contains(expected), "{err:?} should contain {expected:?}");
        assert!(!err.contains(['\n', '\u{202e}', '\u{200b}', '\t']), "{err:?}");
    }
    let actor =
        "network_id = \"beta\"\n[[remote_actor]]\nactor_id = \"sink@gamma\"\nnetwork_id = \"alpha\"\n";
    assert!(error(actor).ends_with("which contains '@' at byte 4 ('@' separates actor and network)"));
    let remote = "network_id = \"beta\"\n[[remote_actor]]\nactor_id = \"r\"\nnetwork_id = \"\\u2066alpha\"\n";
    assert!(error(remote).starts_with("alpha.toml:4: `[[remote_actor]] network_id` must be an id"));
}

#[test]
fn a_long_network_id_leaves_room_for_the_default_instance_id() {
    let text = format!("network_id = \"{}\"\n", "n".repeat(255));
    let err = error(&text);
    assert!(
        err.starts_with("alpha.toml:1: `network_id` must be at most 254 bytes when instance_id is not set"),
        "{err}"
    );
    let text = format!("network_id = \"{}\"\ninstance_id = \"n-1\"\n", "n".repeat(256));
    assert!(PeerConfig::from_str_with_env(&text, "alpha.toml", |_| None).is_ok());
}

#[test]
fn reconnect_values() {
    let text = "network_id = \"a\"\n[reconnect]\nmultiplier = 0\n";
    assert_eq!(
        error(text),
        "alpha.toml:3: `[reconnect] multiplier` must be an integer 1..=16, got 0"
    );
    let text = "network_id = \"a\"\n[reconnect]\ninitial_delay_ms = \"fast\"\n";
    assert_eq!(
        error(text),
        "alpha.toml:3: `[reconnect] initial_delay_ms` must be an integer 1..=86400000, got \"fast\""
    );
}

#[test]
fn toml_syntax_errors_have_a_line() {
    let err = error("network_id = \"alpha\"\nbind_port = 9100\nbind_port = 9200\n");
    assert!(err.starts_with("alpha.toml:3: invalid TOML: "), "{err}");
    let err = error("network_id = \"alpha\"\n[reconnect\n");
    assert!(err.starts_with("alpha.toml:2: invalid TOML: "), "{err}");
}

#[test]
fn the_token_is_never_quoted() {
    for text in [
        "network_id = \"a\"\nauth_token = 987654321\n",
        "network_id = \"a\"\nauth_token = [\"987654321\"]\n",
        "network_id = \"a\"\nauth_token = 987654321abc\n",
        "network_id = \"a\"\nauth_token = \"987654321\n",
    ] {
        let err = error(text);
        assert!(err.starts_with("alpha.toml:2: "), "{err}");
        assert!(!err.contains("987654321"), "{err}");
    }
}

#[test]
fn a_non_utf8_environment_token_is_refused() {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        let env = |var: &str| (var == AUTH_TOKEN_ENV).then(|| OsString::from_vec(vec![0xff, 0xfe]));
        assert_eq!(
            error_with_env("network_id = \"a\"\n", env),
            "alpha.toml: environment variable REFLOW_AUTH_TOKEN is not valid UTF-8"
        );
    }
}

#[test]
fn errors_expose_file_line_and_kind() {
    let err = PeerConfig::from_str_with_env("network_id = \"a\"\nworkers = 0\n", "x.toml", |_| None)
        .expect_err("invalid");
    assert_eq!(err.source_name(), "x.toml");
    assert_eq!(err.line(), Some(2));
    assert!(matches!(err.kind(), ConfigErrorKind::InvalidValue { key, .. } if key == "workers"));
}

#[test]
fn delivery_values() {
    let cases = [
        (
            "mode = \"exactly-once\"",
            "`[delivery] mode` must be \"at-most-once\" or \"acknowledged\", got \"exactly-once\"",
        ),
        ("mode = true", "`[delivery] mode` must be a string, got true"),
        (
            "outbox_messages = 0",
            "`[delivery] outbox_messages` must be an integer 1..=1048576, got 0",
        ),
        (
            "outbox_bytes = 100",
            "`[delivery] outbox_bytes` must be an integer 1024..=2147483648, got 100",
        ),
        (
            "ack_window = -5",
            "`[delivery] ack_window` must be an integer 1..=1048576, got -5",
        ),
        (
            "target_window = 0",
            "`[delivery] target_window` must be an integer 1..=1048576, got 0",
        ),
        (
            "credit_bytes = -1",
            "`[delivery] credit_bytes` must be an integer 0..=1073741824, got -1",
        ),
        (
            "outbox_dir = \"\"",
            "`[delivery] outbox_dir` must be a directory path (relative to this file's directory), got \"\"",
        ),
        (
            "outbox_dir = 7",
            "`[delivery] outbox_dir` must be a string, got 7",
        ),
    ];
    for (line, expected) in cases {
        let text = format!("network_id = \"alpha\"\n[delivery]\n{line}\n");
        assert_eq!(error(&text), format!("alpha.toml:3: {expected}"));
    }
}

#[test]
fn delivery_is_a_table_with_known_keys() {
    assert_eq!(
        error("network_id = \"a\"\ndelivery = \"acknowledged\"\n"),
        "alpha.toml:2: `delivery` must be a table ([delivery]), got \"acknowledged\""
    );
    let err = error("network_id = \"a\"\n\n[delivery]\nmode = \"acknowledged\"\nack_windw = 64\n");
    assert_eq!(
        err,
        "alpha.toml:5: unknown key `[delivery] ack_windw`, did you mean `ack_window`? \
         (expected one of: mode, outbox_messages, outbox_bytes, ack_window, target_window, credit_bytes, \
         outbox_dir, outbox_fsync)"
    );
}
