//! Traffic counters: per peer ([`PeerCounters`], shared by the connection's
//! task and every [`PeerHandle`](crate::PeerHandle)) and per transport
//! (totals that outlive the peers, handshake refusals by reason), read as
//! snapshots with [`Transport::stats`](crate::Transport::stats).
//!
//! The hot path pays a few relaxed atomic adds per *batch*: the reader
//! counts the messages of one read at once, the writer those of one write.
//! Nothing here takes a lock per message; the snapshot is what takes locks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use smartsock_framing::PeerId;
use tokio::time::Instant;

use crate::event::{RefusedReason, Side};

/// Departed peers whose figures a snapshot still lists, newest first; older
/// ones live on only in the totals. Peers come and go with new identities,
/// so keeping every one would grow without end.
pub const MAX_DEPARTED_PEERS: usize = 32;

/// Message and byte counts. Bytes are payload bytes (what the application
/// sent or received), not the frames' envelopes; messages are DATA and
/// DATA_REQ frames only (no ACK, HEARTBEAT or HELLO).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Traffic {
    /// Messages read from the peer(s).
    pub messages_in: u64,
    /// Their payload bytes.
    pub bytes_in: u64,
    /// Messages written to the peer(s): one per copy under publish.
    pub messages_out: u64,
    /// Their payload bytes.
    pub bytes_out: u64,
    /// Messages for the peer(s) that were dropped: a slow subscriber's
    /// copies (counted by the routing layer), and messages still queued when
    /// a peer left that could not go to another.
    pub dropped: u64,
}

/// Handshakes refused, by [`RefusedReason`]. The field names are the
/// `reason` labels of [`iter`](HandshakeRefusals::iter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeRefusals {
    /// [`RefusedReason::Version`].
    pub version: u64,
    /// [`RefusedReason::DuplicateIdentity`].
    pub duplicate_identity: u64,
    /// [`RefusedReason::OwnIdentity`].
    pub own_identity: u64,
    /// [`RefusedReason::Timeout`].
    pub timeout: u64,
    /// [`RefusedReason::Malformed`].
    pub malformed: u64,
    /// [`RefusedReason::TooManyPeers`].
    pub too_many_peers: u64,
    /// [`RefusedReason::TooManyFromAddress`].
    pub too_many_from_address: u64,
    /// [`RefusedReason::Shed`].
    pub shed: u64,
    /// [`RefusedReason::Io`].
    pub io: u64,
    /// [`RefusedReason::Tls`].
    pub tls: u64,
    /// [`RefusedReason::UnknownFirstByte`].
    pub unknown_first_byte: u64,
    /// [`RefusedReason::WebSocket`].
    pub websocket: u64,
    /// [`RefusedReason::IdentityNotCertified`].
    pub identity_not_certified: u64,
}

/// The reasons in the order of the counters' array.
const REASONS: [&str; 13] = [
    "version",
    "duplicate_identity",
    "own_identity",
    "timeout",
    "malformed",
    "too_many_peers",
    "too_many_from_address",
    "shed",
    "io",
    "tls",
    "unknown_first_byte",
    "websocket",
    "identity_not_certified",
];

fn reason_index(reason: &RefusedReason) -> usize {
    match reason {
        RefusedReason::Version(_) => 0,
        RefusedReason::DuplicateIdentity(_) => 1,
        RefusedReason::OwnIdentity => 2,
        RefusedReason::Timeout => 3,
        RefusedReason::Malformed(_) => 4,
        RefusedReason::TooManyPeers => 5,
        RefusedReason::TooManyFromAddress => 6,
        RefusedReason::Shed => 7,
        RefusedReason::Io(_) => 8,
        RefusedReason::Tls(_) => 9,
        RefusedReason::UnknownFirstByte(_) => 10,
        RefusedReason::WebSocket(_) => 11,
        RefusedReason::IdentityNotCertified(_) => 12,
    }
}

impl HandshakeRefusals {
    fn from_counts(c: [u64; REASONS.len()]) -> Self {
        let [
            version,
            duplicate_identity,
            own_identity,
            timeout,
            malformed,
            too_many_peers,
            too_many_from_address,
            shed,
            io,
            tls,
            unknown_first_byte,
            websocket,
            identity_not_certified,
        ] = c;
        Self {
            version,
            duplicate_identity,
            own_identity,
            timeout,
            malformed,
            too_many_peers,
            too_many_from_address,
            shed,
            io,
            tls,
            unknown_first_byte,
            websocket,
            identity_not_certified,
        }
    }

    /// `(reason, count)` for every reason, zeros included: the labels a
    /// metrics exporter uses.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        let counts = [
            self.version,
            self.duplicate_identity,
            self.own_identity,
            self.timeout,
            self.malformed,
            self.too_many_peers,
            self.too_many_from_address,
            self.shed,
            self.io,
            self.tls,
            self.unknown_first_byte,
            self.websocket,
            self.identity_not_certified,
        ];
        REASONS.into_iter().zip(counts)
    }

    /// Every refusal, whatever the reason.
    pub fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }
}

