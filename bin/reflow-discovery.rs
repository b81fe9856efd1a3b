//! `reflow-discovery`: the discovery server as a program. Parses flags, sets
//! up logging and runs [`DiscoveryServer`] until SIGINT or SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

mod cli;

use cli::{Early, early_flag, read_secret_file, unknown_argument, usage_error};
use reflow_distributed::discovery::{DiscoveryServer, ServerConfig};

const HELP: &str = "\
reflow-discovery: the Reflow discovery server

USAGE:
    reflow-discovery [OPTIONS]

OPTIONS:
    -b, --bind ADDR:PORT         Address to listen on; port 0 picks a free one [default: 0.0.0.0:9000]
    --entry-ttl-secs N           Seconds an entry stays listed without re-registering [default: 60]
    --prune-interval-secs N      Seconds between sweeps of expired entries [default: 15]
    --max-body-bytes N           Largest request body accepted (larger gets 413) [default: 16384]
    --max-entries N              Most networks held at once [default: 10000]
    --max-connections N          Most connections open at once; at the cap the oldest one that has
                                 not completed a request is closed to make room [default: 256]
    --max-connections-per-ip N   Most connections open at once from one address (IPv6: a /64),
                                 with the same rule at its cap [default: 32]
    --requests-per-sec-per-ip N  Requests per second one address may send; more get 429 [default: 100]
    --request-burst-per-ip N     Requests one address may send at once after a pause [default: 200]
    --head-timeout-secs N        Seconds a request head may take to arrive [default: 5]
    --idle-timeout-secs N        Seconds a connection may sit idle between requests [default: 30]
    --request-timeout-secs N     Seconds a client may take to send one request [default: 10]
    --auth-token-file FILE       Require registrations and deregistrations signed with the token in
                                 FILE (the peers' auth_token) [default: none, anyone may register]
    --auth-reads                 With a token, require GET /networks to be signed too
    --auth-window-secs N         How far a signed request's time may be from this clock [default: 30]
    -h, --help                   Print this help (read before any other option)
    -V, --version                Print the version (read before any other option)

ENVIRONMENT:
    RUST_LOG                     Log level: error, warn, info, debug, trace [default: info]
    REFLOW_DISCOVERY_TOKEN       The token, as --auth-token-file gives it (not both)

EXIT CODES:
    0  stopped by SIGINT or SIGTERM
    1  could not start (port in use, address not on this host, …)
    2  bad command line (printed as 'reflow-discovery: error: …')
";

/// Environment variable that may hold the registration token.
const TOKEN_ENV: &str = "REFLOW_DISCOVERY_TOKEN";

enum Command {
    Run(Box<ServerConfig>),
    Help,
    Version,
}

/// `-h` and `-V` are looked for first, so they win over any other argument;
/// `-b` is `--bind`, as in Reflow's CLI.
fn parse_args() -> Result<Command, String> {
    use lexopt::prelude::*;
    match early_flag(std::env::args_os().skip(1)) {
        Some(Early::Help) => return Ok(Command::Help),
        Some(Early::Version) => return Ok(Command::Version),
        None => {}
    }
    let mut config = ServerConfig::default();
    let mut token_file = None;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('b') | Long("bind") => config.bind = bind_address(&mut parser)?,
            Long("entry-ttl-secs") => config.entry_ttl = secs(&mut parser, "--entry-ttl-secs")?,
            Long("prune-interval-secs") => {
                config.prune_interval = secs(&mut parser, "--prune-interval-secs")?
            }
            Long("max-body-bytes") => config.max_body_bytes = count(&mut parser, "--max-body-bytes")?,
            Long("max-entries") => config.max_entries = count(&mut parser, "--max-entries")?,
            Long("max-connections") => config.max_connections = count(&mut parser, "--max-connections")?,
            Long("max-connections-per-ip") => {
                config.max_connections_per_ip = count(&mut parser, "--max-connections-per-ip")?
            }
            Long("requests-per-sec-per-ip") => {
                config.requests_per_sec_per_ip = small(&mut parser, "--requests-per-sec-per-ip")?
            }
            Long("request-burst-per-ip") => {
                config.request_burst_per_ip = small(&mut parser, "--request-burst-per-ip")?
            }
            Long("head-timeout-secs") => config.head_timeout = secs(&mut parser, "--head-timeout-secs")?,
            Long("auth-token-file") => token_file = Some(text(&mut parser, "--auth-token-file")?),
            Long("auth-reads") => config.auth_reads = true,
            Long("auth-window-secs") => config.auth_window = secs(&mut parser, "--auth-window-secs")?,
            Long("idle-timeout-secs") => config.idle_timeout = secs(&mut parser, "--idle-timeout-secs")?,
            Long("request-timeout-secs") => {
                config.request_timeout = secs(&mut parser, "--request-timeout-secs")?
            }
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            other => return Err(unknown_argument(other)),
        }
    }
    config.auth_token = auth_token(token_file)?.map(reflow_distributed::Secret::from);
    if config.auth_reads && config.auth_token.is_none() {
        return Err("--auth-reads needs a token (--auth-token-file or REFLOW_DISCOVERY_TOKEN)".into());
    }
    Ok(Command::Run(Box::new(config)))
}

