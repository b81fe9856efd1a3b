//! The peer configuration format: which keys exist, what each must hold, and
//! how the document becomes a [`PeerConfig`]. `docs/configuration.md`
//! describes the same keys for users; keep the two in step (a test checks).
//!
//! A new section is a list of its keys here (and in `TABLES`), a reader
//! that writes into the settings struct it configures and, if those
//! settings are new, a field of `DistributedConfig`: the file's keys are
//! never copied into a struct of their own.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::DeValue;

use super::error::{ConfigError, ConfigErrorKind};
use super::reader::{Reader, Section};
use super::validate;
use super::{AUTH_TOKEN_ENV, ConnectTarget, ETCD_PASSWORD_ENV, PeerConfig, RemoteActor};
use crate::bridge::{DeliveryConfig, DeliveryMode, HoldOptions, ReconnectPolicy};
use crate::discovery::{DiscoveryClientConfig, EtcdCredentials};
use crate::distributed_config::DistributedConfig;
use crate::names::{self, ID_RULE};
use crate::runtime::NetworkConfig;
use crate::secret::Secret;

const TOP_KEYS: &[&str] = &[
    "network_id",
    "instance_id",
    "bind_address",
    "bind_port",
    "advertise_address",
    "auth_token",
    "auto_connect",
    "discovery_endpoints",
    "discovery_refresh_ms",
    "discovery_entry_ttl_ms",
    "etcd",
    "heartbeat_interval_ms",
    "max_connections",
    "max_frame_bytes",
    "inbox_capacity",
    "workers",
    "reconnect",
    "legacy_auth",
    "accept_legacy_auth",
    "link_down_warning_ms",
    "delivery",
    "admin_bind",
    "connect",
    "remote_actor",
];
const RECONNECT_KEYS: &[&str] = &["initial_delay_ms", "max_delay_ms", "multiplier", "max_attempts"];
const DELIVERY_KEYS: &[&str] = &[
    "mode",
    "outbox_messages",
    "outbox_bytes",
    "ack_window",
    "target_window",
    "credit_bytes",
    "outbox_dir",
    "outbox_fsync",
];
const ETCD_KEYS: &[&str] = &["user", "password_file"];
const CONNECT_KEYS: &[&str] = &["endpoint", "network_id", "legacy_auth"];
const REMOTE_ACTOR_KEYS: &[&str] = &["actor_id", "network_id"];

/// Every table of the format with its keys: `""` is the top level, the
/// others are top-level keys holding a table (`[reconnect]`) or an array of
/// tables (`[[connect]]`). A new section goes here and in `TOP_KEYS`; the
/// documentation test then wants a row in `docs/configuration.md` for each
/// of its keys, with the code's default.
#[cfg(test)]
pub(crate) const TABLES: &[(&str, &[&str])] = &[
    ("", TOP_KEYS),
    ("reconnect", RECONNECT_KEYS),
    ("delivery", DELIVERY_KEYS),
    ("etcd", ETCD_KEYS),
    ("connect", CONNECT_KEYS),
    ("remote_actor", REMOTE_ACTOR_KEYS),
];

/// Longest accepted interval or delay: one day. Anything longer is a typo.
const MAX_MS: u64 = 86_400_000;
/// Smallest frame limit: the handshake and heartbeat frames must fit.
const MIN_FRAME_BYTES: u64 = 1024;

/// Largest message count of `[delivery]` (outbox, windows): about a million,
/// far past any sensible setting, so a typo is caught.
const MAX_DELIVERY_COUNT: u64 = 1 << 20;
/// Largest outbox in bytes: 2 GiB.
const MAX_OUTBOX_BYTES: u64 = 1 << 31;

const HOST_PORT_RULE: &str = "host:port";
const ADMIN_RULE: &str = "an IP address and port such as 127.0.0.1:9190 (port 0 picks one)";
const DISCOVERY_RULE: &str = "an http://host:port URL, a bare host:port, or an etcd member \
     etcd://host:port[/prefix] (https is not supported)";
const ADVERTISE_RULE: &str = "a host name or IP address without a port, and not 0.0.0.0 or ::";

