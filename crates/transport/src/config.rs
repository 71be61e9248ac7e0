//! [`TransportConfig`] and [`ReconnectStrategy`]: every knob, with its default.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use smartsock_framing::{DEFAULT_MAX_FRAME_LENGTH, PeerId};

use crate::TransportError;

/// The largest queue capacity a setting may ask for (tokio's semaphore limit).
pub const MAX_CAPACITY: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// Default [`TransportConfig::outbox_capacity`]: 4096 frames per peer.
///
/// Small frames are what this bounds: payloads of 256 bytes or more meet
/// [`DEFAULT_OUTBOX_BYTES`] first (at 1 KiB, after 1024 frames). A sender on
/// `main` beside a 2-worker runtime sleeps on a full outbox once per batch,
/// so longer batches of small frames mean fewer sleeps: one-way 16 B on 2
/// workers gained 10-16% over 1024 frames (medians of 6 and 8 pairs). Up to
/// this many frames go back into the no-peer buffer when a peer leaves, and
/// as many at-most-once messages can be lost in a write that breaks.
pub const DEFAULT_OUTBOX_CAPACITY: usize = 4096;

/// Default [`TransportConfig::outbox_bytes`]: 1 MiB of payload per peer.
///
/// A batch the writer takes then stays within what the encode buffer keeps
/// (about 2.2 MiB; a run of 4096 frames of 1 KiB, 4 MiB, was grown by
/// doubling and freed after every write: one-way 1 KiB 7-17% slower), and
/// the payloads queued for a peer stay within the CPU's caches: one-way
/// 64 KiB on 2 workers was 39% faster than with the 8 MiB of before
/// (medians of 6 pairs each way).
/// It also bounds what a peer that stops reading pins: 1 MiB plus one
/// frame, and the batch its writer took.
pub const DEFAULT_OUTBOX_BYTES: usize = 1024 * 1024;

/// Default [`TransportConfig::inbound_bytes`]: 64 MiB per socket.
pub const DEFAULT_INBOUND_BYTES: usize = 64 * 1024 * 1024;

/// Default [`TransportConfig::min_receive_rate`]: 64 KiB/s.
pub const DEFAULT_MIN_RECEIVE_RATE: u64 = 64 * 1024;

/// Default [`TransportConfig::inbound_lookahead`]: 128 KiB per connection.
pub const DEFAULT_INBOUND_LOOKAHEAD: usize = 128 * 1024;

/// The longest time a setting may ask for: one year. Longer deadlines would
/// overflow the clock; to all intents, a year is "never".
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// How long the connect end waits before its next try, given the number of
/// tries that failed in a row since the last successful handshake (1 after
/// the first failure or disconnect).
///
/// ```
/// use std::time::Duration;
/// use smartsock_transport::ReconnectStrategy;
///
/// let fixed = ReconnectStrategy::fixed(Duration::from_millis(250));
/// assert_eq!(fixed.delay(7), Duration::from_millis(250));
///
/// let backoff = ReconnectStrategy::exponential(Duration::from_millis(100), Duration::from_secs(5));
/// assert!(backoff.delay(1) <= Duration::from_millis(100));
/// assert!(backoff.delay(30) <= Duration::from_secs(5));
///
/// let custom = ReconnectStrategy::new(|attempt| Duration::from_millis(10 * u64::from(attempt)));
/// assert_eq!(custom.delay(3), Duration::from_millis(30));
/// ```
#[derive(Clone)]
pub struct ReconnectStrategy(Arc<dyn Fn(u32) -> Duration + Send + Sync>);

impl ReconnectStrategy {
    /// A strategy from any function of the attempt number.
    pub fn new(delay: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        Self(Arc::new(delay))
    }

    /// The same delay before every try.
    pub fn fixed(delay: Duration) -> Self {
        Self::new(move |_| delay)
    }

    /// Doubles from `initial` up to `max`, with "full jitter": each delay is
    /// drawn between half and all of the doubled value, so that many clients
    /// cut off at once do not come back at once. Starts again from `initial`
    /// after a successful handshake.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        Self::new(move |attempt| {
            let doubled = initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(max);
            doubled.mul_f64(rand::random_range(0.5..=1.0))
        })
    }

    /// The delay before the try that follows `attempt` failures in a row.
    pub fn delay(&self, attempt: u32) -> Duration {
        (self.0)(attempt)
    }
}

