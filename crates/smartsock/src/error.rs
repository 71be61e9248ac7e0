//! [`Error`]: everything that can go wrong, one pointer wide; what went
//! wrong is its [`ErrorKind`].

use std::fmt;

use bytes::Bytes;
use smartsock_patterns::{SendError, SendErrorKind};
use smartsock_transport::TransportError;

use crate::codec::{DecodeError, EncodeError};

/// An error from a [`Socket`](crate::Socket) or its builder: what went
/// wrong is its [`kind`](Error::kind).
///
/// A failed send hands the message back: see [`Error::into_payload`].
///
/// ```
/// use smartsock::{ErrorKind, Socket};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let socket = Socket::new().unwrap();
/// let error = socket.connect("not an address").unwrap_err();
/// assert!(matches!(error.kind(), ErrorKind::Transport(_)), "{error}");
/// # }
/// ```
// One pointer, the kind boxed: every send returns a `Result<(), Error>`,
// and the caller's copy of it, at 104 bytes when this was the enum itself,
// was a tenth of a small-message sender's time (paired runs: +5-10% on 16
// and 64 B one-way, both runtimes, and at-least-once).
pub struct Error(Box<ErrorKind>);

/// What went wrong: see [`Error::kind`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
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
    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0
    }

    /// What went wrong, taken out (to take the message out of a send error,
    /// say; [`into_payload`](Error::into_payload) does that for the payload).
    pub fn into_kind(self) -> ErrorKind {
        *self.0
    }

    /// Why a send failed, if this is a failed send (its message is inside:
    /// [`into_payload`](Error::into_payload)).
    pub fn send_kind(&self) -> Option<&SendErrorKind> {
        match self.kind() {
            ErrorKind::Send(e) => Some(e.kind()),
            _ => None,
        }
    }

    /// A builder setting, or a combination of them, is not usable.
    pub(crate) fn config(reason: impl Into<String>) -> Self {
        ErrorKind::Config(reason.into()).into()
    }

    /// The payload of a message that could not be sent (or did not parse),
    /// so nothing is silently lost.
    pub fn into_payload(self) -> Option<Bytes> {
        match *self.0 {
            ErrorKind::Send(error) => Some(error.into_message().into_payload()),
            ErrorKind::Decode(error) => Some(error.into_payload()),
            _ => None,
        }
    }

    /// Whether the socket was closed: a send refused, or a bind or connect
    /// asked for, after [`close`](crate::Socket::close).
    pub fn is_closed(&self) -> bool {
        self.send_kind() == Some(&SendErrorKind::Closed)
            || matches!(self.kind(), ErrorKind::Transport(TransportError::Closed))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Self(Box::new(kind))
    }
}

/// `From` each error an [`ErrorKind`] wraps, so that `?` converts them.
macro_rules! from_kind {
    ($($source:ty),*) => {$(
        impl From<$source> for Error {
            fn from(error: $source) -> Self {
                ErrorKind::from(error).into()
            }
        }
    )*};
}

from_kind!(TransportError, SendError, EncodeError, DecodeError, smartsock_transport::AckError);
