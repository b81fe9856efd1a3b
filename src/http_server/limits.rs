//! Who may hold a connection and send a request: connections and a request
//! budget per source address, and which connection gives way at a cap.
//! Pure logic: every method takes the current time, so the rules are tested
//! without sockets or sleeps.
//!
//! At a cap (all connections, or those of one source address) the new
//! connection is admitted and an older one is closed to make room: the
//! oldest that has not completed a request, else the oldest waiting between
//! requests. A connection being answered right now is never chosen; only
//! when every candidate is being answered is the new one refused. So clients
//! that hold connections without finishing a request (slowloris) only ever
//! push each other out, and a client that sends a whole request at once is
//! served.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// Source addresses remembered at most (their request budgets); past it,
/// addresses without an open connection are forgotten.
const MAX_TRACKED_SOURCES: usize = 65_536;

/// The address limits apply to: IPv4 as is (an IPv4-mapped IPv6 address
/// counts as IPv4), IPv6 by its /64 prefix, since one host commonly holds a
/// whole /64.
pub(crate) fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Where a connection is in its life, as far as eviction is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Has not completed a request yet (waiting for one, or receiving it).
    Fresh,
    /// A request is being answered.
    Answering,
    /// Completed a request; waiting for or receiving the next one.
    Returning,
}

/// A connection's phase, shared by its thread (which moves it on) and the
/// book (which reads it to choose whom to close).
#[derive(Debug)]
pub(crate) struct PhaseCell(AtomicU8);

impl PhaseCell {
    pub(crate) fn new() -> Arc<PhaseCell> {
        Arc::new(PhaseCell(AtomicU8::new(0)))
    }

    pub(crate) fn set(&self, phase: Phase) {
        let n = match phase {
            Phase::Fresh => 0,
            Phase::Answering => 1,
            Phase::Returning => 2,
        };
        self.0.store(n, Ordering::SeqCst);
    }

    pub(crate) fn get(&self) -> Phase {
        match self.0.load(Ordering::SeqCst) {
            0 => Phase::Fresh,
            1 => Phase::Answering,
            _ => Phase::Returning,
        }
    }
}

/// The numbers the book enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps {
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_source: usize,
    /// Requests per second a source may send, sustained.
    pub(crate) requests_per_sec: u32,
    /// Requests a source may send at once after a quiet spell.
    pub(crate) request_burst: u32,
}

struct Slot<S> {
    source: IpAddr,
    phase: Arc<PhaseCell>,
    payload: S,
}

/// One source address: its open connections and its request budget (a token
/// bucket: `request_burst` tokens, refilled at `requests_per_sec`).
struct Source {
    connections: usize,
    tokens: f64,
    at: Instant,
}

/// Why a new connection was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The server is at `max_connections` and every connection is being answered.
    Full,
    /// The source is at its cap and every one of its connections is being answered.
    SourceFull,
}

impl Refused {
    /// The text of the 503 answer.
    pub(crate) fn text(self) -> &'static str {
        match self {
            Refused::Full => "too many open connections; retry later",
            Refused::SourceFull => "too many open connections from your address; retry later",
        }
    }
}

/// Open connections by id (ids grow, so the map is in age order) and the
/// state of every source address.
pub(crate) struct Book<S> {
    caps: Caps,
    slots: BTreeMap<u64, Slot<S>>,
    sources: HashMap<IpAddr, Source>,
}

impl<S> Book<S> {
    pub(crate) fn new(caps: Caps) -> Self {
        Book {
            caps,
            slots: BTreeMap::new(),
            sources: HashMap::new(),
        }
    }

    /// Open connections.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Open connections from `source` (a key from [`source_key`]).
    pub(crate) fn open_from(&self, source: IpAddr) -> usize {
        self.sources.get(&source).map_or(0, |s| s.connections)
    }