/// The token from `--auth-token-file` or `REFLOW_DISCOVERY_TOKEN` (set and
/// not empty); both at once is refused, so it is never unclear which applies.
fn auth_token(file: Option<String>) -> Result<Option<String>, String> {
    let from_env = std::env::var_os(TOKEN_ENV).filter(|v| !v.is_empty());
    match (file, from_env) {
        (Some(_), Some(_)) => Err(format!(
            "--auth-token-file and {TOKEN_ENV} are both set; give the token one way"
        )),
        (Some(path), None) => read_secret_file(std::path::Path::new(&path))
            .map(Some)
            .map_err(|e| format!("--auth-token-file: {e}")),
        (None, Some(value)) => value
            .into_string()
            .map(|v| Some(v.trim().to_string()))
            .map_err(|_| format!("{TOKEN_ENV} is not valid UTF-8")),
        (None, None) => Ok(None),
    }
}

/// A whole number above zero that fits 32 bits.
fn small(parser: &mut lexopt::Parser, flag: &str) -> Result<u32, String> {
    let n = count(parser, flag)?;
    u32::try_from(n).map_err(|_| format!("{flag}: expected at most {}, got {n}", u32::MAX))
}

fn text(parser: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    let value = parser.value().map_err(|e| format!("{flag}: {e}"))?;
    value
        .into_string()
        .map_err(|v| format!("{flag}: value {v:?} is not valid UTF-8"))
}

/// `ADDR:PORT`, with a numeric port (the address may be a host name).
fn bind_address(parser: &mut lexopt::Parser) -> Result<String, String> {
    let raw = text(parser, "--bind")?;
    match raw.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(raw),
        _ => Err(format!(
            "--bind: expected ADDR:PORT such as 127.0.0.1:9000, got {raw:?}"
        )),
    }
}

/// A whole number above zero.
fn count(parser: &mut lexopt::Parser, flag: &str) -> Result<usize, String> {
    let raw = text(parser, flag)?;
    match raw.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag}: expected a whole number above zero, got {raw:?}")),
    }
}

fn secs(parser: &mut lexopt::Parser, flag: &str) -> Result<Duration, String> {
    count(parser, flag).map(|n| Duration::from_secs(n as u64))
}

fn init_logging() {
    let logger = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Info)
        .env()
        .with_utc_timestamps();
    if let Err(e) = logger.init() {
        eprintln!("reflow-discovery: cannot set up logging: {e}");
    }
}

fn main() -> ExitCode {
    // Before the arguments: reading the token file may warn.
    init_logging();
    let config = match parse_args() {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("reflow-discovery {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{}", usage_error("reflow-discovery", &message));
            return ExitCode::from(2);
        }
    };
    // Install the handlers before listening, so that a signal arriving
    // right after the "listening" line is never lost.
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(signals) => signals,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let server = match DiscoveryServer::start(*config) {
        Ok(server) => server,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Some(signal) = signals.forever().next() {
        log::info!("received signal {signal}, shutting down");
    }
    server.shutdown();
    ExitCode::SUCCESS
}
