//! What happened to every numbered message: the sender's outcome lines, the
//! receivers' recorder lines, and the sender's own loss reports, put side by
//! side per target network and checked against the delivery mode.

use std::collections::HashSet;

use super::procs::{NsProc, log_ms};

/// How the bridge delivers the sender's messages; every scenario runs in one
/// mode, written into every peer's config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// `send` returning `Ok` means queued on a live connection; what a
    /// dropped connection held is lost, and the sender counts what it can
    /// know of (queued, never written).
    AtMostOnce,
    /// `[delivery] mode = "acknowledged"`: `send` returning `Ok` means kept
    /// in the outbox until the receiver's actor consumed it; every message
    /// sent during a fault arrives exactly once, in order, after it.
    Acknowledged,
}

impl Delivery {
    /// The lines of a peer config file that select this mode.
    pub fn config_toml(self) -> &'static str {
        match self {
            // The default: nothing to write.
            Delivery::AtMostOnce => "",
            Delivery::Acknowledged => "[delivery]\nmode = \"acknowledged\"\n",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Delivery::AtMostOnce => "at-most-once",
            Delivery::Acknowledged => "acknowledged",
        }
    }
}

/// One send and its outcome.
#[derive(Clone, Copy, Debug)]
pub struct Send {
    pub seq: u64,
    /// When `send` was called (ms since the Unix epoch).
    pub at: u64,
    /// `send` returned `Ok` (queued); otherwise it refused and handed the
    /// message back.
    pub accepted: bool,
}

/// The messages from the sender to one network's recorder.
#[derive(Clone, Debug)]
pub struct Stream {
    pub target: String,
    pub sends: Vec<Send>,
    /// Sequence numbers in the order the recorder logged them, with the
    /// log time.
    pub arrivals: Vec<(u64, u64)>,
    /// Sum of the sender's `N message(s) queued for network X were lost
    /// with its connection` lines.
    pub reported_in_log: u64,
    /// The sender's `lost_messages(X)` counter, as it last printed it.
    pub reported_counter: Option<u64>,
    /// When the receiver logged a new connection with the sender (ms
    /// since the Unix epoch).
    pub connections: Vec<u64>,
}

/// A new connection may briefly run beside the one it replaces (a
/// simultaneous dial from both sides: one is closed as a duplicate, after
/// writing what was queued on it), so messages may cross each other within
/// this long of a new connection; order is kept per connection.
pub const SWITCH_WINDOW: u64 = 1000;

/// The outcome lines of the sender for `target`.
pub fn sends(sender: &NsProc, target: &str) -> Vec<Send> {
    let prefix = format!("tx {target} ");
    sender
        .lines_after(0, &prefix)
        .iter()
        .filter_map(|line| {
            let mut fields = line.strip_prefix(&prefix)?.split_whitespace();
            let seq = fields.next()?.parse().ok()?;
            let accepted = match fields.next()? {
                "ok" => true,
                "refused" => false,
                _ => return None,
            };
            let at = fields.next()?.parse().ok()?;
            Some(Send { seq, at, accepted })
        })
        .collect()
}

/// What `receiver`'s recorder logged, in order: `recorder.in: String("17…`.
pub fn arrivals(receiver: &NsProc) -> Vec<(u64, u64)> {
    const RECORDED: &str = "recorder.in: String(\"";
    receiver
        .lines_after(0, RECORDED)
        .iter()
        .filter_map(|line| {
            let rest = &line[line.find(RECORDED)? + RECORDED.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            Some((digits.parse().ok()?, log_ms(line)?))
        })
        .collect()
}

/// The sender's loss reports for `target`: the sum of its log lines and its
/// counter (the latest `lost <target> N` line).
pub fn reported_losses(sender: &NsProc, target: &str) -> (u64, Option<u64>) {
    let marker = format!(" message(s) queued for network {target} were lost with its connection");
    let logged = sender
        .lines_after(0, &marker)
        .iter()
        .filter_map(|line| {
            let before = &line[..line.find(&marker)?];
            before.rsplit(' ').next()?.parse::<u64>().ok()
        })
        .sum();
    let counter = sender
        .lines_after(0, &format!("lost {target} "))
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("lost {target} "))?.trim().parse().ok());
    (logged, counter)
}

pub fn stream(sender: &NsProc, receiver: &NsProc, target: &str) -> Stream {
    let (reported_in_log, reported_counter) = reported_losses(sender, target);
    let established = format!("Established connection with network: {} (", sender.name);
    Stream {
        target: target.to_string(),
        sends: sends(sender, target),
        arrivals: arrivals(receiver),
        reported_in_log,
        reported_counter,
        connections: receiver
            .lines_after(0, &established)
            .iter()
            .filter_map(|l| log_ms(l))
            .collect(),
    }
}

/// Where losses are allowed: messages sent from `from` up to (not
/// including) `until`, both in ms since the Unix epoch.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub from: u64,
    pub until: u64,
}

/// The counts of one stream.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub sent: usize,
    pub refused: usize,
    pub delivered: usize,
    /// Accepted and never arrived, in increasing order.
    pub lost: Vec<u64>,
    /// What the sender itself reported lost (queued, never written).
    pub reported: u64,
    /// Arrivals of a number lower than the one before (next to a new connection).
    pub crossed: usize,
}

