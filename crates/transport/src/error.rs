//! The transport's error type.

use std::io;

/// What went wrong in a call to the transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The address is not of the form `host:port`.
    #[error("invalid address {addr:?}: {reason}")]
    BadAddress {
        /// The address given.
        addr: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Binding failed (port in use, permission, no such local address).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address given.
        addr: String,
        /// The operating system's error.
        source: io::Error,
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
