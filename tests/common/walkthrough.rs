//! The federation walk-through as a sequence of checked steps. Run by
//! `examples/walkthrough.rs` (the README's main command) and by the
//! end-to-end tests, against the real binaries.

use std::path::Path;
use std::time::Duration;

use super::harness::{Echo, Proc, TempDir, address_in, free_port};

const WAIT: Duration = Duration::from_secs(30);

fn step(n: u32, text: &str) {
    println!("\n== Step {n}: {text}");
}

fn show(proc_: &Proc, line: &str) {
    println!("   {:>9} | {line}", proc_.name);
}

fn expect(proc_: &Proc, needle: &str) -> Result<(), String> {
    let line = proc_.wait_for(needle, WAIT)?;
    show(proc_, &line);
    Ok(())
}

fn expect_after(proc_: &Proc, mark: usize, needle: &str) -> Result<(), String> {
    let line = proc_.wait_for_after(mark, needle, WAIT)?;
    show(proc_, &line);
    Ok(())
}

fn peer_config(network: &str, port: u16, discovery: &str, token: &str, extra: &str) -> String {
    format!(
        "network_id = \"{network}\"\n\
         bind_address = \"127.0.0.1\"\n\
         bind_port = {port}\n\
         discovery_endpoints = [\"{discovery}\"]\n\
         discovery_refresh_ms = 1000\n\
         auth_token = \"{token}\"\n\
         heartbeat_interval_ms = 250\n\
         {extra}"
    )
}

/// Runs every step against the given binaries, narrating on stdout; the first
/// step that does not behave as described ends it with an error.
pub fn walk(discovery_bin: &Path, peer_bin: &Path) -> Result<(), String> {
    let dir = TempDir::new("walkthrough");
    println!(
        "Reflow federation walk-through (config files in {})",
        dir.path.display()
    );

    step(1, "start the discovery server");
    let discovery = Proc::spawn(
        "discovery",
        discovery_bin,
        &["--bind", "127.0.0.1:0"],
        &[],
        Echo::Quiet,
    );
    let line = discovery.wait_for("listening on", WAIT)?;
    show(&discovery, &line);
    let discovery_url = format!("http://{}", address_in(&line, "listening on "));

    step(2, "start peer alpha, which hosts the recorder actor");
    let alpha_port = free_port();
    // alpha only accepts: the link is always dialed (and redialed) by beta.
    let alpha_toml = dir.write(
        "alpha.toml",
        &peer_config(
            "alpha",
            alpha_port,
            &discovery_url,
            "shared-secret",
            "auto_connect = false\n",
        ),
    );
    let alpha_cfg = alpha_toml.to_string_lossy().to_string();
    let mut alpha = Proc::spawn("alpha", peer_bin, &["--config", &alpha_cfg], &[], Echo::Quiet);
    expect(&alpha, "starting peer: network_id=alpha")?;
    expect(&alpha, "Registered with discovery endpoint")?;
    expect(&alpha, "peer ready, awaiting messages")?;

    step(
        3,
        "start peer beta, which dials alpha and sends hello-from-beta to alpha:recorder:in",
    );
    let beta_extra = format!(
        "[[connect]]\nendpoint = \"127.0.0.1:{alpha_port}\"\n\n[[remote_actor]]\nactor_id = \"recorder\"\nnetwork_id = \"alpha\"\n"
    );
    let beta_toml = dir.write(
        "beta.toml",
        &peer_config("beta", 0, &discovery_url, "shared-secret", &beta_extra),
    );
    let beta_cfg = beta_toml.to_string_lossy().to_string();
    let mut beta = Proc::spawn(
        "beta",
        peer_bin,
        &[
            "--config",
            &beta_cfg,
            "--send",
            "alpha:recorder:in:hello-from-beta",
        ],
        &[],
        Echo::Quiet,
    );
    expect(&beta, "connected to peer at")?;
    expect(&beta, "sent test message to alpha/recorder.in")?;
    expect(&alpha, "Established connection with network: beta")?;
    expect(&alpha, "recorder.in: String(\"hello-from-beta\")")?;

    step(4, "a peer with the wrong auth token is refused");
    let mallory_toml = dir.write(
        "mallory.toml",
        &format!(
            "network_id = \"mallory\"\nbind_address = \"127.0.0.1\"\nauth_token = \"wrong-secret\"\n\
             [[connect]]\nendpoint = \"127.0.0.1:{alpha_port}\"\n"
        ),
    );
    let mallory_cfg = mallory_toml.to_string_lossy().to_string();
    let mut mallory = Proc::spawn(
        "mallory",
        peer_bin,
        &[
            "--config",
            &mallory_cfg,
            "--send",
            "alpha:recorder:in:let-me-in",
            "--once",
        ],
        &[],
        Echo::Quiet,
    );
    expect(&mallory, "handshake refused: auth_token mismatch")?;
    let status = mallory.wait_exit(WAIT)?;
    println!(
        "   {:>9} | exited with {status} (a send that could not be delivered)",
        "mallory"
    );
    if status.code() != Some(1) {
        return Err(format!("mallory should exit with code 1, got {status}"));
    }
    expect(&alpha, "auth_token mismatch")?;
    if alpha.count("let-me-in") != 0 {
        return Err("alpha's recorder received mallory's message".into());
    }

    step(
        5,
        "kill alpha (SIGKILL): beta notices the link is gone and starts redialing",
    );
    let beta_mark = beta.mark();
    alpha.kill();
    println!("   {:>9} | killed", "alpha");
    expect_after(&beta, beta_mark, "Reconnect attempt 1/")?;

    step(
        6,
        "restart alpha on the same port: beta reconnects; alpha sends a message back over the new link",
    );
    let mut alpha = Proc::spawn(
        "alpha",
        peer_bin,
        &[
            "--config",
            &alpha_cfg,
            "--send",
            "beta:recorder:in:welcome-back-from-alpha",
        ],
        &[],
        Echo::Quiet,
    );
    expect(&alpha, "peer ready, awaiting messages")?;
    expect_after(&beta, beta_mark, "Reconnected to alpha")?;
    expect(&alpha, "sent test message to beta/recorder.in")?;
    expect(&beta, "recorder.in: String(\"welcome-back-from-alpha\")")?;

    step(7, "stop everything with SIGTERM; each process shuts down cleanly");
    for proc_ in [&mut beta, &mut alpha] {
        proc_.signal("TERM");
        let status = proc_.wait_exit(WAIT)?;
        show(proc_, &proc_.wait_for("shutting down", WAIT)?);
        println!("   {:>9} | exited with {status}", proc_.name);
        if !status.success() {
            return Err(format!("{} exited with {status}", proc_.name));
        }
    }
    let mut discovery = discovery;
    discovery.signal("TERM");
    let status = discovery.wait_exit(WAIT)?;
    println!("   {:>9} | exited with {status}", "discovery");
    if !status.success() {
        return Err(format!("discovery exited with {status}"));
    }
    Ok(())
}
