//! Faults on real network links between simulated hosts. Each scenario
//! makes a network namespace per host, joined through a bridge in a
//! namespace of its own: `reflow-discovery` on one host, `reflow-peer` on
//! four (`alpha`, `beta`, `gamma`, `delta`), each bound to `0.0.0.0` and
//! advertising its host's address, and a traffic source (network `sender`)
//! on the last, sending numbered messages to every peer's recorder. Then it
//! breaks links the way networks break, where no FIN or RST ever tells a
//! peer: a link down (a pulled cable) for less and for more than the
//! eviction window, a partition, one direction dropped, a slow link, the
//! discovery host cut off; and ten cycles of faults to see memory and
//! threads stay flat.
//!
//! Checked: evictions within 3 heartbeat intervals + 10 % of the cut;
//! a dropped connection's threads gone within one write timeout of its end
//! (none stuck in a socket write); the link back within one backoff step
//! of the heal; every message accounted for under the delivery mode; memory
//! and threads flat. Figures are printed (docs/load-and-faults.md).
//!
//! Needs root, `ip` (iproute2) and `setpriv` (util-linux); without them
//! every scenario is reported ignored with the reason. No address of the
//! hosts' /24 is ever used from the machine's own namespace.

mod common;
mod multihost_support;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use multihost_support::cluster::{
    CLOSE_TIMEOUT, CONNECT_TIMEOUT, Cluster, Ended, MAX_DELAY, PEERS, SENDER, Settings, WAIT, endings_after,
    wait_ended, wait_established,
};
use multihost_support::ledger::{self, Delivery, Stream, Window};
use multihost_support::netns::{self, Applied};
use multihost_support::procs::{self, ThreadWatch, Watched};
use multihost_support::role;
use multihost_support::suite::{self, Scenario};

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "without_root_the_suite_says_why_it_skipped",
        run: without_root_the_suite_says_why_it_skipped,
    },
    Scenario {
        name: "namespaces_go_with_a_killed_test",
        run: namespaces_go_with_a_killed_test,
    },
    Scenario {
        name: "link_cut_shorter_than_the_eviction_window",
        run: link_cut_shorter_than_the_eviction_window,
    },
    Scenario {
        name: "link_down_longer_than_the_eviction_window",
        run: link_down_longer_than_the_eviction_window,
    },
    Scenario {
        name: "partition_of_one_host_healed",
        run: partition_of_one_host_healed,
    },
    Scenario {
        name: "partition_of_one_host_healed_acknowledged",
        run: partition_of_one_host_healed_acknowledged,
    },
    Scenario {
        name: "link_down_with_acknowledged_delivery_loses_nothing",
        run: link_down_with_acknowledged_delivery_loses_nothing,
    },
    Scenario {
        name: "frames_from_one_host_dropped",
        run: frames_from_one_host_dropped,
    },
    Scenario {
        name: "frames_from_one_host_dropped_acknowledged",
        run: frames_from_one_host_dropped_acknowledged,
    },
    Scenario {
        name: "frames_to_one_host_dropped",
        run: frames_to_one_host_dropped,
    },
    Scenario {
        name: "frames_to_one_host_dropped_acknowledged",
        run: frames_to_one_host_dropped_acknowledged,
    },
    Scenario {
        name: "link_shaped_to_a_low_bandwidth",
        run: link_shaped_to_a_low_bandwidth,
    },
    Scenario {
        name: "link_shaped_to_a_low_bandwidth_acknowledged",
        run: link_shaped_to_a_low_bandwidth_acknowledged,
    },
    Scenario {
        name: "shutdown_with_a_saturated_link",
        run: shutdown_with_a_saturated_link,
    },
    Scenario {
        name: "discovery_host_cut_off",
        run: discovery_host_cut_off,
    },
    Scenario {
        name: "discovery_host_cut_off_acknowledged",
        run: discovery_host_cut_off_acknowledged,
    },
    Scenario {
        name: "ten_fault_cycles_keep_memory_and_threads_flat",
        run: ten_fault_cycles_keep_memory_and_threads_flat,
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(role::FLAG) {
        return role::main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some(netns::HOLD_FLAG) {
        return netns::hold_main();
    }
    suite::run(&args, SCENARIOS)
}

/// Slack for a loaded machine on the time a dropped connection's threads
/// take to go, on top of one write timeout.
const THREADS_GONE_SLACK: Duration = Duration::from_millis(500);
/// Slack for a loaded machine on the reconnection bound (the handshake,
/// the log line).
const RELINK_SLACK: Duration = Duration::from_secs(1);

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// One backoff step after the heal: the dial in flight at the heal ends by
/// its connect deadline at the latest, and the next comes within one
/// ceiling (at the cap by then).
fn relink_bound() -> Duration {
    CONNECT_TIMEOUT + MAX_DELAY + RELINK_SLACK
}

/// Every member's current line count.
fn marks(c: &Cluster) -> BTreeMap<String, usize> {
    c.members().map(|m| (m.name.clone(), m.mark())).collect()
}

/// Waits until every peer's recorder has logged `n` more messages than it has now.
fn wait_flowing(c: &Cluster, n: usize) {
    for peer in &c.peers {
        let before = ledger::arrivals(peer).len();
        common::harness::wait_until(WAIT, Duration::from_millis(20), || {
            let now = ledger::arrivals(peer).len();
            (now >= before + n).then_some(()).ok_or(format!(
                "{}: {} messages arrived, waiting for {n}",
                peer.name,
                now - before
            ))
        })
        .unwrap_or_else(|e| {
            // Enough to tell a link that never came up from sends refused
            // or stuck, should it ever happen again.
            let sends = ledger::sends(&c.sender, &peer.name);
            let accepted = sends.iter().filter(|s| s.accepted).count();
            let first_refusal = c
                .sender
                .lines_after(0, &format!("tx {} ", peer.name))
                .into_iter()
                .find(|l| l.contains(" refused "))
                .unwrap_or_default();
            panic!(
                "traffic does not flow: {e}\n\
                 sends to {}: {accepted} accepted, {} refused (first: {first_refusal})\n\
                 the sender's last log lines:\n{}\n{}'s last log lines:\n{}",
                peer.name,
                sends.len() - accepted,
                c.sender.tail_without(30, &["tx "]),
                peer.name,
                peer.tail(20)
            )
        });
    }
}

/// One side's view of a link that a fault broke.
struct Ending {
    observer: String,
    other: String,
    ended: Ended,
}

/// Waits until every link of `host` has ended on both sides.
fn wait_cut_off(c: &Cluster, host: &str, marks: &BTreeMap<String, usize>) -> Vec<Ending> {
    let mut ends = Vec::new();
    for m in c.members().filter(|m| m.name != host) {
        ends.push(Ending {
            observer: m.name.clone(),
            other: host.to_string(),
            ended: wait_ended(m, marks[&m.name], host, WAIT),
        });
        ends.push(Ending {
            observer: host.to_string(),
            other: m.name.clone(),
            ended: wait_ended(c.member(host), marks[host], &m.name, WAIT),
        });
    }
    ends
}

/// A side that hears nothing from the cut on evicts within 3 intervals +
/// 10 % of the cut, and not before 2 intervals (its last byte came at most
/// one interval before the cut). Returns the delays in ms.
fn check_silence_eviction(c: &Cluster, end: &Ending, cut: Applied) -> u64 {
    let beat = ms(c.settings.heartbeat);
    let bound = ms(c.eviction_bound());
    let delay = end.ended.at.saturating_sub(cut.at);
    assert!(
        end.ended.evicted,
        "{} should have evicted {}, not lost it otherwise: {}",
        end.observer, end.other, end.ended.line
    );
    assert!(
        delay <= bound,
        "{} evicted {} {delay} ms after the cut, more than 3 heartbeats + 10 % ({bound} ms)",
        end.observer,
        end.other
    );
    assert!(
        delay + 1 >= 2 * beat,
        "{} evicted {} {delay} ms after the cut, before 2 heartbeat intervals of silence could have passed",
        end.observer,
        end.other
    );
    delay
}

/// The reader and writer of each ended connection are gone within one
/// write timeout (the heartbeat interval) of its end: no thread stays in a
/// socket write on a dead link. Waits for it, then reads when each was
/// last seen from `watch`. Returns the longest delay in ms.
fn check_threads_gone(c: &Cluster, ends: &[Ending], watch: ThreadWatch) -> (u64, Watched) {
    let bound = c.settings.heartbeat + THREADS_GONE_SLACK;
    let latest_end = ends.iter().map(|e| e.ended.at).max().unwrap_or(0);
    let until = latest_end + ms(bound);
    for end in ends {
        let names = session_threads(&end.other);
        let left = Duration::from_millis(until.saturating_sub(procs::now_ms()));
        if let Err(still) = procs::wait_threads_gone(c.member(&end.observer).pid(), &names, left) {
            panic!(
                "{}: threads {still:?} of its connection to {} still there {} ms after it ended",
                end.observer,
                end.other,
                procs::now_ms() - end.ended.at
            );
        }
    }
    let watched = watch.finish();
    let mut longest = 0;
    for end in ends {
        for name in session_threads(&end.other) {
            let seen = watched
                .last_seen
                .get(&(end.observer.clone(), name.clone()))
                .copied()
                .unwrap_or(0);
            let after = seen.saturating_sub(end.ended.at);
            assert!(
                after <= ms(bound),
                "{}: {name} was still there {after} ms after its connection to {} ended (bound {} ms)",
                end.observer,
                end.other,
                ms(bound)
            );
            longest = longest.max(after);
        }
    }
    (longest, watched)
}

/// The names the kernel keeps (15 bytes) of a connection's reader and writer.
fn session_threads(network: &str) -> Vec<String> {
    ["bridge-writer-", "bridge-reader-"]
        .iter()
        .map(|prefix| format!("{prefix}{network}").chars().take(15).collect())
        .collect()
}

fn watch_threads(c: &Cluster) -> ThreadWatch {
    let processes = c.members().map(|m| (m.name.clone(), m.pid())).collect();
    ThreadWatch::start(processes, c.sender.pid())
}

/// Waits until every link of `host` is back on both sides; checks each
/// within one backoff step of the heal. Returns the delays (ms after the
/// heal, per other network) and when the sender had its link back.
fn wait_relinked(
    c: &Cluster,
    host: &str,
    marks: &BTreeMap<String, usize>,
    heal: Applied,
) -> (BTreeMap<String, u64>, u64) {
    let bound = ms(relink_bound());
    let mut back = BTreeMap::new();
    let mut sender_back = 0;
    for m in c.members().filter(|m| m.name != host) {
        let here = wait_established(m, marks[&m.name], host, WAIT);
        let there = wait_established(c.member(host), marks[host], &m.name, WAIT);
        if m.name == SENDER {
            sender_back = here;
        }
        let delay = here.max(there).saturating_sub(heal.at);
        assert!(
            delay <= bound,
            "{host} and {} linked again {delay} ms after the heal, more than one backoff step ({bound} ms)",
            m.name
        );
        back.insert(m.name.clone(), delay);
    }
    if host == SENDER {
        sender_back = back.values().map(|d| heal.at + d).max().unwrap_or(0);
    }
    (back, sender_back)
}

/// Checks every stream under the cluster's delivery mode; `windows` maps a
/// peer to where its losses may lie. Prints a line per stream.
fn check_streams(c: &Cluster, streams: &[Stream], windows: &BTreeMap<String, Vec<Window>>) {
    println!("  messages ({}):", c.settings.delivery.name());
    for stream in streams {
        let allowed = windows.get(&stream.target).map_or(&[][..], Vec::as_slice);
        let figures = ledger::check(c.settings.delivery, stream, allowed)
            .unwrap_or_else(|e| panic!("{} delivery broken: {e}", c.settings.delivery.name()));
        println!("    sender -> {}: {}", stream.target, figures.summary());
    }
}

/// The stream to `target` as it stands (the sender still running).
fn stream_so_far(c: &Cluster, target: &str) -> Stream {
    ledger::stream(&c.sender, c.member(target), target)
}

fn stream<'a>(streams: &'a [Stream], target: &str) -> &'a Stream {
    streams
        .iter()
        .find(|s| s.target == target)
        .unwrap_or_else(|| panic!("no stream to {target}"))
}

