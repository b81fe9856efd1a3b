//! A userspace TCP relay on 127.0.0.1 for the bridge's fault tests:
//! two pump threads per relayed connection, optionally shaped (a chunk of
//! bytes per period, each way); `stall_up` stops forwarding toward the
//! target (sockets open, unread, so the sender's buffers fill), and
//! `shutdown` cuts every relayed socket and stops listening, so the link
//! dies from the outside and cannot be redialed through it.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// At most `chunk` bytes forwarded per `every`, in each direction.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub chunk: usize,
    pub every: Duration,
}

impl Shape {
    /// Bytes per second this shape allows.
    pub fn rate(&self) -> f64 {
        self.chunk as f64 / self.every.as_secs_f64()
    }
}

pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    shape: Option<Shape>,
    stopping: AtomicBool,
    /// Forwarding toward the target is stopped.
    stalled: Mutex<bool>,
    unstalled: Condvar,
    /// One clone of both sockets of every relayed pair, for `shutdown`.
    sockets: Mutex<Vec<TcpStream>>,
    pumps: Mutex<Vec<JoinHandle<()>>>,
    accepted: AtomicU64,
    /// Bytes forwarded toward the target (index 0) and back (index 1).
    forwarded: [AtomicU64; 2],
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Relay {
    /// Relays connections to `target`, shaped when `shape` is given.
    pub fn start(target: SocketAddr, shape: Option<Shape>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let shared = Arc::new(Shared {
            shape,
            stopping: AtomicBool::new(false),
            stalled: Mutex::new(false),
            unstalled: Condvar::new(),
            sockets: Mutex::new(Vec::new()),
            pumps: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
            forwarded: [AtomicU64::new(0), AtomicU64::new(0)],
        });
        let for_thread = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || accept_loop(&listener, target, &for_thread))
            .expect("spawn the relay");
        Relay {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Acquire)
    }

    /// Bytes forwarded toward the target so far.
    pub fn forwarded_up(&self) -> u64 {
        self.shared.forwarded[0].load(Ordering::Acquire)
    }

    /// Stops forwarding toward the target on every connection (until shutdown).
    pub fn stall_up(&self) {
        *lock(&self.shared.stalled) = true;
    }

    /// Cuts both sockets of every relayed connection and keeps listening,
    /// so the link can be dialed again through the relay (a link cut that
    /// heals at once). Returns how many connections were cut.
    pub fn cut(&self) -> usize {
        let sockets: Vec<TcpStream> = lock(&self.shared.sockets).drain(..).collect();
        for socket in &sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
        sockets.len() / 2
    }

    /// Stops listening and cuts both sockets of every relayed connection.
    /// Idempotent; also run on drop.
    pub fn shutdown(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        for socket in lock(&self.shared.sockets).drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
        // A stalled pump wakes and leaves without reading: reading would make
        // room in the sender's socket just as the link is cut.
        drop(lock(&self.shared.stalled));
        self.shared.unstalled.notify_all();
        if let Some(acceptor) = self.acceptor.take() {
            // Wakes the accept loop, which then sees `stopping` and drops the listener.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = acceptor.join();
        }
        // A pair accepted while the loop was being woken.
        for socket in lock(&self.shared.sockets).drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let pumps: Vec<JoinHandle<()>> = lock(&self.shared.pumps).drain(..).collect();
        for pump in pumps {
            let _ = pump.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn wait_while_stalled(&self) {
        let mut stalled = lock(&self.stalled);
        while *stalled && !self.stopping.load(Ordering::Acquire) {
            stalled = self.unstalled.wait(stalled).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let clones = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        );
        let (Ok(client2), Ok(server2), Ok(client3), Ok(server3)) = clones else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::AcqRel);
        lock(&shared.sockets).extend([client3, server3]);
        let mut pumps = lock(&shared.pumps);
        for (from, to, way) in [(client, server, 0), (server2, client2, 1)] {
            let shared = shared.clone();
            let pump = std::thread::Builder::new()
                .name(format!("relay-pump-{way}"))
                .spawn(move || pump(from, to, way, &shared))
                .expect("spawn a relay pump");
            pumps.push(pump);
        }
    }
}

/// Copies `from` to `to` until either side ends. Shaped: reads at most one
/// chunk at a time and forwards it no sooner than its slot, never catching
/// up in a burst after a late slot.
fn pump(mut from: TcpStream, mut to: TcpStream, way: usize, shared: &Shared) {
    let chunk = shared.shape.map_or(16 * 1024, |s| s.chunk);
    let mut buffer = vec![0u8; chunk];
    let mut due = Instant::now();
    loop {
        if way == 0 {
            shared.wait_while_stalled();
        }
        if shared.stopping.load(Ordering::Acquire) {
            break;
        }
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if let Some(shape) = shared.shape {
            // Pacing is the relay's job here (it shapes the link), not a wait
            // for some other thread to get somewhere.
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            due = due.max(now) + shape.every;
        }
        if shared.stopping.load(Ordering::Acquire) || to.write_all(&buffer[..n]).is_err() {
            break;
        }
        shared.forwarded[way].fetch_add(n as u64, Ordering::AcqRel);
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
