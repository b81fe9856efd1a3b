//! The durable outbox journal: appends per second in each sync mode, what a
//! log costs on disk, and how long an open takes, beside plain file writes of
//! the same bytes measured in the same run.
//!
//!     cargo run --release --example bench_journal [-- --quick] [--runs N] [--dir DIR]
//!
//! - **append**: one thread appends 100-byte messages for one network, each
//!   acknowledged 5 messages later in batches of 10 (the steady state of a
//!   sender whose receiver keeps up, compactions included), in the default
//!   mode (survives `kill -9`) and with `fdatasync` per append (survives a
//!   power loss). Baselines: `write(2)` of a record-sized buffer per message,
//!   and the same plus `fdatasync`.
//! - **4 threads, always**: four senders for four networks at once with
//!   `fdatasync` per append: the flushes run outside the journal's lock, so
//!   the kernel can merge them.
//! - **disk**: bytes per stored message, the largest log during a stream of
//!   100,000 appends with acknowledgements, and the longest acknowledgement
//!   (one that compacted the log; appends wait for it).
//! - **open**: reading back a log of 100,000 unacknowledged messages.
//!
//! Each figure is measured `--runs` times (default 3), interleaved, and given
//! as the median and the range. The journal is crate-internal: this program
//! compiles its source files into itself. `--dir` picks where the files go
//! (default: the system's temp dir); flush costs depend on that disk.

/// The journal's source files, compiled into this program.
#[path = "../src/bridge"]
mod bridge {
    #[allow(dead_code)]
    pub(crate) mod journal;
}

/// What the journal's source file reaches for in the crate it is part of.
mod names {
    pub(crate) use reflow_distributed::names::escaped;
}

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bridge::journal::{self, Journal, Options, Sync};

type BoxError = Box<dyn std::error::Error>;

const HELP: &str = "\
bench_journal: appends per second and bytes on disk of the durable outbox journal.

Usage: cargo run --release --example bench_journal [-- OPTIONS]

Options:
  --quick     Fewer messages (a run takes well under a minute).
  --runs N    Measure each figure N times, interleaved (default 3).
  --dir DIR   Where to put the files (default: the system's temp dir).
  --help      Print this text.
";

const MESSAGE_BYTES: usize = 100;

struct Counts {
    fast: u64,
    synced: u64,
    stream: u64,
    open: u64,
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}");
        return Ok(());
    }
    let mut quick = false;
    let mut runs = 3;
    let mut base = std::env::temp_dir();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--runs" => {
                runs = rest
                    .next()
                    .ok_or("--runs needs a value")?
                    .parse::<usize>()?
                    .max(1)
            }
            "--dir" => base = PathBuf::from(rest.next().ok_or("--dir needs a value")?),
            _ => {
                eprint!("unknown argument {arg:?}\n\n{HELP}");
                std::process::exit(2);
            }
        }
    }
    let counts = if quick {
        Counts {
            fast: 50_000,
            synced: 300,
            stream: 100_000,
            open: 20_000,
        }
    } else {
        Counts {
            fast: 500_000,
            synced: 3_000,
            stream: 100_000,
            open: 100_000,
        }
    };
    let scratch = Scratch::new(&base)?;
    println!(
        "bench_journal: {MESSAGE_BYTES}-byte messages, {runs} runs, files under {}\n",
        scratch.0.display()
    );

    let rows: [(&str, u64, Bench); 6] = [
        (
            "write(2) per message (baseline)",
            counts.fast,
            Bench::RawWrite { sync: false },
        ),
        (
            "journal, default (survives kill -9)",
            counts.fast,
            Bench::Journal(Sync::OnKillOnly),
        ),
        (
            "write(2) + fdatasync (baseline)",
            counts.synced,
            Bench::RawWrite { sync: true },
        ),
        (
            "journal, always (survives power loss)",
            counts.synced,
            Bench::Journal(Sync::Always),
        ),
        (
            "journal, always, 4 threads (total)",
            counts.synced,
            Bench::Threads(4),
        ),
        ("journal, open (messages read back)", counts.open, Bench::Open),
    ];
    let mut figures: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    for run in 0..runs {
        for (i, (_, count, bench)) in rows.iter().enumerate() {
            let dir = scratch.0.join(format!("run{run}-{i}"));
            figures[i].push(bench.per_second(&dir, *count)?);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("| what | messages | per second: median | range |");
    println!("|---|---:|---:|---|");
    for ((name, count, _), runs) in rows.iter().zip(&mut figures) {
        runs.sort_by(f64::total_cmp);
        println!(
            "| {name} | {count} | {:.0} | {:.0}–{:.0} |",
            runs[runs.len() / 2],
            runs[0],
            runs[runs.len() - 1]
        );
    }
    let ratio = |a: usize, b: usize| figures[a][figures[a].len() / 2] / figures[b][figures[b].len() / 2];
    println!(
        "\njournal / write(2): {:.2} (default mode), {:.2} (always); always / default: 1/{:.0}",
        ratio(1, 0),
        ratio(3, 2),
        ratio(1, 3)
    );

    let disk = disk_use(&scratch.0.join("disk"), counts.stream)?;
    println!(
        "\ndisk: {} bytes per stored {MESSAGE_BYTES}-byte message (framing and body); largest log over \
         {} appends with acknowledgements: {} bytes (compaction from {} bytes); after reopening: {} \
         bytes; longest acknowledge call (one that compacted): {:.2} ms",
        disk.record,
        counts.stream,
        disk.largest,
        journal::DEFAULT_COMPACT_MIN_BYTES,
        disk.reopened,
        disk.longest_acknowledge.as_secs_f64() * 1000.0
    );
    Ok(())
}

#[derive(Clone, Copy)]
enum Bench {
    RawWrite { sync: bool },
    Journal(Sync),
    Threads(usize),
    Open,
}

impl Bench {
    /// Messages per second over `count` messages in a new directory `dir`.
    fn per_second(self, dir: &Path, count: u64) -> Result<f64, BoxError> {
        std::fs::create_dir_all(dir)?;
        let message = vec![0x5a; MESSAGE_BYTES];
        let seconds = match self {
            Bench::RawWrite { sync } => {
                let record = vec![0x5a; record_bytes(dir)? as usize];
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("raw"))?;
                let start = Instant::now();
                for _ in 0..count {
                    (&file).write_all(&record)?;
                    if sync {
                        file.sync_data()?;
                    }
                }
                start.elapsed().as_secs_f64()
            }
            Bench::Journal(sync) => {
                let options = Options {
                    sync,
                    ..Options::default()
                };
                let (journal, _) = Journal::open_with(&dir.join("journal"), options)?;
                let start = Instant::now();
                stream(&journal, "alpha", count, &message)?;
                start.elapsed().as_secs_f64()
            }
            Bench::Threads(threads) => {
                let options = Options {
                    sync: Sync::Always,
                    ..Options::default()
                };
                let (journal, _) = Journal::open_with(&dir.join("journal"), options)?;
                let per_thread = count / threads as u64;
                let start = Instant::now();
                std::thread::scope(|scope| -> Result<(), String> {
                    let handles: Vec<_> = (0..threads)
                        .map(|i| {
                            let (journal, message) = (&journal, &message);
                            scope.spawn(move || {
                                stream(journal, &format!("n{i}"), per_thread, message)
                                    .map_err(|e| e.to_string())
                            })
                        })
                        .collect();
                    for handle in handles {
                        handle.join().map_err(|_| "a sender panicked".to_string())??;
                    }
                    Ok(())
                })?;
                return Ok((per_thread * threads as u64) as f64 / start.elapsed().as_secs_f64());
            }
            Bench::Open => {
                let path = dir.join("journal");
                {
                    let (journal, _) = Journal::open(&path)?;
                    for seq in 1..=count {
                        journal.append("alpha", seq, "recorder", &message)?;
                    }
                }
                let start = Instant::now();
                let (_journal, recovered) = Journal::open(&path)?;
                let seconds = start.elapsed().as_secs_f64();
                if recovered.entries.len() as u64 != count {
                    return Err(format!("read back {} of {count}", recovered.entries.len()).into());
                }
                seconds
            }
        };
        Ok(count as f64 / seconds)
    }
}