/// Asserts that nobody logged a connection ending after `marks`, except
/// connections with `except`.
fn assert_no_endings(c: &Cluster, marks: &BTreeMap<String, usize>, except: Option<&str>) {
    for m in c.members() {
        if Some(m.name.as_str()) == except {
            continue;
        }
        let unexpected: Vec<String> = endings_after(m, marks[&m.name])
            .into_iter()
            .filter(|l| except.is_none_or(|x| !l.contains(&format!("network: {x} ("))))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{}: a connection ended that the fault did not touch: {unexpected:?}\n{}",
            m.name,
            context(c)
        );
    }
}

/// The recent log lines of every member but the traffic's, for a failure message.
fn context(c: &Cluster) -> String {
    c.members()
        .map(|m| format!("--- {}:\n{}", m.name, m.tail_without(25, &["recorder.in", "tx "])))
        .collect::<Vec<_>>()
        .join("\n")
}

fn print_delays(label: &str, delays: impl IntoIterator<Item = u64>) {
    let mut delays: Vec<u64> = delays.into_iter().collect();
    delays.sort_unstable();
    let listed: Vec<String> = delays.iter().map(u64::to_string).collect();
    println!("  {label}: {} ms", listed.join(", "));
}

/// The longest time between two arrivals at a recorder from `from` on.
fn longest_gap(stream: &Stream, from: u64) -> u64 {
    let times: Vec<u64> = stream
        .arrivals
        .iter()
        .map(|&(_, at)| at)
        .filter(|&at| at >= from)
        .collect();
    times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
}

