//! A federation on simulated hosts: `reflow-discovery` on one host, a
//! `reflow-peer` on each of four more (`alpha`, `beta`, `gamma`, `delta`),
//! and the traffic source ([`super::role`], network `sender`) on the last.
//! Every peer binds `0.0.0.0`, advertises its host's address and finds the
//! others through discovery, so each pair of networks holds a link.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ledger::{self, Delivery, Stream};
use super::netns::Topology;
use super::procs::{NsProc, log_ms};
use super::role;

/// The peers' networks (distinct first letters: a thread's name keeps only
/// the first letter after `bridge-writer-`).
pub const PEERS: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
/// The traffic source's network.
pub const SENDER: &str = "sender";
const DISCOVERY_HOST: &str = "discovery";
const DISCOVERY_PORT: u16 = 9000;
const BRIDGE_PORT: u16 = 9100;
/// Redial schedule of every peer: ceilings 100, 200, 400, 400… ms.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
pub const MAX_DELAY: Duration = Duration::from_millis(400);
/// A dial's connect deadline: the bridge's `connect_timeout`, which a
/// peer's config file does not set.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a peer waits for a Close to finish at shutdown (`close_timeout`).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Deadline for things that take well under a second when all is well.
pub const WAIT: Duration = Duration::from_secs(20);

/// What a scenario's federation looks like.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Every peer's heartbeat interval (eviction after 3 silent intervals).
    /// Default: the bridge's own, 1 s. A shorter one would make the suite
    /// quicker, but the bound on an eviction (3 intervals + 10 %) leaves
    /// 0.05 interval past the worst case of the rule (3¼ intervals): 50 ms
    /// for a loaded machine to schedule the check and write the line.
    pub heartbeat: Duration,
    /// The sender sends one message to each peer per period.
    pub period: Duration,
    /// Peers whose messages carry this many bytes of padding (to fill a
    /// link's buffers); the others get bare sequence numbers.
    pub padded: Vec<(&'static str, usize)>,
    pub delivery: Delivery,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            heartbeat: Duration::from_secs(1),
            period: Duration::from_millis(20),
            padded: Vec::new(),
            delivery: Delivery::AtMostOnce,
        }
    }
}

/// The running federation. Processes are stopped before the namespaces go
/// (fields drop in order).
pub struct Cluster {
    pub discovery: NsProc,
    pub peers: Vec<NsProc>,
    pub sender: NsProc,
    pub net: Topology,
    pub settings: Settings,
    dir: PathBuf,
}

impl Cluster {
    /// Makes the hosts, starts every process, and waits until each pair of
    /// networks is linked.
    pub fn start(settings: Settings) -> Cluster {
        let mut hosts = vec![DISCOVERY_HOST];
        hosts.extend(PEERS);
        hosts.push(SENDER);
        let net = Topology::create(&hosts).unwrap_or_else(|e| panic!("cannot make the hosts: {e}"));
        let dir = std::env::temp_dir().join(&net.name);
        std::fs::create_dir_all(&dir).expect("a directory for config files");

        let disc = net.host(DISCOVERY_HOST);
        let discovery = NsProc::spawn(
            &disc.ns,
            DISCOVERY_HOST,
            Path::new(env!("CARGO_BIN_EXE_reflow-discovery")),
            &["--bind".to_string(), format!("0.0.0.0:{DISCOVERY_PORT}")],
        );
        discovery
            .wait_for_after(0, "listening on", WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        let url = format!("http://{}:{DISCOVERY_PORT}", disc.addr);

        let peers = PEERS
            .iter()
            .map(|name| {
                let config = write_config(&dir, name, &peer_toml(name, &net, &url, &settings));
                NsProc::spawn(
                    &net.host(name).ns,
                    name,
                    Path::new(env!("CARGO_BIN_EXE_reflow-peer")),
                    &["--config".to_string(), config],
                )
            })
            .collect();
        let config = write_config(&dir, SENDER, &peer_toml(SENDER, &net, &url, &settings));
        let mut args = vec![
            role::FLAG.to_string(),
            config,
            settings.period.as_millis().to_string(),
        ];
        for peer in PEERS {
            let pad = settings
                .padded
                .iter()
                .find(|(p, _)| *p == peer)
                .map_or(0, |(_, n)| *n);
            args.push(format!("{peer}:{pad}"));
        }
        let me = std::env::current_exe().expect("this test binary");
        let sender = NsProc::spawn(&net.host(SENDER).ns, SENDER, &me, &args);
        let cluster = Cluster {
            discovery,
            peers,
            sender,
            net,
            settings,
            dir,
        };
        cluster.wait_linked();
        cluster
    }

    /// Every network's process, peers first, then the sender.
    pub fn members(&self) -> impl Iterator<Item = &NsProc> {
        self.peers.iter().chain(std::iter::once(&self.sender))
    }

    pub fn member(&self, network: &str) -> &NsProc {
        self.members()
            .find(|p| p.name == network)
            .unwrap_or_else(|| panic!("no network {network}"))
    }

    pub fn networks() -> Vec<&'static str> {
        PEERS.iter().copied().chain([SENDER]).collect()
    }

