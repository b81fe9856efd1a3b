//! Valid peer configuration files: every key, the defaults, the environment
//! token and the shipped examples.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use reflow_distributed::peer_config::{AUTH_TOKEN_ENV, ConfigErrorKind, PeerConfig};

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn token_env(token: &'static str) -> impl Fn(&str) -> Option<OsString> {
    move |var| (var == AUTH_TOKEN_ENV).then(|| OsString::from(token))
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/configs")
        .join(name)
}

/// A file in the temp directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("reflow-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const FULL: &str = r#"
network_id = "gamma"
instance_id = "gamma-2"
bind_address = "0.0.0.0"
bind_port = 9300
advertise_address = "gamma.example"
auth_token = "in-the-file"
auto_connect = false
discovery_endpoints = ["http://127.0.0.1:9000/", "10.0.0.9:9000"]
discovery_refresh_ms = 2_000
heartbeat_interval_ms = 100
max_connections = 4
max_frame_bytes = 0x10000
inbox_capacity = 8
workers = 2

[reconnect]
initial_delay_ms = 50
max_delay_ms = 400
multiplier = 3
max_attempts = 7

[[connect]]
endpoint = "127.0.0.1:9100"

[[connect]]
endpoint = "[::1]:9200"

[[remote_actor]]
actor_id = "recorder"
network_id = "alpha"

[[remote_actor]]
actor_id = "printer"
network_id = "beta"
"#;

