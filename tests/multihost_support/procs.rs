//! Processes inside a host's namespace, their log lines, and what `/proc`
//! says about them (memory, threads, where each thread waits).
//!
//! A process is started as `ip netns exec <ns> nice -n -10 setpriv
//! --pdeathsig KILL -- <program>`: each execs in place, so the pid is the
//! program's; the kernel kills it if this test process dies without
//! stopping it; and it runs ahead of the machine's other work (other test
//! suites, builds), whose scheduling delays would otherwise be measured as
//! the bridge's (the eviction bound leaves 50 ms past the rule's worst case).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Every line a process printed (standard output and error, in arrival order).
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    arrived: Condvar,
}

impl Lines {
    fn lock(&self) -> MutexGuard<'_, Vec<String>> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A process in a namespace; killed (and reaped) when dropped.
pub struct NsProc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Lines>,
    readers: Vec<JoinHandle<()>>,
}

impl NsProc {
    /// Starts `program args` in namespace `ns`, logging at info.
    pub fn spawn(ns: &str, name: &str, program: &Path, args: &[String]) -> NsProc {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "nice",
                "-n",
                "-10",
                "setpriv",
                "--pdeathsig",
                "KILL",
                "--",
            ])
            .arg(program)
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("REFLOW_AUTH_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        let lines = Arc::new(Lines::default());
        let outputs: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        let readers = outputs
            .into_iter()
            .map(|output| {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(output).lines().map_while(Result::ok) {
                        lines.lock().push(line);
                        lines.arrived.notify_all();
                    }
                })
            })
            .collect();
        NsProc {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many lines have arrived so far: a mark for the `*_after` calls.
    pub fn mark(&self) -> usize {
        self.lines.lock().len()
    }

    /// Waits for a line after `mark` that contains `needle`.
    pub fn wait_for_after(&self, mark: usize, needle: &str, timeout: Duration) -> Result<String, String> {
        self.wait_for_line(mark, timeout, |l| l.contains(needle))
            .map_err(|tail| {
                format!(
                    "{}: no line with {needle:?} within {timeout:?}; last lines:\n{tail}",
                    self.name
                )
            })
    }

    /// Waits for a line after `mark` that satisfies `wanted`; on timeout,
    /// the last lines as the error.
    pub fn wait_for_line(
        &self,
        mark: usize,
        timeout: Duration,
        mut wanted: impl FnMut(&str) -> bool,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lock();
        loop {
            if let Some(line) = lines.iter().skip(mark).find(|l| wanted(l)) {
                return Ok(line.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let start = lines.len().saturating_sub(30).max(mark);
                return Err(lines[start..].join("\n"));
            }
            lines = self
                .lines
                .arrived
                .wait_timeout(lines, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Lines after `mark` that contain `needle`.
    pub fn lines_after(&self, mark: usize, needle: &str) -> Vec<String> {
        self.lines
            .lock()
            .iter()
            .skip(mark)
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// The last `n` lines that do not contain `skip`, for failure messages.
    pub fn tail_without(&self, n: usize, skip: &[&str]) -> String {
        let lines = self.lines.lock();
        let kept: Vec<&String> = lines
            .iter()
            .filter(|l| !skip.iter().any(|s| l.contains(s)))
            .collect();
        kept[kept.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last `n` lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines.lock();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Writes one line to the process's standard input.
    pub fn tell(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("cannot write to {}: {e}", self.name));
    }

    /// Waits up to `timeout` for the process to exit by itself; the time it took.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => break,
                Ok(Some(status)) => {
                    self.join_readers();
                    return Err(format!("{} exited with {status}:\n{}", self.name, self.tail(30)));
                }
                Ok(None) if started.elapsed() < timeout => std::thread::sleep(Duration::from_millis(5)),
                Ok(None) => return Err(format!("{} still running after {timeout:?}", self.name)),
                Err(e) => return Err(format!("{}: {e}", self.name)),
            }
        }
        let took = started.elapsed();
        self.join_readers();
        Ok(took)
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for NsProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The wall clock in ms since the Unix epoch, as the log lines give it.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The time of a log line that starts with a UTC timestamp such as
/// `2026-11-30T23:57:57.684Z` (what the binaries print), in ms since the
/// Unix epoch.
pub fn log_ms(line: &str) -> Option<u64> {
    let stamp = line.get(..24)?;
    let number = |range: std::ops::Range<usize>| stamp.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second, milli) = (number(11..13)?, number(14..16)?, number(17..19)?, number(20..23)?);
    if !stamp.ends_with('Z') {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(seconds * 1000 + milli).ok()
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// When process `pid` started (clock ticks after boot, `/proc/<pid>/stat`
/// field 22): with the pid, it names one process for good.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it do not.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Resident memory of `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One thread of a process: its id and its name (the kernel keeps 15 bytes
/// of it).
#[derive(Clone, Debug)]
pub struct ThreadState {
    pub tid: String,
    pub name: String,
}

/// The threads of `pid` now.
pub fn threads(pid: u32) -> Vec<ThreadState> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| {
            Some(ThreadState {
                tid: task.file_name().to_string_lossy().into_owned(),
                name: std::fs::read_to_string(task.path().join("comm"))
                    .ok()?
                    .trim()
                    .to_string(),
            })
        })
        .collect()
}

/// Whether thread `tid` of `pid` is blocked in a socket write, waiting for
/// room in the send buffer: its kernel stack (`/proc/<pid>/task/<tid>/stack`,
/// readable by root) holds `sk_stream_wait_memory`.
pub fn blocked_in_socket_write(pid: u32, tid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stack"))
        .is_ok_and(|stack| stack.contains("sk_stream_wait_memory"))
}

/// Whether this kernel shows threads' kernel stacks (it needs
/// `CONFIG_STACKTRACE`): this very read is on this thread's stack.
pub fn stacks_readable() -> bool {
    std::fs::read_to_string("/proc/thread-self/stack").is_ok_and(|s| s.contains("proc_pid_stack"))
}

/// Polls the threads of `pid` every 5 ms until none has one of `names`; the
/// wall-clock ms at which they were seen gone, or the names still there.
pub fn wait_threads_gone(pid: u32, names: &[String], timeout: Duration) -> Result<u64, Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<String> = threads(pid)
            .into_iter()
            .map(|t| t.name)
            .filter(|n| names.contains(n))
            .collect();
        if left.is_empty() {
            return Ok(now_ms());
        }
        if Instant::now() >= deadline {
            return Err(left);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What a [`ThreadWatch`] saw.
#[derive(Default)]
pub struct Watched {
    /// Per (process label, thread name): the last time a sample found it
    /// (ms since the Unix epoch).
    pub last_seen: BTreeMap<(String, String), u64>,
    /// Per writer thread of the process whose writers are watched: samples
    /// that found it blocked in a socket write.
    pub blocked_in_write: BTreeMap<String, u32>,
}

/// Samples the threads of some processes every 10 ms from a thread of its
/// own: when each thread was last seen, and whether the bridge writers of
/// one process were blocked in a socket write.
pub struct ThreadWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Watched>,
}

impl ThreadWatch {
    pub fn start(processes: Vec<(String, u32)>, writers_of: u32) -> ThreadWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut watched = Watched::default();
            while !stopped.load(Ordering::Acquire) {
                let now = now_ms();
                for (label, pid) in &processes {
                    for t in threads(*pid) {
                        if *pid == writers_of
                            && t.name.starts_with("bridge-writer")
                            && blocked_in_socket_write(*pid, &t.tid)
                        {
                            *watched.blocked_in_write.entry(t.name.clone()).or_insert(0) += 1;
                        }
                        watched.last_seen.insert((label.clone(), t.name), now);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            watched
        });
        ThreadWatch { stop, thread }
    }

    pub fn finish(self) -> Watched {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}
