//! [`Message`] and [`Destination`]: the request type of every routing service.

use bytes::Bytes;
use smartsock_transport::{Frame, PeerId};

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
// A whole word for the tag: the send path copies a destination into every
// message, and with a one-byte tag the copy was made of unaligned pieces
// that stalled on the stores just before them.
#[repr(u64)]
pub enum Destination {
    /// Not decided yet: a routing layer ([`RoundRobin`](crate::RoundRobin),
    /// [`Publish`](crate::Publish)) decides. A [`PeerSet`](crate::PeerSet)
    /// used without one treats it as [`Destination::AnyOne`].
    Unresolved,
    /// Exactly this peer, whatever the send mode.
    Peer(PeerId),
    /// One connected peer: the next, in connection order, with room in its outbox.
    AnyOne,
    /// Every connected peer.
    Everyone {
        /// What to do for a peer whose outbox is full.
        when_full: WhenFull,
    },
}

/// What a send does when the queue it needs is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Wait for room: backpressure.
    #[default]
    Wait,
    /// Give up at once: drop and count (publish), or fail and hand the
    /// message back (the no-peer buffer).
    Drop,
}

/// A message on its way to one or more peers: a destination and the frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Where it goes.
    pub to: Destination,
    /// What goes: a DATA frame, or a DATA_REQ under at-least-once.
    pub frame: Frame,
}

impl Message {
    /// An at-most-once message whose destination the routing layer picks.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self { to: Destination::Unresolved, frame: Frame::Data(payload.into()) }
    }

    /// An at-most-once message for exactly `peer`.
    pub fn to_peer(peer: PeerId, payload: impl Into<Bytes>) -> Self {
        Self { to: Destination::Peer(peer), frame: Frame::Data(payload.into()) }
    }

    /// The application's bytes.
    pub fn payload(&self) -> &Bytes {
        self.frame.payload()
    }

    /// Takes the application's bytes back out.
    pub fn into_payload(self) -> Bytes {
        match self.frame {
            Frame::Data(payload) | Frame::DataReq { payload, .. } => payload,
            other => other.payload().clone(),
        }
    }
}
