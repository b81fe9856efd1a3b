//! Simulated hosts on one machine: a network namespace per host, each joined
//! by a veth pair to one bridge that lives in a namespace of its own (the
//! "switch"), and the faults the suite puts on those links. Everything is
//! done with iproute2 (`ip`, `bridge`, `tc`).
//!
//! Nothing is created in the machine's own namespace: each veth pair is made
//! with its two ends already in their namespaces, and the addresses of
//! [`SUBNET`] exist only inside the hosts. Namespace names are
//! `rfmh-<pid>-<start time>-<n>-<host>`: unique per run, and telling a later
//! run whether their owner is gone ([`sweep_stale`]).
//!
//! A test killed outright never runs its `Drop`: each topology has a
//! watchdog process ([`Watchdog`]) that removes its namespaces and scratch
//! directory the moment the test process ends, however it ends.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::procs::{now_ms, process_start_time};

/// Every namespace of this suite starts with it.
pub const PREFIX: &str = "rfmh-";
/// The hosts' private /24 (host `i` of a topology is `.{10 + i}`).
pub const SUBNET: [u8; 3] = [10, 254, 71];
/// The bridge inside the switch namespace.
const BRIDGE: &str = "br0";
/// A MAC address no host has: frames sent to it are lost in the switch.
const NOWHERE_MAC: &str = "02:00:00:00:00:01";

/// One simulated host: its namespace and its address on `eth0`.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub ns: String,
    pub addr: Ipv4Addr,
}

/// When a fault (or its repair) was applied: the wall clock (ms since the
/// Unix epoch) just before the command ran, and how long it took. A fault
/// is in effect somewhere within `at ..= at + took`; delays measured from
/// `at` are the longest they can be.
#[derive(Clone, Copy, Debug)]
pub struct Applied {
    pub at: u64,
    pub took: Duration,
}

/// The namespaces of one run: the hosts and the switch. Dropping it stops
/// whatever still runs inside them and removes them.
pub struct Topology {
    pub hosts: Vec<Host>,
    /// `rfmh-<pid>-<start time>-<n>`: what every namespace name starts with.
    pub name: String,
    switch: String,
    /// Namespaces made so far, removed on drop (also a partial set).
    created: Vec<String>,
    /// Cleans up if this process dies without dropping the topology.
    watchdog: Option<Watchdog>,
}

/// A shell that waits on a pipe from this process. The pipe's write end is
/// this process's alone (Rust opens pipes close-on-exec), so the shell reads
/// end-of-file exactly when this process has ended, killed or not, and then
/// kills what runs in the run's namespaces, removes them and the run's
/// scratch directory (`<temp dir>/<run name>`). A clean drop writes `keep`
/// first: the topology removed its namespaces itself, and the scratch
/// directory belongs to whoever made it.
struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

const WATCHDOG_SCRIPT: &str = r#"
run=$1 scratch=$2
trap '' INT TERM HUP
echo ready
if read -r word && [ "$word" = keep ]; then exit 0; fi
for ns in $(ip netns list | cut -d' ' -f1); do
    case $ns in
    "$run"-*)
        for pid in $(ip netns pids "$ns"); do kill -KILL "$pid"; done
        ip netns del "$ns"
        ;;
    esac
done
rm -rf "$scratch"
"#;

impl Watchdog {
    fn start(run_name: &str) -> Result<Watchdog, String> {
        let scratch = std::env::temp_dir().join(run_name);
        let mut child = Command::new("sh")
            .args(["-c", WATCHDOG_SCRIPT, "rfmh-watchdog", run_name])
            .arg(&scratch)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the namespaces' watchdog: {e}"))?;
        // Its signal traps are set once it says so: a Ctrl-C of the test
        // reaches the watchdog too, which must outlive the test to clean up.
        let mut ready = String::new();
        let stdout = child.stdout.take().expect("piped");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready)
            .map_err(|e| format!("the namespaces' watchdog: {e}"))?;
        if ready.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the namespaces' watchdog did not start".to_string());
        }
        let stdin = child.stdin.take();
        Ok(Watchdog { child, stdin })
    }

    /// Tells the watchdog that the topology was removed; it exits.
    fn stand_down(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"keep\n");
        }
        let _ = self.child.wait();
    }
}

/// The first argument that makes this binary [`hold_main`].
pub const HOLD_FLAG: &str = "--multihost-role-hold-topology";