/// Appends `count` messages for `network`, acknowledging up to 5 behind
/// after every 10th.
fn stream(journal: &Journal, network: &str, count: u64, message: &[u8]) -> Result<(), journal::JournalError> {
    for seq in 1..=count {
        journal.append(network, seq, "recorder", message)?;
        if seq % 10 == 0 {
            journal.acknowledge(network, seq - 5)?;
        }
    }
    Ok(())
}

/// Bytes one stored message takes in the log.
fn record_bytes(dir: &Path) -> Result<u64, BoxError> {
    let (journal, _) = Journal::open(&dir.join("measure"))?;
    let before = journal.disk_bytes();
    journal.append("alpha", 1, "recorder", &[0x5a; MESSAGE_BYTES])?;
    Ok(journal.disk_bytes() - before)
}

/// Bytes per record, the largest log during a stream, the log after a
/// reopen, and the longest acknowledgement (a compaction, which appends wait
/// for).
fn disk_use(dir: &Path, count: u64) -> Result<DiskUse, BoxError> {
    std::fs::create_dir_all(dir)?;
    let record = record_bytes(dir)?;
    let path = dir.join("journal");
    let (mut largest, mut longest) = (0, Duration::ZERO);
    {
        let (journal, _) = Journal::open(&path)?;
        let message = [0x5a; MESSAGE_BYTES];
        for seq in 1..=count {
            journal.append("alpha", seq, "recorder", &message)?;
            if seq % 10 == 0 {
                let start = Instant::now();
                journal.acknowledge("alpha", seq - 5)?;
                longest = longest.max(start.elapsed());
            }
            largest = largest.max(journal.disk_bytes());
        }
    }
    let (journal, _) = Journal::open(&path)?;
    Ok(DiskUse {
        record,
        largest,
        reopened: journal.disk_bytes(),
        longest_acknowledge: longest,
    })
}

struct DiskUse {
    record: u64,
    largest: u64,
    reopened: u64,
    /// The longest `acknowledge` call: one that compacted.
    longest_acknowledge: Duration,
}

/// A directory for this run's files, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(base: &Path) -> Result<Scratch, BoxError> {
        let path = base.join(format!("reflow-bench-journal-{}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        File::open(&path)?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
