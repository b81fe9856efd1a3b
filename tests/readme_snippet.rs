//! The README's Rust snippet: it is the body of `examples/readme.rs`'s
//! `hello_alpha`, and it reaches the walk-through's alpha (a real
//! `reflow-peer` on `examples/configs/alpha.toml`, moved to free ports).

mod common;

#[path = "../examples/readme.rs"]
mod readme;

use std::path::Path;
use std::time::Duration;

use common::harness::{TempDir, bridge_address, start_peer};
use reflow_distributed::discovery::{DiscoveryServer, ServerConfig};
use reflow_distributed::{DistributedConfig, DistributedNetwork};

const WAIT: Duration = Duration::from_secs(30);

fn manifest_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect(path)
}

/// The lines between `start` and `end` (exclusive), the first line that
/// holds `start` counting.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|line| !line.contains(start))
        .skip(1)
        .take_while(|line| !line.contains(end))
        .collect()
}

#[test]
fn the_readme_shows_the_examples_code() {
    let readme = manifest_file("README.md");
    let shown: Vec<&str> = between(&readme, "```rust", "```");
    let example = manifest_file("examples/readme.rs");
    let body: Vec<String> = between(&example, "// README snippet: begin", "// README snippet: end")
        .iter()
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .map(|line| line.replace("alpha_endpoint", "\"127.0.0.1:9100\""))
        .collect();
    assert!(!body.is_empty(), "examples/readme.rs lost its snippet markers");
    assert_eq!(
        shown, body,
        "README.md's Rust snippet and examples/readme.rs differ"
    );
}

#[test]
fn the_snippet_reaches_the_walkthrough_alpha_and_needs_its_token() {
    let discovery = DiscoveryServer::start(ServerConfig::new("127.0.0.1:0")).expect("discovery");
    let walkthrough_alpha = manifest_file("examples/configs/alpha.toml");
    assert!(
        walkthrough_alpha.contains("bind_port = 9100")
            && walkthrough_alpha.contains("\"http://127.0.0.1:9000\""),
        "examples/configs/alpha.toml no longer has the port and discovery this test moves"
    );
    let config = walkthrough_alpha
        .replace("bind_port = 9100", "bind_port = 0")
        .replace(
            "http://127.0.0.1:9000",
            &format!("http://{}", discovery.local_addr()),
        );
    let dir = TempDir::new("readme");
    let alpha = start_peer(
        Path::new(env!("CARGO_BIN_EXE_reflow-peer")),
        &dir,
        "alpha",
        &config,
        &[],
    );
    let endpoint = bridge_address(&alpha, WAIT);
    alpha.wait_for("peer ready, awaiting messages", WAIT).unwrap();

    // Without the token (as the snippet once was) alpha refuses the link.
    let tokenless = DistributedNetwork::new(DistributedConfig::new("beta")).expect("peer");
    tokenless.start().expect("start");
    let refused = tokenless
        .connect_to_network(&endpoint)
        .expect_err("alpha wants its token");
    assert!(refused.to_string().contains("auth_token mismatch"), "{refused}");
    tokenless.shutdown();

    readme::hello_alpha(&endpoint).expect("the README's snippet runs");
    alpha
        .wait_for("recorder.in: String(\"hello-from-beta\")", WAIT)
        .unwrap();
    discovery.shutdown();
}
