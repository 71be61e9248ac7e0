//! The transport's error type.

use std::io;

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
