//! [`SocketBuilder`]: every setting of a socket, with its default.

use std::fmt;
use std::time::Duration;

use smartsock_framing::PeerId;
use smartsock_patterns::{Message, PeerSetConfig, WhenFull};
use smartsock_reliability::{AckTiming, AtLeastOnceConfig, MAX_DUPLICATE_WINDOW};
use smartsock_transport::{ReconnectStrategy, TransportConfig};
use tower::util::BoxService;
use tower::{BoxError, Layer, Service, ServiceExt};

use crate::{Error, Socket};

/// How un-addressed messages ([`Socket::send`]) are spread over peers.
///
/// Messages sent while no peer is connected wait in the no-peer buffer and
/// go to the first peers that connect: to spread them over several peers,
/// wait for them first with [`Socket::wait_for_peers`], or give them time
/// to come with [`SocketBuilder::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SendMode {
    /// Each message to one peer, cycling; full peers are skipped. The default.
    /// Every peer gets the same share, however fast it works.
    #[default]
    RoundRobin,
    /// Each message to every connected peer.
    Publish,
    /// Each message to the one peer with room that has the fewest messages
    /// on its hands: queued for it, and under at-least-once also sent to it
    /// and not yet acknowledged. Fast workers take more, a slow one less.
    LeastLoaded,
}

/// What a send promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Delivery {
    /// Sent once as DATA; lost if the connection dies first. The default.
    #[default]
    AtMostOnce,
    /// Sent as DATA_REQ and resent until acknowledged; see
    /// [`smartsock_reliability`] for exactly what holds. ACKs come back
    /// behind the peer's messages: a socket that both sends and receives
    /// should receive in a task that a full in-flight window cannot block.
    AtLeastOnce,
}

/// Why publish with at-least-once is refused.
pub(crate) const NO_RELIABLE_PUBLISH: &str = "at-least-once delivery cannot be combined with publish: \
    one ACK cannot stand for every subscriber (use round-robin, or send to peer identities)";

/// The send stack as user layers see it.
pub type BoxSendService = BoxService<Message, (), BoxError>;

pub(crate) type LayerFn = Box<dyn FnOnce(BoxSendService) -> BoxSendService + Send>;

/// Builds a [`Socket`]. By value; every setting has a default, and
/// [`build`](SocketBuilder::build) checks them together.
///
/// ```
/// use std::time::Duration;
/// use smartsock::{Delivery, SendMode, Socket};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), smartsock::Error> {
/// let socket = Socket::builder()
///     .send_mode(SendMode::RoundRobin)
///     .delivery(Delivery::AtLeastOnce)
///     .heartbeat(Duration::from_secs(1), Duration::from_secs(3))
///     .build()?;
/// # drop(socket);
///
/// // Some combinations make no sense, and say so.
/// let refused = Socket::builder().send_mode(SendMode::Publish).delivery(Delivery::AtLeastOnce).build();
/// assert!(refused.unwrap_err().to_string().contains("publish"));
/// # Ok(())
/// # }
/// ```
pub struct SocketBuilder {
    pub(crate) transport: TransportConfig,
    pub(crate) peer_set: PeerSetConfig,
    pub(crate) mode: SendMode,
    pub(crate) publish_when_full: WhenFull,
    pub(crate) delivery: Delivery,
    pub(crate) at_least_once: AtLeastOnceConfig,
    pub(crate) ack_timing: AckTiming,
    pub(crate) duplicate_window: usize,
    pub(crate) send_timeout: Option<Duration>,
    pub(crate) layers: Vec<LayerFn>,
}

impl fmt::Debug for SocketBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketBuilder")
            .field("transport", &self.transport)
            .field("peer_set", &self.peer_set)
            .field("mode", &self.mode)
            .field("publish_when_full", &self.publish_when_full)
            .field("delivery", &self.delivery)
            .field("at_least_once", &self.at_least_once)
            .field("ack_timing", &self.ack_timing)
            .field("duplicate_window", &self.duplicate_window)
            .field("send_timeout", &self.send_timeout)
            .field("layers", &self.layers.len())
            .finish()
    }
}

impl Default for SocketBuilder {
    fn default() -> Self {
        Self {
            transport: TransportConfig::default(),
            peer_set: PeerSetConfig::default(),
            mode: SendMode::default(),
            publish_when_full: WhenFull::Drop,
            delivery: Delivery::default(),
            at_least_once: AtLeastOnceConfig::default(),
            ack_timing: AckTiming::default(),
            duplicate_window: 4096,
            send_timeout: None,
            layers: Vec::new(),
        }
    }
}

impl SocketBuilder {
    /// Round-robin (default) or publish.
    pub fn send_mode(mut self, mode: SendMode) -> Self {
        self.mode = mode;
        self
    }

