//! [`Socket`]: bind, connect, send, receive, close.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use smartsock_framing::PeerId;
use smartsock_patterns::{
    Destination, Message, PeerSet, PublishLayer, RoundRobin, RoundRobinLayer, SendErrorKind,
};
use smartsock_reliability::{
    AckTiming, AckToken, AtLeastOnce, AtLeastOnceHandle, AtLeastOnceLayer, ReceiveSide, Undelivered,
    UndeliveredReceiver,
};
use smartsock_transport::{Event, Inbound, PeerInfo, Transport, TryRecvError};
use tokio::sync::{Mutex, OnceCell};
use tower::util::BoxService;
use tower::{BoxError, Layer, ServiceExt};
use tracing::warn;

use crate::Error;

mod close;
mod now;
mod send;

use send::FirstTry;

use crate::builder::{BoxSendService, Delivery, NO_RELIABLE_PUBLISH, SendMode, SocketBuilder};
pub use close::CloseReport;

/// A tower send stack: at-least-once, or any stack with the user's layers.
/// Senders take turns on it (a fair mutex): tower's `poll_ready` takes
/// `&mut self` and keeps one waker. At-most-once sockets with no layers of
/// the user's skip it and send through the peer set's `&self` path.
enum SendStack {
    AtLeastOnce(AtLeastOnce<RoundRobin<PeerSet>>),
    Custom(BoxSendService),
}

struct Inner {
    transport: Transport,
    /// `None`: the direct path (see `SendStack`).
    stack: Option<Mutex<SendStack>>,
    peer_set: PeerSet,
    /// Where un-addressed messages go, on the direct path.
    destination: Destination,
    inbound: Inbound,
    receive: Arc<ReceiveSide>,
    ack_timing: AckTiming,
    reliability: Option<AtLeastOnceHandle>,
    /// At-least-once on the direct path: the tracker (the same state as
    /// `reliability`), and the layer that keeps its driver going.
    tracker: Option<AtLeastOnceHandle>,
    _tracking_layer: Option<AtLeastOnceLayer>,
    /// Shared with `undelivered()` streams, which must not keep the socket alive.
    undelivered: Arc<Mutex<Option<UndeliveredReceiver>>>,
    closed: AtomicBool,
    /// Set once a graceful close has run to the end: every `close` call
    /// waits for that one, so a second caller cannot cut the first one's
    /// linger short.
    close_done: OnceCell<CloseReport>,
    mode: SendMode,
    delivery: Delivery,
    send_timeout: Option<Duration>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(reliability) = &self.reliability {
            reliability.shutdown();
        }
    }
}

/// A smart socket: binds and connects to many peers, sends whole messages by
/// round-robin, publish or peer identity, and receives from all of them.
///
/// Cheap to clone: clones share one socket, and can send and receive from
/// different tasks. Dropping the last clone closes it without lingering; call
/// [`close`](Socket::close) to deliver what is queued first.
///
/// ```
/// use smartsock::Socket;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), smartsock::Error> {
/// let server = Socket::new()?;
/// let addr = server.bind("127.0.0.1:0").await?;
///
/// let client = Socket::new()?;
/// client.connect(&addr.to_string())?;
/// client.send("hello").await?;
///
/// let (from, message) = server.recv_from().await.expect("open");
/// assert_eq!(message, "hello");
/// assert_eq!(from, client.identity());
/// server.send_to(from, "welcome").await?;
/// assert_eq!(client.recv().await.expect("open"), "welcome");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Socket {
    inner: Arc<Inner>,
}

/// A [`Socket`] that does not keep it open.
#[cfg(feature = "metrics")]
pub(crate) struct WeakSocket(std::sync::Weak<Inner>);