/// The suite run as an unprivileged user (`nobody`, through `setpriv`):
/// without `REFLOW_MULTIHOST_REQUIRED` it reports every scenario ignored
/// with the reason and succeeds; with it, it fails with the reason.
fn without_root_the_suite_says_why_it_skipped() {
    // A copy anyone may run: the build directory may not be open to nobody.
    let dir = std::env::temp_dir().join(format!("rfmh-noroot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for the copy");
    let exe = dir.join("multihost");
    std::fs::copy(std::env::current_exe().expect("this test binary"), &exe).expect("copy the test binary");
    let open = |path: &std::path::Path| {
        let anyone = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(path, anyone).expect("chmod 755");
    };
    open(&dir);
    open(&exe);
    let run = |required: bool| {
        let mut command = std::process::Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&exe)
            .arg("link_cut_shorter_than_the_eviction_window")
            .env_remove(suite::REQUIRED);
        if required {
            command.env(suite::REQUIRED, "1");
        }
        command.output().expect("run the suite as nobody")
    };
    let skipped = run(false);
    let required = run(true);
    let _ = std::fs::remove_dir_all(&dir);
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let why = "creating network namespaces needs root";
    assert!(skipped.status.success(), "{}", text(&skipped));
    assert!(
        text(&skipped).contains(&format!("multihost: skipped: {why}"))
            && text(&skipped).contains("1 ignored"),
        "{}",
        text(&skipped)
    );
    assert_eq!(required.status.code(), Some(101), "{}", text(&required));
    assert!(text(&required).contains(why), "{}", text(&required));
    println!(
        "  as nobody: \"multihost: skipped: {why} (effective uid 65534)\"; with {} set it fails",
        suite::REQUIRED
    );
}