impl Figures {
    /// `sent 240, refused 12, delivered 231, lost 9 (#120..=#128; 4 reported by the sender)`.
    pub fn summary(&self) -> String {
        let lost = match (self.lost.first(), self.lost.last()) {
            (Some(first), Some(last)) => format!(
                "{} (#{first}..=#{last}; {} reported by the sender as queued and never written)",
                self.lost.len(),
                self.reported
            ),
            _ => "0".to_string(),
        };
        let crossed = match self.crossed {
            0 => String::new(),
            n => format!(", {n} crossed by a later one as a new connection took over"),
        };
        format!(
            "sent {}, refused {}, delivered {}, lost {lost}, duplicates 0{crossed}",
            self.sent, self.refused, self.delivered
        )
    }
}

/// Checks one stream under `mode`. `windows` say where losses may lie
/// (none: the stream's link was never broken, so nothing may be lost).
pub fn check(mode: Delivery, stream: &Stream, windows: &[Window]) -> Result<Figures, String> {
    match mode {
        Delivery::AtMostOnce => at_most_once(stream, windows),
        Delivery::Acknowledged => acknowledged(stream),
    }
}

/// Acknowledged: every accepted message arrives, exactly once and in order,
/// whatever the faults (no receiver restarts in these scenarios, so no
/// duplicate is allowed either); nothing is lost, nothing refused arrives.
fn acknowledged(stream: &Stream) -> Result<Figures, String> {
    let name = &stream.target;
    for pair in stream.arrivals.windows(2) {
        let ((before, _), (after, _)) = (pair[0], pair[1]);
        if after <= before {
            return Err(format!(
                "{name}: #{after} arrived after #{before} (a duplicate or out of order)"
            ));
        }
    }
    let seen: HashSet<u64> = stream.arrivals.iter().map(|&(seq, _)| seq).collect();
    let accepted: HashSet<u64> = stream
        .sends
        .iter()
        .filter(|s| s.accepted)
        .map(|s| s.seq)
        .collect();
    if let Some(seq) = seen.iter().find(|s| !accepted.contains(s)) {
        return Err(format!(
            "{name}: #{seq} arrived, but its send was refused (or never made)"
        ));
    }
    let mut lost: Vec<u64> = accepted.difference(&seen).copied().collect();
    lost.sort_unstable();
    if !lost.is_empty() {
        return Err(format!("{name}: accepted and never delivered: {lost:?}"));
    }
    Ok(Figures {
        sent: accepted.len(),
        refused: stream.sends.len() - accepted.len(),
        delivered: seen.len(),
        lost,
        reported: 0,
        crossed: 0,
    })
}

/// At most once: nothing arrives twice; order holds except right next to
/// a new connection ([`SWITCH_WINDOW`]); a refused message (handed back to
/// the caller) never arrives; every loss lies within a fault's window, and
/// what the sender reported lost is a part of what was lost, its log and
/// its counter agreeing.
fn at_most_once(stream: &Stream, windows: &[Window]) -> Result<Figures, String> {
    let name = &stream.target;
    let mut seen = HashSet::new();
    let mut crossed = 0;
    for pair in stream.arrivals.windows(2) {
        let ((before, _), (after, at)) = (pair[0], pair[1]);
        if after > before {
            continue;
        }
        let near_new_connection = stream
            .connections
            .iter()
            .any(|&c| c <= at && at - c <= SWITCH_WINDOW);
        if after == before || !near_new_connection {
            return Err(format!(
                "{name}: #{after} arrived after #{before}, not next to a new connection"
            ));
        }
        crossed += 1;
    }
    for &(seq, _) in &stream.arrivals {
        if !seen.insert(seq) {
            return Err(format!("{name}: #{seq} arrived twice"));
        }
    }
    let accepted: HashSet<u64> = stream
        .sends
        .iter()
        .filter(|s| s.accepted)
        .map(|s| s.seq)
        .collect();
    if let Some(seq) = seen.iter().find(|s| !accepted.contains(s)) {
        return Err(format!(
            "{name}: #{seq} arrived, but its send was refused (or never made)"
        ));
    }
    let lost: Vec<&Send> = stream
        .sends
        .iter()
        .filter(|s| s.accepted && !seen.contains(&s.seq))
        .collect();
    for send in &lost {
        if !windows.iter().any(|w| (w.from..w.until).contains(&send.at)) {
            return Err(format!(
                "{name}: #{} (sent at {}) was lost outside the faults' windows {windows:?}",
                send.seq, send.at
            ));
        }
    }
    let reported = stream
        .reported_counter
        .ok_or(format!("{name}: the sender printed no loss counter"))?;
    if reported != stream.reported_in_log {
        return Err(format!(
            "{name}: the sender's counter says {reported} lost, its log lines {}",
            stream.reported_in_log
        ));
    }
    if reported > lost.len() as u64 {
        return Err(format!(
            "{name}: the sender reported {reported} lost, but only {} never arrived",
            lost.len()
        ));
    }
    Ok(Figures {
        sent: accepted.len(),
        refused: stream.sends.len() - accepted.len(),
        delivered: seen.len(),
        lost: lost.iter().map(|s| s.seq).collect(),
        reported,
        crossed,
    })
}
