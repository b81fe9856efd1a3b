use std::time::Duration;

use super::*;
use crate::Secret;
use crate::bridge::ReconnectPolicy;

fn read(text: &str) -> Result<PeerConfig, ConfigError> {
    PeerConfig::from_str_with_env(text, "alpha.toml", |_| None)
}

fn token(config: &PeerConfig) -> Option<&str> {
    config.distributed.auth_token.as_ref().map(Secret::expose)
}

fn error(text: &str) -> ConfigError {
    match read(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err,
    }
}

#[test]
fn minimal_file_takes_every_default() {
    let config = read("network_id = \"alpha\"\n").expect("valid");
    assert_eq!(config, PeerConfig::new("alpha"));
    let d = &config.distributed;
    assert_eq!(d.instance_id, "alpha-1");
    assert_eq!(d.bridge.bind_address, "127.0.0.1");
    assert_eq!(d.bridge.bind_port, 0);
    assert_eq!(d.bridge.heartbeat_interval, Duration::from_millis(1000));
    assert_eq!(d.discovery.refresh_interval, Duration::from_secs(15));
    assert_eq!(d.bridge.reconnect, ReconnectPolicy::default());
}

#[test]
fn the_earliest_problem_in_the_file_is_reported() {
    let err = error("bind_port = -1\nnetwork_id = \"a b\"\nworkers = 0\n");
    assert_eq!(err.line(), Some(1));
    assert!(err.to_string().contains("`bind_port`"), "{err}");
}

#[test]
fn a_misspelt_key_is_preferred_to_the_missing_one_it_explains() {
    let err = error("network_id = \"a\"\n\n[[connect]]\nendpont = \"h:1\"\n");
    assert_eq!(
        err.to_string(),
        "alpha.toml:4: unknown key `[[connect]] endpont`, did you mean `endpoint`? (expected one of: endpoint, network_id, legacy_auth)"
    );
}

#[test]
fn a_missing_key_in_a_table_points_at_the_table() {
    let err = error("network_id = \"a\"\n\n[[remote_actor]]\nactor_id = \"r\"\n");
    assert_eq!(
        err.to_string(),
        "alpha.toml:3: missing required key `[[remote_actor]] network_id`"
    );
}

#[test]
fn reconnect_ceiling_below_first_delay_is_refused() {
    let err = error("network_id = \"a\"\n[reconnect]\ninitial_delay_ms = 500\nmax_delay_ms = 100\n");
    assert_eq!(
        err.to_string(),
        "alpha.toml:4: `[reconnect] max_delay_ms` must be at least initial_delay_ms (500), got 100"
    );
    let err = error("network_id = \"a\"\n[reconnect]\ninitial_delay_ms = 5000\n");
    assert!(err.to_string().contains("at most max_delay_ms (3200)"), "{err}");
}

#[test]
fn the_token_never_reaches_errors_or_debug() {
    let err = error("network_id = \"a\"\nauth_token = 12345\n");
    assert_eq!(
        err.to_string(),
        "alpha.toml:2: `auth_token` must be a string, got an integer"
    );
    // A syntax error on the token's line must not quote the line.
    let err = error("network_id = \"a\"\nauth_token = hunter2\n");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let config = read("network_id = \"a\"\nauth_token = \"hunter2\"\n").expect("valid");
    assert_eq!(token(&config), Some("hunter2"));
    assert!(!format!("{config:?}").contains("hunter2"));
    assert!(!format!("{:?}", config.to_distributed_config()).contains("hunter2"));
}

#[test]
fn environment_token_replaces_the_file_one_unless_empty() {
    let text = "network_id = \"a\"\nauth_token = \"from-file\"\n";
    let env = |value: &'static str| move |var: &str| (var == AUTH_TOKEN_ENV).then(|| OsString::from(value));
    let config = PeerConfig::from_str_with_env(text, "a.toml", env("from-env")).expect("valid");
    assert_eq!(token(&config), Some("from-env"));
    let config = PeerConfig::from_str_with_env(text, "a.toml", env("")).expect("valid");
    assert_eq!(token(&config), Some("from-file"));
}

