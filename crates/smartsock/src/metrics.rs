//! The figures of [`Socket::stats`] published through the [`metrics`]
//! facade (feature `metrics`), so that whatever exporter the application
//! installs (Prometheus, StatsD, OpenTelemetry, ...) picks them up.
//!
//! The library records nothing per message for this: it reads a snapshot
//! and sets absolute counter values and gauges, once per call of
//! [`Socket::publish_metrics`] or per tick of [`Socket::spawn_metrics`].
//! Without an installed recorder, publishing does nothing.
//!
//! Names follow the Prometheus conventions (`_total` counters, base units,
//! `_timestamp_seconds`). Every series has a `socket` label (the name you
//! give); per-peer series add `peer` (its identity), and the refusal
//! counter adds `reason`.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `smartsock_messages_received_total` | counter | socket | messages read from every peer, departed ones included |
//! | `smartsock_messages_sent_total` | counter | socket | messages written (one per copy under publish) |
//! | `smartsock_received_bytes_total` | counter | socket | their payload bytes |
//! | `smartsock_sent_bytes_total` | counter | socket | their payload bytes |
//! | `smartsock_messages_dropped_total` | counter | socket | slow-subscriber copies and messages lost with their peer |
//! | `smartsock_messages_rerouted_total` | counter | socket | messages taken back from a departed peer and routed again |
//! | `smartsock_duplicates_dropped_total` | counter | socket | repeated at-least-once messages dropped on receipt |
//! | `smartsock_connections_total` | counter | socket | peers that came up |
//! | `smartsock_handshake_refusals_total` | counter | socket, reason | refused handshakes, by reason (every reason, zeros too) |
//! | `smartsock_messages_resent_total` | counter | socket | at-least-once resends (at-least-once only) |
//! | `smartsock_messages_acked_total` | counter | socket | at-least-once ACKs received (at-least-once only) |
//! | `smartsock_messages_undelivered_total` | counter | socket | at-least-once give-ups (at-least-once only) |
//! | `smartsock_peers` | gauge | socket | peers connected now |
//! | `smartsock_buffered_messages` | gauge | socket | messages in the no-peer buffer |
//! | `smartsock_received_queued_messages` | gauge | socket | messages received, not yet taken |
//! | `smartsock_in_flight_messages` | gauge | socket | at-least-once messages awaiting their ACK |
//! | `smartsock_peer_messages_received_total` | counter | socket, peer | as above, for one connected peer |
//! | `smartsock_peer_messages_sent_total` | counter | socket, peer | |
//! | `smartsock_peer_received_bytes_total` | counter | socket, peer | |
//! | `smartsock_peer_sent_bytes_total` | counter | socket, peer | |
//! | `smartsock_peer_messages_dropped_total` | counter | socket, peer | |
//! | `smartsock_peer_messages_resent_total` | counter | socket, peer | resends of messages this peer did not acknowledge |
//! | `smartsock_peer_outbox_messages` | gauge | socket, peer | frames queued for it now |
//! | `smartsock_peer_connected_timestamp_seconds` | gauge | socket, peer | when it connected (Unix time) |
//! | `smartsock_peer_last_heard_timestamp_seconds` | gauge | socket, peer | when a frame last came from it (Unix time) |
//!
//! Per-peer series are published for connected peers only. The socket
//! totals keep what departed peers did; to have the exporter forget a
//! departed peer's series, give it an idle timeout (with
//! `metrics-exporter-prometheus`: `PrometheusBuilder::idle_timeout`), or the
//! series of peers that come and go with new identities pile up.

use std::time::{Duration, SystemTime};

use ::metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
use tokio::task::JoinHandle;

use crate::{Socket, SocketStats};

impl Socket {
    /// Publishes [`stats`](Socket::stats) once through the `metrics`
    /// facade, labelled `socket = name` (see [the table](crate::metrics)).
    pub fn publish_metrics(&self, name: &str) {
        publish(&self.stats(), name);
    }

    /// Publishes every `every` (first at once) on a task of the current
    /// tokio runtime, until the socket is closed or dropped (the task does
    /// not keep it open), or the handle is aborted.
    pub fn spawn_metrics(&self, name: impl Into<String>, every: Duration) -> JoinHandle<()> {
        let socket = self.downgrade();
        let name = name.into();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // Upgraded only for the moment of reading.
                let Some(socket) = socket.upgrade() else { return };
                socket.publish_metrics(&name);
            }
        })
    }
}

