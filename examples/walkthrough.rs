//! The federation walk-through: starts `reflow-discovery` and two peers as
//! separate processes on this machine and shows, step by step, a message
//! crossing the bridge, an auth mismatch being refused, a peer killed and
//! restarted, the link coming back and a later message landing.
//!
//! Run it with `./walkthrough.sh` (which builds the binaries first).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let result = binary("reflow-discovery")
        .and_then(|discovery| Ok((discovery, binary("reflow-peer")?)))
        .and_then(|(discovery, peer)| common::walkthrough::walk(&discovery, &peer));
    match result {
        Ok(()) => {
            println!("\nWalk-through complete: every step behaved as described.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nWalk-through FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The binaries sit next to the `examples` directory this program runs from.
fn binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory")?;
    let path = dir.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} is not built; run ./walkthrough.sh", path.display()))
    }
}
