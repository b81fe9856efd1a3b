use std::collections::BTreeSet;
use std::io::{BufRead, BufReader as StdBufReader};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;

/// A directory under the system's temp dir, unique to this test, removed on
/// drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "reflow-journal-{label}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        TempDir(std::env::temp_dir().join(name))
    }

    fn log(&self) -> PathBuf {
        self.0.join(LOG_FILE)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// 100 bytes that say which message they are.
fn payload(network: &str, seq: u64) -> Vec<u8> {
    let mut bytes = format!("{network}#{seq}:").into_bytes();
    bytes.resize(100, b'.');
    bytes
}

fn seqs(recovered: &Recovered, network: &str) -> Vec<u64> {
    recovered
        .entries
        .iter()
        .filter(|entry| entry.network == network)
        .map(|entry| entry.seq)
        .collect()
}

fn small_compactions() -> Options {
    Options {
        compact_min_bytes: 4096,
        ..Options::default()
    }
}

#[test]
fn a_journal_is_send_and_sync() {
    fn check<T: Send + std::marker::Sync>() {}
    check::<Journal>();
}

#[test]
fn a_new_journal_is_empty_with_a_random_incarnation() {
    let (dir_a, dir_b) = (TempDir::new("new-a"), TempDir::new("new-b"));
    let (_a, recovered_a) = Journal::open(&dir_a.0).unwrap();
    let (_b, recovered_b) = Journal::open(&dir_b.0).unwrap();
    assert!(recovered_a.entries.is_empty());
    assert!(recovered_a.next_seq.is_empty());
    assert_ne!(recovered_a.incarnation, 0);
    assert_ne!(recovered_a.incarnation, recovered_b.incarnation);
}

#[test]
fn round_trip_recovers_the_unacknowledged_entries_incarnation_and_next_seq() {
    let dir = TempDir::new("round-trip");
    let (journal, first) = Journal::open(&dir.0).unwrap();
    for seq in 1..=5 {
        journal
            .append("alpha", seq, "recorder", &payload("alpha", seq))
            .unwrap();
    }
    for seq in 1..=3 {
        journal
            .append("beta", seq, "sink", &payload("beta", seq))
            .unwrap();
    }
    for seq in 1..=2 {
        journal
            .append("gamma", seq, "sink", &payload("gamma", seq))
            .unwrap();
    }
    journal.acknowledge("alpha", 3).unwrap();
    journal.acknowledge("gamma", 2).unwrap();
    drop(journal);

    let (journal, recovered) = Journal::open(&dir.0).unwrap();
    assert_eq!(recovered.incarnation, first.incarnation);
    let expected_next: HashMap<String, u64> = [("alpha", 6), ("beta", 4), ("gamma", 3)]
        .into_iter()
        .map(|(name, next)| (name.to_string(), next))
        .collect();
    assert_eq!(recovered.next_seq, expected_next);
    let expected: Vec<Stored> = [("alpha", 4, "recorder"), ("alpha", 5, "recorder")]
        .into_iter()
        .chain((1..=3).map(|seq| ("beta", seq, "sink")))
        .map(|(network, seq, target)| Stored {
            network: network.to_string(),
            seq,
            target_actor: target.to_string(),
            bytes: payload(network, seq),
        })
        .collect();
    assert_eq!(recovered.entries, expected);

    // The recovered counters go on where they stopped.
    journal.append("gamma", 3, "sink", &payload("gamma", 3)).unwrap();
    drop(journal);
    let (_journal, again) = Journal::open(&dir.0).unwrap();
    assert_eq!(seqs(&again, "gamma"), vec![3]);
    assert_eq!(again.next_seq["gamma"], 4);
}

#[test]
fn compaction_keeps_the_live_entries_and_every_counter() {
    let dir = TempDir::new("compaction");
    let (journal, first) = Journal::open_with(&dir.0, small_compactions()).unwrap();
    for seq in 1..=100 {
        journal.append("alpha", seq, "a", &payload("alpha", seq)).unwrap();
        journal.append("beta", seq, "b", &payload("beta", seq)).unwrap();
    }
    let before = journal.disk_bytes();
    journal.acknowledge("beta", 100).unwrap();
    journal.acknowledge("alpha", 97).unwrap();
    let after = journal.disk_bytes();
    assert!(after < before / 10, "no compaction: {before} -> {after} bytes");
    // Appends after a compaction land in the new log.
    journal.append("alpha", 101, "a", &payload("alpha", 101)).unwrap();
    drop(journal);

    let (_journal, recovered) = Journal::open_with(&dir.0, small_compactions()).unwrap();
    assert_eq!(recovered.incarnation, first.incarnation);
    assert_eq!(seqs(&recovered, "alpha"), vec![98, 99, 100, 101]);
    assert_eq!(seqs(&recovered, "beta"), Vec::<u64>::new());
    assert_eq!(recovered.next_seq["alpha"], 102);
    assert_eq!(
        recovered.next_seq["beta"], 101,
        "a fully acknowledged network keeps its counter"
    );
    assert!(
        recovered
            .entries
            .iter()
            .all(|e| e.bytes == payload(&e.network, e.seq))
    );
    assert!(!dir.0.join(COMPACT_FILE).exists());
}

#[test]
fn a_failed_compaction_keeps_the_log_and_is_retried_later() {
    let dir = TempDir::new("compaction-fails");
    let (journal, _) = Journal::open_with(&dir.0, small_compactions()).unwrap();
    // A directory where the new log would go: creating it fails.
    let blocker = dir.0.join(COMPACT_FILE);
    fs::create_dir(&blocker).unwrap();
    let mut seq = 0;
    let mut stream = |count: u64| {
        for _ in 0..count {
            seq += 1;
            journal.append("alpha", seq, "a", &payload("alpha", seq)).unwrap();
            journal.acknowledge("alpha", seq - 1).unwrap();
        }
    };
    stream(100);
    let grown = journal.disk_bytes();
    assert!(grown > 8192, "compacted although it could not: {grown} bytes");
    fs::remove_dir(&blocker).unwrap();
    stream(100);
    assert!(
        journal.disk_bytes() < 4096,
        "never retried: {} bytes",
        journal.disk_bytes()
    );
    drop(journal);
    let (_journal, recovered) = Journal::open(&dir.0).unwrap();
    assert_eq!(seqs(&recovered, "alpha"), vec![200]);
}

#[test]
fn seqs_must_not_go_back_and_odd_acknowledgements_are_harmless() {
    let dir = TempDir::new("order");
    let (journal, _) = Journal::open(&dir.0).unwrap();
    journal.append("alpha", 1, "a", b"one").unwrap();
    journal.append("alpha", 2, "a", b"two").unwrap();
    let err = journal.append("alpha", 2, "a", b"again").unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::OutOfOrder {
                seq: 2,
                next_seq: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "seq 2 for network alpha is below its next free seq 3"
    );
    assert!(journal.append("alpha", u64::MAX, "a", b"last").is_err());

    journal.acknowledge("nobody", 10).unwrap();
    journal.acknowledge("alpha", 1_000).unwrap(); // counts up to seq 2
    journal.acknowledge("alpha", 1).unwrap(); // behind: nothing to do
    journal.append("alpha", 3, "a", b"three").unwrap();
    drop(journal);
    let (_journal, recovered) = Journal::open(&dir.0).unwrap();
    assert_eq!(seqs(&recovered, "alpha"), vec![3]);
    assert!(!recovered.next_seq.contains_key("nobody"));
}

#[test]
fn always_sync_round_trips() {
    let dir = TempDir::new("always");
    let options = Options {
        sync: Sync::Always,
        ..Options::default()
    };
    let (journal, _) = Journal::open_with(&dir.0, options).unwrap();
    for seq in 1..=20 {
        journal.append("alpha", seq, "a", &payload("alpha", seq)).unwrap();
    }
    journal.acknowledge("alpha", 10).unwrap();
    drop(journal);
    let (_journal, recovered) = Journal::open_with(&dir.0, options).unwrap();
    assert_eq!(seqs(&recovered, "alpha"), (11..=20).collect::<Vec<_>>());
}

#[test]
fn a_100_byte_message_takes_under_140_bytes_on_disk() {
    let dir = TempDir::new("size");
    let (journal, _) = Journal::open(&dir.0).unwrap();
    let empty = journal.disk_bytes();
    journal
        .append("alpha", 1, "recorder", &payload("alpha", 1))
        .unwrap();
    let record = journal.disk_bytes() - empty;
    assert!((100..140).contains(&record), "a record of {record} bytes");
}

/// A journal with three messages for alpha, and the log's length before
/// and after the last one.
fn journal_with_a_last_record(dir: &TempDir) -> (u64, u64) {
    let (journal, _) = Journal::open(&dir.0).unwrap();
    journal.append("alpha", 1, "a", &payload("alpha", 1)).unwrap();
    journal.append("alpha", 2, "a", &payload("alpha", 2)).unwrap();
    let before = journal.disk_bytes();
    journal.append("alpha", 3, "a", &payload("alpha", 3)).unwrap();
    (before, journal.disk_bytes())
}

#[test]
fn a_torn_last_record_is_cut_off_at_every_offset() {
    let template = TempDir::new("torn-template");
    let (before, after) = journal_with_a_last_record(&template);
    let whole = fs::read(template.log()).unwrap();
    assert_eq!(whole.len() as u64, after);
    for cut in before..after {
        let dir = TempDir::new("torn");
        fs::create_dir_all(&dir.0).unwrap();
        fs::write(dir.log(), &whole[..cut as usize]).unwrap();
        let (journal, recovered) = Journal::open(&dir.0).unwrap();
        assert_eq!(seqs(&recovered, "alpha"), vec![1, 2], "cut at {cut}");
        assert_eq!(recovered.next_seq["alpha"], 3, "cut at {cut}");
        assert_eq!(journal.torn_bytes(), cut - before, "cut at {cut}");
        assert_eq!(journal.disk_bytes(), before, "cut at {cut}");
        // The torn bytes are gone, so a new record is not hidden behind them.
        journal.append("alpha", 3, "a", b"again").unwrap();
        drop(journal);
        let (_journal, again) = Journal::open(&dir.0).unwrap();
        assert_eq!(seqs(&again, "alpha"), vec![1, 2, 3], "cut at {cut}");
    }
}

#[test]
fn a_damaged_byte_in_the_last_record_discards_only_that_record() {
    let template = TempDir::new("flip-template");
    let (before, after) = journal_with_a_last_record(&template);
    let whole = fs::read(template.log()).unwrap();
    for position in before..after {
        for flip in [0x01, 0x80, 0xff] {
            let dir = TempDir::new("flip");
            fs::create_dir_all(&dir.0).unwrap();
            let mut bytes = whole.clone();
            bytes[position as usize] ^= flip;
            fs::write(dir.log(), &bytes).unwrap();
            let (journal, recovered) = Journal::open(&dir.0).unwrap();
            let at = format!("byte {position} ^ {flip:#x}");
            assert_eq!(seqs(&recovered, "alpha"), vec![1, 2], "{at}");
            assert_eq!(journal.torn_bytes(), after - before, "{at}");
        }
    }
}

#[test]
fn a_torn_tail_is_reported_at_warn() {
    let captured = capture_logs();
    let dir = TempDir::new("torn-warn");
    let (before, after) = journal_with_a_last_record(&dir);
    let file = OpenOptions::new().write(true).open(dir.log()).unwrap();
    file.set_len(after - 5).unwrap();
    drop(file);
    let (journal, _) = Journal::open(&dir.0).unwrap();
    assert_eq!(journal.torn_bytes(), after - 5 - before);
    if captured {
        let warnings = warnings_of_this_thread();
        let expected = format!("discarded {} bytes from offset {before}", after - 5 - before);
        assert!(
            warnings
                .iter()
                .any(|line| line.contains(&expected) && line.contains(LOG_FILE)),
            "{warnings:?}"
        );
    }
}

#[test]
fn a_log_cut_inside_its_header_starts_afresh_but_a_damaged_header_is_refused() {
    let template = TempDir::new("header-template");
    let (first_record, _) = {
        let (journal, _) = Journal::open(&template.0).unwrap();
        let header = journal.disk_bytes();
        journal.append("alpha", 1, "a", b"one").unwrap();
        (header, journal.disk_bytes())
    };
    let whole = fs::read(template.log()).unwrap();
    for cut in 1..first_record {
        let dir = TempDir::new("header-cut");
        fs::create_dir_all(&dir.0).unwrap();
        fs::write(dir.log(), &whole[..cut as usize]).unwrap();
        let (_journal, recovered) = Journal::open(&dir.0).unwrap();
        assert!(recovered.entries.is_empty(), "cut at {cut}");
    }
    let dir = TempDir::new("header-flip");
    fs::create_dir_all(&dir.0).unwrap();
    let mut bytes = whole.clone();
    bytes[first_record as usize - 1] ^= 0x40;
    fs::write(dir.log(), &bytes).unwrap();
    let err = Journal::open(&dir.0).unwrap_err();
    assert!(matches!(err, JournalError::Damaged { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&dir.log().display().to_string()) && text.contains("move it aside"),
        "{text}"
    );
    assert_eq!(
        fs::read(dir.log()).unwrap(),
        bytes,
        "a damaged log is left as it was"
    );

    let other = TempDir::new("not-a-journal");
    fs::create_dir_all(&other.0).unwrap();
    fs::write(
        other.log(),
        b"this is some other file, long enough to hold a header",
    )
    .unwrap();
    assert!(matches!(
        Journal::open(&other.0),
        Err(JournalError::Damaged { .. })
    ));
}

#[test]
fn a_second_open_of_a_locked_directory_fails_clearly() {
    let dir = TempDir::new("locked");
    let (journal, _) = Journal::open(&dir.0).unwrap();
    let err = Journal::open(&dir.0).unwrap_err();
    assert!(matches!(err, JournalError::Locked { .. }), "{err:?}");
    let text = err.to_string();
    let pid = format!("by process {}", std::process::id());
    assert!(
        text.contains(&dir.0.display().to_string()) && text.contains(&pid),
        "{text}"
    );
    drop(journal);
    Journal::open(&dir.0).expect("the lock goes with the journal");
}

#[test]
fn a_lock_held_for_moments_by_this_process_is_waited_for() {
    // A fork of this process (another thread spawning a program) holds a
    // copy of the lock's descriptor until its exec: here, a second handle
    // on the lock file, released after a moment.
    let dir = TempDir::new("forked");
    drop(Journal::open(&dir.0).unwrap());
    let held = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.0.join(LOCK_FILE))
        .unwrap();
    held.try_lock().unwrap();
    let release = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        drop(held);
    });
    Journal::open(&dir.0).expect("the lock is free once the fork lets go");
    release.join().unwrap();
}

