//! The values that cross between the transport and the layers above it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use smartsock_framing::{Frame, MsgId, PeerId};

use crate::Side;
use crate::error::{NotQueued, TrySendError};
use crate::outbox::Outbox;
use crate::room::{RoomSignal, RoomWaiter};
use crate::stats::PeerCounters;

/// A frame queued in a peer's outbox.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The frame to write.
    pub frame: Frame,
    /// Whether the frame may go to another peer if this one disconnects before
    /// it is written. The transport hands such frames back in [`Orphans`];
    /// it drops and counts the others.
    pub reroutable: bool,
}

impl Outgoing {
    /// A frame for this peer only.
    pub fn to_this_peer(frame: Frame) -> Self {
        Self { frame, reroutable: false }
    }

    /// A frame that any peer may take.
    pub fn to_any_peer(frame: Frame) -> Self {
        Self { frame, reroutable: true }
    }
}

/// A connected peer: its identity and the sending end of its bounded outbox.
///
/// Cheap to clone. [`try_send`](PeerHandle::try_send) never waits: a full
/// outbox hands the frame back, so the caller picks the policy (wait with
/// [`send`](PeerHandle::send), skip, drop). A closed outbox means the peer
/// has gone.
#[derive(Clone)]
pub struct PeerHandle {
    pub(crate) id: PeerId,
    pub(crate) addr: Arc<str>,
    pub(crate) side: Side,
    pub(crate) outbox: Arc<Outbox>,
    /// The transport's "an outbox may have room" signal.
    pub(crate) room: Arc<RoomSignal>,
    /// This connection's traffic counters, shared with its task.
    pub(crate) counters: Arc<PeerCounters>,
}

impl PeerHandle {
    /// The peer's identity.
    #[inline]
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// The peer's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Which end of the connection this socket is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Queues a frame without waiting; hands it back if the outbox is at its
    /// mark (in frames or bytes) or the connection has ended.
    pub fn try_send(&self, item: Outgoing) -> Result<(), TrySendError> {
        self.outbox.try_push(item)
    }

    /// Queues a copy of `frame` without waiting, if the outbox is open and
    /// below its marks: the copy of a small frame is its encoding (the
    /// payload is let go by the caller, on its own thread), a large one
    /// shares its payload. `reroutable` as in [`Outgoing`].
    #[inline]
    pub fn try_send_frame(&self, frame: &Frame, reroutable: bool) -> Result<(), NotQueued> {
        self.outbox.try_push_frame(frame, reroutable)
    }

    /// Queues a frame, waiting while the outbox is full; hands it back if
    /// the connection ends first.
    pub async fn send(&self, mut item: Outgoing) -> Result<(), TrySendError> {
        loop {
            match self.outbox.try_push(item) {
                Err(TrySendError::Full(back)) => item = back,
                done => return done,
            }
            self.ready().await;
        }
    }

    /// Completes when the outbox can take a frame, or the connection has ended.
    pub async fn ready(&self) {
        RoomWaiter::new(self.room.clone()).until(|| self.outbox.has_room() || self.outbox.is_closed()).await;
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.outbox.is_closed()
    }

    /// Whether the outbox would take a frame now.
    pub fn has_room(&self) -> bool {
        self.outbox.has_room()
    }

    /// Room left in the outbox, in frames (0 at the byte mark or once closed).
    pub fn room(&self) -> usize {
        self.outbox.room()
    }

    /// Frames queued in the outbox now.
    pub fn queued(&self) -> usize {
        self.outbox.len()
    }

    /// This connection's traffic counters: the layers above count drops and
    /// resends for this peer through them.
    pub fn counters(&self) -> &Arc<PeerCounters> {
        &self.counters
    }

    /// Whether `other` is a handle on the same connection.
    pub fn same_connection(&self, other: &PeerHandle) -> bool {
        Arc::ptr_eq(&self.outbox, &other.outbox)
    }
}

impl fmt::Debug for PeerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerHandle")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .field("side", &self.side)
            .field("room", &self.room())
            .finish()
    }
}

/// The peers connected now, in the order they connected. A new table is
/// published on every change; see [`Transport::peers`](crate::Transport::peers).
pub type PeerTable = Arc<[PeerHandle]>;

/// The connected peers at one moment, indexed by identity.
#[derive(Debug)]
pub struct PeerSnapshot {
    table: PeerTable,
    index: HashMap<PeerId, usize>,
}

impl PeerSnapshot {
    pub(crate) fn new(table: PeerTable) -> Self {
        let index = table.iter().enumerate().map(|(i, peer)| (peer.id, i)).collect();
        Self { table, index }
    }

    /// The peers, in the order they connected.
    pub fn table(&self) -> &PeerTable {
        &self.table
    }

    /// The peer with identity `id`, if it is connected.
    pub fn get(&self, id: PeerId) -> Option<&PeerHandle> {
        self.index.get(&id).map(|&i| &self.table[i])
    }

    /// How many peers are connected.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no peer is connected.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// A message received from a peer.
// Laid out in this order (`repr(C)`), each field at a multiple of 16 bytes
// but the ACK handle's tail: every received message is moved out of the
// inbound queue in 16-byte pieces, and a field that straddled two of them
// (as the compiler's own order left the ACK's id) was read back with a
// store-forwarding stall, a third of `Socket::try_recv_from`.
#[derive(Debug)]
#[repr(C)]
pub struct Incoming {
    /// Who sent it.
    pub peer: PeerId,
    /// The application's bytes.
    pub payload: Bytes,
    /// Present when it came as a DATA_REQ: the means to acknowledge it.
    pub request: Option<AckHandle>,
}

/// The means to send the ACK a DATA_REQ asks for, on the connection it came on.
#[derive(Clone)]
#[repr(C)]
pub struct AckHandle {
    pub(crate) id: MsgId,
    /// The connection's outbox, whose ACK lane its writer drains before data.
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) sent: AckSent,
}

