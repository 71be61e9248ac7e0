//! [`Error`]: everything that can go wrong, in one enum.

use bytes::Bytes;
use smartsock_patterns::{SendError, SendErrorKind};
use smartsock_transport::TransportError;

use crate::codec::{DecodeError, EncodeError};

/// An error from a [`Socket`](crate::Socket) or its builder.
///
/// A failed send hands the message back: see [`Error::into_payload`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A builder setting, or a combination of them, is not usable.
    #[error("invalid socket configuration: {0}")]
    Config(String),
    /// Binding or connecting failed (bad address, port in use, ...).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The message could not be sent; it is inside.
    #[error("cannot send: {0}")]
    Send(#[from] SendError),
    /// A tower layer added with [`SocketBuilder::layer`](crate::SocketBuilder::layer)
    /// failed the send (a timeout, say). The message is not recoverable.
    #[error("a send layer failed: {0}")]
    Layer(tower::BoxError),
    /// A value did not encode for a typed send; nothing was sent.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A received payload did not decode as the expected type; the peer
    /// and the bytes are inside.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// An ACK could not be queued ([`AckToken::ack`](crate::AckToken::ack)):
    /// the sender sends the message again.
    #[error("cannot acknowledge: {0}")]
    Ack(#[from] smartsock_transport::AckError),
}

impl Error {
    /// The payload of a message that could not be sent (or did not parse),
    /// so nothing is silently lost.
    pub fn into_payload(self) -> Option<Bytes> {
        match self {
            Self::Send(error) => Some(error.into_message().into_payload()),
            Self::Decode(error) => Some(error.into_payload()),
            _ => None,
        }
    }

    /// Whether this is a send refused because the socket is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Send(e) if *e.kind() == SendErrorKind::Closed)
            || matches!(self, Self::Transport(TransportError::Closed))
    }
}