/// Reads a whole document. `dir` is the file's directory (relative paths in
/// it are taken from there); `env` looks up environment variables.
pub(crate) fn read(
    text: &str,
    name: &str,
    dir: &Path,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<PeerConfig, ConfigError> {
    let doc = Reader::parse(name, text)?;
    let mut r = Reader::new(name, text);
    let top = Section {
        table: doc.get_ref(),
        span: doc.span(),
        label: "",
        known: TOP_KEYS,
    };
    r.check_keys(&top);

    let network_id = id_key(&mut r, &top, "network_id");
    if !top.table.contains_key("network_id") {
        r.missing(&top, "network_id");
    }
    let mut cfg = PeerConfig::new(network_id.unwrap_or_default());
    let peer = &mut cfg.distributed;
    if let Some(instance_id) = id_key(&mut r, &top, "instance_id") {
        peer.instance_id = instance_id;
    } else if !top.table.contains_key("instance_id")
        && !peer.network_id.is_empty()
        && names::check_id(&peer.instance_id).is_err()
        && let Some(value) = top.table.get("network_id")
    {
        // A valid network id can only break the rule here by length: the
        // default `<network_id>-1` is two bytes longer.
        let rule = format!(
            "at most {} bytes when instance_id is not set (its default is `<network_id>-1`)",
            names::MAX_ID_BYTES - 2
        );
        r.invalid("network_id".into(), value, &rule);
    }
    read_bridge_keys(&mut r, &top, peer);
    read_discovery_keys(&mut r, &top, &mut peer.discovery);
    peer.admin_bind = r.checked_string(&top, "admin_bind", ADMIN_RULE, validate::bind_address);
    read_runtime_keys(&mut r, &top, &mut peer.network);
    peer.auth_token = read_auth_token(&mut r, &top, env);
    if let Some(reconnect) = single_table(&mut r, &top, "reconnect", "[reconnect] ", RECONNECT_KEYS) {
        read_reconnect(&mut r, &reconnect, &mut peer.bridge.reconnect);
    }
    if let Some(delivery) = single_table(&mut r, &top, "delivery", "[delivery] ", DELIVERY_KEYS) {
        read_delivery(&mut r, &delivery, dir, &mut peer.bridge.delivery);
    }
    let etcd = single_table(&mut r, &top, "etcd", "[etcd] ", ETCD_KEYS);
    peer.discovery.etcd_credentials = read_etcd(&mut r, etcd.as_ref(), dir, env);
    // An entry without its own `legacy_auth` follows the top-level key.
    cfg.connect = read_connect(&mut r, &top, peer.legacy_auth);
    cfg.remote_actors = read_remote_actors(&mut r, &top, &cfg.distributed.network_id);

    r.finish()?;
    Ok(cfg)
}

/// A network, instance or actor id; an error names the rule it breaks.
fn id_key(r: &mut Reader<'_>, section: &Section<'_, '_>, key: &str) -> Option<String> {
    let (text, value) = r.string(section, key)?;
    match names::check_id(text) {
        Ok(()) => Some(text.to_string()),
        Err(why) => {
            r.invalid_because(format!("{}{key}", section.label), value, ID_RULE, &why);
            None
        }
    }
}

fn millis(r: &mut Reader<'_>, section: &Section<'_, '_>, key: &str) -> Option<Duration> {
    r.integer(section, key, 1, MAX_MS).map(Duration::from_millis)
}

fn size(r: &mut Reader<'_>, section: &Section<'_, '_>, key: &str, min: u64, max: u64) -> Option<usize> {
    // `max` never exceeds u32::MAX, so the conversion cannot fail on any target.
    r.integer(section, key, min, max)
        .and_then(|n| usize::try_from(n).ok())
}

/// The top-level keys of the bridge and of how this peer is reached.
fn read_bridge_keys(r: &mut Reader<'_>, top: &Section<'_, '_>, peer: &mut DistributedConfig) {
    let bridge = &mut peer.bridge;
    let ip_rule = "an IP address such as 127.0.0.1 or 0.0.0.0";
    if let Some(ip) = r.checked_string(top, "bind_address", ip_rule, |s| s.parse::<IpAddr>().ok()) {
        bridge.bind_address = ip.to_string();
    }
    if let Some(port) = r.integer(top, "bind_port", 0, u64::from(u16::MAX)) {
        bridge.bind_port = u16::try_from(port).unwrap_or_default();
    }
    peer.advertise_address =
        r.checked_string(top, "advertise_address", ADVERTISE_RULE, validate::advertise_host);
    if let Some(b) = r.boolean(top, "auto_connect") {
        peer.auto_connect = b;
    }
    if let Some(interval) = millis(r, top, "heartbeat_interval_ms") {
        bridge.heartbeat_interval = interval;
    }
    if let Some(n) = size(r, top, "max_connections", 1, 65_535) {
        bridge.max_connections = n;
    }
    if let Some(n) = size(r, top, "max_frame_bytes", MIN_FRAME_BYTES, 1 << 30) {
        bridge.max_frame_bytes = n;
    }
    if let Some(b) = r.boolean(top, "legacy_auth") {
        peer.legacy_auth = b;
    }
    if let Some(b) = r.boolean(top, "accept_legacy_auth") {
        bridge.accept_legacy_auth = b;
    }
    if let Some(warning) = millis(r, top, "link_down_warning_ms") {
        bridge.link_down_warning = warning;
    }
}

fn read_discovery_keys(r: &mut Reader<'_>, top: &Section<'_, '_>, discovery: &mut DiscoveryClientConfig) {
    if let Some(refresh) = millis(r, top, "discovery_refresh_ms") {
        discovery.refresh_interval = refresh;
    }
    let ttl = top.table.get("discovery_entry_ttl_ms");
    if let Some(entry_ttl) = r.integer(top, "discovery_entry_ttl_ms", 1000, MAX_MS) {
        discovery.entry_ttl = Duration::from_millis(entry_ttl);
    }
    let Some(value) = top.table.get("discovery_endpoints") else {
        return;
    };
    let DeValue::Array(items) = value.get_ref() else {
        r.invalid("discovery_endpoints".into(), value, "an array of strings");
        return;
    };
    for item in items {
        match item.get_ref().as_str().and_then(validate::discovery_url) {
            Some(url) => discovery.endpoints.push(url),
            None => r.invalid("discovery_endpoints".into(), item, DISCOVERY_RULE),
        }
    }
    // An etcd entry outlives its last refresh by the lease TTL only.
    let etcd = discovery.endpoints.iter().any(|e| e.starts_with("etcd://"));
    if etcd && discovery.entry_ttl <= discovery.refresh_interval {
        let rule = format!(
            "longer than discovery_refresh_ms ({}) with etcd endpoints, or entries lapse between refreshes",
            discovery.refresh_interval.as_millis()
        );
        r.invalid("discovery_entry_ttl_ms".into(), ttl.unwrap_or(value), &rule);
    }
}

/// `[etcd]`: the user and password for an etcd cluster with auth enabled.
/// `REFLOW_ETCD_PASSWORD`, when set and not empty, gives the password
/// instead of `password_file`.
fn read_etcd(
    r: &mut Reader<'_>,
    section: Option<&Section<'_, '_>>,
    dir: &Path,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Option<EtcdCredentials> {
    let from_env = secret_from_env(r, env, ETCD_PASSWORD_ENV);
    let Some(section) = section else {
        if from_env.is_some() {
            // A password for no user: most likely a misplaced or missing table.
            let kind = ConfigErrorKind::Env {
                var: ETCD_PASSWORD_ENV,
                problem: "is set, but the file has no [etcd] table naming the user",
            };
            r.report(None, kind);
        }
        return None;
    };
    r.check_keys(section);
    let user = id_key(r, section, "user");
    let from_file = match r.string(section, "password_file") {
        Some((path, value)) if from_env.is_none() => {
            let rule = "a readable file holding the etcd password (relative to this file's directory)";
            match std::fs::read_to_string(dir.join(path)) {
                Ok(text) if !text.trim().is_empty() => Some(Secret::from(text.trim())),
                Ok(_) => {
                    r.invalid_because("[etcd] password_file".into(), value, rule, &"the file is empty");
                    None
                }
                Err(e) => {
                    r.invalid_because("[etcd] password_file".into(), value, rule, &e);
                    None
                }
            }
        }
        _ => None,
    };
    match (user, from_env.or(from_file)) {
        (Some(user), Some(password)) => Some(EtcdCredentials::new(user, password)),
        (Some(_), None) if !section.table.contains_key("password_file") => {
            let kind = ConfigErrorKind::MissingKey {
                key: format!("[etcd] password_file (or {ETCD_PASSWORD_ENV} in the environment)"),
            };
            r.report(Some(&section.span), kind);
            None
        }
        (None, Some(_)) if !section.table.contains_key("user") => {
            r.missing(section, "user");
            None
        }
        _ => None,
    }
}

fn read_runtime_keys(r: &mut Reader<'_>, top: &Section<'_, '_>, network: &mut NetworkConfig) {
    if let Some(n) = size(r, top, "inbox_capacity", 1, 1 << 20) {
        network.inbox_capacity = n;
    }
    if let Some(n) = size(r, top, "workers", 1, 1024) {
        network.workers = n;
    }
}

/// The token from the file, replaced by `REFLOW_AUTH_TOKEN` when that is set
/// and not empty.
fn read_auth_token(
    r: &mut Reader<'_>,
    top: &Section<'_, '_>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Option<Secret> {
    let from_file = match r.string(top, "auth_token") {
        Some(("", value)) => {
            r.invalid(
                "auth_token".into(),
                value,
                "a non-empty string (remove the key to accept anyone)",
            );
            None
        }
        Some((token, _)) => Some(Secret::from(token)),
        None => None,
    };
    secret_from_env(r, env, AUTH_TOKEN_ENV).or(from_file)
}

/// A secret from the environment variable `var`: none when unset or empty;
/// a value that is not UTF-8 is reported.
fn secret_from_env(
    r: &mut Reader<'_>,
    env: &dyn Fn(&str) -> Option<OsString>,
    var: &'static str,
) -> Option<Secret> {
    match env(var)?.into_string() {
        Ok(text) if text.is_empty() => None,
        Ok(text) => Some(Secret::from(text)),
        Err(_) => {
            let problem = "is not valid UTF-8";
            r.report(None, ConfigErrorKind::Env { var, problem });
            None
        }
    }
}

fn read_reconnect(r: &mut Reader<'_>, section: &Section<'_, '_>, policy: &mut ReconnectPolicy) {
    r.check_keys(section);
    let initial = millis(r, section, "initial_delay_ms");
    let max = millis(r, section, "max_delay_ms");
    if let Some(m) = r.integer(section, "multiplier", 1, 16) {
        policy.multiplier = u32::try_from(m).unwrap_or(1);
    }
    if let Some(n) = r.integer(section, "max_attempts", 0, 1000) {
        policy.max_attempts = u32::try_from(n).unwrap_or_default();
    }
    policy.initial_delay = initial.unwrap_or(policy.initial_delay);
    policy.max_delay = max.unwrap_or(policy.max_delay);
    if policy.max_delay < policy.initial_delay {
        // Point at whichever of the two the file sets, preferring the ceiling.
        let (key, value, rule) = match section.table.get("max_delay_ms") {
            Some(v) => (
                "max_delay_ms",
                v,
                format!("at least initial_delay_ms ({})", policy.initial_delay.as_millis()),
            ),
            None => match section.table.get("initial_delay_ms") {
                Some(v) => (
                    "initial_delay_ms",
                    v,
                    format!("at most max_delay_ms ({})", policy.max_delay.as_millis()),
                ),
                None => return,
            },
        };
        r.invalid(format!("{}{key}", section.label), value, &rule);
    }
}

/// `[delivery]`: the mode of every send and the bounds of acknowledged
/// delivery and credits.
fn read_delivery(r: &mut Reader<'_>, section: &Section<'_, '_>, dir: &Path, delivery: &mut DeliveryConfig) {
    r.check_keys(section);
    let modes = "\"at-most-once\" or \"acknowledged\"";
    let mode = r.checked_string(section, "mode", modes, |text| {
        [DeliveryMode::AtMostOnce, DeliveryMode::Acknowledged]
            .into_iter()
            .find(|mode| mode.name() == text)
    });
    if let Some(mode) = mode {
        delivery.mode = mode;
    }
    if let Some(n) = size(r, section, "outbox_messages", 1, MAX_DELIVERY_COUNT) {
        delivery.outbox_messages = n;
    }
    if let Some(n) = size(r, section, "outbox_bytes", MIN_FRAME_BYTES, MAX_OUTBOX_BYTES) {
        delivery.outbox_bytes = n;
    }
    if let Some(n) = size(r, section, "ack_window", 1, MAX_DELIVERY_COUNT) {
        delivery.ack_window = n;
    }
    if let Some(n) = r.integer(section, "target_window", 1, MAX_DELIVERY_COUNT) {
        delivery.target_window = u32::try_from(n).unwrap_or(u32::MAX);
    }
    if let Some(n) = r.integer(section, "credit_bytes", 0, 1 << 30) {
        delivery.credit_bytes = u32::try_from(n).unwrap_or(u32::MAX);
    }
    let path_rule = "a directory path (relative to this file's directory)";
    if let Some(path) = r.checked_string(section, "outbox_dir", path_rule, |text| {
        (!text.is_empty() && !text.contains('\0')).then(|| dir.join(text))
    }) {
        delivery.outbox_dir = Some(path);
    }
    if let Some(fsync) = r.boolean(section, "outbox_fsync") {
        delivery.outbox_fsync = fsync;
    }
}

/// The `[[connect]]` tables; `legacy_default` is the top-level `legacy_auth`.
fn read_connect(r: &mut Reader<'_>, top: &Section<'_, '_>, legacy_default: bool) -> Vec<ConnectTarget> {
    let mut targets: Vec<ConnectTarget> = Vec::new();
    for entry in array_of_tables(r, top, "connect", "[[connect]] ", CONNECT_KEYS) {
        // A misspelt key explains a missing one better than "missing" does.
        let all_known = r.check_keys(&entry);
        if all_known && !entry.table.contains_key("endpoint") {
            r.missing(&entry, "endpoint");
        }
        let Some(endpoint) = r.checked_string(&entry, "endpoint", HOST_PORT_RULE, validate::endpoint) else {
            continue;
        };
        if targets.iter().any(|t| t.endpoint == endpoint) {
            let kind = ConfigErrorKind::Duplicate {
                key: "[[connect]] endpoint".into(),
                value: endpoint,
            };
            r.report(Some(&entry.span), kind);
            continue;
        }
        let network_id = id_key(r, &entry, "network_id");
        let legacy_auth = r.boolean(&entry, "legacy_auth");
        let options = HoldOptions {
            network_id,
            legacy_auth: legacy_auth.unwrap_or(legacy_default),
        };
        targets.push(ConnectTarget { endpoint, options });
    }
    targets
}

fn read_remote_actors(r: &mut Reader<'_>, top: &Section<'_, '_>, own_network: &str) -> Vec<RemoteActor> {
    let mut actors: Vec<RemoteActor> = Vec::new();
    for entry in array_of_tables(r, top, "remote_actor", "[[remote_actor]] ", REMOTE_ACTOR_KEYS) {
        let all_known = r.check_keys(&entry);
        for key in REMOTE_ACTOR_KEYS {
            if all_known && !entry.table.contains_key(*key) {
                r.missing(&entry, key);
            }
        }
        let actor_id = id_key(r, &entry, "actor_id");
        let network_id = id_key(r, &entry, "network_id");
        let (Some(actor_id), Some(network_id)) = (actor_id, network_id) else {
            continue;
        };
        if network_id == own_network {
            if let Some(value) = entry.table.get("network_id") {
                let rule = format!("another peer's network, not this peer's own ({own_network:?})");
                r.invalid("[[remote_actor]] network_id".into(), value, &rule);
            }
            continue;
        }
        let actor = RemoteActor { actor_id, network_id };
        if actors.contains(&actor) {
            let value = format!("{}@{}", actor.actor_id, actor.network_id);
            r.report(
                Some(&entry.span),
                ConfigErrorKind::Duplicate {
                    key: "[[remote_actor]]".into(),
                    value,
                },
            );
            continue;
        }
        actors.push(actor);
    }
    actors
}

/// A key that must hold one table (`[reconnect]`).
fn single_table<'t, 'i>(
    r: &mut Reader<'_>,
    top: &Section<'t, 'i>,
    key: &str,
    label: &'static str,
    known: &'static [&'static str],
) -> Option<Section<'t, 'i>> {
    let value = top.table.get(key)?;
    let section = as_section(value, label, known);
    if section.is_none() {
        r.invalid(key.to_string(), value, &format!("a table ([{key}])"));
    }
    section
}

/// A key that must hold an array of tables (`[[connect]]`); entries that are
/// not tables are recorded as errors and skipped.
fn array_of_tables<'t, 'i>(
    r: &mut Reader<'_>,
    top: &Section<'t, 'i>,
    key: &str,
    label: &'static str,
    known: &'static [&'static str],
) -> Vec<Section<'t, 'i>> {
    let Some(value) = top.table.get(key) else {
        return Vec::new();
    };
    let rule = format!("an array of tables ([[{key}]])");
    let DeValue::Array(items) = value.get_ref() else {
        r.invalid(key.to_string(), value, &rule);
        return Vec::new();
    };
    let mut sections = Vec::new();
    for item in items {
        match as_section(item, label, known) {
            Some(section) => sections.push(section),
            None => r.invalid(key.to_string(), item, &rule),
        }
    }
    sections
}

fn as_section<'t, 'i>(
    value: &'t Spanned<DeValue<'i>>,
    label: &'static str,
    known: &'static [&'static str],
) -> Option<Section<'t, 'i>> {
    match value.get_ref() {
        DeValue::Table(table) => Some(Section {
            table,
            span: value.span(),
            label,
            known,
        }),
        _ => None,
    }
}
