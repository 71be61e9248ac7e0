//! The transport's error types: of its calls, and of a push into a
//! peer's outbox.

use std::io;

use crate::Outgoing;

/// What went wrong in a call to the transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The address is malformed: not `host:port`, an unknown scheme, an empty
    /// name, a path too long.
    #[error("invalid address {addr:?}: {reason}")]
    BadAddress {
        /// The address given.
        addr: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The address's scheme is known but this build has no transport for it
    /// (TLS and WebSocket without the `tls` and `ws` features). Never taken
    /// for TCP instead.
    #[error("{scheme}:// addresses are not supported by this build ({addr:?})")]
    UnsupportedScheme {
        /// The address given.
        addr: String,
        /// Its scheme.
        scheme: crate::Scheme,
    },
    /// Binding failed (port in use, permission, no such local address).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address given.
        addr: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// A `tls://` or `wss://` address, but no TLS configuration for that end.
    #[error("{addr:?} needs {needed} (TransportConfig::{field})")]
    TlsNotConfigured {
        /// The address given.
        addr: String,
        /// What is missing, in words.
        needed: &'static str,
        /// The [`TransportConfig`](crate::TransportConfig) field to set.
        field: &'static str,
    },
    /// A setting is out of range.
    #[error("invalid transport configuration: {0}")]
    InvalidConfig(String),
    /// The transport was made outside a tokio runtime.
    #[error("a transport must be made inside a tokio runtime")]
    NoRuntime,
    /// The transport was closed.
    #[error("the transport is closed")]
    Closed,
}

/// Why [`PeerHandle::try_send`](crate::PeerHandle::try_send) handed a frame back.
#[derive(Debug)]
#[non_exhaustive]
pub enum TrySendError {
    /// The outbox is at its mark (in frames or in bytes): the frame is handed back.
    Full(Outgoing),
    /// The connection has ended: the frame is handed back.
    Closed(Outgoing),
}

impl TrySendError {
    /// The frame that was not queued.
    pub fn into_inner(self) -> Outgoing {
        match self {
            Self::Full(item) | Self::Closed(item) => item,
        }
    }
}

impl std::fmt::Display for TrySendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(_) => f.write_str("the peer's outbox is full"),
            Self::Closed(_) => f.write_str("the peer's connection has ended"),
        }
    }
}

impl std::error::Error for TrySendError {}

/// Why [`PeerHandle::try_send_frame`](crate::PeerHandle::try_send_frame)
/// did not queue a frame (the caller still holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotQueued {
    /// The outbox is at its mark, in frames or in bytes.
    Full,
    /// The connection has ended.
    Closed,
}