fn seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Publishes a snapshot taken earlier, labelled `socket = name`: for an
/// application that takes [`Socket::stats`] for its own use as well.
pub fn publish(stats: &SocketStats, name: &str) {
    describe();
    let socket = name.to_owned();
    let total =
        |metric: &'static str, value: u64| counter!(metric, "socket" => socket.clone()).absolute(value);
    let now =
        |metric: &'static str, value: usize| gauge!(metric, "socket" => socket.clone()).set(value as f64);
    let t = &stats.totals;
    total("smartsock_messages_received_total", t.messages_in);
    total("smartsock_messages_sent_total", t.messages_out);
    total("smartsock_received_bytes_total", t.bytes_in);
    total("smartsock_sent_bytes_total", t.bytes_out);
    total("smartsock_messages_dropped_total", t.dropped);
    total("smartsock_messages_rerouted_total", stats.rerouted);
    total("smartsock_duplicates_dropped_total", stats.duplicates_dropped);
    total("smartsock_connections_total", stats.connections);
    for (reason, count) in stats.refusals.iter() {
        counter!("smartsock_handshake_refusals_total", "socket" => socket.clone(), "reason" => reason)
            .absolute(count);
    }
    if let Some(delivery) = &stats.delivery {
        total("smartsock_messages_resent_total", delivery.resent);
        total("smartsock_messages_acked_total", delivery.acked);
        total("smartsock_messages_undelivered_total", delivery.undelivered);
    }
    now("smartsock_peers", stats.peers.len());
    now("smartsock_buffered_messages", stats.buffered);
    now("smartsock_received_queued_messages", stats.received_queued);
    now("smartsock_in_flight_messages", stats.in_flight);

    for peer in &stats.peers {
        let labels = [("socket", socket.clone()), ("peer", peer.id.to_string())];
        let total = |metric: &'static str, value: u64| counter!(metric, &labels).absolute(value);
        let t = &peer.traffic;
        total("smartsock_peer_messages_received_total", t.messages_in);
        total("smartsock_peer_messages_sent_total", t.messages_out);
        total("smartsock_peer_received_bytes_total", t.bytes_in);
        total("smartsock_peer_sent_bytes_total", t.bytes_out);
        total("smartsock_peer_messages_dropped_total", t.dropped);
        total("smartsock_peer_messages_resent_total", peer.resent);
        gauge!("smartsock_peer_outbox_messages", &labels).set(peer.outbox_depth as f64);
        gauge!("smartsock_peer_connected_timestamp_seconds", &labels).set(seconds(peer.connected_at));
        gauge!("smartsock_peer_last_heard_timestamp_seconds", &labels).set(seconds(peer.last_heard));
    }
}

/// Help text and units, for exporters that show them. Cheap enough to
/// repeat on every publish, which also covers a recorder installed late.
fn describe() {
    for (name, unit, help) in [
        ("smartsock_messages_received_total", Unit::Count, "Messages received from every peer."),
        ("smartsock_messages_sent_total", Unit::Count, "Messages written to peers (one per publish copy)."),
        ("smartsock_received_bytes_total", Unit::Bytes, "Payload bytes received."),
        ("smartsock_sent_bytes_total", Unit::Bytes, "Payload bytes written."),
        (
            "smartsock_messages_dropped_total",
            Unit::Count,
            "Messages dropped (slow subscribers, departed peers).",
        ),
        ("smartsock_messages_rerouted_total", Unit::Count, "Messages routed again after their peer left."),
        ("smartsock_duplicates_dropped_total", Unit::Count, "Repeated at-least-once messages dropped."),
        ("smartsock_connections_total", Unit::Count, "Peers that completed a handshake."),
        ("smartsock_handshake_refusals_total", Unit::Count, "Handshakes refused, by reason."),
        ("smartsock_messages_resent_total", Unit::Count, "At-least-once resends."),
        ("smartsock_messages_acked_total", Unit::Count, "At-least-once messages acknowledged."),
        ("smartsock_messages_undelivered_total", Unit::Count, "At-least-once messages given up."),
        ("smartsock_peer_messages_received_total", Unit::Count, "Messages received from this peer."),
        ("smartsock_peer_messages_sent_total", Unit::Count, "Messages written to this peer."),
        ("smartsock_peer_received_bytes_total", Unit::Bytes, "Payload bytes received from this peer."),
        ("smartsock_peer_sent_bytes_total", Unit::Bytes, "Payload bytes written to this peer."),
        ("smartsock_peer_messages_dropped_total", Unit::Count, "Messages for this peer that were dropped."),
        (
            "smartsock_peer_messages_resent_total",
            Unit::Count,
            "Resends of messages this peer did not acknowledge.",
        ),
    ] {
        describe_counter!(name, unit, help);
    }
    for (name, unit, help) in [
        ("smartsock_peers", Unit::Count, "Peers connected now."),
        ("smartsock_buffered_messages", Unit::Count, "Messages waiting for a peer to connect."),
        ("smartsock_received_queued_messages", Unit::Count, "Messages received and not yet taken."),
        ("smartsock_in_flight_messages", Unit::Count, "At-least-once messages awaiting their ACK."),
        ("smartsock_peer_outbox_messages", Unit::Count, "Frames queued for this peer."),
        (
            "smartsock_peer_connected_timestamp_seconds",
            Unit::Seconds,
            "When this peer connected (Unix time).",
        ),
        (
            "smartsock_peer_last_heard_timestamp_seconds",
            Unit::Seconds,
            "When a frame last came from this peer (Unix time).",
        ),
    ] {
        describe_gauge!(name, unit, help);
    }
}