    /// Admits connection `id` from `source`. At a cap, the connection that
    /// gives way is taken out of the book and returned, for the caller to
    /// close.
    ///
    /// # Errors
    /// [`Refused`] when every candidate to give way is being answered.
    pub(crate) fn admit(
        &mut self,
        id: u64,
        source: IpAddr,
        phase: Arc<PhaseCell>,
        payload: S,
        now: Instant,
    ) -> Result<Option<S>, Refused> {
        let victim = if self.open_from(source) >= self.caps.max_connections_per_source {
            Some(self.victim(Some(source)).ok_or(Refused::SourceFull)?)
        } else if self.slots.len() >= self.caps.max_connections {
            Some(self.victim(None).ok_or(Refused::Full)?)
        } else {
            None
        };
        let evicted = victim.and_then(|v| self.remove(v, now));
        self.forget_idle_sources(now);
        let burst = f64::from(self.caps.request_burst);
        let entry = self.sources.entry(source).or_insert(Source {
            connections: 0,
            tokens: burst,
            at: now,
        });
        entry.connections += 1;
        self.slots.insert(
            id,
            Slot {
                source,
                phase,
                payload,
            },
        );
        Ok(evicted)
    }

    /// The oldest connection (of `source`, or of all) that has not
    /// completed a request, else the oldest between requests.
    fn victim(&self, source: Option<IpAddr>) -> Option<u64> {
        let candidates = || {
            self.slots
                .iter()
                .filter(move |(_, slot)| source.is_none_or(|s| slot.source == s))
        };
        let first_in = |phase: Phase| {
            candidates()
                .find(|(_, slot)| slot.phase.get() == phase)
                .map(|(id, _)| *id)
        };
        first_in(Phase::Fresh).or_else(|| first_in(Phase::Returning))
    }

    /// Takes connection `id` out of the book (it ended, or was chosen to
    /// give way); `None` if it was already out.
    pub(crate) fn remove(&mut self, id: u64, now: Instant) -> Option<S> {
        let slot = self.slots.remove(&id)?;
        let caps = self.caps;
        if let Some(source) = self.sources.get_mut(&slot.source) {
            source.connections = source.connections.saturating_sub(1);
            refill(source, caps, now);
            if source.connections == 0 && source.tokens >= f64::from(caps.request_burst) {
                self.sources.remove(&slot.source);
            }
        }
        Some(slot.payload)
    }

    /// Spends one request of `source`'s budget.
    ///
    /// # Errors
    /// The time until a request is allowed again, when the budget is spent.
    pub(crate) fn take_request(&mut self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        let caps = self.caps;
        let entry = self.sources.entry(source).or_insert(Source {
            connections: 0,
            tokens: f64::from(caps.request_burst),
            at: now,
        });
        refill(entry, caps, now);
        if entry.tokens >= 1.0 {
            entry.tokens -= 1.0;
            return Ok(());
        }
        let rate = f64::from(caps.requests_per_sec.max(1));
        Err(Duration::from_secs_f64((1.0 - entry.tokens) / rate))
    }

    /// Takes every connection out of the book (shutdown).
    pub(crate) fn drain(&mut self) -> Vec<S> {
        self.sources.clear();
        std::mem::take(&mut self.slots)
            .into_values()
            .map(|slot| slot.payload)
            .collect()
    }

    /// Keeps the table of sources bounded: sources without a connection are
    /// dropped once their budget is whole again, and all of them when the
    /// table is past `MAX_TRACKED_SOURCES` (they then start afresh).
    fn forget_idle_sources(&mut self, now: Instant) {
        let soft_cap = (self.caps.max_connections * 4).max(1024);
        if self.sources.len() < soft_cap {
            return;
        }
        let caps = self.caps;
        self.sources.retain(|_, s| {
            refill(s, caps, now);
            s.connections > 0 || s.tokens < f64::from(caps.request_burst)
        });
        if self.sources.len() >= MAX_TRACKED_SOURCES {
            self.sources.retain(|_, s| s.connections > 0);
        }
    }
}