/// A process that made hosts is killed with SIGKILL (no `Drop`, no
/// unwinding): its namespaces and scratch directory are gone soon after,
/// removed by the topology's watchdog rather than left to the next run.
fn namespaces_go_with_a_killed_test() {
    let mut child = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .arg(netns::HOLD_FLAG)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start a process that makes hosts");
    let mut name = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("piped")),
        &mut name,
    )
    .expect("its run name");
    let name = name.trim().to_string();
    assert!(name.starts_with(netns::PREFIX), "not a run name: {name:?}");
    let scratch = std::env::temp_dir().join(&name);
    let made = netns::namespaces_of(&name);
    assert_eq!(made.len(), 2, "the held host and the switch: {made:?}");
    assert!(scratch.is_dir(), "no scratch directory {}", scratch.display());
    let killed = std::time::Instant::now();
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    common::harness::wait_until(WAIT, Duration::from_millis(20), || {
        let left = netns::namespaces_of(&name);
        (left.is_empty() && !scratch.exists())
            .then_some(())
            .ok_or(format!(
                "left after the kill: {left:?}, scratch {}",
                scratch.exists()
            ))
    })
    .unwrap_or_else(|e| panic!("a killed test's hosts stayed: {e}"));
    println!(
        "  a test killed with SIGKILL: its {} namespaces and scratch directory gone {} ms after the kill",
        made.len(),
        killed.elapsed().as_millis()
    );
}

/// The switch drops every frame of beta's link, both ways, for half a
/// heartbeat interval (a cut by carrier loss would last longer than the
/// command: see docs/load-and-faults.md).
fn link_cut_shorter_than_the_eviction_window() {
    let mut c = Cluster::start(Settings::default());
    let beat = c.settings.heartbeat;
    c.go();
    wait_flowing(&c, 20);
    let marks = marks(&c);
    let cut = beat / 2;
    let down = c.net.isolate("beta");
    // The fault's length, not a wait for something to happen.
    std::thread::sleep(cut);
    let up = c.net.rejoin("beta");
    // A negative check needs its whole window: an eviction would come
    // within the eviction bound of the cut; watch one interval longer.
    std::thread::sleep(c.eviction_bound() + beat);
    assert_no_endings(&c, &marks, None);
    wait_flowing(&c, 20);
    let streams = c.finish();
    let gap = longest_gap(stream(&streams, "beta"), down.at - ms(beat));
    println!(
        "  beta's link cut for {} ms (commands took {} and {} ms): no connection ended anywhere; \
         beta's recorder waited {gap} ms between two messages (TCP resent what the cut swallowed)",
        up.at - down.at,
        down.took.as_millis(),
        up.took.as_millis()
    );
    assert!(
        gap + ms(c.settings.period) >= ms(cut),
        "the cut did not stop the traffic to beta (longest gap {gap} ms)"
    );
    check_streams(&c, &streams, &BTreeMap::new());
}