/// Makes a one-host topology and its scratch directory, prints the run's
/// name, and waits to be killed: a scenario kills this process to see the
/// watchdog clean up after it.
pub fn hold_main() -> std::process::ExitCode {
    let topology = match Topology::create(&["held"]) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot make the hosts: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let _ = std::fs::create_dir_all(std::env::temp_dir().join(&topology.name));
    println!("{}", topology.name);
    let _ = std::io::stdout().flush();
    // Until killed, or until the test's pipe closes.
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut rest);
    std::process::ExitCode::SUCCESS
}

/// Names of this suite's namespaces that start with `run_name`.
pub fn namespaces_of(run_name: &str) -> Vec<String> {
    list_namespaces()
        .into_iter()
        .filter(|ns| ns.starts_with(run_name))
        .collect()
}

/// Why the suite cannot run here, if it cannot.
pub fn missing_prerequisite() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Some(format!(
            "creating network namespaces needs root (effective uid {uid})"
        ));
    }
    for (tool, version, package) in [
        ("ip", "-V", "iproute2"),
        ("bridge", "-V", "iproute2"),
        ("tc", "-V", "iproute2"),
        ("setpriv", "--version", "util-linux"),
        ("nice", "--version", "coreutils"),
    ] {
        if run(tool, &[version]).is_err() {
            return Some(format!("`{tool}` ({package}) is not installed"));
        }
    }
    let pid = std::process::id();
    let start = process_start_time(pid).unwrap_or(0);
    let probe = format!("{PREFIX}{pid}-{start}-probe");
    if let Err(e) = run("ip", &["netns", "add", &probe]) {
        return Some(format!("`ip netns add` does not work here: {e}"));
    }
    let _ = run("ip", &["netns", "del", &probe]);
    None
}

