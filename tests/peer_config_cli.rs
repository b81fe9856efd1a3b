//! The `reflow-peer` command line, parsed without a process.

use std::path::PathBuf;

use reflow_distributed::peer_cli::{Command, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, HELP, SendSpec, parse_args};

fn usage_error(args: &[&str]) -> String {
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
    assert_eq!(usage_error(&[]), "--config FILE is required");
    assert!(usage_error(&["--once"]).starts_with("--config FILE is required"));
}

#[test]
fn unknown_flag() {
    assert!(usage_error(&["--config", "a.toml", "--verbose"]).starts_with("unknown option --verbose"));
}

#[test]
fn send_without_value() {
    assert_eq!(
        usage_error(&["--config", "a.toml", "--send"]),
        "--send needs a value network:actor:port:payload"
    );
}

#[test]
fn bad_send() {
    assert_eq!(
        usage_error(&["--config", "a.toml", "--send", "alpha::in:x"]),
        "invalid value for --send \"alpha::in:x\": the actor is empty \
         (expected network:actor:port:payload)"
    );
    let err = usage_error(&["--config", "a.toml", "--send", "alpha:recorder"]);
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
