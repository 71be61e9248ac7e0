//! What tracking a message for its ACK comes to, as the callers of
//! [`AtLeastOnceHandle`](crate::AtLeastOnceHandle) see it.

use smartsock_patterns::Message;
use smartsock_transport::PeerId;

/// Where the DATA_REQ went, as the `send` of
/// [`AtLeastOnceHandle::try_send_tracked`](crate::AtLeastOnceHandle::try_send_tracked) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Went {
    /// Out: into a peer's queue, or a buffer that sends it later. With the
    /// peer when the route said which: an ACK then counts only from it.
    Out(Option<PeerId>),
    /// Nowhere: it was not sent.
    Nowhere,
}

/// Why [`AtLeastOnceHandle::try_send_tracked`](crate::AtLeastOnceHandle::try_send_tracked)
/// tracks nothing; each holds the message, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Untracked {
    /// The in-flight limit is reached: nothing was sent. Wait with
    /// [`room`](crate::AtLeastOnceHandle::room), and try again.
    NoRoom(Message),
    /// The send said it did not go ([`Went::Nowhere`]).
    NotSent(Message),
    /// The sender was shut down, or its driver has ended (every layer and
    /// service is gone): nothing can be tracked any more.
    Closed(Message),
    /// Not a DATA message: only those are sent at least once.
    NotData(Message),
}

impl Untracked {
    /// The message, as given.
    pub fn into_message(self) -> Message {
        match self {
            Self::NoRoom(message)
            | Self::NotSent(message)
            | Self::Closed(message)
            | Self::NotData(message) => message,
        }
    }
}

/// A message being tracked, from [`AtLeastOnceHandle::try_track`](crate::AtLeastOnceHandle::try_track):
/// report what became of its send with
/// [`sent`](crate::AtLeastOnceHandle::sent) or
/// [`untrack`](crate::AtLeastOnceHandle::untrack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a tracked message must be marked sent or untracked"]
pub struct Tracked {
    pub(crate) seq: u64,
}