/// A long cut of `host`'s link (taken down, or its switch port disabled):
/// every link of `host` evicted on both sides within the bound, their
/// threads gone, the links back within one backoff step of the heal.
/// Returns the sender's loss window for `host`.
fn long_cut(c: &Cluster, host: &str, cut: impl Fn() -> Applied, heal: impl Fn() -> Applied) -> Window {
    let marks = marks(c);
    let watch = watch_threads(c);
    let down = cut();
    let ends = wait_cut_off(c, host, &marks);
    let delays: Vec<u64> = ends.iter().map(|e| check_silence_eviction(c, e, down)).collect();
    let (gone, watched) = check_threads_gone(c, &ends, watch);
    assert_no_endings(c, &marks, Some(host));
    let marks = self::marks(c);
    let up = heal();
    let (back, sender_back) = wait_relinked(c, host, &marks, up);
    print_delays(
        &format!(
            "evictions after the cut (bound {} ms), both sides of {} links",
            ms(c.eviction_bound()),
            ends.len() / 2
        ),
        delays,
    );
    println!(
        "  reader and writer threads of each evicted connection last seen {gone} ms after its eviction \
         (bound {} ms)",
        ms(c.settings.heartbeat + THREADS_GONE_SLACK)
    );
    let writer = session_threads(host)[0].clone();
    if host != SENDER {
        report_blocked_writer(&watched, &writer);
    }
    println!(
        "  healed {} ms after the cut; links back after (bound {} ms): {back:?}",
        up.at - down.at,
        ms(relink_bound())
    );
    Window {
        from: down.at - ms(c.settings.heartbeat),
        until: sender_back + 1,
    }
}

/// Whether the sender's writer toward the cut host was seen blocked in a
/// socket write (its send buffer full) before the eviction ended it.
fn report_blocked_writer(watched: &Watched, writer: &str) {
    let samples = watched.blocked_in_write.get(writer).copied().unwrap_or(0);
    if procs::stacks_readable() {
        println!(
            "  the sender's {writer} was seen blocked in a socket write in {samples} samples (10 ms apart)"
        );
    } else {
        println!("  (this kernel shows no thread stacks: blocked writes not observed)");
    }
}

fn link_down_longer_than_the_eviction_window() {
    // Padded messages fill gamma's socket buffers during the cut, so the
    // sender's writer blocks in a write until the eviction ends it.
    let mut c = Cluster::start(Settings {
        padded: vec![("gamma", 4096)],
        ..Settings::default()
    });
    c.go();
    wait_flowing(&c, 20);
    let window = long_cut(
        &c,
        "gamma",
        || c.net.link_down("gamma"),
        || c.net.link_up("gamma"),
    );
    wait_flowing(&c, 20);
    let streams = c.finish();
    check_streams(
        &c,
        &streams,
        &BTreeMap::from([("gamma".to_string(), vec![window])]),
    );
}

/// The long cut again, with every peer in acknowledged mode: each message
/// sent while gamma's link was down waits in the sender's outbox, is
/// replayed when the link is back, and arrives exactly once, in order.
fn link_down_with_acknowledged_delivery_loses_nothing() {
    let mut c = Cluster::start(Settings {
        delivery: Delivery::Acknowledged,
        ..Settings::default()
    });
    c.go();
    wait_flowing(&c, 20);
    let window = long_cut(
        &c,
        "gamma",
        || c.net.link_down("gamma"),
        || c.net.link_up("gamma"),
    );
    wait_flowing(&c, 20);
    let streams = c.finish();
    let during = stream(&streams, "gamma")
        .sends
        .iter()
        .filter(|s| s.accepted && (window.from..window.until).contains(&s.at))
        .count();
    println!("  {during} messages to gamma were sent while its link was down");
    assert!(during > 0, "nothing was sent during the cut: this proves nothing");
    check_streams(
        &c,
        &streams,
        &BTreeMap::from([("gamma".to_string(), vec![window])]),
    );
}

fn partition_of_one_host_healed() {
    partition_of_one_host(Delivery::AtMostOnce);
}

fn partition_of_one_host_healed_acknowledged() {
    partition_of_one_host(Delivery::Acknowledged);
}

fn partition_of_one_host(delivery: Delivery) {
    let mut c = Cluster::start(Settings {
        delivery,
        ..Settings::default()
    });
    c.go();
    wait_flowing(&c, 20);
    let before = marks(&c);
    let window = long_cut(&c, "delta", || c.net.isolate("delta"), || c.net.rejoin("delta"));
    wait_flowing(&c, 20);
    // The rest kept talking: no other link ended, nothing else was lost.
    assert_no_endings(&c, &before, Some("delta"));
    let streams = c.finish();
    check_streams(
        &c,
        &streams,
        &BTreeMap::from([("delta".to_string(), vec![window])]),
    );
}