#[test]
fn distributed_config_carries_every_setting() {
    let text = r#"
network_id = "alpha"
instance_id = "alpha-7"
bind_address = "0.0.0.0"
bind_port = 9100
advertise_address = "10.0.0.5"
auth_token = "s"
auto_connect = false
discovery_endpoints = ["127.0.0.1:9000"]
discovery_refresh_ms = 500
heartbeat_interval_ms = 250
max_connections = 8
max_frame_bytes = 65536
inbox_capacity = 16
workers = 3

[reconnect]
initial_delay_ms = 10
max_delay_ms = 80
multiplier = 3
max_attempts = 0
"#;
    let d = read(text).expect("valid").to_distributed_config();
    assert_eq!(
        (d.network_id.as_str(), d.instance_id.as_str()),
        ("alpha", "alpha-7")
    );
    assert_eq!(d.advertise_address.as_deref(), Some("10.0.0.5"));
    assert_eq!(d.auth_token.as_ref().map(Secret::expose), Some("s"));
    assert!(!d.auto_connect);
    assert_eq!(
        (d.bridge.bind_address.as_str(), d.bridge.bind_port),
        ("0.0.0.0", 9100)
    );
    assert_eq!(d.bridge.heartbeat_interval, Duration::from_millis(250));
    assert_eq!((d.bridge.max_connections, d.bridge.max_frame_bytes), (8, 65536));
    assert_eq!(d.bridge.reconnect.initial_delay, Duration::from_millis(10));
    assert_eq!(d.bridge.reconnect.max_delay, Duration::from_millis(80));
    assert_eq!(
        (d.bridge.reconnect.multiplier, d.bridge.reconnect.max_attempts),
        (3, 0)
    );
    assert_eq!(d.discovery.endpoints, vec!["http://127.0.0.1:9000".to_string()]);
    assert_eq!(d.discovery.refresh_interval, Duration::from_millis(500));
    assert_eq!((d.network.inbox_capacity, d.network.workers), (16, 3));
}

#[test]
fn long_values_are_shortened_in_errors() {
    let long = "x".repeat(500);
    let err = error(&format!("network_id = \"a\"\nbind_address = \"{long}\"\n")).to_string();
    assert!(err.ends_with(&format!("got \"{}\"…", "x".repeat(60))), "{err}");
}

#[test]
fn etcd_members_user_and_password_are_read() {
    let dir = std::env::temp_dir().join(format!("reflow-etcd-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("etcd-password"), "s3cret-etcd\n").expect("write");
    let text = r#"
network_id = "alpha"
discovery_endpoints = ["etcd://10.0.0.5:2379", "etcd://10.0.0.6:2379/staging/"]
discovery_entry_ttl_ms = 20000
[etcd]
user = "reflow"
password_file = "etcd-password"
"#;
    let lookup = |var: &str| (var == ETCD_PASSWORD_ENV).then(|| OsString::from("from-env"));
    let from_file = PeerConfig::from_str_with_env(text, "a.toml", |_| None);
    let from_env = PeerConfig::from_str_with_env(text, "a.toml", lookup);
    // Relative paths are taken from the file's directory.
    let path = dir.join("a.toml");
    std::fs::write(&path, text).expect("write");
    let config = PeerConfig::from_path_with_env(&path, |_| None).expect("valid");
    std::fs::remove_dir_all(&dir).ok();
    let d = config.to_distributed_config();
    assert_eq!(
        d.discovery.endpoints,
        ["etcd://10.0.0.5:2379", "etcd://10.0.0.6:2379/staging/"]
    );
    assert_eq!(d.discovery.entry_ttl, Duration::from_secs(20));
    let credentials = d.discovery.etcd_credentials.expect("credentials");
    assert_eq!(
        (credentials.user.as_str(), credentials.password.expose()),
        ("reflow", "s3cret-etcd")
    );
    assert!(!format!("{config:?}").contains("s3cret-etcd"));
    // From a string the file is looked for beside the working directory:
    // there is none, and the error names the key without the password.
    let err = from_file.expect_err("no such file").to_string();
    assert!(err.contains("[etcd] password_file"), "{err}");
    // The environment replaces the file, which is then not read.
    let d = from_env.expect("valid").to_distributed_config();
    let credentials = d.discovery.etcd_credentials.expect("credentials");
    assert_eq!(credentials.password.expose(), "from-env");
}

#[test]
fn an_etcd_user_needs_a_password_and_a_ttl_past_the_refresh() {
    let err = error("network_id = \"a\"\n[etcd]\nuser = \"reflow\"\n").to_string();
    assert!(err.contains("REFLOW_ETCD_PASSWORD"), "{err}");
    let password = |var: &str| (var == ETCD_PASSWORD_ENV).then(|| OsString::from("pw"));
    let err = PeerConfig::from_str_with_env("network_id = \"a\"\n", "a.toml", password)
        .expect_err("a password for no user")
        .to_string();
    assert!(err.contains("no [etcd] table"), "{err}");
    let text = "network_id = \"a\"\ndiscovery_endpoints = [\"etcd://h:2379\"]\n\
                discovery_refresh_ms = 5000\ndiscovery_entry_ttl_ms = 5000\n";
    let err = error(text).to_string();
    assert!(err.contains("discovery_entry_ttl_ms"), "{err}");
    assert!(err.contains("longer than discovery_refresh_ms (5000)"), "{err}");
    let err = error("network_id = \"a\"\ndiscovery_endpoints = [\"etcds://h:2379\"]\n").to_string();
    assert!(err.contains("etcd://host:port[/prefix]"), "{err}");
}
