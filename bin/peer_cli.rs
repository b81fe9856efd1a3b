//! Command line of `reflow-peer`, parsed without touching the process so it
//! can be tested: [`parse_args`] turns arguments into a [`Command`]; reading
//! the configuration file and running the peer come after, in the binary.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::cli::{Early, early_flag, unknown_argument};
use reflow_distributed::names::{IdError, check_id, escaped};

/// Exit code of a run that did what was asked (and of `--help`, `--version`).
pub const EXIT_OK: u8 = 0;
/// Exit code of a runtime failure, such as a `--send` that was not delivered.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error or an invalid configuration file.
pub const EXIT_USAGE: u8 = 2;

/// How long the sends wait for their acknowledgements by default.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Highest `--send-rate`, in messages per second.
const MAX_SEND_RATE: u32 = 1_000_000;
/// Highest `--ack-timeout`, in seconds: a day.
const MAX_ACK_TIMEOUT_SECS: u64 = 86_400;

/// The version printed by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Text printed by `--help`.
pub const HELP: &str = "\
reflow-peer: run one Reflow peer (local actors, bridge, discovery) from a config file.

Usage: reflow-peer -c FILE [--send NETWORK:ACTOR:PORT:PAYLOAD]... [--send-file FILE]
                   [--send-rate N] [--ack-timeout SECS] [--once] [--admin IP:PORT]

Options:
  -c, --config FILE
                  Peer configuration file (TOML; see docs/configuration.md). Required.
  --send SPEC     Once the peer is up, send PAYLOAD as a String message to port PORT
                  of actor ACTOR in network NETWORK. SPEC is network:actor:port:payload;
                  the payload is everything after the third ':' and may contain ':'
                  or be empty. Repeatable; sends go out in the order given, and
                  one that fails does not stop the ones after it.
  --send-file FILE
                  Send every line of FILE ('-': standard input) as a --send, in
                  order, after the --send options. Blank lines and lines starting
                  with '#' are skipped; a bad line is an error (FILE:LINE) before
                  anything is sent.
  --send-rate N   Send at most N messages per second (default: as fast as the
                  link takes them).
  --ack-timeout SECS
                  With [delivery] mode = \"acknowledged\": how long to wait after
                  the last send for every message to be acknowledged (default 60).
                  Exit 1, saying how many were not, if some are still unacknowledged.
  --once          Exit after the sends instead of running until interrupted.
  --admin ADDR    Serve /healthz, /readyz, /metrics and /links on ADDR (IP:PORT, e.g.
                  127.0.0.1:9190); replaces admin_bind from the file.
  -h, --help      Print this help and exit (read before any other option).
  -V, --version   Print the version and exit (read before any other option).

Environment:
  REFLOW_AUTH_TOKEN   Bridge auth token; replaces auth_token from the file when set
                      and not empty.

Exit codes:
  0   success, or --help / --version
  1   runtime failure, e.g. a --send that could not be sent, or (acknowledged
      delivery) a message not acknowledged within --ack-timeout
  2   usage error, or an invalid configuration file (printed as FILE:LINE: message)
";

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run a peer.
    Run(PeerArgs),
    /// Print [`HELP`] and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// Arguments of a peer run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerArgs {
    /// `--config FILE`.
    pub config: PathBuf,
    /// Every `--send`, in order.
    pub sends: Vec<SendSpec>,
    /// `--send-file FILE` (`-`: standard input), sent after `sends`.
    pub send_file: Option<PathBuf>,
    /// `--send-rate N`: at most N messages per second.
    pub send_rate: Option<u32>,
    /// `--ack-timeout SECS`; [`DEFAULT_ACK_TIMEOUT`] when not given.
    pub ack_timeout: Duration,
    /// `--once`: exit after the sends.
    pub once: bool,
    /// `--admin IP:PORT`: the admin listener, replacing `admin_bind`.
    pub admin: Option<String>,
}

/// One `--send network:actor:port:payload`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendSpec {
    pub network_id: String,
    pub actor_id: String,
    pub port: String,
    /// Everything after the third `:`, verbatim; may be empty.
    pub payload: String,
}