/// One direction of `host`'s traffic dropped: the side that hears nothing
/// evicts within the bound; the other side still hears its peer until that
/// peer's TCP stalls or it evicts, and ends within the bound after that.
fn one_way_drop(host: &str, toward_host: bool, delivery: Delivery) {
    let mut c = Cluster::start(Settings {
        delivery,
        ..Settings::default()
    });
    c.go();
    wait_flowing(&c, 20);
    let marks = marks(&c);
    let watch = watch_threads(&c);
    // When the drop took effect for each other host's link with `host`
    // (frames to `host` are dropped by a command on each other host).
    let cuts: BTreeMap<String, Applied> = if toward_host {
        c.net.drop_to(host)
    } else {
        let cut = c.net.drop_from(host);
        c.members().map(|m| (m.name.clone(), cut)).collect()
    };
    let ends = wait_cut_off(&c, host, &marks);
    let bound = ms(c.eviction_bound());
    let (deaf, heard): (Vec<&Ending>, Vec<&Ending>) =
        ends.iter().partition(|e| (e.observer == host) == toward_host);
    let mut deaf_delays = Vec::new();
    for end in &deaf {
        let other_host = if end.observer == host {
            &end.other
        } else {
            &end.observer
        };
        deaf_delays.push(check_silence_eviction(&c, end, cuts[other_host]));
    }
    let mut heard_delays = Vec::new();
    for end in &heard {
        let peer_evicted = deaf
            .iter()
            .find(|d| d.observer == end.other && d.other == end.observer)
            .map(|d| d.ended.at)
            .expect("the other side's eviction");
        let delay = end.ended.at.saturating_sub(peer_evicted);
        assert!(
            delay <= bound,
            "{} ended its link to {} {delay} ms after {} evicted it (bound {bound} ms): {}",
            end.observer,
            end.other,
            end.other,
            end.ended.line
        );
        heard_delays.push(delay);
    }
    let (gone, _) = check_threads_gone(&c, &ends, watch);
    assert_no_endings(&c, &marks, Some(host));
    let marks = self::marks(&c);
    let first_cut = cuts.values().map(|a| a.at).min().unwrap_or(0);
    let heal = if toward_host {
        c.net.heal_to(host)
    } else {
        let heal = c.net.heal_from(host);
        c.members().map(|m| (m.name.clone(), heal)).collect()
    };
    // The links are back within one backoff step of the last repair.
    let last_heal = *heal.values().max_by_key(|a| a.at).expect("a repair");
    let (back, sender_back) = wait_relinked(&c, host, &marks, last_heal);
    let way = if toward_host { "to" } else { "from" };
    print_delays(
        &format!(
            "frames {way} {host} dropped: evictions by the side that heard nothing (bound {bound} ms after the cut)"
        ),
        deaf_delays,
    );
    print_delays(
        &format!("the other side ended its link after its peer's eviction (bound {bound} ms)"),
        heard_delays,
    );
    println!("  threads of every ended connection last seen {gone} ms after its end");
    println!(
        "  healed {} ms after the cut; links back after (bound {} ms): {back:?}",
        last_heal.at - first_cut,
        ms(relink_bound())
    );
    wait_flowing(&c, 20);
    let streams = c.finish();
    let window = Window {
        from: first_cut - ms(c.settings.heartbeat),
        until: sender_back + 1,
    };
    check_streams(&c, &streams, &BTreeMap::from([(host.to_string(), vec![window])]));
}

fn frames_from_one_host_dropped() {
    one_way_drop("beta", false, Delivery::AtMostOnce);
}

fn frames_from_one_host_dropped_acknowledged() {
    one_way_drop("beta", false, Delivery::Acknowledged);
}

fn frames_to_one_host_dropped() {
    one_way_drop("gamma", true, Delivery::AtMostOnce);
}

fn frames_to_one_host_dropped_acknowledged() {
    one_way_drop("gamma", true, Delivery::Acknowledged);
}

/// The shaped link's rate, and how long it stays shaped.
const SHAPED_KBIT: u32 = 256;
const SHAPED_FOR: Duration = Duration::from_secs(6);
const SHAPED_PAD: usize = 1024;

fn link_shaped_to_a_low_bandwidth() {
    shaped_link(Delivery::AtMostOnce);
}

fn link_shaped_to_a_low_bandwidth_acknowledged() {
    shaped_link(Delivery::Acknowledged);
}

