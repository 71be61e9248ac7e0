//! Live, identified aiomsg v1 connections that keep themselves alive.
//!
//! The transport turns byte streams into *peers*: it binds and accepts,
//! connects and reconnects, runs the HELLO handshake, sends and checks
//! heartbeats, and moves frames between each peer and a few bounded queues.
//! It knows nothing of send modes; it offers "these peers are up, here is a
//! bounded outbox for each, here are the frames they sent, here is what
//! happened". Routing lives in `smartsock-patterns`, acknowledgements in
//! `smartsock-reliability`.
//!
//! ```
//! use smartsock_framing::Frame;
//! use smartsock_transport::{Outgoing, Transport, TransportConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Transport::new(TransportConfig::default())?;
//! let addr = server.transport.bind("127.0.0.1:0").await?;
//!
//! let client = Transport::new(TransportConfig::default())?;
//! client.transport.connect(&addr.to_string())?;
//!
//! // Wait for the handshake, then queue a frame in the peer's outbox.
//! let mut peers = client.transport.peers();
//! let server_peer = peers.wait_for(|table| !table.is_empty()).await?[0].clone();
//! assert_eq!(server_peer.id(), server.transport.identity());
//! server_peer.try_send(Outgoing::to_any_peer(Frame::Data("hello".into())))?;
//!
//! let message = server.inbound.recv().await?;
//! assert_eq!(message.payload, "hello");
//! assert_eq!(message.peer, client.transport.identity());
//! client.transport.close().await;
//! server.transport.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Connections
//!
//! A connection runs over any `AsyncRead + AsyncWrite + Send + Unpin`
//! stream. [`Transport::bind`] and [`Transport::connect`] take an
//! [`Address`] of any scheme: `host:port` or `tcp://host:port`,
//! `unix:///path` (Unix domain sockets; `unix://@name` is a Linux abstract
//! name; the peer's pid and uid are in the connect event's address), and
//! `inproc://name` (sockets of one process, over in-memory pipes of
//! [`INPROC_PIPE_BYTES`] each way), `tls://host:port` (feature `tls`:
//! rustls; the bind end is the server, the connect end verifies the host or
//! [`TransportConfig::tls_server_name`]; see [`tls`] for configs from PEM),
//! and WebSocket (feature `ws`): TCP and TLS bind ends tell a raw peer
//! (first byte `0x00`) from a WebSocket upgrade (`G`) and serve both on one
//! port; `ws://host:port/path` and `wss://host:port/path` connect. A scheme
//! whose feature is off is refused at once, by name.
//! [`Transport::peer_info`] shows a peer's verified TLS certificate;
//! [`TransportConfig::bind_identity_to_certificate`] makes a TLS bind end
//! refuse clients whose HELLO names an identity their certificate does not
//! carry (a `urn:uuid:` subject alternative name).
//! [`Transport::connect_with`] takes any other connector, and
//! [`Transport::attach`] adopts a stream that is already open (never
//! reconnected; its end is an event).
//!
//! A Unix path bind removes a socket file nobody listens on (left by a
//! crash), refuses one somebody listens on (address in use) and never
//! touches a file that is not a socket; the file is removed when the
//! transport closes. An `inproc://` name is bound once at a time; a connect
//! to a name not bound yet is retried like a TCP connect to a closed port.
//!
//! - **Handshake.** The connect end writes its HELLO at once; the bind end
//!   waits for the peer's first byte, then answers. Both must read the peer's
//!   HELLO within the handshake timeout. Frames that arrived in the same read
//!   as the HELLO are decoded straight away.
//! - **Heartbeats.** A HEARTBEAT goes out after the heartbeat interval with
//!   nothing sent; a connection with nothing received for the heartbeat
//!   timeout is torn down (and the connect end reconnects). The bytes of a
//!   frame still arriving count as life as long as the frame keeps up
//!   [`TransportConfig::min_receive_rate`] on average (with one heartbeat
//!   timeout of slack), so a large frame over a slow link is not cut while
//!   a frame dripped a byte at a time is.
//! - **I/O.** One task per connection. Its writer drains everything queued
//!   and writes it with one call (small frames encoded into one buffer, large
//!   payloads written in place with a vectored write); its reader reads 64 KiB
//!   chunks and decodes every complete frame before reading again. Payloads
//!   are slices of the read buffer.
//! - **Reconnection.** The connect end resolves the name again on every try,
//!   bounds each try by the connect timeout, and waits
//!   [`ReconnectStrategy::delay`] between tries.
//!
//! # Events
//!
//! [`Transport::events`] streams [`Event`]s: `PeerConnected` (id, address,
//! side), `PeerDisconnected` (id, [`DisconnectReason`]), `HandshakeRefused`
//! (address, [`RefusedReason`]: version, duplicate identity, own identity,
//! timeout, malformed, too many peers, i/o, TLS ([`TlsFailure`]), unknown
//! first byte, WebSocket, identity not certified), `Reconnecting` (address,
//! attempt, delay) and `Dropped` (count, [`DropReason`]). Each stream keeps
//! its own bounded queue; drops are tallied there per peer and reason while
//! unread (one event, its count growing), so a flood of drops never pushes a
//! connection event out.
//!
//! # Stats
//!
//! [`Transport::stats`] is a [`TransportStats`] snapshot: each connected
//! peer's [`PeerStats`] (messages and payload bytes each way, drops,
//! resends, outbox depth, connected since, last heard from), the last
//! [`MAX_DEPARTED_PEERS`] departed peers', [`Traffic`] totals that survive
//! every peer, completed handshakes and [`HandshakeRefusals`] by reason.
//! Each connection counts once per read and once per write batch (relaxed
//! atomic adds, no lock); the layers above count drops and resends against
//! a peer through [`PeerHandle::counters`] or [`Transport::peer_counters`].
//!
//! # Limits
//!
//! Every limit is a [`TransportConfig`] field:
//!
//! | limit | default | when reached |
//! |---|---|---|
//! | `max_frame_length` | 16 MiB | the peer is disconnected (`Protocol` reason); nothing is allocated for the announced length: the read buffer grows with the bytes that arrive (unless a frame at least as long, and at most 2 MiB, already came on that connection and no messages wait for room), and is given back after a large frame |
//! | `outbox_capacity` | 4096 frames per peer | [`PeerHandle::try_send`] hands the frame back; the caller waits, skips or drops |
//! | `outbox_bytes` | 1 MiB of payload per peer | the same: a frame is taken while fewer bytes are queued (one large frame may pass the mark) |
//! | `inbound_capacity` | 1024 messages | reading stops on every connection until the application takes one; TCP pushes back, nothing is dropped |
//! | `inbound_bytes` | 64 MiB of payload | the same, counted in bytes |
//! | `inbound_lookahead` | 128 KiB per connection | while the inbound queue is full a connection reads on for ACKs and HEARTBEATs, holding at most this many bytes (messages waiting for room, frame in progress); at the bound it stops reading |
//! | `ack_capacity` | 4096 ACKs | outgoing: per connection, further ACKs are not queued (the sender resends, the repeat is acknowledged again); incoming, without an [`AckSink`]: the same per socket |
//! | [`MAX_UNKNOWN_ACKS_PER_SECOND`] (fixed) | 1024 per connection | the connection is closed (`Protocol`): ACKs for messages never sent to it |
//! | [`MAX_CONTROL_FRAMES_PER_SECOND`] (fixed) | 1024 per connection | the connection is closed (`Protocol`): a flood of HEARTBEAT, HELLO or unknown frames |
//! | frames decoded per turn (fixed) | 4096 per connection | the connection lets the others run before it decodes more |
//! | `max_peers` | 1024 | the new connection is refused (`TooManyPeers`) |
//! | `max_handshakes` | 64 | the oldest pending handshake is dropped to make room: accepting never waits |
//! | `max_handshakes_per_address` | 8 | a further connection from that IP is closed at once |
//! | `max_peers_per_address` | 256 | a further peer from that IP is refused |
//! | `handshake_timeout` | 5 s | the connection is refused (`Timeout`) |
//! | `handshake_timeout` also bounds | the TLS handshake and the WebSocket upgrade | |
//! | WebSocket upgrade request (tungstenite's) | 64 KiB | refused (`WebSocket`) before more is read |
//! | WebSocket message or frame | `max_frame_length` + 4 | closed with 1009 from the frame's header, before its payload is read |
//! | `heartbeat_interval` / `heartbeat_timeout` | 5 s / 15 s | a HEARTBEAT is sent / the connection is torn down (`HeartbeatTimeout`) after that long without a byte |
//! | `min_receive_rate` | 64 KiB/s | a frame in progress longer than `heartbeat_timeout` + its bytes so far at this rate is cut (`TooSlow`) |
//! | `connect_timeout` | 5 s | the try fails and the next one is scheduled |
//! | `linger` | 5 s | on close, a connection whose peer has not ended its side after ours is cut; what it wrote or held is counted in [`Transport::unconfirmed`] |
//! | [`INPROC_PIPE_BYTES`] (fixed) | 256 KiB each way | an `inproc://` writer waits, as on a full socket buffer |
//! | [`INPROC_BACKLOG`] (fixed) | 128 connections | an `inproc://` connect try waits, bounded by `connect_timeout` |
//! | [`MAX_UNIX_PATH`] (the kernel's) | 107 bytes (Linux) | the address is refused at once |
//!
//! # Memory
//!
//! What a socket can hold at most, from its settings (defaults in brackets):
//! the inbound queue (`inbound_bytes`, 64 MiB, plus one message past the
//! mark); per peer, its outbox (`outbox_bytes`, 1 MiB, plus one frame) and
//! the batch its writer is writing (at most one outbox's worth; over a Unix
//! socket, the kernel's send buffer raised to twice the outbox's byte mark,
//! within `net.core.wmem_max`), and its
//! read buffer (up to twice the frame being received, at most
//! 2 × `max_frame_length`); and, in the routing layer above, the no-peer
//! buffer (64 MiB). An idle
//! connection costs its task (about 3 KiB), 512-byte read and write buffers
//! (a connection whose reads fill its buffer reads 64 KiB chunks from then
//! on, and one that last received frames of 16 to 256 KiB keeps room for a
//! few of them, about 256 KiB) and its records: under 10 KiB in all
//! (`cargo xtask idle`). Lower
//! `max_frame_length` and `max_peers` to bound the per-peer part tighter.
//!
//! # Errors
//!
//! Bad input from a peer closes that one connection with a logged reason and
//! an event; the transport and its other peers carry on. A malformed address
//! or a port in use is a [`TransportError`] at once.