/// One peer's figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStats {
    /// The peer's identity.
    pub id: PeerId,
    /// Its address, as in [`Event::PeerConnected`](crate::Event::PeerConnected).
    pub addr: String,
    /// Which end of the connection this socket is.
    pub side: Side,
    /// When the handshake completed.
    pub connected_at: SystemTime,
    /// When the last frame of any kind (heartbeats too) arrived from it.
    pub last_heard: SystemTime,
    /// When it disconnected; `None` while connected.
    pub disconnected_at: Option<SystemTime>,
    /// Frames waiting in its outbox now (0 once disconnected).
    pub outbox_depth: usize,
    /// What went each way, and what was dropped.
    pub traffic: Traffic,
    /// Messages sent to this peer that had to be sent again (no ACK in time,
    /// or the peer left holding them), as the at-least-once layer counts them.
    pub resent: u64,
}

/// A transport's figures at one moment; see [`Transport::stats`](crate::Transport::stats).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportStats {
    /// The peers connected now, in the order they connected.
    pub peers: Vec<PeerStats>,
    /// Peers that have disconnected, newest first, at most
    /// [`MAX_DEPARTED_PEERS`].
    pub departed: Vec<PeerStats>,
    /// Every peer's traffic since the transport was made, departed ones included.
    pub totals: Traffic,
    /// Handshakes that completed (peers that came up), departed ones included.
    pub connections: u64,
    /// Handshakes refused, by reason.
    pub refusals: HandshakeRefusals,
}

/// Counters of the whole transport: updated by every peer's counters as
/// they count, so that they survive the peers.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    dropped: AtomicU64,
    connections: AtomicU64,
    refusals: [AtomicU64; REASONS.len()],
}