fn shaped_link(delivery: Delivery) {
    let mut c = Cluster::start(Settings {
        padded: vec![("alpha", SHAPED_PAD)],
        delivery,
        ..Settings::default()
    });
    c.go();
    wait_flowing(&c, 20);
    let marks = marks(&c);
    let watch = watch_threads(&c);
    let shaped = c.net.shape("alpha", SHAPED_KBIT, SENDER);
    // The fault's length.
    std::thread::sleep(SHAPED_FOR);
    let watched = watch.finish();
    println!(
        "  alpha's recorder: messages at most {} ms apart while shaped",
        longest_gap(&stream_so_far(&c, "alpha"), shaped.at)
    );
    // Bytes kept crossing: nobody evicted anybody.
    assert_no_endings(&c, &marks, None);
    // The link was as slow as asked: what reached alpha's recorder in the
    // shaped seconds (after the first, while queues filled) fits the rate.
    let from = shaped.at + 1000;
    let until = shaped.at + ms(SHAPED_FOR);
    let arrived = ledger::arrivals(&c.peers[0])
        .iter()
        .filter(|&&(_, at)| (from..until).contains(&at))
        .count();
    let bytes_per_s = (arrived * (SHAPED_PAD + 8)) as f64 / ((until - from) as f64 / 1000.0);
    let gap = longest_gap(&stream_so_far(&c, "alpha"), shaped.at);
    let link = f64::from(SHAPED_KBIT) * 1000.0 / 8.0;
    let offered = (SHAPED_PAD + 8) as f64 * 1000.0 / c.settings.period.as_millis() as f64;
    println!(
        "  alpha's link shaped to {SHAPED_KBIT} kbit/s ({link:.0} B/s) for {} s, offered {offered:.0} B/s: \
         alpha received {bytes_per_s:.0} B/s of payload, at most {gap} ms apart; no connection ended",
        SHAPED_FOR.as_secs()
    );
    assert!(
        bytes_per_s <= link * 1.1 && bytes_per_s >= link * 0.3,
        "alpha received {bytes_per_s:.0} B/s through a {link:.0} B/s link"
    );
    let writer = session_threads("alpha")[0].clone();
    report_blocked_writer(&watched, &writer);
    if procs::stacks_readable() {
        assert!(
            watched.blocked_in_write.contains_key(&writer),
            "the sender's writer to alpha never waited in a socket write: the link was not saturated"
        );
    }
    // What was queued behind the slow link drains once it is fast again;
    // the connection never dropped, so nothing may be lost.
    c.net.unshape("alpha");
    let streams = c.finish();
    check_streams(&c, &streams, &BTreeMap::new());
}

/// The sender shuts down while its writer to alpha is blocked in a socket
/// write on a saturated slow link: the writer notices within its write
/// timeout (the heartbeat interval), so the shutdown takes the close
/// timeout at most, plus one write timeout.
fn shutdown_with_a_saturated_link() {
    let mut c = Cluster::start(Settings {
        padded: vec![("alpha", SHAPED_PAD)],
        ..Settings::default()
    });
    c.net.shape("alpha", SHAPED_KBIT, SENDER);
    c.go();
    let writer = session_threads("alpha")[0].clone();
    if procs::stacks_readable() {
        common::harness::wait_until(WAIT, Duration::from_millis(5), || {
            procs::threads(c.sender.pid())
                .iter()
                .any(|t| t.name == writer && procs::blocked_in_socket_write(c.sender.pid(), &t.tid))
                .then_some(())
                .ok_or("the sender's writer to alpha is not blocked in a socket write".to_string())
        })
        .unwrap_or_else(|e| panic!("the link did not saturate: {e}"));
    } else {
        wait_flowing(&c, 200);
    }
    let took = c.stop_sender();
    let bound = CLOSE_TIMEOUT + c.settings.heartbeat + THREADS_GONE_SLACK;
    let lost = ledger::reported_losses(&c.sender, "alpha").1.unwrap_or(0);
    println!(
        "  the sender stopped {} ms after being told to, its writer to alpha blocked in a socket write \
         (bound {} ms); it reported {lost} queued messages to alpha lost with the connection",
        took.as_millis(),
        bound.as_millis()
    );
    assert!(
        took <= bound,
        "the sender took {} ms to shut down with a saturated link (bound {} ms)",
        took.as_millis(),
        bound.as_millis()
    );
}

/// The discovery host's switch port is disabled for longer than a
/// discovery request's timeout (5 s), so every peer notices.
const DISCOVERY_CUT: Duration = Duration::from_secs(6);

fn discovery_host_cut_off() {
    discovery_cut_off(Delivery::AtMostOnce);
}

fn discovery_host_cut_off_acknowledged() {
    discovery_cut_off(Delivery::Acknowledged);
}

