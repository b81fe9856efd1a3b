//! `reflow-peer`: one peer of a Reflow federation. See `--help`.

use std::process::ExitCode;

mod cli;
mod peer_cli;
mod peer_runner;
mod peer_sends;
mod send_file;

use cli::usage_error;
use peer_cli::{Command, EXIT_OK, EXIT_USAGE, HELP, VERSION, parse_args};

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::from(EXIT_OK);
        }
        Ok(Command::Version) => {
            println!("reflow-peer {VERSION}");
            return ExitCode::from(EXIT_OK);
        }
        Err(e) => {
            eprintln!("{}", usage_error("reflow-peer", &e.to_string()));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging();
    ExitCode::from(peer_runner::run(&args))
}

/// UTC timestamps and levels on stderr; `RUST_LOG` sets the level (default
/// info). tungstenite is held at debug at most: its trace lines print whole
/// frames, and a protocol 1.0 handshake frame carries the token in clear.
fn init_logging() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| text.parse::<log::LevelFilter>().ok())
        .unwrap_or(log::LevelFilter::Info);
    let logger = simple_logger::SimpleLogger::new()
        .with_level(level)
        .with_module_level("tungstenite", level.min(log::LevelFilter::Debug))
        .with_utc_timestamps();
    if let Err(e) = logger.init() {
        eprintln!("reflow-peer: cannot set up logging: {e}");
    }
}