/// The live counters of one peer's connection. The connection's task counts
/// traffic per batch; the layers above count what only they know (drops,
/// resends) through [`PeerHandle::counters`](crate::PeerHandle::counters).
#[derive(Debug)]
pub struct PeerCounters {
    id: PeerId,
    addr: Arc<str>,
    side: Side,
    connected_at: SystemTime,
    /// `connected_at` on the runtime's clock: `last_heard` counts from it.
    connected: Instant,
    /// Milliseconds from `connected` to the last frame read.
    last_heard_ms: AtomicU64,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    dropped: AtomicU64,
    resent: AtomicU64,
    totals: Arc<Totals>,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl PeerCounters {
    pub(crate) fn new(id: PeerId, addr: Arc<str>, side: Side, totals: Arc<Totals>) -> Self {
        Self {
            id,
            addr,
            side,
            connected_at: SystemTime::now(),
            connected: Instant::now(),
            last_heard_ms: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            totals,
        }
    }

    /// For the reader, once per read: the messages it hands over, and the
    /// time it read them (any frame counts as hearing from the peer).
    pub(crate) fn received(&self, messages: usize, bytes: usize, at: Instant) {
        if messages > 0 {
            let (n, bytes) = (messages as u64, bytes as u64);
            add(&self.messages_in, n);
            add(&self.bytes_in, bytes);
            add(&self.totals.messages_in, n);
            add(&self.totals.bytes_in, bytes);
        }
        let ms = at.saturating_duration_since(self.connected).as_millis();
        self.last_heard_ms.store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// For the writer, once per write that succeeded: the messages it wrote.
    pub(crate) fn wrote(&self, n: u64, bytes: u64) {
        if n > 0 {
            add(&self.messages_out, n);
            add(&self.bytes_out, bytes);
            add(&self.totals.messages_out, n);
            add(&self.totals.bytes_out, bytes);
        }
    }

    /// Counts `n` messages for this peer that were dropped (by the routing
    /// layer for a slow subscriber, or by the transport when the peer left).
    pub fn record_dropped(&self, n: u64) {
        add(&self.dropped, n);
        add(&self.totals.dropped, n);
    }

    /// Counts `n` messages sent to this peer that are being sent again.
    /// The socket's total of resends is the at-least-once layer's own.
    pub fn record_resent(&self, n: u64) {
        add(&self.resent, n);
    }

    /// The peer's identity.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// The figures now; `outbox_depth` and `disconnected_at` are the caller's.
    pub(crate) fn snapshot(&self, outbox_depth: usize, disconnected_at: Option<SystemTime>) -> PeerStats {
        PeerStats {
            id: self.id,
            addr: self.addr.to_string(),
            side: self.side,
            connected_at: self.connected_at,
            last_heard: self.connected_at + Duration::from_millis(get(&self.last_heard_ms)),
            disconnected_at,
            outbox_depth,
            traffic: Traffic {
                messages_in: get(&self.messages_in),
                bytes_in: get(&self.bytes_in),
                messages_out: get(&self.messages_out),
                bytes_out: get(&self.bytes_out),
                dropped: get(&self.dropped),
            },
            resent: get(&self.resent),
        }
    }
}

/// The transport's side of the counters: totals, refusals, departed peers.
#[derive(Debug, Default)]
pub(crate) struct TransportCounters {
    pub(crate) totals: Arc<Totals>,
    /// Newest first, at most [`MAX_DEPARTED_PEERS`].
    departed: Mutex<VecDeque<(Arc<PeerCounters>, SystemTime)>>,
}

impl TransportCounters {
    pub(crate) fn refused(&self, reason: &RefusedReason) {
        add(&self.totals.refusals[reason_index(reason)], 1);
    }

    pub(crate) fn connected(&self) {
        add(&self.totals.connections, 1);
    }

    /// Keeps a departed peer's counters for the next snapshots (which still
    /// see what is counted after, such as the drops of its last messages).
    pub(crate) fn departed(&self, counters: Arc<PeerCounters>) {
        let mut departed = self.departed.lock().unwrap_or_else(|e| e.into_inner());
        if departed.len() == MAX_DEPARTED_PEERS {
            departed.pop_back();
        }
        departed.push_front((counters, SystemTime::now()));
    }

    /// Counters of `id`: among `connected` first, then the departed.
    pub(crate) fn find(&self, id: PeerId, connected: Option<Arc<PeerCounters>>) -> Option<Arc<PeerCounters>> {
        connected.or_else(|| {
            let departed = self.departed.lock().unwrap_or_else(|e| e.into_inner());
            departed.iter().find(|(c, _)| c.id == id).map(|(c, _)| c.clone())
        })
    }

    pub(crate) fn snapshot(&self, peers: Vec<PeerStats>) -> TransportStats {
        let departed = self.departed.lock().unwrap_or_else(|e| e.into_inner());
        let departed = departed.iter().map(|(c, at)| c.snapshot(0, Some(*at))).collect();
        let t = &self.totals;
        TransportStats {
            peers,
            departed,
            totals: Traffic {
                messages_in: get(&t.messages_in),
                bytes_in: get(&t.bytes_in),
                messages_out: get(&t.messages_out),
                bytes_out: get(&t.bytes_out),
                dropped: get(&t.dropped),
            },
            connections: get(&t.connections),
            refusals: HandshakeRefusals::from_counts(std::array::from_fn(|i| get(&t.refusals[i]))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter_and_label() {
        let counters = TransportCounters::default();
        let reasons = [
            RefusedReason::Version(2),
            RefusedReason::DuplicateIdentity(PeerId::random()),
            RefusedReason::OwnIdentity,
            RefusedReason::Timeout,
            RefusedReason::Malformed(String::new()),
            RefusedReason::TooManyPeers,
            RefusedReason::TooManyFromAddress,
            RefusedReason::Shed,
            RefusedReason::Io(String::new()),
            RefusedReason::Tls(crate::TlsFailure::Timeout),
            RefusedReason::UnknownFirstByte(b'P'),
            RefusedReason::WebSocket(String::new()),
            RefusedReason::IdentityNotCertified(PeerId::random()),
        ];
        for (i, reason) in reasons.iter().enumerate() {
            for _ in 0..=i {
                counters.refused(reason);
            }
        }
        let refusals = counters.snapshot(Vec::new()).refusals;
        let counts: Vec<_> = refusals.iter().collect();
        let expected: Vec<_> = REASONS.iter().enumerate().map(|(i, r)| (*r, i as u64 + 1)).collect();
        assert_eq!(counts, expected);
        assert_eq!(refusals.timeout, 4);
        assert_eq!(refusals.total(), (1..=REASONS.len() as u64).sum::<u64>());
    }

    #[tokio::test]
    async fn departed_peers_are_bounded_and_newest_first() {
        let counters = TransportCounters::default();
        let ids: Vec<_> = (0..MAX_DEPARTED_PEERS + 5).map(|_| PeerId::random()).collect();
        for &id in &ids {
            let peer = Arc::new(PeerCounters::new(id, "x".into(), Side::Bind, counters.totals.clone()));
            peer.record_dropped(1);
            counters.departed(peer);
        }
        let stats = counters.snapshot(Vec::new());
        assert_eq!(stats.departed.len(), MAX_DEPARTED_PEERS);
        assert_eq!(stats.departed[0].id, *ids.last().unwrap());
        // The totals keep what the forgotten ones counted.
        assert_eq!(stats.totals.dropped, ids.len() as u64);
        assert!(counters.find(ids[0], None).is_none());
        assert!(counters.find(ids[ids.len() - 1], None).is_some());
    }
}