impl Default for ReconnectStrategy {
    /// A fixed 100 ms, as aiomsg does.
    fn default() -> Self {
        Self::fixed(Duration::from_millis(100))
    }
}

impl fmt::Debug for ReconnectStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReconnectStrategy").field(&self.delay(1)).finish()
    }
}

/// Every setting of a [`Transport`](crate::Transport), with its default.
///
/// Start from [`TransportConfig::default`] and change what you need; the
/// transport checks the whole config when it is made.
///
/// ```
/// use std::time::Duration;
/// use smartsock_transport::TransportConfig;
///
/// let mut config = TransportConfig::default();
/// config.heartbeat_interval = Duration::from_secs(1);
/// config.heartbeat_timeout = Duration::from_secs(3);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportConfig {
    /// This socket's identity, sent in every HELLO. Default: random.
    pub identity: PeerId,
    /// Largest envelope accepted from, or sent to, a peer. A peer that
    /// announces more is disconnected. Default: 16 MiB.
    pub max_frame_length: usize,
    /// Frames queued for one peer before its outbox is full (its high-water
    /// mark). What happens at the mark is the sender's choice: the routing
    /// layers wait, skip the peer, or drop. Default: 4096
    /// ([`DEFAULT_OUTBOX_CAPACITY`]).
    ///
    /// The peer's writer takes everything queued at once to write it in one
    /// call, so a peer whose socket is not draining holds at most this many
    /// queued plus one such batch being written.
    pub outbox_capacity: usize,
    /// Payload bytes queued for one peer before its outbox is full, whatever
    /// the frame count: a frame is taken while fewer bytes than this are
    /// queued (so one large frame may pass the mark; none is taken after
    /// it). Round-robin skips a peer at this mark at once. Default: 1 MiB
    /// ([`DEFAULT_OUTBOX_BYTES`]).
    ///
    /// A larger mark is not faster for mid-size messages: at 8 MiB, one-way
    /// 1 KiB ran at 0.83x the default's rate (median of 6 pairs), its
    /// batches of 4 MiB passing the CPU's caches.
    ///
    /// A Unix socket's send buffer is raised to this mark when smaller (the
    /// kernel caps it at `net.core.wmem_max`), so that a batch of small
    /// frames goes in one write: unlike TCP's, it does not grow by itself.
    /// Linux reserves twice what is set, so a peer that stops reading can
    /// hold up to 2 × min(this, `wmem_max`) in the kernel per Unix
    /// connection (2 MiB at the defaults where `wmem_max` allows it; about
    /// 416 KiB on a stock kernel, whose `wmem_max` is 208 KiB). Streams
    /// handed in with `Transport::attach` are left as they are.
    pub outbox_bytes: usize,
    /// Received messages queued for the application across all peers. When
    /// full, the transport stops reading from sockets, so TCP pushes back on
    /// the senders; nothing is dropped. Default: 1024.
    pub inbound_capacity: usize,
    /// Payload bytes of received messages queued for the application, across
    /// all peers: a message is queued while fewer bytes than this are (so one
    /// large message may pass the mark); at the mark reading stops, as at
    /// `inbound_capacity`. Default: 64 MiB.
    pub inbound_bytes: usize,
    /// While the inbound queue is full, a connection reads on, for the ACKs
    /// and HEARTBEATs behind the messages waiting for room, as long as it
    /// holds fewer than this many bytes: the payloads of its messages
    /// waiting for room plus the bytes of the frame in progress. A read never
    /// takes it past this bound; at the bound, reading stops (TCP pushes back)
    /// until the application takes a message, and the peer's silence is not
    /// held against it meanwhile. So a socket whose application stops
    /// taking messages still hears the ACKs for the messages it sent, up to
    /// this much data in front of them. 0 turns the look-ahead off (a full
    /// queue stops reading at once). Default: 128 KiB.
    pub inbound_lookahead: usize,
    /// ACKs queued, in each direction: ACKs received and waiting for the
    /// reliability layer (one queue per socket), and ACKs waiting to be
    /// written (one lane per connection, written before any data). When
    /// full, further ACKs are dropped and counted; the sender resends and the
    /// repeat is acknowledged again. Default: 4096.
    pub ack_capacity: usize,
    /// Connected peers at most. A handshake that would pass it is refused with
    /// [`RefusedReason::TooManyPeers`](crate::RefusedReason::TooManyPeers). Default: 1024.
    pub max_peers: usize,
    /// Connected peers from one IP address at most, so that one host cannot
    /// hold every slot; more are refused with
    /// [`RefusedReason::TooManyFromAddress`](crate::RefusedReason::TooManyFromAddress).
    /// Unix sockets, in-process pipes and attached streams are not counted.
    /// Default: 256.
    pub max_peers_per_address: usize,
    /// Accepted connections still handshaking, at most. Accepting never
    /// waits: at the limit the oldest pending handshake is dropped
    /// ([`RefusedReason::Shed`](crate::RefusedReason::Shed)) to make room.
    /// Default: 64.
    pub max_handshakes: usize,
    /// Pending handshakes from one IP address at most; a connection past it
    /// is closed at once ([`RefusedReason::TooManyFromAddress`](crate::RefusedReason::TooManyFromAddress)).
    /// Default: 8.
    pub max_handshakes_per_address: usize,
    /// Time a new connection has to complete its handshake. Default: 5 s.
    pub handshake_timeout: Duration,
    /// Send a HEARTBEAT after this long with nothing sent. Default: 5 s.
    pub heartbeat_interval: Duration,
    /// Tear a connection down after this long with nothing received: not
    /// one byte (a frame still arriving counts, within
    /// [`min_receive_rate`](Self::min_receive_rate)). Default: 15 s.
    pub heartbeat_timeout: Duration,
    /// Bytes per second a frame in progress must keep up, on average, for its
    /// bytes to count as life: a frame whose first byte arrived at `t` is
    /// cut ([`DisconnectReason::TooSlow`](crate::DisconnectReason::TooSlow))
    /// once `heartbeat_timeout` plus its bytes received so far at this rate
    /// has passed since `t`. So a large frame on a slow but honest link is
    /// never cut for taking longer than the heartbeat timeout, while a peer
    /// dripping a frame (a byte every few seconds, to keep a connection slot)
    /// is cut about one heartbeat timeout after the frame began, as a silent
    /// one is. A frame that arrives within `heartbeat_timeout` of its first
    /// byte is never cut by this rule, nor is one that keeps up this rate.
    /// Default: 64 KiB/s (a 16 MiB frame may take up to 271 s with the
    /// default timeout).
    pub min_receive_rate: u64,
    /// Time one TCP connect try may take. Default: 5 s.
    pub connect_timeout: Duration,
    /// Delay between connect tries. Default: fixed 100 ms.
    pub reconnect: ReconnectStrategy,
    /// On close, time a connection has to write what is queued and see the
    /// peer close its end after ours (which confirms it read everything);
    /// see [`Transport::close`](crate::Transport::close). Default: 5 s,
    /// enough for a live peer that reads slowly to take a full outbox and
    /// the kernel's buffers, short enough not to hang a program whose peer
    /// has died.
    pub linger: Duration,
    /// Acknowledge a DATA_REQ as soon as it is read, instead of leaving it to
    /// the layer above (which by default acknowledges when the application
    /// takes the message). Default: false.
    pub ack_on_arrival: bool,
    /// Connection events kept for a slow [`events`](crate::Transport::events)
    /// reader before the oldest are overwritten; drops are kept apart, as at
    /// most this many tallies (one per peer and reason, whatever the number
    /// of messages), so they never overwrite connection events. Default: 1024.
    pub event_capacity: usize,
    /// The TLS server configuration for `tls://` and `wss://` binds (feature
    /// `tls`): hand in your own, or make one with
    /// [`tls::server_config`](crate::tls::server_config). A client
    /// certificate verifier in it makes the bind end require mutual TLS.
    /// Default: none (a TLS bind is refused).
    #[cfg(feature = "tls")]
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
    /// The TLS client configuration for `tls://` and `wss://` connects
    /// (feature `tls`); see [`tls::client_config`](crate::tls::client_config).
    /// Default: none (a TLS connect is refused).
    #[cfg(feature = "tls")]
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
    /// The name the server's certificate must carry, if not the host of the
    /// address connected to (for instance when connecting by IP address).
    /// Default: none.
    #[cfg(feature = "tls")]
    pub tls_server_name: Option<String>,
    /// Binds each client's identity to its certificate on TLS bind ends: a
    /// client's HELLO must name an identity that its verified certificate
    /// carries as a subject alternative name `urn:uuid:<identity>` (the
    /// identity as a UUID; hyphens optional). Any other identity, or no
    /// client certificate, is refused with
    /// [`RefusedReason::IdentityNotCertified`](crate::RefusedReason::IdentityNotCertified)
    /// before the peer is registered, so nobody can take over or lock out
    /// another peer's identity. Needs a server config that requires client
    /// certificates (mutual TLS). Default: false.
    #[cfg(feature = "tls")]
    pub bind_identity_to_certificate: bool,
    /// Whether TCP and TLS bind ends also accept WebSocket peers on the
    /// same port, told apart by the first byte (feature `ws`). Default: true.
    #[cfg(feature = "ws")]
    pub websocket: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            identity: PeerId::random(),
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            outbox_capacity: DEFAULT_OUTBOX_CAPACITY,
            outbox_bytes: DEFAULT_OUTBOX_BYTES,
            inbound_capacity: 1024,
            inbound_bytes: DEFAULT_INBOUND_BYTES,
            inbound_lookahead: DEFAULT_INBOUND_LOOKAHEAD,
            ack_capacity: 4096,
            max_peers: 1024,
            max_peers_per_address: 256,
            max_handshakes: 64,
            max_handshakes_per_address: 8,
            handshake_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(15),
            min_receive_rate: DEFAULT_MIN_RECEIVE_RATE,
            connect_timeout: Duration::from_secs(5),
            reconnect: ReconnectStrategy::default(),
            linger: Duration::from_secs(5),
            ack_on_arrival: false,
            event_capacity: 1024,
            #[cfg(feature = "tls")]
            tls_server: None,
            #[cfg(feature = "tls")]
            tls_client: None,
            #[cfg(feature = "tls")]
            tls_server_name: None,
            #[cfg(feature = "tls")]
            bind_identity_to_certificate: false,
            #[cfg(feature = "ws")]
            websocket: true,
        }
    }
}

