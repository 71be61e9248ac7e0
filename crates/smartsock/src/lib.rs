//! Smart sockets: ZeroMQ-style messaging without a broker, speaking the
//! aiomsg v1 wire protocol byte for byte.
//!
//! One [`Socket`] binds and/or connects to many peers. [`Socket::send`]
//! distributes whole messages by round-robin (one peer each, cycling) or
//! publish (every peer), and [`Socket::send_to`] by peer identity;
//! [`Socket::recv`] merges messages from every peer. The socket buffers while
//! nobody is connected, reconnects by itself, keeps links alive with
//! heartbeats, and can guarantee at-least-once delivery with acks and resends.
//! It talks to aiomsg sockets in Python, Go, JavaScript and others.
//!
//! ```
//! use smartsock::{SendMode, Socket};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), smartsock::Error> {
//! // A publisher binds...
//! let publisher = Socket::builder().send_mode(SendMode::Publish).build()?;
//! let addr = publisher.bind("127.0.0.1:0").await?;
//!
//! // ...subscribers connect, in any order, before or after it is up.
//! let subscriber = Socket::new()?;
//! subscriber.connect(&addr.to_string())?;
//! publisher.wait_for_peers(1).await;
//!
//! publisher.send("tick").await?;
//! assert_eq!(subscriber.recv().await.unwrap(), "tick");
//! # Ok(())
//! # }
//! ```
//!
//! # Transports
//!
//! The same socket over every transport; only the address changes:
//! `host:port` or `tcp://host:port`, `unix:///path` (and `unix://@name` on
//! Linux), `inproc://name` within one process, and [`Socket::attach`] for a
//! stream you already hold. `tls://`, `ws://` and `wss://` are refused at
//! once: this build has no transport for them.
//!
//! ```
//! use smartsock::Socket;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), smartsock::Error> {
//! let server = Socket::new()?;
//! let endpoint = server.bind("inproc://doc-pipeline").await?;
//! assert_eq!(endpoint.to_string(), "inproc://doc-pipeline");
//! let client = Socket::new()?;
//! client.connect(&endpoint.to_string())?;
//! client.send("in process").await?;
//! assert_eq!(server.recv().await.unwrap(), "in process");
//! # Ok(())
//! # }
//! ```
//!
//! For threaded programs, the `smartsock-blocking` crate runs this socket
//! behind a blocking API.
//!
//! # Send modes and delivery
//!
//! | | at-most-once (default) | at-least-once |
//! |---|---|---|
//! | round-robin (default) | one peer each, skipping full ones | acked, resent (maybe to another peer) until acked |
//! | least-loaded | the peer with room and the fewest messages on its hands | the same, counting unacknowledged ones |
//! | publish | every peer; a full subscriber's copy is dropped and counted | refused by [`SocketBuilder::build`] |
//! | `send_to(peer)` | exactly that peer | exactly that peer, resent until acked |
//!
//! [`SendMode::LeastLoaded`] is round-robin that follows capacity: each
//! message goes to the peer with room that has the fewest messages on its
//! hands (queued, and under at-least-once unacknowledged), so fast workers
//! take more. Messages sent before any peer is up are buffered and go to the
//! first peers that connect: wait for them with [`Socket::wait_for_peers`],
//! or let them gather for a moment with [`SocketBuilder::settle`].
//!
//! Every limit has a default and a [`SocketBuilder`] setting; every queue is
//! bounded. A send waits while the queue it needs is full; anything that
//! cannot be sent fails at once and hands the message back
//! ([`Error::into_payload`]).
//!
//! # What is guaranteed
//!
//! **At-most-once** ([`Delivery::AtMostOnce`], the default): a message goes
//! out once, as DATA. `send` returning `Ok` means it is queued: in a peer's
//! queue, or in the no-peer buffer until one connects. A message still
//! queued for a peer that disconnects (or in the part of a write that the
//! connection never took) goes to another peer under round-robin, after
//! what that peer was sent meanwhile; one already written to a connection
//! that breaks may be lost.
//!
//! **At-least-once** ([`Delivery::AtLeastOnce`]): each message goes out as
//! DATA_REQ and stays pending until the peer it went to acknowledges it.
//! - *When ACKs go* (the receiver's [`AckTiming`]): when the application
//!   takes the message (`recv`, the default), as soon as it is read
//!   (`OnArrival`, as other aiomsg implementations do), or when the
//!   application says the work is done (`Explicit`, with
//!   [`Socket::recv_with_ack`] and [`AckToken::ack`]; a token dropped
//!   without it means "not done").
//! - *When a message is sent again*: at once when the connection it went on
//!   is lost (to another live peer, if there is one); otherwise when the
//!   resend timeout ([`SocketBuilder::resend_timeout`]) has passed since it
//!   was sent *and* the peer holding it is not still working through its
//!   queue: a peer that keeps acknowledging messages sent before this one
//!   within each resend timeout is left alone, so slow but healthy receivers
//!   cause no resends. A peer that stops acknowledging altogether gets the
//!   timer as a backstop. After [`SocketBuilder::give_up`]'s attempts or
//!   time, the message is handed back on [`Socket::undelivered`].
//! - *Duplicates* are possible (a resend after a lost ACK, or of a job a
//!   receiver was still doing when the timer ran out); receivers drop
//!   repeats of acknowledged messages within a window. *Order* is not kept
//!   across resends.
//!
//! **Close** ([`Socket::close`]) refuses new sends, waits (up to the
//! linger, [`SocketBuilder::linger`], 5 s by default) for buffered messages
//! to find a peer and, under at-least-once, for the ACKs; then each
//! connection writes what is queued, ends its write side and reads on until
//! the peer ends its side too, so that nothing accepted is destroyed by a
//! reset. It returns a [`CloseReport`] of what it could not confirm as
//! delivered; unacknowledged messages are handed back on
//! [`Socket::undelivered`].
//!
//! # Runtimes
//!
//! The socket runs on the tokio runtime it is built in, current-thread or
//! multi-thread, with I/O and time enabled. On the multi-thread runtime
//! (what `#[tokio::main]` gives), send and receive from a spawned task
//! rather than from `main`'s own body: `main` runs in `block_on` on a
//! thread that is not one of the runtime's workers, so every hand-off
//! between it and the socket's connection tasks wakes another thread. From
//! a task, those hand-offs stay on its worker. The README's benchmarks show
//! both, side by side. On Linux, a runtime built by hand with
//! [`prefer_batch_scheduling`] on each worker thread writes bigger batches
//! still: woken workers no longer preempt the code that sends.
//!
//! ```
//! use smartsock::Socket;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), smartsock::Error> {
//!     let server = Socket::new()?;
//!     let addr = server.bind("127.0.0.1:0").await?;
//!     let client = Socket::new()?;
//!     client.connect(&addr.to_string())?;
//!     let echo = tokio::spawn(async move {
//!         while let Some((peer, message)) = server.recv_from().await {
//!             if server.send_to(peer, message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//!     let answers = tokio::spawn(async move {
//!         client.send("ping").await?;
//!         let answer = client.recv().await;
//!         client.close().await;
//!         Ok::<_, smartsock::Error>(answer)
//!     });
//!     assert_eq!(answers.await.expect("the task ran")?.expect("an answer"), "ping");
//!     echo.abort();
//!     Ok(())
//! }
//! ```
//!
//! A socket can also have a runtime of its own, as the blocking API's sockets
//! do: build it inside that runtime, and use it from any other. Its
//! connections (and listeners, wherever `bind` is awaited) then live on
//! their own thread, whatever the application's code does. The blocking
//! API's sockets run this way, on one worker under `SCHED_BATCH`: in the
//! README's benchmarks, one-way 64 B from them is about 1.5x the async
//! socket driven from `main` on 2 workers, and about two thirds of the
//! async socket sharing a current-thread runtime, since every hand-off
//! then crosses threads.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use smartsock::Socket;
//!
//! // One worker for the sockets' connections, which does not preempt the
//! // application's thread when a send wakes it.
//! let io = tokio::runtime::Builder::new_multi_thread()
//!     .worker_threads(1)
//!     .enable_all()
//!     .on_thread_start(smartsock::prefer_batch_scheduling)
//!     .build()?;
//! let (server, client) = {
//!     let _on_io = io.enter();
//!     (Socket::new()?, Socket::new()?)
//! };
//!
//! // The application's runtime, here what `#[tokio::main]` would give.
//! let app = tokio::runtime::Runtime::new()?;
//! let got = app.block_on(async {
//!     let addr = server.bind("127.0.0.1:0").await?;
//!     client.connect(&addr.to_string())?;
//!     client.send("over").await?;
//!     let got = server.recv().await;
//!     client.close().await;
//!     server.close().await;
//!     Ok::<_, smartsock::Error>(got)
//! })?;
//! assert_eq!(got.as_deref(), Some(&b"over"[..]));
//! # Ok(())
//! # }
//! ```
//!
//! # Logs
//!
//! The library logs through [`tracing`](https://docs.rs/tracing) and never
//! installs a subscriber: install one (`tracing-subscriber`) to see them.
//! `debug` for connections coming and going, `warn` for drops, refused
//! handshakes, connect failures that go on (once per run) and closes that
//! could not confirm everything. The same facts arrive as [`Event`]s on
//! [`Socket::events`].
//!
//! # Building your own stack
//!
//! The socket is a composition of the crates below it, re-exported here:
//! [`framing`] (the wire format), [`transport`] (connections), [`patterns`]
//! (routing as tower layers) and [`reliability`] (at-least-once as tower
//! middleware). Add tower middleware to the default stack with
//! [`SocketBuilder::layer`], or compose your own:
//!
//! ```
//! use std::time::Duration;
//! use smartsock::patterns::{Message, PeerSet, PeerSetConfig, RoundRobinLayer};
//! use smartsock::transport::{Transport, TransportConfig};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let parts = Transport::new(TransportConfig::default())?;
//! let peers = PeerSet::new(&parts.transport, parts.orphans, PeerSetConfig::default());
//! let mut send = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(1))
//!     .layer(RoundRobinLayer::new())
//!     .service(peers);
//! // Buffered until a peer connects.
//! send.ready().await?.call(Message::new("hello")).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Typed messages
//!
//! [`Socket::typed`] makes a [`TypedSocket`]: `send`, `send_to`, `recv`,
//! `recv_from`, a `Stream` and a `Sink` of your own type, encoded by a
//! [`Codec`]. A payload that does not decode is a [`DecodeError`] naming the
//! peer and holding the bytes; the next message still arrives. Implement
//! [`Codec`] for formats serde does not cover (protobuf through prost, a
//! hand-written layout: see `examples/typed.rs`).
//!
//! # Stats and metrics
//!
//! [`Socket::stats`] is a [`SocketStats`] snapshot: per peer ([`PeerStats`]:
//! identity, address, side, connected since, messages and payload bytes in and
//! out, outbox depth, drops, resends, last heard from) and per socket (totals
//! that survive departed peers, the last departed peers' figures, no-peer
//! buffer depth, in flight, duplicates dropped, handshake refusals by reason
//! in [`HandshakeRefusals`]). Connections count per read and per write batch
//! with relaxed atomics, the routing layer counts drops, the at-least-once
//! driver resends; no lock is taken per message. With the `metrics` feature,
//! `Socket::publish_metrics` and `Socket::spawn_metrics` hand the same
//! figures to the [`metrics`](https://docs.rs/metrics) facade (names and labels
//! in the `metrics` module).
//!
//! # Features
//!
//! `tls` and `ws` are on by default; each feature builds alone.
//!
//! | feature | adds | format |
//! |---|---|---|
//! | `tls` | `tls://` addresses, `wss://` with `ws`; [`tls`] config helpers; [`SocketBuilder::tls_server`], [`SocketBuilder::tls_client`] | TLS 1.2 and 1.3 through rustls (ring backend) |
//! | `ws` | WebSocket peers accepted on TCP and TLS bind ends; `ws://` connects | RFC 6455 binary messages (tokio-tungstenite) |
//! | `json` | `Json` codec; `Socket::send_json`, `Socket::recv_json` | JSON (serde_json): readable, parsed by every language |
//! | `msgpack` | `MsgPack` codec | MessagePack (rmp-serde): binary, structs as maps with field names, libraries in every language |
//! | `postcard` | `Postcard` codec | postcard: the most compact (varints, no field names), stable format since 1.0, for Rust on both ends |
//! | `metrics` | `Socket::publish_metrics`, `Socket::spawn_metrics`, the `metrics` module | the stats as counters and gauges of the `metrics` facade, for any exporter |
//!
//! The compact binary codec is postcard rather than bincode: its wire format
//! is specified and stable across 1.x, its varints make small integers one
//! byte, and it is maintained, while bincode's development has stopped.

