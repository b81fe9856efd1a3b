//! `/metrics` of the admin listener, in the Prometheus text format (0.0.4).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `reflow_peer_ready` | gauge | |
//! | `reflow_peer_discovery_registered` | gauge | |
//! | `reflow_peer_links` | gauge | `state` (`up`, `down`) |
//! | `reflow_peer_link_up` | gauge | `network` |
//! | `reflow_peer_messages_received_total`, `reflow_peer_messages_sent_total` | counter | `network` |
//! | `reflow_peer_bytes_received_total`, `reflow_peer_bytes_sent_total` | counter | `network` |
//! | `reflow_peer_queue_depth` | gauge | `network`, `queue` |
//! | `reflow_peer_dropped_messages_total` | counter | `reason` |
//! | `reflow_peer_bad_frames_total` | counter | `reason` |
//! | `reflow_peer_refused_handshakes_total` | counter | `reason` |
//! | `reflow_peer_reconnects_total`, `reflow_peer_evictions_total` | counter | |
//! | `reflow_peer_messages_acknowledged_total`, `reflow_peer_duplicates_dropped_total` | counter | |
//!
//! Counters count from the peer's start; a network's traffic counters live
//! as long as the peer (across that network's reconnections).

use std::fmt::Write as _;

use super::{PeerView, not_ready};
use crate::bridge::{LinkStats, REFUSAL_REASONS};

/// One metric family: its samples, each a label set and a value.
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
    samples: Vec<(Vec<(&'a str, String)>, u64)>,
}

impl<'a> Family<'a> {
    fn new(name: &'a str, kind: &'a str, help: &'a str) -> Self {
        Family {
            name,
            kind,
            help,
            samples: Vec::new(),
        }
    }

    fn single(name: &'a str, kind: &'a str, help: &'a str, value: u64) -> Self {
        let mut family = Family::new(name, kind, help);
        family.samples.push((Vec::new(), value));
        family
    }

    fn sample(mut self, labels: Vec<(&'a str, String)>, value: u64) -> Self {
        self.samples.push((labels, value));
        self
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            out.push_str(self.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (name, value)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", label_value(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {value}");
        }
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped
/// (network ids may hold `\` and `"`).
fn label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The whole exposition for `view`.
pub(crate) fn render(view: &PeerView) -> String {
    let stats = view.bridge.stats();
    let links = view.bridge.link_stats();
    let held = view.bridge.held_links();
    // Every network held or with traffic, and whether its link is up.
    let mut states: Vec<(String, bool)> = links
        .iter()
        .map(|l| (l.network_id.clone(), l.connected))
        .collect();
    for h in &held {
        if let Some(network) = &h.network_id
            && !states.iter().any(|(n, _)| n == network)
        {
            states.push((network.clone(), h.up));
        }
    }
    states.sort();
    let up = states.iter().filter(|(_, up)| *up).count() as u64;
    let unnamed_down = held.iter().filter(|h| h.network_id.is_none()).count() as u64;

    let per_network = |name, kind, help, value: fn(&LinkStats) -> u64| {
        links.iter().fold(Family::new(name, kind, help), |f, l| {
            f.sample(vec![("network", l.network_id.clone())], value(l))
        })
    };
    let mut families = vec![
        Family::single(
            "reflow_peer_ready",
            "gauge",
            "1 when /readyz answers 200.",
            u64::from(not_ready(view).is_empty()),
        ),
        Family::single(
            "reflow_peer_discovery_registered",
            "gauge",
            "1 while the last registration with a discovery server succeeded (0 without discovery).",
            u64::from(view.discovery.as_ref().is_some_and(|d| d.is_registered())),
        ),
        Family::new(
            "reflow_peer_links",
            "gauge",
            "Links by state: held or connected networks.",
        )
        .sample(vec![("state", "up".into())], up)
        .sample(
            vec![("state", "down".into())],
            states.len() as u64 - up + unnamed_down,
        ),
        states.iter().fold(
            Family::new(
                "reflow_peer_link_up",
                "gauge",
                "1 while a session with the network is up.",
            ),
            |f, (network, up)| f.sample(vec![("network", network.clone())], u64::from(*up)),
        ),
        per_network(
            "reflow_peer_messages_received_total",
            "counter",
            "Remote messages received from the network.",
            |l| l.messages_in,
        ),
        per_network(
            "reflow_peer_messages_sent_total",
            "counter",
            "Remote messages written to the network.",
            |l| l.messages_out,
        ),
        per_network(
            "reflow_peer_bytes_received_total",
            "counter",
            "Bytes of WebSocket text and binary frames received from the network.",
            |l| l.bytes_in,
        ),
        per_network(
            "reflow_peer_bytes_sent_total",
            "counter",
            "Bytes of WebSocket text and binary frames written to the network.",
            |l| l.bytes_out,
        ),
        // One family for every queue of a link: `data` is the writer's lane,
        // `outbox` the unacknowledged messages of acknowledged delivery.
        links.iter().fold(
            Family::new(
                "reflow_peer_queue_depth",
                "gauge",
                "Messages waiting in a link's queue (data lane, or outbox of unacknowledged messages).",
            ),
            |f, l| {
                f.sample(
                    vec![("network", l.network_id.clone()), ("queue", "data".into())],
                    l.queued as u64,
                )
                .sample(
                    vec![("network", l.network_id.clone()), ("queue", "outbox".into())],
                    l.unacknowledged as u64,
                )
            },
        ),
        Family::new(
            "reflow_peer_dropped_messages_total",
            "counter",
            "Messages dropped, by reason.",
        )
        .sample(
            vec![("reason", "unknown_target".into())],
            stats.dropped_unknown_target,
        )
        .sample(
            vec![("reason", "delivery_timeout".into())],
            stats.dropped_delivery_timeout,
        )
        .sample(
            vec![("reason", "lost_with_connection".into())],
            stats.lost_with_connection,
        ),
        Family::new(
            "reflow_peer_bad_frames_total",
            "counter",
            "Frames that broke the protocol, by reason.",
        )
        .sample(vec![("reason", "malformed".into())], stats.malformed_frames)
        .sample(vec![("reason", "oversized".into())], stats.oversized_frames),
        REFUSAL_REASONS.iter().zip(stats.refused_by_reason).fold(
            Family::new(
                "reflow_peer_refused_handshakes_total",
                "counter",
                "Handshakes this peer refused, by reason.",
            ),
            |f, (reason, n)| f.sample(vec![("reason", (*reason).to_string())], n),
        ),
        Family::single(
            "reflow_peer_reconnects_total",
            "counter",
            "Held links linked again after a drop or failed dials.",
            stats.reconnects,
        ),
        Family::single(
            "reflow_peer_evictions_total",
            "counter",
            "Connections evicted for silence.",
            stats.evictions,
        ),
        Family::single(
            "reflow_peer_messages_acknowledged_total",
            "counter",
            "Messages under acknowledged delivery that their receivers acknowledged as consumed.",
            stats.messages_acknowledged,
        ),
        Family::single(
            "reflow_peer_duplicates_dropped_total",
            "counter",
            "Replayed messages that had arrived before, settled without a second delivery.",
            stats.duplicates_dropped,
        ),
    ];
    let mut out = String::with_capacity(4096);
    for family in families.drain(..) {
        family.write(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        let mut out = String::new();
        Family::new("m", "gauge", "h")
            .sample(vec![("network", "x\"y".into()), ("queue", "data".into())], 3)
            .write(&mut out);
        assert_eq!(
            out,
            "# HELP m h\n# TYPE m gauge\nm{network=\"x\\\"y\",queue=\"data\"} 3\n"
        );
    }
}
