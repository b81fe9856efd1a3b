//! The two binaries' command lines, run for real: Reflow's short flags
//! (`-c`, `-b`, `-h`, `-V`), one wording for usage errors, configuration
//! errors as `FILE:LINE: message`, and bind errors that name their cause.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::harness::{Echo, Proc, TempDir};

const WAIT: Duration = Duration::from_secs(30);

fn peer_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_reflow-peer"))
}

fn discovery_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_reflow-discovery"))
}

/// What a run that ends by itself printed, stdout and stderr apart.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `program` to its end; killed (and the test failed) after [`WAIT`],
/// so a binary that unexpectedly starts serving cannot hang the suite.
fn run(program: &Path, args: &[&str]) -> Ran {
    run_fed(program, args, None)
}

/// As [`run`], with `input` on the standard input (none: closed).
fn run_fed(program: &Path, args: &[&str], input: Option<&[u8]>) -> Ran {
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("REFLOW_AUTH_TOKEN")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        stdin.write_all(input).expect("feed the standard input");
    }
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("piped")));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} still running after {WAIT:?}", program.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ran {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

#[test]
fn help_and_version_win_over_anything_else_on_both_binaries() {
    for (program, short) in [(peer_bin(), "-c, --config"), (discovery_bin(), "-b, --bind")] {
        for args in [&["-h"][..], &["--help"], &["--bogus", "-h"], &["-h", "--bogus"]] {
            let ran = run(program, args);
            assert_eq!(ran.code, Some(0), "{args:?}: {}", ran.stderr);
            for needle in [short, "-h, --help", "-V, --version"] {
                assert!(
                    ran.stdout.contains(needle),
                    "{args:?}: {needle:?} in\n{}",
                    ran.stdout
                );
            }
            assert!(ran.stdout.to_lowercase().contains("exit codes"), "{}", ran.stdout);
            assert_eq!(ran.stderr, "", "{args:?}");
        }
        let name = program.file_name().and_then(|n| n.to_str()).expect("name");
        for args in [&["-V"][..], &["--version"], &["--bogus", "-V"]] {
            let ran = run(program, args);
            assert_eq!(ran.code, Some(0), "{args:?}: {}", ran.stderr);
            assert_eq!(ran.stdout, format!("{name} {}\n", env!("CARGO_PKG_VERSION")));
        }
    }
}

#[test]
fn usage_errors_are_worded_alike_and_exit_2() {
    let ran = run(peer_bin(), &["-c", "x.toml", "--bogus"]);
    assert_eq!(ran.code, Some(2));
    assert_eq!(
        ran.stderr,
        "reflow-peer: error: unknown option --bogus\nRun 'reflow-peer --help' for usage.\n"
    );
    let ran = run(peer_bin(), &["-c"]);
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr
            .starts_with("reflow-peer: error: -c needs a file name\n"),
        "{}",
        ran.stderr
    );

    let ran = run(discovery_bin(), &["--bogus"]);
    assert_eq!(ran.code, Some(2));
    assert_eq!(
        ran.stderr,
        "reflow-discovery: error: unknown option --bogus\nRun 'reflow-discovery --help' for usage.\n"
    );
    for (bin, program) in [(peer_bin(), "reflow-peer"), (discovery_bin(), "reflow-discovery")] {
        let ran = run(bin, &["-c", "x.toml", "-b", "127.0.0.1:1", "-q"]);
        assert_eq!(ran.code, Some(2), "{program}");
        assert!(
            ran.stderr
                .starts_with(&format!("{program}: error: unknown option -")),
            "{}",
            ran.stderr
        );
        let ran = run(bin, &["stray"]);
        assert_eq!(ran.code, Some(2), "{program}");
        assert!(
            ran.stderr
                .starts_with(&format!("{program}: error: unexpected argument \"stray\"")),
            "{}",
            ran.stderr
        );
    }
    let ran = run(discovery_bin(), &["-b", "nonsense"]);
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr
            .starts_with("reflow-discovery: error: --bind: expected ADDR:PORT"),
        "{}",
        ran.stderr
    );
    for ran in [run(peer_bin(), &["-x"]), run(discovery_bin(), &["-x"])] {
        assert_eq!(ran.stdout, "");
        assert_eq!(ran.stderr.lines().count(), 2, "{}", ran.stderr);
    }
}