#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod builder;
mod codec;
mod error;
#[cfg(feature = "json")]
mod json;
#[cfg(feature = "metrics")]
pub mod metrics;
mod sched;
mod sender;
mod socket;
mod stats;
mod typed;

pub use builder::{BoxSendService, Delivery, SendMode, SocketBuilder};
#[cfg(feature = "json")]
pub use codec::Json;
#[cfg(feature = "postcard")]
pub use codec::Postcard;
pub use codec::{Codec, DecodeError, EncodeError};
#[cfg(feature = "msgpack")]
pub use codec::{MsgPack, MsgPackError};
pub use error::{Error, ErrorKind};
pub use sched::prefer_batch_scheduling;
pub use sender::Sender;
pub use socket::{CloseReport, Received, Socket};
pub use stats::{DeliveryStats, SocketStats};
pub use typed::{TypedSender, TypedSocket};

pub use bytes::Bytes;
pub use smartsock_framing::{MsgId, PeerId};
pub use smartsock_patterns::WhenFull;
pub use smartsock_reliability::{AckTiming, AckToken, Undelivered};
/// TLS configs from PEM, and `rustls` itself (feature `tls`).
#[cfg(feature = "tls")]
pub use smartsock_transport::tls;
pub use smartsock_transport::{
    Address, ConnectError, DisconnectReason, DropReason, Endpoint, Event, HandshakeRefusals, PeerCertificate,
    PeerInfo, PeerStats, ReconnectStrategy, RefusedReason, Side, TlsFailure, Traffic, TryRecvError,
};

/// The wire format (`smartsock-framing`).
pub use smartsock_framing as framing;
/// Routing layers and the peer set (`smartsock-patterns`).
pub use smartsock_patterns as patterns;
/// At-least-once middleware (`smartsock-reliability`).
pub use smartsock_reliability as reliability;
/// Connections (`smartsock-transport`).
pub use smartsock_transport as transport;

/// The README's code blocks, compiled and run as doctests (with `json` and
/// `metrics`: its typed example needs the codec, its metrics example the
/// feature; `cargo xtask ci` turns every feature on).
#[cfg(all(doctest, feature = "json", feature = "metrics"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