#[test]
fn a_file_with_every_key() {
    let config = PeerConfig::from_str_with_env(FULL, "gamma.toml", no_env).expect("valid");
    assert_eq!(config.network_id, "gamma");
    assert_eq!(config.instance_id, "gamma-2");
    assert_eq!(config.bind_address.to_string(), "0.0.0.0");
    assert_eq!(config.bind_port, 9300);
    assert_eq!(config.advertise_address.as_deref(), Some("gamma.example"));
    assert_eq!(config.auth_token.as_deref(), Some("in-the-file"));
    assert!(!config.auto_connect);
    assert_eq!(
        config.discovery_endpoints,
        ["http://127.0.0.1:9000", "http://10.0.0.9:9000"]
    );
    assert_eq!(config.discovery_refresh, Duration::from_secs(2));
    assert_eq!(config.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(config.max_connections, 4);
    assert_eq!(config.max_frame_bytes, 65536);
    assert_eq!(config.inbox_capacity, 8);
    assert_eq!(config.workers, Some(2));
    assert_eq!(config.reconnect.initial_delay, Duration::from_millis(50));
    assert_eq!(config.reconnect.max_delay, Duration::from_millis(400));
    assert_eq!(config.reconnect.multiplier, 3);
    assert_eq!(config.reconnect.max_attempts, 7);
    let endpoints: Vec<&str> = config.connect.iter().map(|c| c.endpoint.as_str()).collect();
    assert_eq!(endpoints, ["127.0.0.1:9100", "[::1]:9200"]);
    let actors: Vec<(&str, &str)> = config
        .remote_actors
        .iter()
        .map(|a| (a.actor_id.as_str(), a.network_id.as_str()))
        .collect();
    assert_eq!(actors, [("recorder", "alpha"), ("printer", "beta")]);

    let distributed = config.to_distributed_config();
    assert_eq!(distributed.bridge.bind_address, "0.0.0.0");
    assert_eq!(distributed.bridge.bind_port, 9300);
    assert_eq!(distributed.network.workers, 2);
}

#[test]
fn only_network_id_is_required() {
    let config =
        PeerConfig::from_str_with_env("network_id = \"alpha\"", "alpha.toml", no_env).expect("valid");
    assert_eq!(config.instance_id, "alpha-1");
    assert_eq!(config.bind_address.to_string(), "127.0.0.1");
    assert_eq!(config.bind_port, 0);
    assert_eq!(config.advertise_address, None);
    assert_eq!(config.auth_token, None);
    assert!(config.auto_connect);
    assert!(config.discovery_endpoints.is_empty());
    assert_eq!(config.discovery_refresh, Duration::from_secs(15));
    assert_eq!(config.heartbeat_interval, Duration::from_millis(1000));
    assert_eq!(config.max_connections, 64);
    assert_eq!(config.max_frame_bytes, 1 << 20);
    assert_eq!(config.inbox_capacity, 64);
    assert_eq!(config.workers, None);
    assert_eq!(config.reconnect.initial_delay, Duration::from_millis(200));
    assert_eq!(config.reconnect.max_delay, Duration::from_millis(3200));
    assert_eq!(config.reconnect.multiplier, 2);
    assert_eq!(config.reconnect.max_attempts, 5);
    assert!(config.connect.is_empty());
    assert!(config.remote_actors.is_empty());

    let distributed = config.to_distributed_config();
    assert_eq!(distributed.bridge.bind_address, "127.0.0.1");
    assert!(distributed.network.workers >= 1);
}

#[test]
fn the_environment_token_overrides_the_file() {
    let from_env = PeerConfig::from_str_with_env(FULL, "gamma.toml", token_env("from-env")).expect("valid");
    assert_eq!(from_env.auth_token.as_deref(), Some("from-env"));
    assert_eq!(
        from_env.to_distributed_config().auth_token.as_deref(),
        Some("from-env")
    );

    let text = "network_id = \"alpha\"\n";
    let only_env = PeerConfig::from_str_with_env(text, "alpha.toml", token_env("s3cret")).expect("valid");
    assert_eq!(only_env.auth_token.as_deref(), Some("s3cret"));
    assert!(!format!("{only_env:?}").contains("s3cret"));

    let empty_env = PeerConfig::from_str_with_env(FULL, "gamma.toml", token_env("")).expect("valid");
    assert_eq!(empty_env.auth_token.as_deref(), Some("in-the-file"));
}

#[test]
fn from_str_named_reads_like_a_file() {
    let config =
        PeerConfig::from_str_named("network_id = \"omega\"\nworkers = 1\n", "omega.toml").expect("valid");
    assert_eq!((config.network_id.as_str(), config.workers), ("omega", Some(1)));
    let err = PeerConfig::from_str_named("workers = 1\n", "omega.toml").expect_err("no network_id");
    assert_eq!(err.to_string(), "omega.toml: missing required key `network_id`");
}

#[test]
fn from_path_reads_a_file_and_the_environment_hook() {
    let file = TempFile::new("delta.toml", "network_id = \"delta\"\nbind_port = 9400\n");
    let config = PeerConfig::from_path_with_env(&file.0, token_env("t")).expect("valid");
    assert_eq!((config.network_id.as_str(), config.bind_port), ("delta", 9400));
    assert_eq!(config.auth_token.as_deref(), Some("t"));
}

#[test]
fn an_unreadable_file_names_the_path_and_the_os_error() {
    let path = std::env::temp_dir().join(format!("reflow-{}-missing.toml", std::process::id()));
    let err = PeerConfig::from_path(&path).expect_err("missing file");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}: cannot read the file: ", path.display())),
        "{text}"
    );
    assert!(text.contains("os error"), "{text}");
    assert!(matches!(err.kind(), ConfigErrorKind::Io(e) if e.kind() == std::io::ErrorKind::NotFound));
    assert_eq!(err.line(), None);
}

#[test]
fn the_shipped_examples_are_valid() {
    let alpha = PeerConfig::from_path_with_env(example("alpha.toml"), no_env).expect("alpha.toml");
    assert_eq!((alpha.network_id.as_str(), alpha.bind_port), ("alpha", 9100));
    assert_eq!(alpha.discovery_endpoints, ["http://127.0.0.1:9000"]);
    assert_eq!(alpha.auth_token.as_deref(), Some("shared-secret"));

    let beta = PeerConfig::from_path_with_env(example("beta.toml"), no_env).expect("beta.toml");
    assert_eq!((beta.network_id.as_str(), beta.bind_port), ("beta", 9200));
    assert_eq!(beta.connect[0].endpoint, "127.0.0.1:9100");
    assert_eq!(beta.remote_actors[0].actor_id, "recorder");
    assert_eq!(beta.remote_actors[0].network_id, "alpha");
    assert_eq!(beta.auth_token, alpha.auth_token);
}

#[test]
fn the_documented_example_is_valid() {
    let doc =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"))
            .expect("docs/configuration.md");
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("closed block");
    let config = PeerConfig::from_str_with_env(&doc[start..end], "configuration.md", no_env);
    assert!(config.is_ok(), "{:?}", config.err().map(|e| e.to_string()));
}
