//! The values that cross between the transport and the layers above it.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use smartsock_framing::{Frame, MsgId, PeerId};
use tokio::sync::mpsc;

use crate::Side;

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
/// outbox hands the frame back, so the caller picks the policy (wait, skip,
/// drop). A closed outbox means the peer has gone.
#[derive(Clone)]
pub struct PeerHandle {
    pub(crate) id: PeerId,
    pub(crate) addr: Arc<str>,
    pub(crate) side: Side,
    pub(crate) outbox: mpsc::Sender<Outgoing>,
}

impl PeerHandle {
    /// The peer's identity.
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

    /// The outbox's sending end, for callers that want to wait for room
    /// (`reserve`) or poll for it (`tokio_util::sync::PollSender`).
    pub fn outbox(&self) -> &mpsc::Sender<Outgoing> {
        &self.outbox
    }

    /// Queues a frame without waiting.
    pub fn try_send(&self, item: Outgoing) -> Result<(), mpsc::error::TrySendError<Outgoing>> {
        self.outbox.try_send(item)
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.outbox.is_closed()
    }

    /// Room left in the outbox, in frames.
    pub fn room(&self) -> usize {
        self.outbox.capacity()
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

/// A message received from a peer.
#[derive(Debug)]
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
pub struct AckHandle {
    pub(crate) id: MsgId,
    /// The connection's ACK lane, which its writer drains before its outbox.
    pub(crate) lane: mpsc::Sender<MsgId>,
    pub(crate) already_sent: bool,
}

impl AckHandle {
    /// The id of the message to acknowledge.
    pub fn id(&self) -> MsgId {
        self.id
    }

    /// Whether the transport acknowledged it on arrival
    /// ([`TransportConfig::ack_on_arrival`](crate::TransportConfig::ack_on_arrival)).
    pub fn already_sent(&self) -> bool {
        self.already_sent
    }

    /// Queues the ACK without waiting, on the connection's ACK lane (its own
    /// queue, written before data: see
    /// [`TransportConfig::ack_capacity`](crate::TransportConfig::ack_capacity)).
    /// Fails if the connection has ended, or if the peer has not read the
    /// last `ack_capacity` ACKs: the sender then resends, and the repeat is
    /// acknowledged when it arrives.
    pub fn send(&self) -> Result<(), AckError> {
        self.lane.try_send(self.id).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AckError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => AckError::Disconnected,
        })
    }
}

impl fmt::Debug for AckHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckHandle").field("id", &self.id).field("already_sent", &self.already_sent).finish()
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
