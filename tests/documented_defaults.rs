//! The settings tables outside docs/configuration.md (which
//! `peer_config::documented` checks) against the code: every field of
//! `BridgeConfig` in docs/bridge.md, of `NetworkConfig` in docs/runtime.md and
//! of `DeliveryConfig` in docs/delivery.md has a row, and the default written
//! there is the code's. A default changed in one place and not the other
//! fails here.

use std::collections::BTreeMap;
use std::time::Duration;

use reflow_distributed::bridge::{BridgeConfig, DeliveryConfig, DeliveryMode};
use reflow_distributed::runtime::NetworkConfig;

/// A default as the code has it, in the units the documents use.
#[derive(Debug, PartialEq)]
enum Value {
    Number(u64),
    Bytes(u64),
    Time(Duration),
    Flag(bool),
    Text(String),
    /// Written as a rule, not a value (`machine parallelism`, `none`, the
    /// reconnect schedule): the row must exist; its wording is prose.
    Rule,
}

/// The first cell after the key of each row of the table under `heading`.
fn table(doc: &str, heading: &str) -> BTreeMap<String, String> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    let mut rows = BTreeMap::new();
    for line in doc[start..].lines().skip(1) {
        if line.starts_with('#') {
            break;
        }
        let Some(row) = line.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let key = cells[0].trim_end_matches('`').to_string();
        // The header row (`` `[delivery]` key ``) names no field.
        if !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        rows.insert(key, cells[1].trim_matches('`').to_string());
    }
    rows
}

/// Reads a documented default: `5 s`, `200 ms`, `50 µs`, `16 KiB`, `8 MiB`, `1024`,
/// `true`, `"at-most-once"`, `127.0.0.1`.
fn read(text: &str) -> Value {
    let text = text.trim();
    let unit = |suffix: &str| {
        text.strip_suffix(suffix)
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    if let Some(n) = unit(" µs") {
        Value::Time(Duration::from_micros(n))
    } else if let Some(n) = unit(" ms") {
        Value::Time(Duration::from_millis(n))
    } else if let Some(n) = unit(" s") {
        Value::Time(Duration::from_secs(n))
    } else if let Some(n) = unit(" KiB") {
        Value::Bytes(n * 1024)
    } else if let Some(n) = unit(" MiB") {
        Value::Bytes(n * 1024 * 1024)
    } else if let Ok(n) = text.replace(',', "").parse::<u64>() {
        Value::Number(n)
    } else if let Ok(flag) = text.parse::<bool>() {
        Value::Flag(flag)
    } else {
        Value::Text(text.trim_matches('"').to_string())
    }
}

fn check(document: &str, heading: &str, code: Vec<(&str, Value)>) {
    let path = format!("{}/docs/{document}", env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let rows = table(&doc, heading);
    let fields: Vec<&str> = code.iter().map(|(f, _)| *f).collect();
    for key in rows.keys() {
        assert!(
            fields.contains(&key.as_str()),
            "docs/{document}: `{key}` is not a field of the code"
        );
    }
    for (field, value) in code {
        let written = rows
            .get(field)
            .unwrap_or_else(|| panic!("docs/{document}: no row for `{field}` under {heading:?}"));
        if value == Value::Rule {
            continue;
        }
        let read = read(written);
        // A number of bytes may be written either way.
        let same = read == value
            || matches!((&read, &value), (Value::Number(a), Value::Bytes(b)) | (Value::Bytes(a), Value::Number(b)) if a == b);
        assert!(
            same,
            "docs/{document}: `{field}` is documented as {written:?}, the code's default is {value:?}"
        );
    }
}

#[test]
fn bridge_config_defaults_in_bridge_md_are_the_codes() {
    let c = BridgeConfig::default();
    check(
        "bridge.md",
        "## Knobs (`BridgeConfig`)",
        vec![
            ("bind_address", Value::Text(c.bind_address.clone())),
            ("bind_port", Value::Number(u64::from(c.bind_port))),
            ("max_connections", Value::Number(c.max_connections as u64)),
            ("heartbeat_interval", Value::Time(c.heartbeat_interval)),
            ("connect_timeout", Value::Time(c.connect_timeout)),
            ("handshake_timeout", Value::Time(c.handshake_timeout)),
            ("max_frame_bytes", Value::Bytes(c.max_frame_bytes as u64)),
            (
                "outbound_queue_capacity",
                Value::Number(c.outbound_queue_capacity as u64),
            ),
            ("batch_frames", Value::Flag(c.batch_frames)),
            ("read_buffer_bytes", Value::Bytes(c.read_buffer_bytes as u64)),
            ("write_buffer_bytes", Value::Bytes(c.write_buffer_bytes as u64)),
            ("write_linger", Value::Time(c.write_linger)),
            ("delivery_timeout", Value::Time(c.delivery_timeout)),
            ("close_timeout", Value::Time(c.close_timeout)),
            (
                "event_queue_capacity",
                Value::Number(c.event_queue_capacity as u64),
            ),
            ("reconnect", Value::Rule),
            ("accept_legacy_auth", Value::Flag(c.accept_legacy_auth)),
            ("link_down_warning", Value::Time(c.link_down_warning)),
        ],
    );
}

#[test]
fn network_config_defaults_in_runtime_md_are_the_codes() {
    let c = NetworkConfig::default();
    check(
        "runtime.md",
        "## Settings (`NetworkConfig`)",
        vec![
            ("workers", Value::Rule),
            ("inbox_capacity", Value::Number(c.inbox_capacity as u64)),
            ("send_timeout", Value::Time(c.send_timeout)),
            ("ticks_per_turn", Value::Number(c.ticks_per_turn as u64)),
            ("event_capacity", Value::Number(c.event_capacity as u64)),
            ("thread_stack_bytes", Value::Bytes(c.thread_stack_bytes as u64)),
            ("inline_turn_limit", Value::Time(c.inline_turn_limit)),
        ],
    );
}

#[test]
fn delivery_defaults_in_delivery_md_are_the_codes() {
    let c = DeliveryConfig::default();
    assert_eq!(c.mode, DeliveryMode::AtMostOnce);
    assert!(c.outbox_dir.is_none());
    check(
        "delivery.md",
        "## Settings and their defaults",
        vec![
            ("mode", Value::Text("at-most-once".to_string())),
            ("outbox_messages", Value::Number(c.outbox_messages as u64)),
            ("outbox_bytes", Value::Bytes(c.outbox_bytes as u64)),
            ("ack_window", Value::Number(c.ack_window as u64)),
            ("target_window", Value::Number(u64::from(c.target_window))),
            ("credit_bytes", Value::Number(u64::from(c.credit_bytes))),
            ("outbox_dir", Value::Rule),
            ("outbox_fsync", Value::Flag(c.outbox_fsync)),
        ],
    );
}
