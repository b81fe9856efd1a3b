//! Valid peer configuration files: every key, the defaults, the environment
//! token and the shipped examples.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reflow_distributed::DistributedConfig;
use reflow_distributed::bridge::DeliveryMode;
use reflow_distributed::peer_config::{AUTH_TOKEN_ENV, ConfigErrorKind, PeerConfig};

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn token_env(token: &'static str) -> impl Fn(&str) -> Option<OsString> {
    move |var| (var == AUTH_TOKEN_ENV).then(|| OsString::from(token))
}

fn token(config: &PeerConfig) -> Option<&str> {
    config.distributed.auth_token.as_ref().map(|t| t.expose())
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

[delivery]
mode = "acknowledged"
outbox_messages = 100
outbox_bytes = 65536
ack_window = 32
target_window = 8
credit_bytes = 4096
outbox_dir = "/var/lib/reflow/outbox"

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
    let d = &config.distributed;
    assert_eq!(d.network_id, "gamma");
    assert_eq!(d.instance_id, "gamma-2");
    assert_eq!(d.bridge.bind_address, "0.0.0.0");
    assert_eq!(d.bridge.bind_port, 9300);
    assert_eq!(d.advertise_address.as_deref(), Some("gamma.example"));
    assert_eq!(token(&config), Some("in-the-file"));
    assert!(!d.auto_connect);
    assert_eq!(
        d.discovery.endpoints,
        ["http://127.0.0.1:9000", "http://10.0.0.9:9000"]
    );
    assert_eq!(d.discovery.refresh_interval, Duration::from_secs(2));
    assert_eq!(d.bridge.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(d.bridge.max_connections, 4);
    assert_eq!(d.bridge.max_frame_bytes, 65536);
    assert_eq!(d.network.inbox_capacity, 8);
    assert_eq!(d.network.workers, 2);
    let reconnect = &d.bridge.reconnect;
    assert_eq!(reconnect.initial_delay, Duration::from_millis(50));
    assert_eq!(reconnect.max_delay, Duration::from_millis(400));
    assert_eq!(reconnect.multiplier, 3);
    assert_eq!(reconnect.max_attempts, 7);
    let delivery = &d.bridge.delivery;
    assert_eq!(delivery.mode, DeliveryMode::Acknowledged);
    assert_eq!((delivery.outbox_messages, delivery.outbox_bytes), (100, 65536));
    assert_eq!((delivery.ack_window, delivery.target_window), (32, 8));
    assert_eq!(delivery.credit_bytes, 4096);
    assert_eq!(
        delivery.outbox_dir.as_deref(),
        Some(Path::new("/var/lib/reflow/outbox"))
    );
    let endpoints: Vec<&str> = config.connect.iter().map(|c| c.endpoint.as_str()).collect();
    assert_eq!(endpoints, ["127.0.0.1:9100", "[::1]:9200"]);
    let actors: Vec<(&str, &str)> = config
        .remote_actors
        .iter()
        .map(|a| (a.actor_id.as_str(), a.network_id.as_str()))
        .collect();
    assert_eq!(actors, [("recorder", "alpha"), ("printer", "beta")]);
    assert_eq!(config.to_distributed_config(), config.distributed);
}

#[test]
fn only_network_id_is_required() {
    let config =
        PeerConfig::from_str_with_env("network_id = \"alpha\"", "alpha.toml", no_env).expect("valid");
    let d = &config.distributed;
    assert_eq!(d.instance_id, "alpha-1");
    assert_eq!(d.bridge.bind_address, "127.0.0.1");
    assert_eq!(d.bridge.bind_port, 0);
    assert_eq!(d.advertise_address, None);
    assert_eq!(token(&config), None);
    assert!(d.auto_connect);
    assert!(d.discovery.endpoints.is_empty());
    assert_eq!(d.discovery.refresh_interval, Duration::from_secs(15));
    assert_eq!(d.bridge.heartbeat_interval, Duration::from_millis(1000));
    assert_eq!(d.bridge.max_connections, 64);
    assert_eq!(d.bridge.max_frame_bytes, 1 << 20);
    assert_eq!(d.network.inbox_capacity, 64);
    assert!(d.network.workers >= 1);
    let reconnect = &d.bridge.reconnect;
    assert_eq!(reconnect.initial_delay, Duration::from_millis(200));
    assert_eq!(reconnect.max_delay, Duration::from_millis(3200));
    assert_eq!(reconnect.multiplier, 2);
    assert_eq!(reconnect.max_attempts, 5);
    let delivery = &d.bridge.delivery;
    assert_eq!(delivery.mode, DeliveryMode::AtMostOnce);
    assert_eq!((delivery.outbox_messages, delivery.outbox_bytes), (4096, 8 << 20));
    assert_eq!((delivery.ack_window, delivery.target_window), (1024, 4096));
    assert_eq!(delivery.credit_bytes, 512);
    assert_eq!(delivery.outbox_dir, None);
    assert!(config.connect.is_empty());
    assert!(config.remote_actors.is_empty());
    // Every default is the library's own.
    assert_eq!(*d, DistributedConfig::new("alpha"));
}

#[test]
fn a_connect_entry_takes_the_top_level_legacy_auth_unless_it_has_its_own() {
    let text = "network_id = \"a\"\nlegacy_auth = true\n\n[[connect]]\nendpoint = \"h:1\"\n\n\
                [[connect]]\nendpoint = \"h:2\"\nnetwork_id = \"b\"\nlegacy_auth = false\n";
    let config = PeerConfig::from_str_with_env(text, "a.toml", no_env).expect("valid");
    let options: Vec<(Option<&str>, bool)> = config
        .connect
        .iter()
        .map(|c| (c.options.network_id.as_deref(), c.options.legacy_auth))
        .collect();
    assert_eq!(options, [(None, true), (Some("b"), false)]);
}

#[test]
fn the_environment_token_overrides_the_file() {
    let from_env = PeerConfig::from_str_with_env(FULL, "gamma.toml", token_env("from-env")).expect("valid");
    assert_eq!(token(&from_env), Some("from-env"));

    let text = "network_id = \"alpha\"\n";
    let only_env = PeerConfig::from_str_with_env(text, "alpha.toml", token_env("s3cret")).expect("valid");
    assert_eq!(token(&only_env), Some("s3cret"));
    assert!(!format!("{only_env:?}").contains("s3cret"));
    assert!(!format!("{:#?}", only_env.distributed).contains("s3cret"));

    let empty_env = PeerConfig::from_str_with_env(FULL, "gamma.toml", token_env("")).expect("valid");
    assert_eq!(token(&empty_env), Some("in-the-file"));
}

#[test]
fn from_str_named_reads_like_a_file() {
    let config =
        PeerConfig::from_str_named("network_id = \"omega\"\nworkers = 1\n", "omega.toml").expect("valid");
    let d = &config.distributed;
    assert_eq!((d.network_id.as_str(), d.network.workers), ("omega", 1));
    let err = PeerConfig::from_str_named("workers = 1\n", "omega.toml").expect_err("no network_id");
    assert_eq!(err.to_string(), "omega.toml: missing required key `network_id`");
}

#[test]
fn from_path_reads_a_file_and_the_environment_hook() {
    let file = TempFile::new("delta.toml", "network_id = \"delta\"\nbind_port = 9400\n");
    let config = PeerConfig::from_path_with_env(&file.0, token_env("t")).expect("valid");
    let d = &config.distributed;
    assert_eq!((d.network_id.as_str(), d.bridge.bind_port), ("delta", 9400));
    assert_eq!(token(&config), Some("t"));
}

#[test]
fn a_relative_outbox_dir_is_taken_from_the_files_directory() {
    let text = "network_id = \"delta\"\n[delivery]\noutbox_dir = \"state/outbox\"\n";
    let file = TempFile::new("outbox.toml", text);
    let config = PeerConfig::from_path_with_env(&file.0, no_env).expect("valid");
    let dir = file.0.parent().expect("a directory");
    assert_eq!(
        config.distributed.bridge.delivery.outbox_dir,
        Some(dir.join("state/outbox"))
    );
    // Read as text, the name stands for the file.
    let config = PeerConfig::from_str_with_env(text, "/etc/reflow/delta.toml", no_env).expect("valid");
    assert_eq!(
        config.distributed.bridge.delivery.outbox_dir.as_deref(),
        Some(Path::new("/etc/reflow/state/outbox"))
    );
    let config = PeerConfig::from_str_with_env(text, "delta.toml", no_env).expect("valid");
    assert_eq!(
        config.distributed.bridge.delivery.outbox_dir.as_deref(),
        Some(Path::new("state/outbox"))
    );
    let absolute = "network_id = \"delta\"\n[delivery]\noutbox_dir = \"/srv/outbox\"\n";
    let config = PeerConfig::from_str_with_env(absolute, "/etc/reflow/delta.toml", no_env).expect("valid");
    assert_eq!(
        config.distributed.bridge.delivery.outbox_dir.as_deref(),
        Some(Path::new("/srv/outbox"))
    );
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
    let a = &alpha.distributed;
    assert_eq!((a.network_id.as_str(), a.bridge.bind_port), ("alpha", 9100));
    assert_eq!(a.discovery.endpoints, ["http://127.0.0.1:9000"]);
    assert_eq!(token(&alpha), Some("shared-secret"));

    let beta = PeerConfig::from_path_with_env(example("beta.toml"), no_env).expect("beta.toml");
    let b = &beta.distributed;
    assert_eq!((b.network_id.as_str(), b.bridge.bind_port), ("beta", 9200));
    assert_eq!(beta.connect[0].endpoint, "127.0.0.1:9100");
    assert_eq!(beta.remote_actors[0].actor_id, "recorder");
    assert_eq!(beta.remote_actors[0].network_id, "alpha");
    assert_eq!(b.auth_token, a.auth_token);
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
