//! The discovery contract mounted in someone else's `tiny_http` application,
//! next to that application's own routes.

mod discovery_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use reflow_distributed::router::{self, RegistryConfig, SharedRegistry};

use discovery_support::*;

/// An application with its own `/hello` route and the discovery routes mounted.
struct App {
    addr: SocketAddr,
    registry: SharedRegistry,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl App {
    fn start(max_body_bytes: usize) -> App {
        let registry = SharedRegistry::new(RegistryConfig {
            max_body_bytes,
            ..RegistryConfig::default()
        });
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind");
        let addr = server.server_addr().to_ip().expect("ip");
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, shared) = (Arc::clone(&stop), registry.clone());
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                if let Some(request) = router::handle(&shared, request) {
                    let reply = match request.url() {
                        "/hello" => tiny_http::Response::from_string("hello from the app"),
                        _ => tiny_http::Response::from_string("app 404").with_status_code(404),
                    };
                    let _ = request.respond(reply);
                }
            }
        });
        App {
            addr,
            registry,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `request` and returns the answer's head, without waiting for a body.
fn answer_head(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    s.write_all(request).expect("send");
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") && s.read(&mut byte).expect("read") == 1 {
        out.push(byte[0]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn the_contract_and_the_app_share_one_server() {
    let app = App::start(16 * 1024);
    register(app.addr, "alpha", "alpha-1", "127.0.0.1:9100");
    let list = networks(app.addr);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["network_id"], "alpha");
    let hello = http(app.addr, "GET", "/hello", None);
    assert_eq!((hello.status, hello.body.as_str()), (200, "hello from the app"));
    assert_eq!(http(app.addr, "GET", "/other", None).body, "app 404");
    // The application can read the same roster in-process.
    assert_eq!(app.registry.live().len(), 1);
}

#[test]
fn the_mounted_contract_refuses_bad_input_like_the_server() {
    let app = App::start(1024);
    let answer = http(app.addr, "POST", "/register", Some("{oops"));
    assert_eq!(answer.status, 400);
    assert!(answer.error().starts_with("malformed JSON"));
    let answer = http(app.addr, "DELETE", "/networks", None);
    assert_eq!(answer.status, 405);
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(3000));
    assert_eq!(http(app.addr, "POST", "/register", Some(&big)).status, 413);
    // A declared terabyte is refused without reading it, and the app lives on
    // (tiny_http would abort the process discarding such a body; the router
    // abandons that one connection instead, so only a head comes back).
    let head = answer_head(
        app.addr,
        b"POST /register HTTP/1.1\r\nHost: t\r\nContent-Length: 1099511627776\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(http(app.addr, "GET", "/hello", None).status, 200);
    assert_eq!(app.registry.metrics().responses_with(413), 2);
}

#[test]
fn a_mounted_router_resolves_wildcards_and_takes_deletes() {
    let app = App::start(16 * 1024);
    let body = r#"{"network_id":"rf","instance_id":"rf-1","endpoint":"[::]:7123","capabilities":[]}"#;
    let answer = http(app.addr, "POST", "/register", Some(body));
    assert_eq!(answer.status, 200, "{answer:?}");
    let list = networks(app.addr);
    assert_eq!(list[0]["endpoint"], "127.0.0.1:7123", "{list:?}");
    let answer = http(app.addr, "DELETE", "/networks/rf?instance_id=rf-2", None);
    assert_eq!(answer.status, 409, "{answer:?}");
    let answer = http(
        app.addr,
        "DELETE",
        "/networks/rf",
        Some(r#"{"instance_id":"rf-1"}"#),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(app.registry.live().is_empty());
}