#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod address;
mod admission;
mod chunk;
mod config;
mod connection;
mod direct;
mod error;
mod event;
mod inbound;
mod inproc;
#[cfg(smartsock_lint_fixture)]
mod lint_fixture;
mod listener;
#[cfg(all(test, smartsock_loom))]
mod loom_model;
mod outbox;
mod peer;
mod peer_info;
mod per_second;
mod read_buffer;
mod read_shelf;
mod reader;
mod reconnect;
mod room;
mod shared;
mod snapshot;
mod stats;
mod sync;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;
#[cfg(unix)]
mod unix;
mod upgrade;
mod watch;
mod writer;
#[cfg(test)]
mod writer_turns;
#[cfg(feature = "ws")]
mod ws;

pub use address::{Address, Endpoint, MAX_UNIX_PATH, Scheme};
pub use config::{
    DEFAULT_INBOUND_BYTES, DEFAULT_INBOUND_LOOKAHEAD, DEFAULT_MIN_RECEIVE_RATE, DEFAULT_OUTBOX_BYTES,
    DEFAULT_OUTBOX_CAPACITY, MAX_CAPACITY, MAX_DURATION, ReconnectStrategy, TransportConfig,
};
pub use error::{NotQueued, TransportError, TrySendError};
pub use event::{ConnectError, DisconnectReason, DropReason, Event, RefusedReason, Side, TlsFailure};
pub use inbound::{Inbound, InboundClosed, TryRecvError};
pub use inproc::{INPROC_BACKLOG, INPROC_PIPE_BYTES};
pub use peer::{
    AckError, AckHandle, AckReceiver, AckSink, Incoming, MAX_UNKNOWN_ACKS_PER_SECOND, OrphanReceiver,
    Orphans, Outgoing, PeerHandle, PeerSnapshot, PeerTable,
};
pub use peer_info::{PeerCertificate, PeerInfo};
pub use reader::{MAX_CONTROL_FRAMES_PER_SECOND, WAITING_MESSAGE_COST};
pub use room::RoomWaiter;
pub use smartsock_framing::{Frame, MsgId, PeerId};
pub use stats::{HandshakeRefusals, MAX_DEPARTED_PEERS, PeerCounters, PeerStats, Traffic, TransportStats};
pub use transport::{Transport, TransportParts};
pub use watch::{Events, EventsError, PeerWatch, TransportGone};
