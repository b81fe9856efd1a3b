//! Request and reply between two processes, with no proxy registered for
//! either direction.
//!
//! ```text
//!   client process                                  server process
//!   asker ──send_to_remote_actor("server", "square", "in", n)──▶ square
//!   asker.answer ◀──────────── ctx.reply("in", "answer", n * n) ──┘
//! ```
//!
//! The server's `square` actor answers whoever sent it a number: the
//! message carries its origin (`ActorContext::origin`: network `client`,
//! actor `asker`) and `ActorContext::reply` sends the square back to that
//! actor's `answer` port. The client's `asker` sends each number it is given
//! with `ActorContext::send_to_remote_actor`, and checks that each answer
//! came from `square@server`. Both peers use acknowledged delivery
//! (`[delivery] mode = "acknowledged"` in a peer file), so a request or an
//! answer that meets a cut link is replayed rather than lost.
//!
//! Run both roles at once (the program starts the server as a child
//! process, asks it, and stops it):
//!
//! ```text
//! cargo run --example request_reply [-- N]
//! ```
//!
//! or one per terminal:
//!
//! ```text
//! cargo run --example request_reply -- server [PORT]        # prints LISTENING 127.0.0.1:PORT
//! cargo run --example request_reply -- client 127.0.0.1:PORT [N]
//! ```
//!
//! The client prints `7 squared is 49 (answered by square@server)` for each
//! number from 1 to N (default 5) and exits 0 once every answer is in. The
//! server runs until its standard input closes (Ctrl-D) or Ctrl-C.
//! `cargo test --test e2e_request_reply` runs it.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use reflow_distributed::bridge::DeliveryMode;
use reflow_distributed::distributed_network::DistributedNetwork;
use reflow_distributed::runtime::{FnActor, Origin};
use reflow_distributed::{DistributedConfig, Message};
use serde_json::json;

/// How long the client waits for the link, and then for all the answers.
const WAIT: Duration = Duration::from_secs(20);

type BoxError = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Warn)
        .env()
        .with_module_level("tungstenite", log::LevelFilter::Info)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("server") => server(args.get(1).map(String::as_str)),
        Some("client") => match args.get(1) {
            Some(endpoint) => count(args.get(2)).and_then(|n| client(endpoint, n)),
            None => Err("usage: request_reply client HOST:PORT [N]".into()),
        },
        _ => count(args.first()).and_then(both),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("request_reply: {e}");
            ExitCode::FAILURE
        }
    }
}

fn count(arg: Option<&String>) -> Result<i64, BoxError> {
    match arg {
        None => Ok(5),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
            _ => Err(format!("N must be a whole number from 1 to 1000000, got {text:?}").into()),
        },
    }
}

/// A peer of network `name` on loopback, with acknowledged delivery.
fn config(name: &str, port: u16) -> DistributedConfig {
    let mut config = DistributedConfig::new(name);
    config.bridge.bind_address = "127.0.0.1".into();
    config.bridge.bind_port = port;
    config.bridge.delivery.mode = DeliveryMode::Acknowledged;
    config
}

/// The server: `square` answers each number with its square.
fn server(port: Option<&str>) -> Result<(), BoxError> {
    let port = port.map_or(Ok(0), str::parse)?;
    let peer = DistributedNetwork::new(config("server", port))?;
    let square = FnActor::new(&["in"], &[], |ctx| {
        let Some(n) = ctx.input("in").and_then(Message::as_i64) else {
            return Ok(());
        };
        if let Some(Origin::Remote { network, actor }) = ctx.origin("in") {
            log::info!("square: {n} from {actor}@{network}");
        }
        ctx.reply("in", "answer", n.saturating_mul(n))
    });
    peer.register_local_actor("square", Box::new(square), json!({}))?;
    peer.start()?;
    let address = peer.local_addr().ok_or("the bridge has no address")?;
    println!("LISTENING {address}");
    std::io::stdout().flush()?;
    // Until the standard input closes: whoever started this is done with it.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    peer.shutdown();
    Ok(())
}

/// The client: asks `square@server` for the squares of 1..=n and prints
/// each answer with the actor it came from.
fn client(endpoint: &str, n: i64) -> Result<(), BoxError> {
    let peer = DistributedNetwork::new(config("client", 0))?;
    let (answers_tx, answers) = crossbeam_channel::unbounded::<(i64, String)>();
    let asker = FnActor::new(&["ask", "answer"], &[], move |ctx| {
        if let Some(n) = ctx.take_input("ask") {
            ctx.send_to_remote_actor("server", "square", "in", n)?;
        }
        if let Some(answer) = ctx.input("answer").and_then(Message::as_i64) {
            let from = match ctx.origin("answer") {
                Some(Origin::Remote { network, actor }) => format!("{actor}@{network}"),
                other => format!("{other:?}"),
            };
            let _ = answers_tx.send((answer, from));
        }
        Ok(())
    });
    peer.register_local_actor("asker", Box::new(asker), json!({}))?;
    peer.start()?;
    let network = peer.connect_to_network(endpoint)?;
    if network != "server" {
        return Err(format!("{endpoint} is network {network:?}, not the server").into());
    }
    for i in 1..=n {
        peer.send_to_actor("asker", "ask", i)?;
    }
    // Answers may overtake each other only if requests did; check each one.
    let deadline = Instant::now() + WAIT;
    let mut got = std::collections::BTreeMap::new();
    while got.len() < n as usize {
        let left = deadline.saturating_duration_since(Instant::now());
        let (answer, from) = answers
            .recv_timeout(left)
            .map_err(|_| format!("{} of {n} answers after {} s", got.len(), WAIT.as_secs()))?;
        let asked = (1..=n)
            .find(|i| i * i == answer)
            .ok_or_else(|| format!("unexpected answer {answer} from {from}"))?;
        got.insert(asked, from);
    }
    for (asked, from) in &got {
        println!("{asked} squared is {} (answered by {from})", asked * asked);
    }
    peer.shutdown();
    Ok(())
}

/// Both roles: the server as a child process of this program, then the client.
fn both(n: i64) -> Result<(), BoxError> {
    let mut server = ServerProcess::start()?;
    let endpoint = server.endpoint()?;
    client(&endpoint, n)
}

/// The server child; killed if it is still running when this is dropped.
struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    fn start() -> Result<ServerProcess, BoxError> {
        let child = Command::new(std::env::current_exe()?)
            .arg("server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        Ok(ServerProcess { child })
    }

    /// The `host:port` the server printed.
    fn endpoint(&mut self) -> Result<String, BoxError> {
        let stdout = self.child.stdout.take().ok_or("the server has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let endpoint = line
            .trim()
            .strip_prefix("LISTENING ")
            .ok_or_else(|| format!("the server said {line:?} instead of its address"))?;
        Ok(endpoint.to_string())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing its standard input asks the server to shut down cleanly.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