/// Whether an [`AckHandle`]'s ACK went on arrival. A whole word, not a
/// `bool`: every received message is moved (into the inbound queue, out of
/// it, through `Result`s) with this handle's `Option` in it, and a `bool`
/// left seven bytes after it that each move copied in overlapping unaligned
/// pieces (the niche's other variants are placed there): store-forwarding
/// stalls that were a fifth of `Socket::try_recv_from` in the receiver's
/// profile.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u64)]
pub(crate) enum AckSent {
    /// Left to the layer above.
    Not = 0,
    /// Queued by the transport as the message arrived.
    OnArrival = 1,
}

impl AckHandle {
    /// The id of the message to acknowledge.
    pub fn id(&self) -> MsgId {
        self.id
    }

    /// Whether the transport acknowledged it on arrival
    /// ([`TransportConfig::ack_on_arrival`](crate::TransportConfig::ack_on_arrival)).
    pub fn already_sent(&self) -> bool {
        self.sent == AckSent::OnArrival
    }

    /// Queues the ACK without waiting, on the connection's ACK lane (its own
    /// queue, written before data: see
    /// [`TransportConfig::ack_capacity`](crate::TransportConfig::ack_capacity)).
    /// Fails if the connection has ended, or if the peer has not read the
    /// last `ack_capacity` ACKs: the sender then resends, and the repeat is
    /// acknowledged when it arrives.
    pub fn send(&self) -> Result<(), AckError> {
        self.outbox.try_push_ack(self.id)
    }
}

impl fmt::Debug for AckHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckHandle").field("id", &self.id).field("already_sent", &self.already_sent()).finish()
    }
}

/// Why an ACK could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The connection the DATA_REQ came on has ended.
    #[error("the connection has ended")]
    Disconnected,
    /// The connection's ACK lane is full: the peer is not reading.
    #[error("the connection's ACK queue is full")]
    QueueFull,
}

/// Frames left in a disconnected peer's outbox, never written, that may go to
/// another peer ([`Outgoing::reroutable`]).
#[derive(Debug)]
pub struct Orphans {
    /// The peer that disconnected.
    pub peer: PeerId,
    /// The frames, in the order they were queued.
    pub frames: Vec<Outgoing>,
}

/// Takes the ACKs a connection read, one batch per read, straight from the
/// connection's task: no queue between them, so one peer's ACKs can never
/// push out another's. Install one with [`AckReceiver::deliver_to`].
pub trait AckSink: Send + Sync + 'static {
    /// `ids` were acknowledged by `peer`. Returns how many of them matched
    /// no message waiting for its ACK: a connection that sends too many of
    /// those is closed (see [`MAX_UNKNOWN_ACKS_PER_SECOND`]).
    fn acknowledged(&self, peer: PeerId, ids: &[MsgId]) -> usize;
}

/// ACKs for no pending message that one connection may send in a second
/// before it is closed as hostile (a peer that floods random ACKs costs the
/// socket work and could, with a guessable id, forge another peer's ACK).
pub const MAX_UNKNOWN_ACKS_PER_SECOND: usize = 1024;

pub(crate) type SharedSink = Arc<std::sync::OnceLock<Arc<dyn AckSink>>>;

/// Where a transport's received ACKs arrive: `(peer, msg_id)`, bounded by
/// [`TransportConfig::ack_capacity`](crate::TransportConfig::ack_capacity);
/// or, once [`deliver_to`](AckReceiver::deliver_to) is called, handed to an
/// [`AckSink`] as they are read.
pub struct AckReceiver {
    pub(crate) queue: tokio::sync::mpsc::Receiver<(PeerId, MsgId)>,
    pub(crate) sink: SharedSink,
}

impl fmt::Debug for AckReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckReceiver").field("sink", &self.sink.get().is_some()).finish()
    }
}

impl AckReceiver {
    /// From now on, hands every ACK read to `sink` (batched per read) instead
    /// of queueing it here.
    pub fn deliver_to(self, sink: Arc<dyn AckSink>) {
        // Consuming `self` makes this the only call.
        let _ = self.sink.set(sink);
    }

    /// The next ACK; `None` once the transport has gone.
    pub async fn recv(&mut self) -> Option<(PeerId, MsgId)> {
        self.queue.recv().await
    }

    /// The next ACK if one is queued now.
    pub fn try_recv(&mut self) -> Option<(PeerId, MsgId)> {
        self.queue.try_recv().ok()
    }
}

/// Where the frames of disconnected peers arrive, to be routed again.
#[derive(Debug)]
pub struct OrphanReceiver(pub(crate) tokio::sync::mpsc::Receiver<Orphans>);

impl OrphanReceiver {
    /// The next batch; `None` once the transport has gone.
    pub async fn recv(&mut self) -> Option<Orphans> {
        self.0.recv().await
    }

    /// The next batch if one is queued now.
    pub fn try_recv(&mut self) -> Option<Orphans> {
        self.0.try_recv().ok()
    }
}