#[cfg(feature = "metrics")]
impl WeakSocket {
    /// The socket, unless every clone has been dropped or it was closed.
    pub(crate) fn upgrade(&self) -> Option<Socket> {
        let inner = self.0.upgrade()?;
        (!inner.closed.load(Ordering::Relaxed)).then_some(Socket { inner })
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("identity", &self.identity())
            .field("mode", &self.inner.mode)
            .field("delivery", &self.inner.delivery)
            .field("peers", &self.peers().len())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Socket {
    /// A round-robin, at-most-once socket with every default. Call it inside
    /// a tokio runtime.
    pub fn new() -> Result<Self, Error> {
        Self::builder().build()
    }

    /// A builder for every setting.
    pub fn builder() -> SocketBuilder {
        SocketBuilder::default()
    }

    pub(crate) fn from_builder(builder: SocketBuilder) -> Result<Self, Error> {
        let SocketBuilder {
            mut transport,
            mut peer_set,
            mode,
            publish_when_full,
            delivery,
            at_least_once,
            ack_timing,
            duplicate_window,
            send_timeout,
            layers,
        } = builder;
        transport.ack_on_arrival = ack_timing == AckTiming::OnArrival;
        // Least-loaded is round-robin's stack with another way of picking
        // the one peer, inside the peer set's one routing function.
        let routing_mode = match mode {
            SendMode::LeastLoaded => {
                peer_set.share = smartsock_patterns::Share::LeastLoaded;
                SendMode::RoundRobin
            }
            other => other,
        };
        let parts = Transport::new(transport)?;
        let peers = PeerSet::new(&parts.transport, parts.orphans, peer_set);
        let mut reliability = None;
        let mut direct_tracking = None;
        let mut undelivered = None;
        let destination = match routing_mode {
            SendMode::Publish => Destination::Everyone { when_full: publish_when_full },
            _ => Destination::AnyOne,
        };
        let stack = match (routing_mode, delivery) {
            (SendMode::RoundRobin, Delivery::AtMostOnce) if layers.is_empty() => None,
            (SendMode::Publish, Delivery::AtMostOnce) if layers.is_empty() => None,
            (SendMode::RoundRobin, Delivery::AtMostOnce) => Some(SendStack::Custom(BoxService::new(
                RoundRobinLayer::new().layer(peers.clone()).map_err(BoxError::from),
            ))),
            (SendMode::Publish, Delivery::AtMostOnce) => Some(SendStack::Custom(BoxService::new(
                PublishLayer::when_full(publish_when_full).layer(peers.clone()).map_err(BoxError::from),
            ))),
            (SendMode::RoundRobin, Delivery::AtLeastOnce) => {
                let (layer, given_up) =
                    AtLeastOnceLayer::new(at_least_once, parts.acks).map_err(Error::config)?;
                let buffered = peers.clone();
                let layer = layer
                    .with_events(&parts.transport)
                    // A message handed back must not also go out later.
                    .on_give_up(move |id| {
                        buffered.withdraw(id);
                    });
                reliability = Some(layer.handle());
                let outstanding = layer.handle();
                peers.set_load(Arc::new(move |peer| outstanding.outstanding(peer)));
                undelivered = Some(given_up);
                if layers.is_empty() {
                    layer.start_direct(peers.clone());
                    direct_tracking = Some(layer);
                    None
                } else {
                    let resender = RoundRobinLayer::new().layer(peers.clone());
                    Some(SendStack::AtLeastOnce(layer.layer(resender)))
                }
            }
            (SendMode::Publish, Delivery::AtLeastOnce) => {
                return Err(Error::config(NO_RELIABLE_PUBLISH));
            }
            (other, _) => return Err(Error::config(format!("send mode {other:?} has no send stack"))),
        };
        let stack = match stack {
            Some(stack) if !layers.is_empty() => {
                let base: BoxSendService = match stack {
                    SendStack::AtLeastOnce(s) => BoxService::new(s.map_err(BoxError::from)),
                    SendStack::Custom(s) => s,
                };
                Some(SendStack::Custom(layers.into_iter().fold(base, |service, layer| layer(service))))
            }
            stack => stack,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                transport: parts.transport,
                stack: stack.map(Mutex::new),
                peer_set: peers,
                destination,
                inbound: parts.inbound,
                receive: Arc::new(ReceiveSide::new(duplicate_window)),
                ack_timing,
                tracker: direct_tracking.as_ref().map(AtLeastOnceLayer::handle),
                _tracking_layer: direct_tracking,
                reliability,
                undelivered: Arc::new(Mutex::new(undelivered)),
                closed: AtomicBool::new(false),
                close_done: OnceCell::new(),
                mode,
                delivery,
                send_timeout,
            }),
        })
    }

    /// This socket's identity, as peers see it.
    pub fn identity(&self) -> PeerId {
        self.inner.transport.identity()
    }

    /// Listens on `addr` and accepts peers until closed: `host:port` or
    /// `tcp://host:port` (port 0 picks a free port), `unix:///path` (or
    /// `unix://@name`, abstract, on Linux), `inproc://name` (this process),
    /// `tls://host:port` (needs [`SocketBuilder::tls_server`](crate::SocketBuilder::tls_server)).
    /// A TCP or TLS bind end also accepts WebSocket peers on the same port
    /// (`ws://` and `wss://` bind the same way). Returns where it listens; its `to_string()` is an address `connect`
    /// takes. May be called several times. See [`Transport::bind`] for the
    /// rules of each transport.
    pub async fn bind(&self, addr: &str) -> Result<smartsock_transport::Endpoint, Error> {
        Ok(self.inner.transport.bind(addr).await?)
    }

    /// Connects to `addr` (any address [`bind`](Socket::bind) takes, and
    /// `ws://host:port/path` or `wss://host:port/path` for a WebSocket;
    /// `tls://` and `wss://` need [`SocketBuilder::tls_client`](crate::SocketBuilder::tls_client)) and
    /// stays connected for the socket's whole life, reconnecting whenever the
    /// connection drops. Returns at once: messages sent before the peer is up
    /// are buffered. May be called several times.
    pub fn connect(&self, addr: &str) -> Result<(), Error> {
        Ok(self.inner.transport.connect(addr)?)
    }

    /// Adopts a stream that is already connected as a peer, with the
    /// protocol role `side` (its other end must take the opposite one).
    /// Returns the address its [`events`](Socket::events) will carry.
    ///
    /// The stream is never reconnected (whoever opened it may open another
    /// and attach that); its end is reported as an event. See
    /// [`Transport::attach`].
    pub fn attach<S>(&self, stream: S, side: smartsock_transport::Side) -> Result<String, Error>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        Ok(self.inner.transport.attach(stream, side)?)
    }

    /// Sends a message by the socket's send mode. Waits while the queues it
    /// needs are full (backpressure), up to the builder's
    /// [`send_timeout`](crate::SocketBuilder::send_timeout) if one is set;
    /// with no peer connected the message is buffered and sent when one
    /// connects.
    ///
    /// Fails at once, handing the message back ([`Error::into_payload`]), if
    /// it is larger than the maximum frame length, if the socket is closed, or
    /// if the no-peer buffer is full under [`WhenFull::Drop`](crate::WhenFull::Drop).
    ///
    /// Messages sent before any peer is up all go to the first peer that
    /// connects: to spread them over several, call
    /// [`wait_for_peers`](Socket::wait_for_peers) first, or set
    /// [`settle`](crate::SocketBuilder::settle).
    pub async fn send(&self, message: impl Into<Bytes>) -> Result<(), Error> {
        let mut message = Message::new(message);
        if self.inner.stack.is_none() {
            // The direct path resolves the send mode here; user layers do it
            // themselves.
            message.to = self.inner.destination;
        }
        // The first try's result is not held across the wait: only the box.
        let rest = match self.send_message(message) {
            FirstTry::Sent => return Ok(()),
            FirstTry::Failed(error) => return Err(error),
            FirstTry::Rest(rest) => rest,
        };
        rest.await
    }

    /// Sends a message to exactly the peer `to`, whatever the send mode.
    /// Fails at once, handing the message back, if no such peer is connected.
    pub async fn send_to(&self, to: PeerId, message: impl Into<Bytes>) -> Result<(), Error> {
        // The first try's result is not held across the wait: only the box.
        let rest = match self.send_message(Message::to_peer(to, message)) {
            FirstTry::Sent => return Ok(()),
            FirstTry::Failed(error) => return Err(error),
            FirstTry::Rest(rest) => rest,
        };
        rest.await
    }

    /// Sends a message only if that needs no waiting: if the queues it needs
    /// are full (or another task is mid-send), fails at once with
    /// `SendErrorKind::WouldWait` and hands the message back. (As with
    /// [`send_timeout`](crate::SocketBuilder::send_timeout), a publish with
    /// `WhenFull::Wait` still waits for a full subscriber once handed over.)
    ///
    /// ```
    /// use smartsock::Socket;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), smartsock::Error> {
    /// // No peer, and room for one buffered message.
    /// let socket = Socket::builder().buffer(1, 1024).build()?;
    /// socket.try_send("first").await?;
    /// let refused = socket.try_send("second").await.unwrap_err();
    /// assert_eq!(refused.into_payload().unwrap(), "second");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn try_send(&self, message: impl Into<Bytes>) -> Result<(), Error> {
        self.dispatch(Message::new(message), Some(Duration::ZERO), SendErrorKind::WouldWait).await
    }

    /// The next message from any peer, or `None` once the socket is closed
    /// and every message received before has been taken.
    pub async fn recv(&self) -> Option<Bytes> {
        self.recv_from().await.map(|(_, message)| message)
    }

    /// Like [`recv`](Socket::recv), with the sender's identity (to answer it
    /// with [`send_to`](Socket::send_to)).
    pub async fn recv_from(&self) -> Option<(PeerId, Bytes)> {
        // The usual case, a message queued, is taken in a plain call; the
        // waiting part is boxed, as it waits anyway, so that this future
        // stays small (it is moved into its caller's on every receive: at
        // 272 bytes that showed in the receiver's profile).
        match self.try_recv_from() {
            Ok(message) => Some(message),
            Err(TryRecvError::Closed) => None,
            Err(_) => Box::pin(self.wait_and_recv_from()).await,
        }
    }

    /// A receive that found nothing queued: waits for the next message.
    async fn wait_and_recv_from(&self) -> Option<(PeerId, Bytes)> {
        loop {
            let incoming = self.inner.inbound.recv().await.ok()?;
            // Acknowledges an at-least-once message now that it is taken,
            // and skips repeats.
            if let Some(message) = self.inner.receive.take(incoming) {
                return Some(message);
            }
        }
    }

    /// The next message from any peer, with the means to acknowledge it once
    /// the work on it is done; `None` once the socket is closed and drained.
    ///
    /// Under [`AckTiming::Explicit`] an at-least-once message is
    /// acknowledged only by [`AckToken::ack`]; a token dropped without it
    /// (the job failed, the worker stopped) leaves the message
    /// unacknowledged, and the sender sends it again: at once if this
    /// socket's connection to it is lost, else after its resend timeout.
    /// Under the other timings the ACK has gone already (on take or on
    /// arrival) and the token has nothing to send. The sender needs nothing
    /// special: any aiomsg sender just sees the ACK later.
    ///
    /// ```
    /// use smartsock::{AckTiming, Delivery, Socket};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), smartsock::Error> {
    /// let queue = Socket::builder().delivery(Delivery::AtLeastOnce).build()?;
    /// let addr = queue.bind("127.0.0.1:0").await?;
    /// let worker = Socket::builder().ack_timing(AckTiming::Explicit).build()?;
    /// worker.connect(&addr.to_string())?;
    ///
    /// queue.send("job 1").await?;
    /// let job = worker.recv_with_ack().await.expect("open");
    /// assert_eq!(job.payload, "job 1");
    /// // ... do the work, then:
    /// job.ack.ack()?;
    /// # tokio::time::timeout(std::time::Duration::from_secs(5), queue.settled()).await.unwrap();
    /// # assert_eq!(queue.in_flight(), 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_with_ack(&self) -> Option<Received> {
        loop {
            let incoming = self.inner.inbound.recv().await.ok()?;
            let taken = match self.inner.ack_timing {
                AckTiming::Explicit => self.inner.receive.take_deferred(incoming),
                _ => self
                    .inner
                    .receive
                    .take(incoming)
                    .map(|(peer, payload)| (peer, payload, AckToken::none(peer))),
            };
            if let Some((peer, payload, ack)) = taken {
                return Some(Received { peer, payload, ack });
            }
        }
    }

    /// Received messages as a stream; ends when the socket is closed and
    /// drained. The stream holds a handle on the socket: while it lives, the
    /// socket stays open until [`close`](Socket::close) is called.
    pub fn messages(&self) -> BoxStream<'static, Bytes> {
        futures::stream::unfold(self.clone(), |socket| async move {
            let message = socket.recv().await?;
            Some((message, socket))
        })
        .boxed()
    }

    /// Received messages with their senders' identities, as a stream.
    pub fn identity_messages(&self) -> BoxStream<'static, (PeerId, Bytes)> {
        futures::stream::unfold(self.clone(), |socket| async move {
            let message = socket.recv_from().await?;
            Some((message, socket))
        })
        .boxed()
    }

    /// Connection events from now on: peers connecting and disconnecting,
    /// refused handshakes, reconnection tries, drops. A watcher that falls
    /// more than 1024 connection events behind misses the oldest (a warning
    /// is logged). Drops come as one `Dropped` event per peer and reason,
    /// its count growing while it is unread, so they never push connection
    /// events out; [`stats`](Socket::stats) counts every drop.
    pub fn events(&self) -> BoxStream<'static, Event> {
        futures::stream::unfold(self.inner.transport.events(), |mut events| async move {
            loop {
                match events.recv().await {
                    Ok(event) => return Some((event, events)),
                    Err(smartsock_transport::EventsError::Lagged(missed)) => {
                        warn!(missed, "events stream fell behind: oldest events skipped");
                    }
                    Err(_) => return None,
                }
            }
        })
        .boxed()
    }

    /// At-least-once messages given up after their attempts, handed back.
    /// Empty under at-most-once. Only one stream at a time receives them.
    /// Until taken, they are kept up to
    /// [`undelivered_capacity`](smartsock_reliability::AtLeastOnceConfig::undelivered_capacity)
    /// messages and
    /// [`undelivered_bytes`](smartsock_reliability::AtLeastOnceConfig::undelivered_bytes)
    /// of payload; past either, give-ups are only counted and reported as
    /// events.
    pub fn undelivered(&self) -> BoxStream<'static, Undelivered> {
        futures::stream::unfold(self.inner.undelivered.clone(), |undelivered| async move {
            let next = undelivered.lock().await.as_mut()?.recv().await?;
            Some((next, undelivered))
        })
        .boxed()
    }

    /// At-least-once messages sent and not yet acknowledged (nor given up);
    /// always 0 under at-most-once.
    pub fn in_flight(&self) -> usize {
        self.inner.reliability.as_ref().map_or(0, AtLeastOnceHandle::in_flight)
    }

    /// Completes once every at-least-once message sent so far is
    /// acknowledged or given up (at once under at-most-once). Bound it with
    /// a timeout: with no peer it waits for the give-up.
    pub async fn settled(&self) {
        if let Some(reliability) = &self.inner.reliability {
            reliability.settled().await;
        }
    }

    /// The at-least-once counters (sent, resent, acked, undelivered), or
    /// `None` under at-most-once.
    pub fn delivery_stats(&self) -> Option<&smartsock_reliability::AtLeastOnceStats> {
        self.inner.reliability.as_ref().map(AtLeastOnceHandle::stats)
    }

    /// The identities of the peers connected now, in the order they connected.
    pub fn peers(&self) -> Vec<PeerId> {
        self.inner.transport.peer_table().iter().map(|peer| peer.id()).collect()
    }

    /// What is known of the connected peer `peer`: its address, which end
    /// this socket is, and over TLS its verified certificate (subject and
    /// alternative names; the client's under mutual TLS). `None` if that
    /// peer is not connected.
    pub fn peer_info(&self, peer: PeerId) -> Option<PeerInfo> {
        self.inner.transport.peer_info(peer)
    }

    /// Waits until at least `count` peers are connected: true then, false if
    /// the socket closes first.
    pub async fn wait_for_peers(&self, count: usize) -> bool {
        let mut table = self.inner.transport.peers();
        tokio::select! {
            reached = table.wait_for(|peers| peers.len() >= count) => reached.is_ok(),
            () = self.inner.transport.closed() => false,
        }
    }

    /// The TCP addresses this socket is bound to (other transports'
    /// endpoints are what [`bind`](Socket::bind) returned).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.inner.transport.local_addrs()
    }

    /// The low-level transport, for events, peer tables and custom streams.
    pub fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// Publish messages dropped so far for subscribers whose queue was full.
    pub fn slow_subscriber_drops(&self) -> u64 {
        self.inner.peer_set.stats().slow_subscriber_drops()
    }

    /// Repeated at-least-once messages dropped by the receive side so far.
    pub fn duplicates_dropped(&self) -> u64 {
        self.inner.receive.duplicates_dropped()
    }

    /// For `stats.rs`: the parts a snapshot reads that have no public accessor.
    pub(crate) fn stats_parts(&self) -> (&PeerSet, &Inbound) {
        (&self.inner.peer_set, &self.inner.inbound)
    }

    /// A reference that does not keep the socket open (for the metrics task).
    #[cfg(feature = "metrics")]
    pub(crate) fn downgrade(&self) -> WeakSocket {
        WeakSocket(Arc::downgrade(&self.inner))
    }
}

/// A message from [`Socket::recv_with_ack`], with its acknowledgement.
#[derive(Debug)]
#[non_exhaustive]
pub struct Received {
    /// Who sent it.
    pub peer: PeerId,
    /// The application's bytes.
    pub payload: Bytes,
    /// Acknowledges it when the work is done; dropped without
    /// [`ack`](AckToken::ack), the sender sends the message again.
    pub ack: AckToken,
}