#[test]
fn a_directory_that_cannot_be_created_gives_a_clear_error() {
    let dir = TempDir::new("uncreatable");
    fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("a-file");
    fs::write(&file, b"not a directory").unwrap();
    let wanted = file.join("outbox");
    let err = Journal::open(&wanted).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot create the outbox directory {}: ",
            wanted.display()
        )),
        "{text}"
    );
    assert!(text.contains("os error"), "{text}");
}

#[test]
fn disk_use_stays_bounded_under_a_steady_stream() {
    let dir = TempDir::new("bounded");
    let (journal, _) = Journal::open(&dir.0).unwrap();
    let message = payload("alpha", 0);
    let (mut largest, mut shrinks, mut last) = (0, 0, 0);
    for seq in 1..=100_000 {
        journal.append("alpha", seq, "recorder", &message).unwrap();
        if seq % 10 == 0 {
            journal.acknowledge("alpha", seq - 5).unwrap();
        }
        let now = journal.disk_bytes();
        largest = largest.max(now);
        shrinks += usize::from(now < last);
        last = now;
    }
    let bound = DEFAULT_COMPACT_MIN_BYTES + 16 * 1024;
    assert!(
        largest <= bound,
        "the log reached {largest} bytes (bound {bound})"
    );
    assert!(shrinks >= 5, "only {shrinks} compactions");
    drop(journal);
    let (_journal, recovered) = Journal::open(&dir.0).unwrap();
    assert_eq!(seqs(&recovered, "alpha"), (99_996..=100_000).collect::<Vec<_>>());
}

