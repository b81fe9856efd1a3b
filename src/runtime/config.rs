//! Settings of a local network.

use std::time::Duration;

/// Bounds of an in-process network.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NetworkConfig {
    /// Worker threads in the shared pool. Default: the machine's parallelism.
    pub workers: usize,
    /// Messages an inport holds before its senders are held back. Default 64:
    /// deep enough to keep workers busy, small enough to bound memory per port.
    pub inbox_capacity: usize,
    /// How long `send_to_actor` waits for room in a full inbox. Default 5 s.
    pub send_timeout: Duration,
    /// Ticks a node runs in one turn on a worker before yielding to others.
    /// Default 32: amortises scheduling cost while keeping turns short.
    pub ticks_per_turn: usize,
    /// Events buffered per event subscriber; a slower subscriber misses events.
    /// Default 1024.
    pub event_capacity: usize,
    /// Stack size of worker and dedicated actor threads. Default 512 KiB.
    pub thread_stack_bytes: usize,
    /// Longest turn (a running average over the node's turns) of a pool node
    /// that the thread delivering a remote message to it (its connection's
    /// reader) runs itself instead of waking a worker. Default 50 µs: a
    /// wake-up costs 10–40 µs on the machines of docs/benchmarks.md, and the
    /// reader reads nothing while the turn runs. A node's first turn always
    /// goes to a worker (its length is unknown); zero turns this off. A
    /// turn of more than `ticks_per_turn` ticks (the reader's, at the end of
    /// a BATCH frame) counts per `ticks_per_turn` ticks.
    pub inline_turn_limit: Duration,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            inbox_capacity: 64,
            send_timeout: Duration::from_secs(5),
            ticks_per_turn: 32,
            event_capacity: 1024,
            thread_stack_bytes: 512 * 1024,
            inline_turn_limit: Duration::from_micros(50),
        }
    }
}