fn discovery_cut_off(delivery: Delivery) {
    let mut c = Cluster::start(Settings {
        delivery,
        ..Settings::default()
    });
    c.go();
    wait_flowing(&c, 20);
    let marks = marks(&c);
    let cut = c.net.isolate("discovery");
    for m in c.members() {
        m.wait_for_after(marks[&m.name], "registration failed", DISCOVERY_CUT + WAIT)
            .unwrap_or_else(|e| panic!("the outage went unnoticed: {e}"));
    }
    let left = Duration::from_millis((cut.at + ms(DISCOVERY_CUT)).saturating_sub(procs::now_ms()));
    // The rest of the fault's length.
    std::thread::sleep(left);
    let heal_marks = self::marks(&c);
    let heal = c.net.rejoin("discovery");
    let mut registered = Vec::new();
    for m in c.members() {
        let line = m
            .wait_for_after(heal_marks[&m.name], "Registered with discovery endpoint", WAIT)
            .unwrap_or_else(|e| panic!("no registration after the heal: {e}"));
        registered.push(procs::log_ms(&line).unwrap_or(heal.at) - heal.at);
    }
    wait_flowing(&c, 20);
    // Peers kept talking all along: no link ended, nothing lost or refused.
    assert_no_endings(&c, &marks, None);
    println!(
        "  discovery cut off for {} ms: every peer logged failed registrations, no link between peers ended",
        heal.at - cut.at
    );
    print_delays("registered again after the heal", registered);
    let streams = c.finish();
    for s in &streams {
        assert!(
            s.sends.iter().all(|send| send.accepted),
            "{}: a send was refused while discovery was away",
            s.target
        );
    }
    check_streams(&c, &streams, &BTreeMap::new());
}

/// Fault cycles; `REFLOW_MULTIHOST_CYCLES` sets another number (at least 2).
const CYCLES: usize = 10;
/// Growth of a process's resident memory allowed from the end of cycle 1
/// (cycle 0 warms allocators and buffers up) to any later one. A
/// connection's buffers and queue alone take more than 128 KiB: one leaked
/// per cycle would pass it. Measured: 0.4 to 0.9 MiB over cycles 1 to 9,
/// then less and less (docs/load-and-faults.md).
const RSS_GROWTH_KIB: u64 = 1536;

fn ten_fault_cycles_keep_memory_and_threads_flat() {
    let mut c = Cluster::start(Settings::default());
    c.go();
    wait_flowing(&c, 20);
    let pids: Vec<(String, u32)> = c.members().map(|m| (m.name.clone(), m.pid())).collect();
    let discovery = c.discovery.pid();
    let baseline: BTreeMap<String, usize> = pids
        .iter()
        .map(|(name, pid)| (name.clone(), procs::threads(*pid).len()))
        .collect();
    let mut windows: BTreeMap<String, Vec<Window>> = BTreeMap::new();
    let mut rss: Vec<BTreeMap<String, u64>> = Vec::new();
    let mut evictions = Vec::new();
    let mut relinks = Vec::new();
    let cycles = std::env::var("REFLOW_MULTIHOST_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .map_or(CYCLES, |n: usize| n.max(2));
    for cycle in 0..cycles {
        let host = PEERS[cycle % PEERS.len()];
        let marks = marks(&c);
        let down = c.net.link_down(host);
        let ends = wait_cut_off(&c, host, &marks);
        for end in &ends {
            evictions.push(check_silence_eviction(&c, end, down));
        }
        let heal_marks = self::marks(&c);
        let up = c.net.link_up(host);
        let (back, sender_back) = wait_relinked(&c, host, &heal_marks, up);
        relinks.extend(back.values().copied());
        windows.entry(host.to_string()).or_default().push(Window {
            from: down.at - ms(c.settings.heartbeat),
            until: sender_back + 1,
        });
        wait_flowing(&c, 10);
        // Threads come back to their count before the faults once the
        // dials that failed during the cut have ended (connect deadline).
        for (name, pid) in &pids {
            common::harness::wait_until(CONNECT_TIMEOUT + WAIT, Duration::from_millis(20), || {
                let now = procs::threads(*pid).len();
                (now == baseline[name]).then_some(()).ok_or(format!(
                    "{name}: {now} threads, {} before the faults",
                    baseline[name]
                ))
            })
            .unwrap_or_else(|e| panic!("cycle {cycle}: threads not flat: {e}"));
        }
        let sample: BTreeMap<String, u64> = pids
            .iter()
            .chain([&("discovery".to_string(), discovery)])
            .map(|(name, pid)| (name.clone(), procs::rss_kib(*pid).unwrap_or(0)))
            .collect();
        println!("  cycle {cycle}: {host} cut off; resident memory (KiB) {sample:?}");
        rss.push(sample);
    }
    println!("  threads after every cycle as before the faults: {baseline:?}");
    print_delays("evictions after the cut, every cycle", evictions);
    print_delays("links back after the heal, every cycle", relinks);
    for name in rss[1].keys() {
        let first = rss[1][name];
        let peak = rss.iter().skip(1).map(|s| s[name]).max().unwrap_or(first);
        println!(
            "  {name}: resident memory {} KiB after cycle 0, {first} KiB after cycle 1, peak {peak} KiB after",
            rss[0][name]
        );
        assert!(
            peak <= first + RSS_GROWTH_KIB,
            "{name}: resident memory grew from {first} to {peak} KiB over {cycles} fault cycles \
             (bound: {RSS_GROWTH_KIB} KiB)"
        );
    }
    let streams = c.finish();
    check_streams(&c, &streams, &windows);
}
