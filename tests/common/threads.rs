//! Counting the process's threads, to check that shutdown joins them all.

use std::time::{Duration, Instant};

pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Asserts that the thread count comes back to `before`. A joined thread has
/// finished running, but the kernel may list its task a moment longer (the
/// join wakes up before the task is reaped), so this polls with a deadline.
pub fn assert_threads_back_to(before: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while thread_count() != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        thread_count(),
        before,
        "every thread is joined when shutdown returns"
    );
}