#[test]
fn appends_from_several_threads_are_all_kept() {
    let dir = TempDir::new("threads");
    let (journal, _) = Journal::open_with(&dir.0, small_compactions()).unwrap();
    let networks = ["n0", "n1", "n2", "n3"];
    thread::scope(|scope| {
        for network in networks {
            let journal = &journal;
            scope.spawn(move || {
                for seq in 1..=2_000 {
                    journal.append(network, seq, "a", &payload(network, seq)).unwrap();
                    if seq % 100 == 0 {
                        journal.acknowledge(network, seq - 50).unwrap();
                    }
                }
            });
        }
    });
    drop(journal);
    let (_journal, recovered) = Journal::open(&dir.0).unwrap();
    for network in networks {
        assert_eq!(seqs(&recovered, network), (1951..=2000).collect::<Vec<_>>());
    }
    assert!(
        recovered
            .entries
            .iter()
            .all(|e| e.bytes == payload(&e.network, e.seq))
    );
}

// ---- kill -9 at a random point -------------------------------------------

const CHILD_DIR: &str = "REFLOW_JOURNAL_CHILD_DIR";
const CHILD_TEST: &str = "bridge::journal::tests::kill9_child";
const CHILD_NETWORKS: [&str; 2] = ["alpha", "beta"];