    /// At-most-once (default) or at-least-once. At-least-once cannot be
    /// combined with publish.
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// This socket's identity, sent to every peer. Default: random, new for
    /// each socket. Set it to let peers recognise a restarted process.
    pub fn identity(mut self, identity: PeerId) -> Self {
        self.transport.identity = identity;
        self
    }

    /// The wait between connect tries. Default: fixed 100 ms.
    pub fn reconnect(mut self, strategy: ReconnectStrategy) -> Self {
        self.transport.reconnect = strategy;
        self
    }

    /// Send a HEARTBEAT after `interval` with nothing sent; drop a connection
    /// after `timeout` with nothing received. Defaults: 5 s and 15 s.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.transport.heartbeat_interval = interval;
        self.transport.heartbeat_timeout = timeout;
        self
    }

    /// Bytes per second a message still arriving must keep up, on average,
    /// for its bytes to count as life for the heartbeat timeout: a message
    /// that is still incomplete one heartbeat timeout plus its bytes so far
    /// at this rate after it began is cut
    /// ([`DisconnectReason::TooSlow`](crate::DisconnectReason::TooSlow)).
    /// Large messages over slow links arrive however long they take above
    /// this rate. Default: 64 KiB/s.
    pub fn min_receive_rate(mut self, bytes_per_second: u64) -> Self {
        self.transport.min_receive_rate = bytes_per_second;
        self
    }

    /// Time a new connection has to complete its handshake. Default: 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.transport.handshake_timeout = timeout;
        self
    }

    /// Time one TCP connect try may take. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.transport.connect_timeout = timeout;
        self
    }

    /// Largest message accepted from or sent to a peer (the envelope: payload
    /// plus 1 byte, or 17 under at-least-once). Default: 16 MiB. A larger
    /// send fails at once and hands the message back; a peer that sends more
    /// is disconnected.
    pub fn max_frame_length(mut self, bytes: usize) -> Self {
        self.transport.max_frame_length = bytes;
        self
    }

    /// Messages queued for one peer before it counts as full (its high-water
    /// mark). Default: 4096. The queue is also full at
    /// [`peer_queue_bytes`](SocketBuilder::peer_queue_bytes), whichever
    /// comes first.
    pub fn peer_queue(mut self, messages: usize) -> Self {
        self.transport.outbox_capacity = messages;
        self
    }

    /// Payload bytes queued for one peer before it counts as full: a
    /// message is taken while fewer bytes are queued, so one large message
    /// may pass the mark. Default: 1 MiB. What a full peer means depends on
    /// the send mode: round-robin skips it, publish drops its copy (or
    /// waits, see [`when_subscriber_full`](SocketBuilder::when_subscriber_full)),
    /// a send by identity waits.
    pub fn peer_queue_bytes(mut self, bytes: usize) -> Self {
        self.transport.outbox_bytes = bytes;
        self
    }

    /// Received messages waiting for [`Socket::recv`]. When full, the socket
    /// stops reading and TCP pushes back on the senders; nothing is dropped.
    /// Default: 1024.
    pub fn receive_queue(mut self, messages: usize) -> Self {
        self.transport.inbound_capacity = messages;
        self
    }

    /// While the receive queue is full, each connection reads on up to this
    /// many bytes past the messages waiting for room, for the ACKs (and
    /// HEARTBEATs) behind them: a socket whose application stops taking
    /// messages still hears the ACKs for what it sent. 0 stops reading at
    /// once. Default: 128 KiB.
    pub fn receive_lookahead(mut self, bytes: usize) -> Self {
        self.transport.inbound_lookahead = bytes;
        self
    }

    /// The no-peer buffer's high-water marks: messages and payload bytes held
    /// while no peer is connected. Defaults: 1024 messages, 64 MiB.
    pub fn buffer(mut self, messages: usize, bytes: usize) -> Self {
        self.peer_set.buffer_capacity = messages;
        self.peer_set.buffer_bytes = bytes;
        self
    }

    /// At the no-peer buffer's mark, wait for a peer ([`WhenFull::Wait`], the
    /// default) or fail at once with the message handed back ([`WhenFull::Drop`]).
    pub fn when_buffer_full(mut self, policy: WhenFull) -> Self {
        self.peer_set.buffer_when_full = policy;
        self
    }

    /// Under publish, drop the message for a subscriber whose queue is full
    /// ([`WhenFull::Drop`], the default, counted and reported) or wait for it
    /// ([`WhenFull::Wait`]).
    pub fn when_subscriber_full(mut self, policy: WhenFull) -> Self {
        self.publish_when_full = policy;
        self
    }

    /// Connected peers at most. Default: 1024.
    pub fn max_peers(mut self, peers: usize) -> Self {
        self.transport.max_peers = peers;
        self
    }

    /// Accepted connections still handshaking, at most. Default: 64.
    pub fn max_handshakes(mut self, handshakes: usize) -> Self {
        self.transport.max_handshakes = handshakes;
        self
    }

    /// On [`Socket::close`], time allowed for each of its stages: buffered
    /// messages finding a peer, outstanding ACKs arriving, and each
    /// connection delivering what is queued and seeing the peer confirm it
    /// read everything (see [`Socket::close`]). What is not confirmed in
    /// time is reported in the [`CloseReport`](crate::CloseReport).
    ///
    /// Default: 5 s, long enough for a live peer that reads slowly to take
    /// a full outbox and the kernel's buffers (a few MB), short enough that
    /// a program closing against a dead peer does not hang. 0 closes at
    /// once, and confirms nothing that was still queued.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.transport.linger = linger;
        self
    }

    /// When the first peer connects while messages are buffered, wait this
    /// long before sending them, so that peers connecting meanwhile share
    /// them (by the send mode) instead of the first taking them all.
    /// Default: zero (send at once).
    pub fn settle(mut self, settle: Duration) -> Self {
        self.peer_set.settle = settle;
        self
    }

    /// When received at-least-once messages are acknowledged: when `recv`
    /// takes them ([`AckTiming::OnTake`], the default), as soon as they are
    /// read ([`AckTiming::OnArrival`]), or when the application says the
    /// work is done ([`AckTiming::Explicit`], with
    /// [`Socket::recv_with_ack`](crate::Socket::recv_with_ack)).
    pub fn ack_timing(mut self, timing: AckTiming) -> Self {
        self.ack_timing = timing;
        self
    }

    /// Recent (sender, message id) pairs remembered to drop repeated
    /// at-least-once messages: at least the last `messages`, at most twice
    /// as many (see [`DuplicateFilter`](crate::reliability::DuplicateFilter));
    /// 0 turns the filter off. Default: 4096. The window's memory (about
    /// 75 to 87 bytes a message) is taken when the socket is built; more than
    /// [`MAX_DUPLICATE_WINDOW`](crate::reliability::MAX_DUPLICATE_WINDOW)
    /// (1,048,576) is refused by [`build`](SocketBuilder::build).
    pub fn duplicate_window(mut self, messages: usize) -> Self {
        self.duplicate_window = messages;
        self
    }

    /// Under at-least-once: wait this long for an ACK before sending again.
    /// Default: 5 s.
    pub fn resend_timeout(mut self, timeout: Duration) -> Self {
        self.at_least_once.resend_timeout = timeout;
        self
    }

    /// Under at-least-once: sends of one message at most, and the time after
    /// which it is given up anyway. Defaults: 6 sends, 60 s. A resend of a
    /// message for one peer by identity that finds that peer away (say,
    /// reconnecting) is not a send: it waits for the peer, up to the time.
    pub fn give_up(mut self, attempts: u32, after: Duration) -> Self {
        self.at_least_once.max_attempts = attempts;
        self.at_least_once.give_up_after = after;
        self
    }

    /// Under at-least-once: messages awaiting their ACK at most; sends wait
    /// at the limit. Default: 4096.
    pub fn max_in_flight(mut self, messages: usize) -> Self {
        self.at_least_once.max_in_flight = messages;
        self
    }

    /// Under at-least-once: a soft mark on the payload bytes awaiting their
    /// ACK. A send is taken while fewer bytes than this are pending, and
    /// then whole (so a message larger than the mark still goes); sends
    /// wait at the mark. The sender keeps each payload until its ACK, so
    /// this bounds the memory large messages hold. Default: 64 MiB. See
    /// `AtLeastOnceConfig::max_in_flight_bytes` in `smartsock-reliability`.
    pub fn max_in_flight_bytes(mut self, bytes: usize) -> Self {
        self.at_least_once.max_in_flight_bytes = bytes;
        self
    }

    /// Under at-least-once: given-up messages kept for
    /// [`Socket::undelivered`] until it takes them, at most `messages` of
    /// them, taken while their payloads come to fewer than `bytes` (each
    /// whole, so one larger message still fits when nothing else is kept).
    /// Past either mark a give-up is only counted
    /// (`AtLeastOnceStats::undelivered_not_kept`) and reported as an
    /// event. Defaults: 1024 messages, 64 MiB. Either at 0 is refused by
    /// [`build`](SocketBuilder::build).
    pub fn undelivered_queue(mut self, messages: usize, bytes: usize) -> Self {
        self.at_least_once.undelivered_capacity = messages;
        self.at_least_once.undelivered_bytes = bytes;
        self
    }

    /// Bounds how long [`Socket::send`] and [`Socket::send_to`] wait for room
    /// (a full peer queue, a full no-peer buffer, the in-flight limit). When
    /// it runs out the send fails with `SendErrorKind::TimedOut` and hands
    /// the message back. Default: none (wait as long as it takes).
    ///
    /// The bound covers the wait before the message is handed over. Two
    /// waits come after it and are not bounded: a by-identity send to a peer
    /// whose queue is full, and a publish with
    /// [`when_subscriber_full(WhenFull::Wait)`](SocketBuilder::when_subscriber_full)
    /// to a subscriber whose queue is full.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = Some(timeout);
        self
    }

    /// The TLS server configuration for `tls://` and `wss://` binds. Make
    /// one with [`tls::server_config`](crate::tls::server_config) (a client
    /// CA there requires client certificates: mutual TLS), or hand in your
    /// own rustls config. Feature `tls`.
    #[cfg(feature = "tls")]
    pub fn tls_server(mut self, config: std::sync::Arc<crate::tls::rustls::ServerConfig>) -> Self {
        self.transport.tls_server = Some(config);
        self
    }

    /// The TLS client configuration for `tls://` and `wss://` connects: the
    /// CAs trusted and, for mutual TLS, the certificate presented. See
    /// [`tls::client_config`](crate::tls::client_config). Feature `tls`.
    #[cfg(feature = "tls")]
    pub fn tls_client(mut self, config: std::sync::Arc<crate::tls::rustls::ClientConfig>) -> Self {
        self.transport.tls_client = Some(config);
        self
    }

    /// The name the server's certificate must carry, when it is not the
    /// host connected to (an IP address, a load balancer). Feature `tls`.
    #[cfg(feature = "tls")]
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.transport.tls_server_name = Some(name.into());
        self
    }

    /// Binds each client's identity to its certificate on TLS bind ends
    /// (mutual TLS): a client's HELLO must name the identity its certificate
    /// carries as the subject alternative name `urn:uuid:<identity>`, or it
    /// is refused ([`RefusedReason::IdentityNotCertified`](crate::RefusedReason::IdentityNotCertified)),
    /// so that nobody can take over or lock out another peer's identity.
    /// Feature `tls`.
    #[cfg(feature = "tls")]
    pub fn bind_identity_to_certificate(mut self, bind: bool) -> Self {
        self.transport.bind_identity_to_certificate = bind;
        self
    }

    /// Whether TCP and TLS bind ends also accept WebSocket peers on their
    /// port (default: yes; a `ws://` or `wss://` bind always does). Feature `ws`.
    #[cfg(feature = "ws")]
    pub fn websocket(mut self, accept: bool) -> Self {
        self.transport.websocket = accept;
        self
    }

    /// Replaces every transport setting at once (identity included).
    pub fn transport_config(mut self, config: TransportConfig) -> Self {
        self.transport = config;
        self
    }

    /// Adds a tower layer around the send path (outermost last), e.g. a
    /// rate or concurrency limit. Its errors come back of kind
    /// [`ErrorKind::Layer`](crate::ErrorKind::Layer); errors of kind
    /// [`ErrorKind::Send`](crate::ErrorKind::Send) from below pass through
    /// with their message.
    ///
    /// A send waits for the stack's readiness before it hands the message
    /// over, and tower's `Timeout` times only what follows: to bound the wait
    /// for room, use [`send_timeout`](SocketBuilder::send_timeout).
    ///
    /// ```
    /// use smartsock::Socket;
    /// use tower::limit::ConcurrencyLimitLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), smartsock::Error> {
    /// let socket = Socket::builder().layer(ConcurrencyLimitLayer::new(16)).build()?;
    /// # drop(socket);
    /// # Ok(())
    /// # }
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<BoxSendService> + Send + 'static,
        L::Service: Service<Message, Response = ()> + Send + 'static,
        <L::Service as Service<Message>>::Error: Into<BoxError>,
        <L::Service as Service<Message>>::Future: Send + 'static,
    {
        self.layers.push(Box::new(move |inner| BoxService::new(layer.layer(inner).map_err(Into::into))));
        self
    }

    /// Checks the settings and makes the socket. Call it inside a tokio runtime.
    pub fn build(self) -> Result<Socket, Error> {
        if self.mode == SendMode::Publish && self.delivery == Delivery::AtLeastOnce {
            return Err(Error::config(NO_RELIABLE_PUBLISH));
        }
        if self.peer_set.buffer_capacity == 0 {
            return Err(Error::config("the no-peer buffer must hold at least 1 message"));
        }
        if self.duplicate_window > MAX_DUPLICATE_WINDOW {
            return Err(Error::config(format!(
                "duplicate_window must be at most {MAX_DUPLICATE_WINDOW} messages (got {})",
                self.duplicate_window
            )));
        }
        self.transport.validate()?;
        if self.delivery == Delivery::AtLeastOnce {
            self.at_least_once.validate().map_err(Error::config)?;
        }
        Socket::from_builder(self)
    }
}