/// Removes the namespaces of earlier runs whose owner process is gone (a
/// test that was killed), after killing what still runs inside them, and
/// their scratch directories (`<temp dir>/rfmh-…`). Returns the namespaces.
pub fn sweep_stale() -> Vec<String> {
    let mut swept = Vec::new();
    for ns in list_namespaces() {
        if owner_is_gone(&ns) {
            remove_namespace(&ns);
            swept.push(ns);
        }
    }
    let scratch = std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten();
    for entry in scratch {
        if owner_is_gone(&entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    swept
}

/// Whether `name` is one of this suite's (`rfmh-<pid>-<start time>-…`) and
/// the process that made it has ended (a zombie has ended too).
fn owner_is_gone(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    let mut fields = rest.split('-');
    let (Some(Ok(pid)), Some(Ok(start))) = (
        fields.next().map(str::parse::<u32>),
        fields.next().map(str::parse::<u64>),
    ) else {
        return false;
    };
    process_start_time(pid) != Some(start)
}

impl Topology {
    /// Makes a namespace per host in `hosts` (host `i` gets address
    /// `SUBNET.{10 + i}`) and the switch, links them, and checks that every
    /// namespace, address and link is there before returning.
    pub fn create(hosts: &[&str]) -> Result<Topology, String> {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let pid = std::process::id();
        let start = process_start_time(pid).ok_or("cannot read this process's start time")?;
        let run_name = format!("{PREFIX}{pid}-{start}-{}", RUNS.fetch_add(1, Ordering::Relaxed));
        let mut topology = Topology {
            hosts: Vec::new(),
            name: run_name.clone(),
            switch: format!("{run_name}-switch"),
            created: Vec::new(),
            watchdog: Some(Watchdog::start(&run_name)?),
        };
        let switch = topology.switch.clone();
        topology.add_namespace(&switch)?;
        ip(&switch, &["link", "add", BRIDGE, "type", "bridge"])?;
        ip(&switch, &["link", "set", BRIDGE, "up"])?;
        for (i, name) in hosts.iter().enumerate() {
            let ns = format!("{run_name}-{name}");
            let [a, b, c] = SUBNET;
            let addr = Ipv4Addr::new(a, b, c, 10 + i as u8);
            topology.add_namespace(&ns)?;
            ip(&ns, &["link", "set", "lo", "up"])?;
            let port = port_name(name);
            ip(
                &ns,
                &[
                    "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &switch,
                ],
            )?;
            ip(&switch, &["link", "set", &port, "master", BRIDGE, "up"])?;
            ip(&ns, &["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ip(&ns, &["link", "set", "eth0", "up"])?;
            topology.hosts.push(Host {
                name: name.to_string(),
                ns,
                addr,
            });
        }
        topology.verify()?;
        Ok(topology)
    }

    fn add_namespace(&mut self, ns: &str) -> Result<(), String> {
        run("ip", &["netns", "add", ns])?;
        self.created.push(ns.to_string());
        Ok(())
    }

    /// Every namespace listed, every host's address on an `eth0` that is up
    /// (carrier included), every port on the bridge.
    fn verify(&self) -> Result<(), String> {
        let listed = list_namespaces();
        for ns in &self.created {
            if !listed.contains(ns) {
                return Err(format!("namespace {ns} was made but is not listed"));
            }
        }
        let ports = ip(&self.switch, &["-o", "link", "show", "master", BRIDGE])?;
        for host in &self.hosts {
            let addrs = ip(&host.ns, &["-4", "-o", "addr", "show", "dev", "eth0"])?;
            if !addrs.contains(&format!("inet {}/24", host.addr)) {
                return Err(format!(
                    "{}: no address {} on eth0: {addrs}",
                    host.name, host.addr
                ));
            }
            let link = ip(&host.ns, &["-o", "link", "show", "dev", "eth0"])?;
            if !link.contains("state UP") {
                return Err(format!("{}: eth0 is not up: {link}", host.name));
            }
            if !ports.contains(&format!("{}@", port_name(&host.name))) {
                return Err(format!("{}: its port is not on the bridge: {ports}", host.name));
            }
        }
        Ok(())
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// The link of `host` goes down at the switch: its `eth0` loses carrier,
    /// as when a cable is pulled. No FIN or RST crosses it.
    pub fn link_down(&self, host: &str) -> Applied {
        self.on_switch(&["link", "set", &port_name(host), "down"])
    }

    pub fn link_up(&self, host: &str) -> Applied {
        self.on_switch(&["link", "set", &port_name(host), "up"])
    }

    /// The switch stops forwarding to and from `host` (its port disabled);
    /// both ends keep carrier and see nothing: a partition.
    pub fn isolate(&self, host: &str) -> Applied {
        self.bridge_port_state(host, "0")
    }

    /// Forwarding again on the port of `host`.
    pub fn rejoin(&self, host: &str) -> Applied {
        self.bridge_port_state(host, "3")
    }

    fn bridge_port_state(&self, host: &str, state: &str) -> Applied {
        timed(|| {
            run(
                "bridge",
                &[
                    "-n",
                    &self.switch,
                    "link",
                    "set",
                    "dev",
                    &port_name(host),
                    "state",
                    state,
                ],
            )
            .map(|_| ())
        })
    }

    /// Frames from `host` to every other host are lost, the other way still
    /// works: `host` resolves every other address to a MAC address no host
    /// has (a permanent neighbour entry), so its frames leave and vanish in
    /// the switch.
    pub fn drop_from(&self, host: &str) -> Applied {
        let from = self.host(host);
        let lines: Vec<String> = self
            .others(host)
            .map(|o| {
                format!(
                    "neigh replace {} lladdr {NOWHERE_MAC} dev eth0 nud permanent",
                    o.addr
                )
            })
            .collect();
        timed(|| ip_batch(&from.ns, &lines))
    }

    /// Ends [`Topology::drop_from`]: the entries go, addresses are resolved again.
    pub fn heal_from(&self, host: &str) -> Applied {
        let from = self.host(host);
        let lines: Vec<String> = self
            .others(host)
            .map(|o| format!("neigh del {} dev eth0", o.addr))
            .collect();
        timed(|| ip_batch(&from.ns, &lines))
    }

    /// Frames from every other host to `host` are lost, the other way still
    /// works (the mirror of [`Topology::drop_from`]). Each other host's
    /// entry is made by a command of its own: when each took effect, by host.
    pub fn drop_to(&self, host: &str) -> BTreeMap<String, Applied> {
        let to = self.host(host).addr;
        let line = format!("neigh replace {to} lladdr {NOWHERE_MAC} dev eth0 nud permanent");
        self.others(host)
            .map(|o| {
                (
                    o.name.clone(),
                    timed(|| ip_batch(&o.ns, std::slice::from_ref(&line))),
                )
            })
            .collect()
    }

    /// Ends [`Topology::drop_to`]; when each host's entry went.
    pub fn heal_to(&self, host: &str) -> BTreeMap<String, Applied> {
        let to = self.host(host).addr;
        let line = format!("neigh del {to} dev eth0");
        self.others(host)
            .map(|o| {
                (
                    o.name.clone(),
                    timed(|| ip_batch(&o.ns, std::slice::from_ref(&line))),
                )
            })
            .collect()
    }

    /// Shapes the link of `host` to `kbit` kbit/s each way (the kernel here
    /// has no netem). Toward the host, an HTB class at that rate on the
    /// switch port, in which the traffic from `bulk_from` has a queue of its
    /// own (4 packets, dropped past that) and the rest another: one
    /// drop-tail queue shared with a bulk flow would drop the other peers'
    /// heartbeats too, and TCP's backoff would turn those drops into
    /// silences past the eviction window. From the host, a token bucket
    /// (`tc tbf`) on its `eth0`.
    pub fn shape(&self, host: &str, kbit: u32, bulk_from: &str) -> Applied {
        let ns = self.host(host).ns.clone();
        let bulk = format!("{}/32", self.host(bulk_from).addr);
        let port = port_name(host);
        let rate = format!("{kbit}kbit");
        let (bulk_rate, rest_rate) = (format!("{}kbit", kbit * 7 / 8), format!("{}kbit", kbit / 8));
        let sw = self.switch.as_str();
        timed(|| {
            let port = port.as_str();
            for args in [
                &[
                    "-n", sw, "qdisc", "replace", "dev", port, "root", "handle", "1:", "htb", "default", "2",
                ][..],
                &[
                    "-n", sw, "class", "add", "dev", port, "parent", "1:", "classid", "1:1", "htb", "rate",
                    &rate,
                ],
                &[
                    "-n", sw, "class", "add", "dev", port, "parent", "1:1", "classid", "1:2", "htb", "rate",
                    &rest_rate, "ceil", &rate,
                ],
                &[
                    "-n", sw, "class", "add", "dev", port, "parent", "1:1", "classid", "1:3", "htb", "rate",
                    &bulk_rate, "ceil", &rate,
                ],
                &[
                    "-n", sw, "qdisc", "add", "dev", port, "parent", "1:3", "pfifo", "limit", "4",
                ],
                &[
                    "-n", sw, "filter", "add", "dev", port, "parent", "1:", "protocol", "ip", "u32", "match",
                    "ip", "src", &bulk, "flowid", "1:3",
                ],
                &[
                    "-n", &ns, "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", &rate, "burst",
                    "16kb", "latency", "100ms",
                ],
            ] {
                run("tc", args)?;
            }
            Ok(())
        })
    }

    pub fn unshape(&self, host: &str) -> Applied {
        let ns = self.host(host).ns.clone();
        let port = port_name(host);
        timed(|| {
            run("tc", &["-n", &self.switch, "qdisc", "del", "dev", &port, "root"])?;
            run("tc", &["-n", &ns, "qdisc", "del", "dev", "eth0", "root"]).map(|_| ())
        })
    }

    fn others<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Host> + 'a {
        self.hosts.iter().filter(move |h| h.name != host)
    }

    fn on_switch(&self, args: &[&str]) -> Applied {
        timed(|| ip(&self.switch, args).map(|_| ()))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let listed = list_namespaces();
        for ns in self.created.iter().rev() {
            if listed.contains(ns) {
                remove_namespace(ns);
            }
        }
        let left: Vec<String> = list_namespaces()
            .into_iter()
            .filter(|ns| self.created.contains(ns))
            .collect();
        if !left.is_empty() {
            eprintln!("multihost: could not remove namespaces {left:?}");
        }
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.stand_down();
        }
    }
}

/// The switch port of `host` (names are per namespace, so they never clash
/// with another run's).
fn port_name(host: &str) -> String {
    format!("p-{host}")
}

/// Kills every process inside `ns`, then removes it.
fn remove_namespace(ns: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = run("kill", &["-KILL", pid]);
        }
    }
    let _ = run("ip", &["netns", "del", ns]);
}

fn list_namespaces() -> Vec<String> {
    run("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Runs a fault's command(s), panicking if they fail (the scenario cannot
/// go on without its fault), and says when.
fn timed(apply: impl FnOnce() -> Result<(), String>) -> Applied {
    let at = now_ms();
    let started = Instant::now();
    if let Err(e) = apply() {
        panic!("could not apply a fault: {e}");
    }
    Applied {
        at,
        took: started.elapsed(),
    }
}

/// `ip -n <ns> <args>`: its standard output.
fn ip(ns: &str, args: &[&str]) -> Result<String, String> {
    let all = [&["-n", ns][..], args].concat();
    run("ip", &all)
}

/// Several `ip` commands in one process (`ip -n <ns> -batch -`), so that
/// they take effect together.
fn ip_batch(ns: &str, lines: &[String]) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let text = lines.join("\n") + "\n";
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("ip -batch: {e}"))?;
    }
    let output = child.wait_with_output().map_err(|e| format!("ip -batch: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip -n {ns} -batch: {}: {}",
            lines.join("; "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs `program` with `args`: its standard output, or an error with its
/// standard error.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