    fn wait_linked(&self) {
        for member in self.members() {
            for other in Self::networks().into_iter().filter(|n| *n != member.name) {
                member
                    .wait_for_after(0, &established(other), WAIT)
                    .unwrap_or_else(|e| panic!("the federation did not form: {e}"));
            }
        }
    }

    /// Starts the sender's traffic.
    pub fn go(&mut self) {
        self.sender.tell("go");
    }

    /// Stops the traffic, waits until the last accepted message to each
    /// peer has arrived (one connection keeps order, so every earlier one
    /// that will ever arrive has arrived too) and returns a stream per peer.
    /// The sender stays up.
    pub fn settle(&mut self) -> Vec<Stream> {
        let mark = self.sender.mark();
        self.sender.tell("pause");
        self.sender
            .wait_for_after(mark, "paused", WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        for peer in &self.peers {
            let last = ledger::sends(&self.sender, &peer.name)
                .iter()
                .filter(|s| s.accepted)
                .map(|s| s.seq)
                .max();
            let Some(last) = last else { continue };
            let deadline = Instant::now() + WAIT;
            while !ledger::arrivals(peer).iter().any(|&(seq, _)| seq >= last) {
                assert!(
                    Instant::now() < deadline,
                    "{}: #{last}, the last message sent to it, never arrived (sent once its link was back)",
                    peer.name
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.peers
            .iter()
            .map(|peer| ledger::stream(&self.sender, peer, &peer.name))
            .collect()
    }

    /// [`Cluster::settle`], then stops the sender.
    pub fn finish(&mut self) -> Vec<Stream> {
        let streams = self.settle();
        self.stop_sender();
        streams
    }

    /// Tells the sender to stop and waits for it to exit: the time it took
    /// (its shutdown included).
    pub fn stop_sender(&mut self) -> Duration {
        self.sender.tell("stop");
        self.sender
            .wait_exit(WAIT)
            .unwrap_or_else(|e| panic!("the sender did not stop cleanly: {e}"))
    }

    /// The bound on an eviction after a cut: 3 heartbeat intervals + 10 %.
    pub fn eviction_bound(&self) -> Duration {
        self.settings.heartbeat * 33 / 10
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_config(dir: &Path, name: &str, toml: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).expect("write a config file");
    path.to_string_lossy().into_owned()
}

fn peer_toml(name: &str, net: &Topology, discovery: &str, settings: &Settings) -> String {
    format!(
        "network_id = \"{name}\"\n\
         bind_address = \"0.0.0.0\"\n\
         bind_port = {BRIDGE_PORT}\n\
         advertise_address = \"{addr}\"\n\
         discovery_endpoints = [\"{discovery}\"]\n\
         discovery_refresh_ms = 250\n\
         heartbeat_interval_ms = {heartbeat}\n\
         workers = 2\n\
         {delivery}\n\
         [reconnect]\n\
         initial_delay_ms = {first}\n\
         max_delay_ms = {max}\n\
         max_attempts = 1000\n",
        addr = net.host(name).addr,
        heartbeat = settings.heartbeat.as_millis(),
        delivery = settings.delivery.config_toml(),
        first = FIRST_DELAY.as_millis(),
        max = MAX_DELAY.as_millis(),
    )
}

/// The log line of a new connection with `network`.
pub fn established(network: &str) -> String {
    format!("Established connection with network: {network} (")
}

/// How a connection ended, from the log of one side.
#[derive(Clone, Debug)]
pub struct Ended {
    /// Log time, ms since the Unix epoch.
    pub at: u64,
    /// Evicted for silence (rather than closed or failed).
    pub evicted: bool,
    pub line: String,
}

/// Waits for `member`'s log to say, after `mark`, that its connection to
/// `other` ended.
pub fn wait_ended(member: &NsProc, mark: usize, other: &str, timeout: Duration) -> Ended {
    let evicted = format!("Evicted connection to network: {other} (");
    let lost = format!("Lost connection to network: {other} (");
    let line = member
        .wait_for_line(mark, timeout, |l| l.contains(&evicted) || l.contains(&lost))
        .unwrap_or_else(|tail| {
            panic!(
                "{}: its connection to {other} did not end within {timeout:?}; last lines:\n{tail}",
                member.name
            )
        });
    Ended {
        at: log_ms(&line).expect("a timestamped line"),
        evicted: line.contains(&evicted),
        line,
    }
}

/// Waits for `member`'s log to say, after `mark`, that it is connected to
/// `other` again; the log time.
pub fn wait_established(member: &NsProc, mark: usize, other: &str, timeout: Duration) -> u64 {
    let line = member
        .wait_for_after(mark, &established(other), timeout)
        .unwrap_or_else(|e| panic!("{e}"));
    log_ms(&line).expect("a timestamped line")
}

/// Lines after `mark` in which `member` reports any connection ending.
pub fn endings_after(member: &NsProc, mark: usize) -> Vec<String> {
    let mut lines = member.lines_after(mark, "Evicted connection to network: ");
    lines.extend(member.lines_after(mark, "Lost connection to network: "));
    lines
}
