//! [`Error`] and [`RecvTimeoutError`].

use std::fmt;
use std::io;

use smartsock::Bytes;

/// An error from a blocking [`Socket`](crate::Socket) or its builder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// What the async socket said: a bad address, a failed send (the message
    /// is inside, see [`Error::into_payload`]), a closed socket, a setting
    /// out of range.
    #[error(transparent)]
    Socket(#[from] smartsock::Error),
    /// The socket's own runtime could not be started.
    #[error("cannot start the socket's runtime: {0}")]
    Runtime(io::Error),
    /// A blocking-side setting is out of range.
    #[error("invalid setting: {0}")]
    Config(String),
}

impl Error {
    /// The payload of a message that could not be sent, so nothing is lost.
    pub fn into_payload(self) -> Option<Bytes> {
        match self {
            Self::Socket(error) => error.into_payload(),
            _ => None,
        }
    }

    /// Whether the socket was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Socket(error) if error.is_closed())
    }
}

/// Why [`Socket::recv_timeout`](crate::Socket::recv_timeout) returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// Nothing arrived in time; the socket is still open.
    Timeout,
    /// The socket is closed and every message it received has been taken.
    Closed,
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "no message within the timeout",
            Self::Closed => "the socket is closed",
        })
    }
}

impl std::error::Error for RecvTimeoutError {}