/// The child of `a_kill9_at_a_random_point_loses_nothing_accepted`: appends
/// numbered messages for two networks from two threads, acknowledging some,
/// and prints each seq once `append` has returned Ok (and each
/// acknowledgement before it is made). Runs until killed, at most 60 s.
#[test]
#[ignore = "run by a_kill9_at_a_random_point_loses_nothing_accepted as its child"]
fn kill9_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let (journal, recovered) = Journal::open_with(Path::new(&dir), small_compactions()).unwrap();
    println!("incarnation {}", recovered.incarnation);
    let deadline = Instant::now() + Duration::from_secs(60);
    thread::scope(|scope| {
        for network in CHILD_NETWORKS {
            let (journal, first) = (&journal, recovered.next_seq.get(network).copied().unwrap_or(1));
            scope.spawn(move || {
                println!("first {network} {first}");
                let mut seq = first;
                while Instant::now() < deadline {
                    journal
                        .append(network, seq, "recorder", &payload(network, seq))
                        .unwrap();
                    println!("appended {network} {seq}");
                    if seq % 16 == 0 {
                        println!("acknowledging {network} {}", seq - 8);
                        journal.acknowledge(network, seq - 8).unwrap();
                    }
                    seq += 1;
                }
            });
        }
    });
}

/// What one child printed for one network.
#[derive(Default, Debug)]
struct Printed {
    first: Option<u64>,
    appended: BTreeSet<u64>,
    acknowledged: u64,
}

