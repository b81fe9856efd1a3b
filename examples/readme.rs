//! The README's "From Rust" snippet as a program: a peer `beta` that sends
//! `hello-from-beta` to the walk-through's alpha (`examples/configs/alpha.toml`,
//! listening on 127.0.0.1:9100 with the token `shared-secret`).
//!
//! Run alpha first (`reflow-peer --config examples/configs/alpha.toml`), then
//! `cargo run --example readme`. `tests/readme_snippet.rs` checks that the
//! README shows exactly the body of [`hello_alpha`] and runs it against a
//! real alpha.

use reflow_distributed::DistributedError;

/// Where the walk-through's alpha listens.
#[allow(dead_code)]
const ALPHA: &str = "127.0.0.1:9100";

#[allow(dead_code)] // tests/readme_snippet.rs includes this file and calls `hello_alpha` only.
fn main() -> Result<(), DistributedError> {
    hello_alpha(ALPHA)
}

/// Sends one message to alpha's `recorder` at `alpha_endpoint`. The lines
/// between the markers are the README's snippet, with `alpha_endpoint` for
/// the address it writes out.
pub fn hello_alpha(alpha_endpoint: &str) -> Result<(), DistributedError> {
    // README snippet: begin
    use reflow_distributed::{DistributedConfig, DistributedNetwork};

    let mut config = DistributedConfig::new("beta");
    config.auth_token = Some("shared-secret".into()); // alpha's token: both sides must hold it
    let peer = DistributedNetwork::new(config)?;
    let proxy = peer.register_remote_actor("recorder", "alpha")?; // node "recorder@alpha"
    peer.start()?;
    peer.connect_to_network(alpha_endpoint)?;
    peer.send_to_actor(&proxy, "in", "hello-from-beta")?;
    peer.shutdown();
    // README snippet: end
    Ok(())
}
