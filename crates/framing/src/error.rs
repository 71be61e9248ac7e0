//! The one error type of this crate.

use std::io;

use crate::FrameKind;

/// Which rule of the wire format a stream or a value broke.
///
/// Every variant but [`FrameError::Io`] means the *peer* sent something
/// malformed: the right answer is to close that one connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The 4-byte length prefix announced more than the configured maximum.
    /// Detected as soon as the prefix is read, before anything is allocated.
    #[error("frame length {length} exceeds the maximum of {max} bytes")]
    TooLong {
        /// The length the prefix announced (or, when encoding, the envelope's length).
        length: u64,
        /// The configured maximum frame length.
        max: usize,
    },
    /// A length prefix of zero: every envelope holds at least its type byte.
    #[error("empty envelope: a frame must hold at least its type byte")]
    EmptyEnvelope,
    /// A known frame type whose body has the wrong length.
    #[error("malformed {kind} frame: body is {actual} bytes, expected {expected}")]
    BadBody {
        /// The frame type whose body was wrong.
        kind: FrameKind,
        /// The body length received.
        actual: usize,
        /// What the protocol requires, in words ("17", "at least 16", ...).
        expected: &'static str,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({buffered} bytes of it had arrived)")]
    Truncated {
        /// How many bytes of the unfinished frame had been received.
        buffered: usize,
    },
    /// Text that is not 32 hex digits was given as a [`PeerId`](crate::PeerId) or [`MsgId`](crate::MsgId).
    #[error("{text:?} is not an identity: expected 32 hex digits")]
    BadId {
        /// The text given (cut to 64 characters).
        text: String,
    },
    /// The underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}
