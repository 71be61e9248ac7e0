//! At-least-once delivery for smartsock, as tower middleware.
//!
//! [`AtLeastOnceLayer`] wraps a routing service (a
//! `tower::Service<Message, Error = SendError>`, such as smartsock-patterns'
//! `RoundRobin<PeerSet>`). Each message goes out as a DATA_REQ with a fresh
//! 16-byte [`MsgId`](smartsock_transport::MsgId) and stays pending until an
//! ACK with that id arrives. Without one within the resend timeout it is sent
//! again, with the same id, through the routing below, so round-robin may pick
//! another, live peer. After [`AtLeastOnceConfig::max_attempts`] sends, or
//! [`AtLeastOnceConfig::give_up_after`], it is given up: counted, reported as
//! an event, and handed back on the [`UndeliveredReceiver`].
//!
//! [`ReceiveSide`] is the other half, for every socket whatever its own
//! guarantee: it acknowledges each DATA_REQ (by default when the application
//! takes it) and drops repeats within a window.
//!
//! ```
//! use std::time::Duration;
//! use smartsock_patterns::{Message, PeerSet, PeerSetConfig, RoundRobinLayer};
//! use smartsock_reliability::{AtLeastOnceConfig, AtLeastOnceLayer, ReceiveSide};
//! use smartsock_transport::{Transport, TransportConfig};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let receiver = Transport::new(TransportConfig::default())?;
//! let addr = receiver.transport.bind("127.0.0.1:0").await?;
//! let receive_side = ReceiveSide::new(1024);
//!
//! let sender = Transport::new(TransportConfig::default())?;
//! sender.transport.connect(&addr.to_string())?;
//! let peers = PeerSet::new(&sender.transport, sender.orphans, PeerSetConfig::default());
//! let (reliable, _undelivered) = AtLeastOnceLayer::new(AtLeastOnceConfig::default(), sender.acks)?;
//! let handle = reliable.handle();
//! let mut service = ServiceBuilder::new().layer(reliable).layer(RoundRobinLayer::new()).service(peers);
//!
//! service.ready().await?.call(Message::new("important")).await?;
//! assert_eq!(handle.in_flight(), 1);
//!
//! // Taking the message acknowledges it...
//! let incoming = receiver.inbound.recv().await?;
//! let (_from, payload) = receive_side.take(incoming).expect("not a repeat");
//! assert_eq!(payload, "important");
//! // ...and the ACK settles it at the sender.
//! tokio::time::timeout(Duration::from_secs(5), handle.settled()).await?;
//! assert_eq!(handle.stats().acked(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # What is guaranteed
//!
//! - **Delivery.** A message is delivered at least once to some peer, or
//!   handed back as [`Undelivered`] after its attempts or its time run out.
//!   Nothing is given up silently.
//! - **When a message is sent again**, exactly:
//!   1. at once, when the peer it last went to disconnects (the connection
//!      that carried it is lost, so it can no longer be acknowledged), if
//!      it has attempts left; through the routing again, so to another
//!      live peer if there is one;
//!   2. otherwise, at its deadline, one resend timeout
//!      ([`AtLeastOnceConfig::resend_timeout`]) after it was sent, unless
//!      the peer holding it is still working through its queue: it has
//!      acknowledged some message within the last resend timeout, and none
//!      sent after this one. Such a message is postponed by another resend
//!      timeout ([`AtLeastOnceStats::postponed`]) and checked again; a slow
//!      but healthy receiver, however long its queue, causes no resend;
//!   3. a peer that has stopped acknowledging altogether (stuck, or its
//!      ACKs lost) gets no postponement: the timer is the backstop.
//!
//!   Which peer holds a message is known when the route says so (the
//!   socket's direct path, and resends started with
//!   [`AtLeastOnceLayer::start_direct`]); a message whose peer is not known
//!   is resent at its deadline. After
//!   [`AtLeastOnceConfig::max_attempts`] sends or
//!   [`AtLeastOnceConfig::give_up_after`] it is given up and handed back.
//! - **Acknowledgement on the receiving side** ([`AckTiming`]): when the
//!   application takes the message (the default), on arrival, or
//!   explicitly once the work is done ([`AckToken`]: dropping it without
//!   acknowledging leaves the message to be sent again).
//! - **Order: not promised.** A resent message arrives after messages sent
//!   later than it.
//! - **Duplicates: possible, mostly filtered.** A resend after a lost ACK
//!   delivers the message twice; the receiver's window of recent
//!   (sender, id) pairs drops such repeats, best effort: a repeat older than
//!   the window is delivered again. The same id from two different senders
//!   is two messages. Under explicit acknowledgement only acknowledged
//!   messages enter the window: a copy that arrives while the first is
//!   still being worked on is delivered too.
//! - **Crashes.** With the default [`AckTiming::OnTake`] a receiver that
//!   dies with messages still queued has not acknowledged them: the sender
//!   sends them again; the one it was working on is lost.
//!   With [`AckTiming::Explicit`], that one is sent again too. A sender that dies loses what was pending: the
//!   pending table lives in memory.
//! - **Backpressure.** At most [`AtLeastOnceConfig::max_in_flight`] messages
//!   are pending, and a send is taken only while fewer than
//!   [`AtLeastOnceConfig::max_in_flight_bytes`] payload bytes are pending;
//!   at either limit the service is not ready and sends wait.
//!   ACKs arrive in the same byte stream as the peer's messages, behind them.
//!   While the receive queue is full, the transport reads on past the
//!   messages waiting for room (up to `inbound_lookahead`, 128 KiB per
//!   connection by default) for the ACKs behind them, so a socket that
//!   stops taking received messages still hears its ACKs, unless more than
//!   that much data is in front of them. So if one task both sends
//!   at-least-once and receives, still do not let it block in a send while
//!   a flood of messages waits to be received: receive in another task (or
//!   use `try_send` / a send timeout). ACKs going out have a lane of their own
//!   on each connection, written before data, so a busy sender never holds
//!   back the ACKs it owes.
//!
//! Publish together with at-least-once is refused
//! ([`SendErrorKind::Refused`](smartsock_patterns::SendErrorKind::Refused)):
//! one ACK cannot stand for every subscriber.
//!
//! # Cost
//!
//! Tracking a message costs one short lock: a counter and a random tag for
//! its id, and an insert in a table indexed by the counter (a ring: ACKs
//! come back mostly in order). The facade's direct path routes under that
//! same lock ([`AtLeastOnceHandle::try_send_tracked`]), so that the route
//! only borrows the request and the payload is kept unshared; least-loaded
//! routing, which asks the sender for loads, takes the lock twice (before
//! and after the route). No timer entry, no channel, no clock read per
//! message: one driver task per layer cuts the stream of counters into
//! time buckets on its own ticks (a tenth of the resend timeout), and
//! every message of a bucket shares one deadline, so
//! a resend comes between one and 1.1 resend timeouts after the send. ACKs
//! are handed over by the connections in batches, one lock per read.
//!
//! A message's payload is kept until its ACK, and then a little longer: a
//! short payload (up to 1 KiB, at most 1,024 of them) is freed by the next
//! send, on the sending thread, or by the driver's next tick if nothing
//! more is sent. The application allocates its next payload on that
//! thread, and the allocator's per-thread cache then serves it; freed
//! where the ACKs are read, by the hundred, they went through the
//! allocator's slower shared bins (7% of the sender's throughput on
//! 64-byte messages).

#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod acks;
mod at_least_once;
mod config;
mod core;
mod driver;
mod pending;
mod receive;
mod short_lock;
mod stats;
mod table;
mod tracked;
mod undelivered;

pub use at_least_once::{AtLeastOnce, AtLeastOnceLayer, ResponseFuture};
pub use config::{AtLeastOnceConfig, DEFAULT_MAX_IN_FLIGHT_BYTES, DEFAULT_UNDELIVERED_BYTES};
pub use driver::{AtLeastOnceHandle, Undelivered};
pub use receive::{AckTiming, AckToken, DuplicateFilter, MAX_DUPLICATE_WINDOW, ReceiveSide};
pub use stats::AtLeastOnceStats;
pub use tracked::{Tracked, Untracked, Went};
pub use undelivered::{TryRecvError, UndeliveredReceiver};