fn refill(source: &mut Source, caps: Caps, now: Instant) {
    let elapsed = now.saturating_duration_since(source.at).as_secs_f64();
    let burst = f64::from(caps.request_burst);
    source.tokens = (source.tokens + elapsed * f64::from(caps.requests_per_sec)).min(burst);
    source.at = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(total: usize, per_source: usize) -> Caps {
        Caps {
            max_connections: total,
            max_connections_per_source: per_source,
            requests_per_sec: 10,
            request_burst: 3,
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    /// Admits `id` from `source` in phase `phase`; returns the evicted id.
    fn admit(
        book: &mut Book<u64>,
        id: u64,
        source: IpAddr,
        phase: Phase,
        now: Instant,
    ) -> Result<Option<u64>, Refused> {
        let cell = PhaseCell::new();
        cell.set(phase);
        book.admit(id, source, cell, id, now)
    }

    #[test]
    fn at_the_source_cap_its_oldest_unfinished_connection_gives_way() {
        let now = Instant::now();
        let mut book = Book::new(caps(100, 3));
        assert_eq!(admit(&mut book, 1, ip(1), Phase::Returning, now), Ok(None));
        assert_eq!(admit(&mut book, 2, ip(1), Phase::Fresh, now), Ok(None));
        assert_eq!(admit(&mut book, 3, ip(1), Phase::Fresh, now), Ok(None));
        assert_eq!(admit(&mut book, 4, ip(2), Phase::Fresh, now), Ok(None));
        // 2 is the oldest of ip(1) that has not completed a request.
        assert_eq!(admit(&mut book, 5, ip(1), Phase::Fresh, now), Ok(Some(2)));
        assert_eq!(book.open_from(ip(1)), 3);
        assert_eq!(book.open_from(ip(2)), 1);
    }

    #[test]
    fn a_connection_between_requests_goes_only_when_no_unfinished_one_is_left() {
        let now = Instant::now();
        let mut book = Book::new(caps(2, 10));
        assert_eq!(admit(&mut book, 1, ip(1), Phase::Returning, now), Ok(None));
        assert_eq!(admit(&mut book, 2, ip(2), Phase::Answering, now), Ok(None));
        assert_eq!(admit(&mut book, 3, ip(3), Phase::Fresh, now), Ok(Some(1)));
        assert_eq!(admit(&mut book, 4, ip(4), Phase::Fresh, now), Ok(Some(3)));
        assert_eq!(book.len(), 2);
    }

    #[test]
    fn when_every_connection_is_being_answered_the_new_one_is_refused() {
        let now = Instant::now();
        let mut book = Book::new(caps(1, 1));
        assert_eq!(admit(&mut book, 1, ip(1), Phase::Answering, now), Ok(None));
        assert_eq!(
            admit(&mut book, 2, ip(1), Phase::Fresh, now),
            Err(Refused::SourceFull)
        );
        assert_eq!(admit(&mut book, 3, ip(2), Phase::Fresh, now), Err(Refused::Full));
        assert_eq!(book.remove(1, now), Some(1));
        assert_eq!(book.remove(1, now), None, "removed once");
        assert_eq!(admit(&mut book, 4, ip(2), Phase::Fresh, now), Ok(None));
    }

    #[test]
    fn requests_spend_a_budget_that_refills_with_time() {
        let start = Instant::now();
        let mut book: Book<u64> = Book::new(caps(10, 10));
        for _ in 0..3 {
            assert_eq!(book.take_request(ip(1), start), Ok(()));
        }
        let wait = book.take_request(ip(1), start).expect_err("burst spent");
        assert_eq!(wait, Duration::from_millis(100));
        assert_eq!(
            book.take_request(ip(2), start),
            Ok(()),
            "another source has its own"
        );
        assert_eq!(
            book.take_request(ip(1), start + Duration::from_millis(100)),
            Ok(())
        );
        assert!(
            book.take_request(ip(1), start + Duration::from_millis(100))
                .is_err()
        );
    }

    #[test]
    fn a_source_is_forgotten_once_idle_and_whole_again() {
        let start = Instant::now();
        let mut book = Book::new(caps(10, 10));
        assert_eq!(admit(&mut book, 1, ip(1), Phase::Fresh, start), Ok(None));
        book.take_request(ip(1), start).expect("budget");
        book.remove(1, start + Duration::from_secs(1));
        assert!(book.sources.is_empty());
    }

    #[test]
    fn ipv6_sources_count_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().expect("ip");
        assert_eq!(source_key(mapped), IpAddr::from([10, 0, 0, 7]));
    }
}