/// Why a `--send` value is not `network:actor:port:payload`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendSpecError {
    problem: String,
}

impl fmt::Display for SendSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (expected network:actor:port:payload)", self.problem)
    }
}

impl std::error::Error for SendSpecError {}

impl FromStr for SendSpec {
    type Err = SendSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut fields = text.splitn(4, ':');
        let mut next = || fields.next();
        let (network, actor, port, payload) = (next(), next(), next(), next());
        let Some(payload) = payload else {
            let found = text.matches(':').count();
            let problem = format!("needs three `:` before the payload, found {found}");
            return Err(SendSpecError { problem });
        };
        let network = name_field("network", network.unwrap_or_default())?;
        let actor = name_field("actor", actor.unwrap_or_default())?;
        let port = name_field("port", port.unwrap_or_default())?;
        Ok(SendSpec {
            network_id: network,
            actor_id: actor,
            port,
            payload: payload.to_string(),
        })
    }
}

/// A network, actor or port name of `--send`: an id (`reflow_distributed::names`).
fn name_field(what: &str, value: &str) -> Result<String, SendSpecError> {
    let problem = match check_id(value) {
        Ok(()) => return Ok(value.to_string()),
        Err(IdError::Empty) => format!("the {what} is empty"),
        Err(e) => format!("the {what} {:?} {e}", escaped(value)),
    };
    Err(SendSpecError { problem })
}

/// Writes the spec back as `network:actor:port:payload`.
impl fmt::Display for SendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.network_id, self.actor_id, self.port, self.payload
        )
    }
}

/// A command line that cannot be run; exit with [`EXIT_USAGE`]. The text
/// names the option at fault; the binary prints it with
/// [`crate::cli::usage_error`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError {
    message: String,
}

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        UsageError {
            message: message.into(),
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// Parses the arguments after the program name
/// (`std::env::args_os().skip(1)` in the binary).
///
/// `-h`/`--help` and `-V`/`--version` are looked for first
/// ([`crate::cli::early_flag`]), so they win over any other argument, even
/// one that would not parse. `-c` is `--config`, as in Reflow's CLI.
pub fn parse_args<I>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::Arg::{Long, Short};

    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    match early_flag(&args) {
        Some(Early::Help) => return Ok(Command::Help),
        Some(Early::Version) => return Ok(Command::Version),
        None => {}
    }
    let mut parser = lexopt::Parser::from_args(args);
    let mut config: Option<PathBuf> = None;
    let mut sends = Vec::new();
    let mut send_file: Option<PathBuf> = None;
    let mut send_rate: Option<u32> = None;
    let mut ack_timeout: Option<Duration> = None;
    let mut once = false;
    let mut admin = None;
    while let Some(arg) = parser.next().map_err(lexopt_error)? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Short('c') | Long("config") => {
                let value = parser.value().map_err(lexopt_error)?;
                if config.is_some() {
                    return Err(UsageError::new("--config given more than once"));
                }
                if value.is_empty() {
                    return Err(UsageError::new("--config needs a file name, got an empty value"));
                }
                config = Some(PathBuf::from(value));
            }
            Long("send") => {
                let value = parser.value().map_err(lexopt_error)?;
                sends.push(send_value(value)?);
            }
            Long("send-file") => {
                let value = parser.value().map_err(lexopt_error)?;
                if send_file.is_some() {
                    return Err(UsageError::new("--send-file given more than once"));
                }
                if value.is_empty() {
                    return Err(UsageError::new(
                        "--send-file needs a file name ('-' for standard input), got an empty value",
                    ));
                }
                send_file = Some(PathBuf::from(value));
            }
            Long("send-rate") => {
                let value = parser.value().map_err(lexopt_error)?;
                let rule = format!("a whole number of messages per second, 1 to {MAX_SEND_RATE}");
                send_rate = Some(number("--send-rate", value, 1, MAX_SEND_RATE.into(), &rule)? as u32);
            }
            Long("ack-timeout") => {
                let value = parser.value().map_err(lexopt_error)?;
                let rule = format!("a whole number of seconds, 1 to {MAX_ACK_TIMEOUT_SECS}");
                let secs = number("--ack-timeout", value, 1, MAX_ACK_TIMEOUT_SECS, &rule)?;
                ack_timeout = Some(Duration::from_secs(secs));
            }
            Long("once") => once = true,
            Long("admin") => {
                let value = parser.value().map_err(lexopt_error)?;
                let text = value.to_string_lossy().into_owned();
                if text.parse::<std::net::SocketAddr>().is_err() {
                    return Err(UsageError::new(format!(
                        "invalid value for --admin {text:?}: expected IP:PORT such as 127.0.0.1:9190"
                    )));
                }
                admin = Some(text);
            }
            other => return Err(UsageError::new(unknown_argument(other))),
        }
    }
    let config = config.ok_or_else(|| UsageError::new("--config FILE is required"))?;
    Ok(Command::Run(PeerArgs {
        config,
        sends,
        send_file,
        send_rate,
        ack_timeout: ack_timeout.unwrap_or(DEFAULT_ACK_TIMEOUT),
        once,
        admin,
    }))
}