#[test]
fn a_kill9_at_a_random_point_loses_nothing_accepted() {
    let dir = TempDir::new("kill9");
    let mut incarnation = None;
    let mut next_seq: HashMap<String, u64> = HashMap::new();
    let mut total = 0;
    for round in 0..5 {
        let delay = Duration::from_millis(10 + getrandom::u64().unwrap() % 400);
        let (printed, child_incarnation) = run_and_kill_child(&dir.0, delay);
        let context = format!("round {round}, killed {delay:?} after its first append");
        assert_eq!(
            *incarnation.get_or_insert(child_incarnation),
            child_incarnation,
            "{context}"
        );

        let (_journal, recovered) = Journal::open(&dir.0).unwrap();
        assert_eq!(recovered.incarnation, child_incarnation, "{context}");
        for network in CHILD_NETWORKS {
            let printed = &printed[network];
            let context = format!("{context}, network {network}");
            // The child went on from the recovered counter of the round before
            // (a thread the kill came too early for printed nothing).
            let first = next_seq.get(network).copied().unwrap_or(1);
            assert!(
                printed.first.is_none_or(|printed| printed == first),
                "{context}: {printed:?}"
            );
            let recovered_seqs: BTreeSet<u64> = seqs(&recovered, network).into_iter().collect();
            let lost: Vec<u64> = printed
                .appended
                .iter()
                .filter(|&&seq| seq > printed.acknowledged && !recovered_seqs.contains(&seq))
                .copied()
                .collect();
            assert!(lost.is_empty(), "{context}: accepted but lost: {lost:?}");
            let last_printed = printed.appended.last().copied().unwrap_or(first - 1);
            // At most the one append the kill cut off before its seq was printed.
            assert!(
                recovered_seqs.last().is_none_or(|&last| last <= last_printed + 1),
                "{context}: recovered up to {:?}, printed up to {last_printed}",
                recovered_seqs.last()
            );
            let next = recovered.next_seq.get(network).copied().unwrap_or(1);
            assert!(next > last_printed, "{context}: next seq {next}");
            next_seq.insert(network.to_string(), next);
            total += printed.appended.len();
        }
        assert!(
            recovered
                .entries
                .iter()
                .all(|e| e.bytes == payload(&e.network, e.seq)),
            "{context}"
        );
    }
    assert!(total >= 100, "the children appended only {total} messages");
}