#[test]
fn peer_reads_its_config_from_dash_c() {
    let dir = TempDir::new("cli-c");
    let path = dir.write(
        "alpha.toml",
        "network_id = \"alpha\"\nbind_address = \"127.0.0.1\"\n",
    );
    let path = path.to_string_lossy();
    let ran = run(
        peer_bin(),
        &["-c", &path, "--send", "alpha:recorder:in:hi", "--once"],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stderr.contains("network_id=alpha"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("sent test message to alpha/recorder.in"),
        "{}",
        ran.stderr
    );
}

#[test]
fn a_bad_send_file_line_is_a_usage_error_before_anything_starts() {
    let dir = TempDir::new("cli-send-file");
    let config = dir.write(
        "alpha.toml",
        "network_id = \"alpha\"\nbind_address = \"127.0.0.1\"\n",
    );
    let lines = dir.write(
        "lines.txt",
        "# three messages\nalpha:recorder:in:1\n\nalpha:recorder:2\nalpha:recorder:in:3\n",
    );
    let (config, lines) = (config.to_string_lossy(), lines.to_string_lossy());
    let ran = run(peer_bin(), &["-c", &config, "--send-file", &lines, "--once"]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(
        ran.stderr,
        format!(
            "reflow-peer: error: {lines}:4: invalid send spec \"alpha:recorder:2\": needs three `:` before the payload, found 2 (expected network:actor:port:payload)\nRun 'reflow-peer --help' for usage.\n"
        )
    );
    // From standard input, named as such.
    let ran = run_fed(
        peer_bin(),
        &["-c", &config, "--send-file", "-", "--once"],
        Some(b"alpha:recorder:in:1\nalpha:re corder:in:2\n"),
    );
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert!(
        ran.stderr
            .starts_with("reflow-peer: error: <stdin>:2: invalid send spec"),
        "{}",
        ran.stderr
    );
}

#[test]
fn a_send_file_from_standard_input_goes_out_in_order() {
    let dir = TempDir::new("cli-send-stdin");
    let config = dir.write(
        "alpha.toml",
        "network_id = \"alpha\"\nbind_address = \"127.0.0.1\"\n",
    );
    let config = config.to_string_lossy();
    let ran = run_fed(
        peer_bin(),
        &[
            "-c",
            &config,
            "--send",
            "alpha:recorder:in:zero",
            "--send-file",
            "-",
            "--send-rate",
            "50",
            "--once",
        ],
        Some(b"alpha:recorder:in:one\r\n  # skipped\n\nalpha:recorder:in:two\n"),
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    // The --send is logged one by one; the file's lines only in the total.
    assert!(
        ran.stderr
            .contains("sent test message to alpha/recorder.in: \"zero\""),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("in: \"one\""), "{}", ran.stderr);
    assert!(ran.stderr.contains("sent 3 of 3 message(s)"), "{}", ran.stderr);
}

#[test]
fn discovery_listens_on_dash_b() {
    let mut server = Proc::spawn(
        "discovery",
        discovery_bin(),
        &["-b", "127.0.0.1:0"],
        &[],
        Echo::Quiet,
    );
    let line = server
        .wait_for("listening on http://127.0.0.1:", WAIT)
        .expect("listening");
    assert!(!line.contains("127.0.0.1:0 "), "{line}");
    server.signal("TERM");
    assert_eq!(server.wait_exit(WAIT).expect("exit").code(), Some(0));
}

#[test]
fn a_bad_config_is_reported_as_file_line_message_without_a_log_prefix() {
    let dir = TempDir::new("cli-config");
    let path = dir.write("broken.toml", "network_id = \"alpha\"\n\nbind_port = \"abc\"\n");
    let path = path.to_string_lossy();
    let ran = run(peer_bin(), &["-c", &path]);
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(
        ran.stderr,
        format!("{path}:3: `bind_port` must be an integer 0..=65535, got \"abc\"\n")
    );
    assert_eq!(ran.stdout, "");

    let missing = dir.path.join("missing.toml");
    let missing = missing.to_string_lossy();
    let ran = run(peer_bin(), &["--config", &missing]);
    assert_eq!(ran.code, Some(2));
    assert!(
        ran.stderr
            .starts_with(&format!("{missing}: cannot read the file: ")),
        "{}",
        ran.stderr
    );
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
}

#[test]
fn a_port_in_use_is_called_that() {
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = held.local_addr().expect("address").to_string();
    let ran = run(discovery_bin(), &["-b", &addr]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&format!("cannot listen on {addr}")),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("is the port in use?"), "{}", ran.stderr);
    assert!(
        !ran.stderr.contains("not available on this host"),
        "{}",
        ran.stderr
    );
}

#[test]
fn an_address_this_host_does_not_have_is_called_that() {
    // TEST-NET-3 (RFC 5737) is never assigned to a host: the bind fails
    // locally with EADDRNOTAVAIL, and no packet leaves the machine.
    let ran = run(discovery_bin(), &["--bind", "203.0.113.1:0"]);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("cannot listen on 203.0.113.1:0"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("address not available on this host"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("port in use"), "{}", ran.stderr);
}
