//! The request/reply example (`examples/request_reply.rs`) run for real:
//! its server and client are two processes, the client's actor asks with
//! `send_to_remote_actor` and the server's answers with `reply`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::harness::{Echo, Proc, example_bin};

const WAIT: Duration = Duration::from_secs(30);

fn expected(n: i64) -> Vec<String> {
    (1..=n)
        .map(|i| format!("{i} squared is {} (answered by square@server)", i * i))
        .collect()
}

#[test]
fn the_example_asks_a_server_process_and_every_answer_comes_back_from_it() {
    let program = example_bin("request_reply");
    let mut both = Proc::spawn("request_reply", &program, &["20"], &[], Echo::Quiet);
    let status = both.wait_exit(WAIT).unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{}", both.output());
    for line in expected(20) {
        assert_eq!(both.count(&line), 1, "{line:?} in:\n{}", both.output());
    }
}

#[test]
fn one_role_per_process_as_documented() {
    let program = example_bin("request_reply");
    // The server runs until its standard input closes.
    let mut server = Command::new(&program)
        .arg("server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the server's first line");
    let endpoint = line
        .trim()
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let mut client = Proc::spawn("client", &program, &["client", &endpoint, "3"], &[], Echo::Quiet);
    let status = client.wait_exit(WAIT).unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{}", client.output());
    for line in expected(3) {
        assert_eq!(client.count(&line), 1, "{}", client.output());
    }
    // Closing the server's input stops it.
    drop(server.stdin.take());
    let exited = common::harness::wait_until(WAIT, Duration::from_millis(20), || match server.try_wait() {
        Ok(Some(status)) => Ok(status),
        _ => Err("the server still runs".to_string()),
    });
    let _ = server.kill();
    assert!(exited.expect("the server exits").success());
}