impl TransportConfig {
    /// Checks that every setting is usable, naming the first that is not:
    /// capacities from 1 to [`MAX_CAPACITY`], durations up to
    /// [`MAX_DURATION`] (and above zero, but for the linger).
    pub fn validate(&self) -> Result<(), TransportError> {
        let positive = [
            ("max_frame_length", self.max_frame_length),
            ("outbox_capacity", self.outbox_capacity),
            ("inbound_capacity", self.inbound_capacity),
            ("outbox_bytes", self.outbox_bytes),
            ("inbound_bytes", self.inbound_bytes),
            ("ack_capacity", self.ack_capacity),
            ("max_peers", self.max_peers),
            ("max_handshakes", self.max_handshakes),
            ("max_handshakes_per_address", self.max_handshakes_per_address),
            ("max_peers_per_address", self.max_peers_per_address),
            ("event_capacity", self.event_capacity),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(TransportError::InvalidConfig(format!("{name} must be at least 1")));
            }
            let bytes = name.ends_with("_bytes");
            if !bytes && value > MAX_CAPACITY {
                return Err(TransportError::InvalidConfig(format!("{name} must be at most {MAX_CAPACITY}")));
            }
        }
        if self.min_receive_rate == 0 {
            return Err(TransportError::InvalidConfig(
                "min_receive_rate must be at least 1 byte per second".into(),
            ));
        }
        if self.max_frame_length > u32::MAX as usize {
            return Err(TransportError::InvalidConfig("max_frame_length must fit in u32".into()));
        }
        let durations = [
            ("handshake_timeout", self.handshake_timeout),
            ("heartbeat_interval", self.heartbeat_interval),
            ("heartbeat_timeout", self.heartbeat_timeout),
            ("connect_timeout", self.connect_timeout),
        ];
        for (name, value) in durations.into_iter().chain([("linger", self.linger)]) {
            if value.is_zero() && name != "linger" {
                return Err(TransportError::InvalidConfig(format!("{name} must be longer than zero")));
            }
            // Deadlines are computed as now + duration: keep them representable.
            if value > MAX_DURATION {
                return Err(TransportError::InvalidConfig(format!(
                    "{name} must be at most {} days",
                    MAX_DURATION.as_secs() / 86_400
                )));
            }
        }
        if self.heartbeat_timeout <= self.heartbeat_interval {
            return Err(TransportError::InvalidConfig(format!(
                "heartbeat_timeout ({:?}) must be longer than heartbeat_interval ({:?}), \
                 or a quiet but healthy peer would be cut off",
                self.heartbeat_timeout, self.heartbeat_interval
            )));
        }
        Ok(())
    }
}