/// Runs the child until its first append, lets it go on for `delay`, kills
/// it with SIGKILL and returns what it printed per network and its
/// incarnation.
fn run_and_kill_child(dir: &Path, delay: Duration) -> (HashMap<&'static str, Printed>, u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            CHILD_TEST,
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = crossbeam_channel::unbounded();
    let reader = thread::spawn(move || {
        for line in StdBufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lines.iter().any(|line: &String| line.starts_with("appended ")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("the child appended nothing within 60 s: {lines:?}");
            }
        }
    }
    // The random point: how long the child runs is the point of the test.
    thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(lines_rx.try_iter());
    parse_child_lines(&lines)
}

fn parse_child_lines(lines: &[String]) -> (HashMap<&'static str, Printed>, u64) {
    let mut printed: HashMap<&'static str, Printed> = CHILD_NETWORKS
        .iter()
        .map(|&network| (network, Printed::default()))
        .collect();
    let mut incarnation = None;
    for line in lines {
        // The test harness may print its own text in front of the first line.
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            [.., "incarnation", value] => incarnation = value.parse().ok(),
            [.., what, network, seq] => {
                let (Some(entry), Ok(seq)) = (printed.get_mut(*network), seq.parse::<u64>()) else {
                    continue; // a line cut by the kill
                };
                match *what {
                    "first" => entry.first = Some(seq),
                    "appended" => {
                        entry.appended.insert(seq);
                    }
                    "acknowledging" => entry.acknowledged = entry.acknowledged.max(seq),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    (printed, incarnation.expect("the child printed its incarnation"))
}

// ---- captured log lines ----------------------------------------------------

struct Capture;

static CAPTURED: Mutex<Vec<(ThreadId, String)>> = Mutex::new(Vec::new());

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = (thread::current().id(), record.args().to_string());
            CAPTURED.lock().unwrap_or_else(PoisonError::into_inner).push(line);
        }
    }

    fn flush(&self) {}
}

/// Installs the capturing logger once; false if another logger was there
/// first (then log lines cannot be checked).
fn capture_logs() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let installed = log::set_logger(&Capture).is_ok();
        if installed {
            log::set_max_level(log::LevelFilter::Warn);
        }
        installed
    })
}

fn warnings_of_this_thread() -> Vec<String> {
    let me = thread::current().id();
    CAPTURED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(thread, _)| *thread == me)
        .map(|(_, line)| line.clone())
        .collect()
}
