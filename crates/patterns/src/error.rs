//! [`SendError`]: a failed send, with the message handed back.

use std::fmt;

use smartsock_transport::PeerId;

use crate::Message;

/// Why a message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendErrorKind {
    /// No peer with this identity is connected.
    UnknownPeer(PeerId),
    /// No peer is connected and the no-peer buffer is at its high-water mark
    /// (with [`WhenFull::Drop`](crate::WhenFull::Drop) for the buffer).
    BufferFull,
    /// The message is larger than the maximum frame length peers accept.
    TooLarge {
        /// The frame's envelope length.
        len: usize,
        /// The maximum frame length.
        max: usize,
    },
    /// A layer refused the message (the text says why), e.g. at-least-once
    /// delivery asked of a publish.
    Refused(&'static str),
    /// The send waited its whole timeout for room and gave up.
    TimedOut,
    /// A send that may not wait found no room.
    WouldWait,
    /// The socket is closed.
    Closed,
}

impl fmt::Display for SendErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownPeer(peer) => write!(f, "no peer with identity {peer} is connected"),
            Self::BufferFull => f.write_str("no peer is connected and the send buffer is full"),
            Self::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the maximum frame length of {max} bytes")
            }
            Self::Refused(why) => f.write_str(why),
            Self::TimedOut => f.write_str("timed out waiting for room to send"),
            Self::WouldWait => f.write_str("no room to send without waiting"),
            Self::Closed => f.write_str("the socket is closed"),
        }
    }
}

/// A send that failed, holding the message so nothing is silently lost.
///
/// ```
/// use smartsock_patterns::{Message, SendError, SendErrorKind};
///
/// let error = SendError::new(SendErrorKind::BufferFull, Message::new("keep me"));
/// assert_eq!(error.to_string(), "no peer is connected and the send buffer is full");
/// assert_eq!(error.into_message().into_payload(), "keep me");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct SendError {
    kind: SendErrorKind,
    message: Box<Message>,
}

impl SendError {
    /// An error of `kind` that hands `message` back.
    pub fn new(kind: SendErrorKind, message: Message) -> Self {
        Self { kind, message: Box::new(message) }
    }

    /// Why the send failed.
    pub fn kind(&self) -> &SendErrorKind {
        &self.kind
    }

    /// The message that was not sent.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Takes the message back.
    pub fn into_message(self) -> Message {
        *self.message
    }
}