/// The value of a numeric `option`, in `min..=max`; `rule` says what it must be.
fn number(option: &str, value: OsString, min: u64, max: u64, rule: &str) -> Result<u64, UsageError> {
    let text = value.to_string_lossy();
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(UsageError::new(format!(
            "invalid value for {option} \"{}\": expected {rule}",
            escaped(&text).max_chars(40)
        ))),
    }
}

fn send_value(value: OsString) -> Result<SendSpec, UsageError> {
    let text = value
        .into_string()
        .map_err(|_| UsageError::new("invalid value for --send: not valid UTF-8"))?;
    text.parse()
        .map_err(|err| UsageError::new(format!("invalid value for --send {text:?}: {err}")))
}

/// lexopt's errors, reworded to name the option and what it needs.
fn lexopt_error(err: lexopt::Error) -> UsageError {
    match err {
        lexopt::Error::MissingValue { option: Some(option) } => {
            let what = match option.as_str() {
                "--config" | "-c" => "a file name",
                "--send" => "a value network:actor:port:payload",
                "--admin" => "an address IP:PORT",
                "--send-file" => "a file name ('-' for standard input)",
                "--send-rate" => "a number of messages per second",
                "--ack-timeout" => "a number of seconds",
                _ => "a value",
            };
            UsageError::new(format!("{option} needs {what}"))
        }
        lexopt::Error::UnexpectedValue { option, .. } => UsageError::new(format!("{option} takes no value")),
        other => UsageError::new(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> PeerArgs {
        match parse_args(args.iter().copied()) {
            Ok(Command::Run(args)) => args,
            other => panic!("expected a run, got {other:?}"),
        }
    }

    fn usage(args: &[&str]) -> String {
        match parse_args(args.iter().copied()) {
            Err(err) => err.to_string(),
            Ok(command) => panic!("expected a usage error, got {command:?}"),
        }
    }

    #[test]
    fn payload_keeps_everything_after_the_third_colon() {
        let spec: SendSpec = "alpha:recorder:in:a:b::c".parse().expect("valid");
        assert_eq!(spec.payload, "a:b::c");
        let spec: SendSpec = "alpha:recorder:in:".parse().expect("valid");
        assert_eq!(spec.payload, "");
        let spec: SendSpec = "alpha:recorder:in:héllo ✓ 世界".parse().expect("valid");
        assert_eq!(spec.payload, "héllo ✓ 世界");
        assert_eq!(spec.to_string(), "alpha:recorder:in:héllo ✓ 世界");
    }

    #[test]
    fn send_errors_say_what_is_wrong() {
        let err = |s: &str| s.parse::<SendSpec>().expect_err(s).to_string();
        assert_eq!(
            err("alpha::in:x"),
            "the actor is empty (expected network:actor:port:payload)"
        );
        assert!(err("alpha:recorder:in").contains("found 2"));
        assert!(err(":recorder:in:x").starts_with("the network is empty"));
        assert!(err("alpha:recorder::x").starts_with("the port is empty"));
        assert!(err("alpha:rec order:in:x").contains("\"rec order\""));
        assert!(err("alpha:rec@x:in:x").contains("contains '@' at byte 3"));
        assert!(err("alpha:rec\u{202e}x:in:x").contains("\"rec\\u{202e}x\" contains an invisible format"));
        assert!(err("alpha:recorder:i/n:x").contains("contains '/' at byte 1"));
    }

    #[test]
    fn a_full_command_line() {
        let args = run(&[
            "--config",
            "beta.toml",
            "--send",
            "a:b:c:1",
            "--send=a:b:c:2",
            "--once",
        ]);
        assert_eq!(args.config, PathBuf::from("beta.toml"));
        let payloads: Vec<&str> = args.sends.iter().map(|s| s.payload.as_str()).collect();
        assert_eq!(payloads, ["1", "2"]);
        assert!(args.once);
        assert!(!run(&["--config=x.toml"]).once);
        assert_eq!(run(&["-c", "y.toml"]).config, PathBuf::from("y.toml"));
        assert_eq!(run(&["-cz.toml"]).config, PathBuf::from("z.toml"));
    }

    #[test]
    fn send_file_rate_and_ack_timeout() {
        let args = run(&[
            "-c",
            "b.toml",
            "--send-file",
            "lines.txt",
            "--send-rate=2000",
            "--ack-timeout",
            "5",
        ]);
        assert_eq!(args.send_file, Some(PathBuf::from("lines.txt")));
        assert_eq!(args.send_rate, Some(2000));
        assert_eq!(args.ack_timeout, Duration::from_secs(5));
        let args = run(&["-c", "b.toml", "--send-file", "-"]);
        assert_eq!(args.send_file, Some(PathBuf::from("-")));
        assert_eq!((args.send_rate, args.ack_timeout), (None, DEFAULT_ACK_TIMEOUT));
    }

    #[test]
    fn bad_send_file_rate_and_ack_timeout_values() {
        let base = ["-c", "b.toml"];
        let with = |extra: &[&str]| usage(&[&base[..], extra].concat());
        assert_eq!(
            with(&["--send-rate", "0"]),
            "invalid value for --send-rate \"0\": expected a whole number of messages per second, 1 to 1000000"
        );
        assert!(with(&["--send-rate", "fast"]).starts_with("invalid value for --send-rate \"fast\""));
        assert!(with(&["--send-rate", "1.5"]).contains("a whole number"));
        assert_eq!(
            with(&["--ack-timeout", "-1"]),
            "invalid value for --ack-timeout \"-1\": expected a whole number of seconds, 1 to 86400"
        );
        assert_eq!(
            with(&["--ack-timeout"]),
            "--ack-timeout needs a number of seconds"
        );
        assert_eq!(
            with(&["--send-file"]),
            "--send-file needs a file name ('-' for standard input)"
        );
        assert!(with(&["--send-file", ""]).contains("got an empty value"));
        assert_eq!(
            with(&["--send-file", "a", "--send-file", "b"]),
            "--send-file given more than once"
        );
        // A hostile value is escaped, not echoed raw.
        assert!(!with(&["--send-rate", "1\n2"]).contains('\n'));
    }

    #[test]
    fn help_and_version_win_before_other_checks() {
        assert_eq!(parse_args(["--help"]), Ok(Command::Help));
        assert_eq!(parse_args(["-h", "--bogus"]), Ok(Command::Help));
        assert_eq!(parse_args(["--send", "x", "-V"]), Ok(Command::Version));
        assert_eq!(parse_args(["--bogus", "--help"]), Ok(Command::Help));
        assert_eq!(parse_args(["--version"]), Ok(Command::Version));
    }

    #[test]
    fn usage_errors_name_the_option() {
        assert_eq!(usage(&[]), "--config FILE is required");
        assert!(usage(&["-c"]).starts_with("-c needs a file name"));
        assert!(usage(&["--config", "a", "--bogus"]).starts_with("unknown option --bogus"));
        assert!(usage(&["--config", "a", "-x"]).starts_with("unknown option -x"));
        assert!(usage(&["--config"]).starts_with("--config needs a file name"));
        assert!(usage(&["--config", "a", "--send"]).starts_with("--send needs a value"));
        assert!(usage(&["--config", "a", "--once=yes"]).starts_with("--once takes no value"));
        assert!(usage(&["--config", "a", "--config", "b"]).contains("more than once"));
        assert!(usage(&["--config", "a", "stray"]).starts_with("unexpected argument \"stray\""));
        let bad = usage(&["--config", "a", "--send", "alpha::in:x"]);
        assert!(
            bad.starts_with("invalid value for --send \"alpha::in:x\": the actor is empty"),
            "{bad}"
        );
    }

    #[test]
    fn help_documents_exit_codes_and_the_token_variable() {
        for needle in [
            "0 ",
            "1 ",
            "2 ",
            "REFLOW_AUTH_TOKEN",
            "-c, --config FILE",
            "--once",
            "--send-file FILE",
            "--send-rate N",
            "--ack-timeout SECS",
            "-h, --help",
            "-V, --version",
        ] {
            assert!(HELP.contains(needle), "{needle}");
        }
    }
}

/// The command lines a user types, end to end through [`parse_args`].
#[cfg(test)]
mod command_lines {
    use std::path::PathBuf;

    use super::*;

    fn usage_error_of(args: &[&str]) -> String {
        match parse_args(args.iter().copied()) {
            Err(err) => err.to_string(),
            Ok(command) => panic!("expected a usage error for {args:?}, got {command:?}"),
        }
    }

    #[test]
    fn a_run_with_sends_in_order() {
        let args = [
            "--config",
            "beta.toml",
            "--send",
            "alpha:recorder:in:one",
            "--send",
            "alpha:recorder:in:two",
        ];
        let Ok(Command::Run(run)) = parse_args(args) else {
            panic!("expected a run");
        };
        assert_eq!(run.config, PathBuf::from("beta.toml"));
        assert!(!run.once);
        let payloads: Vec<&str> = run.sends.iter().map(|s| s.payload.as_str()).collect();
        assert_eq!(payloads, ["one", "two"]);
    }

    #[test]
    fn send_payloads_keep_colons_and_unicode() {
        let spec: SendSpec = "alpha:recorder:in:{\"url\":\"http://x:1\"}"
            .parse()
            .expect("valid");
        assert_eq!(
            (
                spec.network_id.as_str(),
                spec.actor_id.as_str(),
                spec.port.as_str()
            ),
            ("alpha", "recorder", "in")
        );
        assert_eq!(spec.payload, "{\"url\":\"http://x:1\"}");
        let spec: SendSpec = "alpha:recorder:in:naïve — 日本語 🚀".parse().expect("valid");
        assert_eq!(spec.payload, "naïve — 日本語 🚀");
        let spec: SendSpec = "alpha:recorder:in:".parse().expect("empty payload");
        assert_eq!(spec.payload, "");
    }

    #[test]
    fn missing_config() {
        assert_eq!(usage_error_of(&[]), "--config FILE is required");
        assert!(usage_error_of(&["--once"]).starts_with("--config FILE is required"));
    }

    #[test]
    fn unknown_flag() {
        assert!(usage_error_of(&["--config", "a.toml", "--verbose"]).starts_with("unknown option --verbose"));
    }

    #[test]
    fn send_without_value() {
        assert_eq!(
            usage_error_of(&["--config", "a.toml", "--send"]),
            "--send needs a value network:actor:port:payload"
        );
    }

    #[test]
    fn bad_send() {
        assert_eq!(
            usage_error_of(&["--config", "a.toml", "--send", "alpha::in:x"]),
            "invalid value for --send \"alpha::in:x\": the actor is empty \
             (expected network:actor:port:payload)"
        );
        let err = usage_error_of(&["--config", "a.toml", "--send", "alpha:recorder"]);
        assert!(
            err.contains("needs three `:` before the payload, found 1"),
            "{err}"
        );
        assert!(err.contains("expected network:actor:port:payload"), "{err}");
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse_args(["--help"]), Ok(Command::Help));
        assert_eq!(parse_args(["-V"]), Ok(Command::Version));
        assert_eq!((EXIT_OK, EXIT_FAILURE, EXIT_USAGE), (0, 1, 2));
        assert!(HELP.contains("Exit codes:"));
    }
}
