//! [`Socket::stats`]: what a socket is doing, in one snapshot.
//!
//! The figures are counted where the work happens (per read and per write
//! batch in each connection's task, by the routing layer for drops, by the
//! at-least-once driver for resends) with plain atomics; a snapshot gathers
//! them. Taking one costs a lock per connected peer, so call it for
//! monitoring (once a second, say), not per message.

use std::time::SystemTime;

use smartsock_framing::PeerId;
use smartsock_transport::{HandshakeRefusals, PeerStats, Traffic};

use crate::Socket;

/// A socket's figures at one moment, from [`Socket::stats`].
///
/// Counters (`totals`, `connections`, the drops, `delivery`, ...) only grow
/// over the socket's life, departed peers included; depths (`buffered`,
/// `in_flight`, `received_queued`, each peer's `outbox_depth`) are now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketStats {
    /// This socket's identity.
    pub identity: PeerId,
    /// When the snapshot was taken.
    pub taken_at: SystemTime,
    /// The peers connected now, in the order they connected: traffic each
    /// way, outbox depth, drops, resends, when last heard from.
    pub peers: Vec<PeerStats>,
    /// The peers that disconnected most recently, newest first (at most
    /// [`MAX_DEPARTED_PEERS`](crate::transport::MAX_DEPARTED_PEERS)); all of
    /// them, however many, are in `totals`.
    pub departed: Vec<PeerStats>,
    /// Every peer's traffic and drops since the socket was made.
    pub totals: Traffic,
    /// Peers that came up (completed handshakes), departed ones included.
    pub connections: u64,
    /// Handshakes refused, by reason.
    pub refusals: HandshakeRefusals,
    /// Messages waiting in the no-peer buffer now.
    pub buffered: usize,
    /// Messages received and not yet taken by `recv` now.
    pub received_queued: usize,
    /// At-least-once messages sent and not yet acknowledged nor given up
    /// now (0 under at-most-once).
    pub in_flight: usize,
    /// Repeated at-least-once messages the receive side dropped.
    pub duplicates_dropped: u64,
    /// Publish copies dropped for subscribers whose outbox was full (also
    /// in the peers' and the totals' `dropped`).
    pub slow_subscriber_drops: u64,
    /// Messages taken back from a departed peer's outbox and routed again.
    pub rerouted: u64,
    /// The at-least-once sender's counters; `None` under at-most-once.
    pub delivery: Option<DeliveryStats>,
}

impl SocketStats {
    /// The connected peer `id`'s figures, if it is connected.
    pub fn peer(&self, id: PeerId) -> Option<&PeerStats> {
        self.peers.iter().find(|peer| peer.id == id)
    }
}

/// The at-least-once sender's counters, copied from
/// [`AtLeastOnceStats`](crate::reliability::AtLeastOnceStats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryStats {
    /// Messages sent for the first time.
    pub sent: u64,
    /// Sends after the first (every resend; the peers' `resent` count those
    /// whose peer was known).
    pub resent: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages given up after their attempts.
    pub undelivered: u64,
    /// Resends skipped because the peer was still working through earlier messages.
    pub postponed: u64,
    /// ACKs that matched no message waiting for one.
    pub unknown_acks: u64,
}

impl Socket {
    /// A snapshot of what the socket is doing: per peer (identity, address,
    /// side, connected since, messages and bytes in and out, outbox depth,
    /// drops, resends, last heard from) and for the whole socket (totals
    /// that survive the peers, no-peer buffer depth, in flight, duplicates
    /// dropped, handshake refusals by reason).
    ///
    /// Counting costs the send and receive paths a few atomic adds per batch
    /// of frames, never a lock per message. Bytes are payload bytes.
    ///
    /// ```
    /// use smartsock::Socket;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), smartsock::Error> {
    /// let server = Socket::new()?;
    /// let addr = server.bind("127.0.0.1:0").await?;
    /// let client = Socket::new()?;
    /// client.connect(&addr.to_string())?;
    /// client.send("hello").await?;
    /// let (from, _) = server.recv_from().await.expect("open");
    ///
    /// let stats = server.stats();
    /// let peer = stats.peer(from).expect("connected");
    /// assert_eq!((peer.traffic.messages_in, peer.traffic.bytes_in), (1, 5));
    /// assert_eq!(stats.totals.messages_in, 1);
    /// assert_eq!(stats.refusals.total(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> SocketStats {
        let (peer_set, inbound) = self.stats_parts();
        let transport = self.transport().stats();
        let delivery = self.delivery_stats().map(|s| DeliveryStats {
            sent: s.sent(),
            resent: s.resent(),
            acked: s.acked(),
            undelivered: s.undelivered(),
            postponed: s.postponed(),
            unknown_acks: s.unknown_acks(),
        });
        SocketStats {
            identity: self.identity(),
            taken_at: SystemTime::now(),
            peers: transport.peers,
            departed: transport.departed,
            totals: transport.totals,
            connections: transport.connections,
            refusals: transport.refusals,
            buffered: peer_set.buffered(),
            received_queued: inbound.len(),
            in_flight: self.in_flight(),
            duplicates_dropped: self.duplicates_dropped(),
            slow_subscriber_drops: peer_set.stats().slow_subscriber_drops(),
            rerouted: peer_set.stats().rerouted(),
            delivery,
        }
    }
}
