//! Routing for smartsock: which peers get each message.
//!
//! - [`PeerSet`] is a `tower::Service<Message>` that puts frames in the
//!   bounded outboxes of the transport's peers, follows them as they come and
//!   go, holds messages while none is connected, and routes again what a
//!   disconnected peer never got.
//! - [`RoundRobin`] / [`RoundRobinLayer`] and [`Publish`] / [`PublishLayer`]
//!   are `tower::Layer`s, one per send mode, that choose the
//!   [`Destination`] of each un-addressed message. A message addressed to a
//!   peer ([`Message::to_peer`]) goes to exactly that peer, whatever the layer.
//!
//! They compose with any tower middleware:
//!
//! ```
//! use std::time::Duration;
//! use smartsock_patterns::{Message, PeerSet, PeerSetConfig, RoundRobinLayer};
//! use smartsock_transport::{Transport, TransportConfig};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let receiver = Transport::new(TransportConfig::default())?;
//! let addr = receiver.transport.bind("127.0.0.1:0").await?;
//!
//! let sender = Transport::new(TransportConfig::default())?;
//! let peers = PeerSet::new(&sender.transport, sender.orphans, PeerSetConfig::default());
//! let mut service = ServiceBuilder::new()
//!     .concurrency_limit(64)
//!     .layer(RoundRobinLayer::new())
//!     .service(peers);
//!
//! // Sent before any peer is up: held, then flushed when the peer connects.
//! service.ready().await?.call(Message::new("hello")).await?;
//! sender.transport.connect(&addr.to_string())?;
//!
//! let received = tokio::time::timeout(Duration::from_secs(5), receiver.inbound.recv()).await??;
//! assert_eq!(received.payload, "hello");
//! # Ok(())
//! # }
//! ```
//!
//! # Limits
//!
//! | queue | default | when full |
//! |---|---|---|
//! | a peer's outbox | 4096 frames or 1 MiB of payload (`TransportConfig::outbox_capacity`, `outbox_bytes`) | round-robin skips the peer; publish drops its copy (or waits, with [`WhenFull::Wait`]); by identity waits |
//! | every outbox | | the service is not ready: the send waits |
//! | the no-peer buffer | 1024 messages / 64 MiB ([`PeerSetConfig`]) | the send waits, or fails with the message handed back ([`WhenFull::Drop`]) |
//!
//! A send to an identity that is not connected fails at once with
//! [`SendErrorKind::UnknownPeer`]; a message over the maximum frame length
//! with [`SendErrorKind::TooLarge`]; after the transport closes, with
//! [`SendErrorKind::Closed`]. Every [`SendError`] hands the message back.

#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod backlog;
mod error;
mod flusher;
mod future;
mod message;
mod peer_set;
mod publish;
mod round_robin;
mod routing;

pub use error::{SendError, SendErrorKind};
pub use future::ResponseFuture;
pub use message::{Destination, Message, WhenFull};
pub use peer_set::{Attempt, LoadFn, Outcome, PeerSet, PeerSetConfig, PeerSetStats, Share};
pub use publish::{Publish, PublishLayer};
pub use round_robin::{RoundRobin, RoundRobinLayer};
