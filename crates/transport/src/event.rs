//! [`Event`]: what happens to connections, for tests and for users to watch.

use std::fmt;
use std::time::Duration;

use smartsock_framing::PeerId;

/// Which end of a connection this socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// This socket accepted the connection on a bound address.
    Bind,
    /// This socket dialed the connection.
    Connect,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bind => "bind",
            Self::Connect => "connect",
        })
    }
}

/// Why a connection that had completed its handshake ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The peer closed the stream between frames.
    PeerClosed,
    /// Nothing was received for the heartbeat timeout.
    HeartbeatTimeout,
    /// A frame arrived slower than
    /// [`TransportConfig::min_receive_rate`](crate::TransportConfig::min_receive_rate)
    /// allows: still incomplete one heartbeat timeout plus its bytes at that
    /// rate after it began.
    TooSlow,
    /// The peer broke the protocol (the text says how); its connection was closed.
    Protocol(String),
    /// Reading or writing failed (the text is the OS error).
    Io(String),
    /// This socket is closing.
    Closing,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerClosed => f.write_str("the peer closed the connection"),
            Self::HeartbeatTimeout => f.write_str("nothing received within the heartbeat timeout"),
            Self::TooSlow => f.write_str("a frame arrived slower than the minimum receive rate"),
            Self::Protocol(what) => write!(f, "protocol error: {what}"),
            Self::Io(what) => write!(f, "i/o error: {what}"),
            Self::Closing => f.write_str("the socket is closing"),
        }
    }
}

/// Why a new connection was closed before it became a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusedReason {
    /// The peer's HELLO named a protocol version other than 1.
    Version(u8),
    /// A connection from this identity is already up; the new one was closed
    /// and the old one kept.
    DuplicateIdentity(PeerId),
    /// The peer has this socket's own identity (a socket connected to itself).
    OwnIdentity,
    /// No HELLO within the handshake timeout.
    Timeout,
    /// The first frame was not a well-formed HELLO.
    Malformed(String),
    /// The socket already has its maximum number of peers.
    TooManyPeers,
    /// The stream failed or closed during the handshake.
    Io(String),
    /// Too many handshakes were pending: this one, the oldest, was dropped
    /// to make room for a newer one.
    Shed,
    /// The remote address holds its share of pending handshakes, or of
    /// connected peers, already.
    TooManyFromAddress,
    /// The TLS handshake failed (or the stream is not TLS at all).
    Tls(TlsFailure),
    /// The bind end's first byte was neither the protocol's (`0x00`) nor a
    /// WebSocket upgrade's (`G`).
    UnknownFirstByte(u8),
    /// The WebSocket upgrade or the WebSocket stream failed (the text says how).
    WebSocket(String),
    /// Identity binding is on and the peer's HELLO named an identity its
    /// certificate does not carry (as a `urn:uuid:` subject alternative
    /// name), or it presented no certificate: an impostor, refused before it
    /// could take over or lock out the real peer.
    IdentityNotCertified(PeerId),
}

impl fmt::Display for RefusedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version(v) => write!(f, "unsupported protocol version {v}"),
            Self::DuplicateIdentity(id) => write!(f, "identity {id} is already connected"),
            Self::OwnIdentity => f.write_str("the peer has this socket's own identity"),
            Self::Timeout => f.write_str("no HELLO within the handshake timeout"),
            Self::Malformed(what) => write!(f, "malformed handshake: {what}"),
            Self::TooManyPeers => f.write_str("the socket has its maximum number of peers"),
            Self::Io(what) => write!(f, "i/o error during the handshake: {what}"),
            Self::Shed => f.write_str("too many handshakes pending: the oldest was dropped"),
            Self::TooManyFromAddress => f.write_str("too many connections from this address"),
            Self::Tls(failure) => write!(f, "TLS: {failure}"),
            Self::UnknownFirstByte(0x16) => f.write_str(
                "the first byte was 0x16, a TLS handshake: a TLS client on a plain (non-TLS) port",
            ),
            Self::UnknownFirstByte(byte) => write!(
                f,
                "the first byte was {byte:#04x}, neither the protocol (0x00) nor a WebSocket upgrade ('G')"
            ),
            Self::WebSocket(what) => write!(f, "WebSocket: {what}"),
            Self::IdentityNotCertified(id) => {
                write!(f, "identity {id} is not the one the peer's certificate carries (urn:uuid: name)")
            }
        }
    }
}

/// Why a TLS handshake failed, as far as this end can tell.
///
/// A failure that the *other* end detected reaches this end as a TLS alert
/// and is reported here by that alert (`UnknownIssuer` for an "unknown CA"
/// alert, and so on), so that both ends of a refused connection say the
/// same thing where TLS lets them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The certificate was not issued by a trusted CA.
    UnknownIssuer,
    /// The server's certificate does not name the host that was dialled
    /// (or the name that was configured).
    BadName,
    /// The certificate has expired (or is not valid yet).
    Expired,
    /// The server requires a client certificate and none was presented.
    NoClientCertificate,
    /// The certificate was refused for another reason (the text says which).
    BadCertificate(String),
    /// The bytes received are not TLS: a plain peer on a TLS port.
    NotTls,
    /// The peer closed the stream during the TLS handshake (a plain server
    /// often does this when a TLS client greets it).
    Closed,
    /// No TLS handshake within the handshake timeout.
    Timeout,
    /// Any other TLS error.
    Other(String),
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownIssuer => f.write_str("certificate issued by an unknown CA"),
            Self::BadName => f.write_str("the server's certificate is not valid for the expected name"),
            Self::Expired => f.write_str("certificate expired or not yet valid"),
            Self::NoClientCertificate => f.write_str("no client certificate was presented"),
            Self::BadCertificate(what) => write!(f, "certificate refused: {what}"),
            Self::NotTls => f.write_str("the peer did not speak TLS (plain bytes on a TLS port?)"),
            Self::Closed => {
                f.write_str("the peer closed the connection during the TLS handshake (not a TLS port?)")
            }
            Self::Timeout => f.write_str("no TLS handshake within the handshake timeout"),
            Self::Other(what) => f.write_str(what),
        }
    }
}

/// Why messages were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// A publish subscriber's outbox was full (the slow-subscriber policy).
    SlowSubscriber,
    /// Messages queued for a peer that disconnected, which could not go elsewhere.
    PeerGone,
    /// ACKs that arrived while the ACK queue was full.
    AckQueueFull,
    /// At-least-once messages that ran out of attempts.
    Undelivered,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SlowSubscriber => "a subscriber's queue was full",
            Self::PeerGone => "their peer disconnected before they were written",
            Self::AckQueueFull => "the ACK queue was full",
            Self::Undelivered => "they ran out of delivery attempts",
        })
    }
}

/// Why the connect end is trying again: what went wrong with the last try,
/// or that the connection it had ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// Nobody listens there (the connection was refused).
    Refused,
    /// The try took longer than
    /// [`TransportConfig::connect_timeout`](crate::TransportConfig::connect_timeout).
    TimedOut,
    /// The host name did not resolve to any address; the resolver's words.
    NameNotResolved(String),
    /// Any other failure to open the stream.
    Io(String),
    /// The stream opened, but the handshake failed or was refused.
    Handshake(String),
    /// The connection was up and has ended (its own event says why).
    Disconnected,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused => f.write_str("connection refused"),
            Self::TimedOut => f.write_str("connect timed out"),
            Self::NameNotResolved(detail) => write!(f, "name not resolved: {detail}"),
            Self::Io(detail) => f.write_str(detail),
            Self::Handshake(detail) => write!(f, "handshake failed: {detail}"),
            Self::Disconnected => f.write_str("disconnected"),
        }
    }
}

/// Something that happened to the socket's connections.
///
/// Shows as one line for logs:
///
/// ```
/// use std::time::Duration;
/// use smartsock_transport::{ConnectError, Event};
///
/// let event = Event::Reconnecting {
///     addr: "127.0.0.1:5555".into(),
///     attempt: 2,
///     delay: Duration::from_millis(100),
///     error: ConnectError::Refused,
/// };
/// assert_eq!(event.to_string(), "reconnecting to 127.0.0.1:5555 in 100ms (attempt 2): connection refused");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A handshake completed: `peer` is up.
    PeerConnected {
        /// The peer's identity.
        peer: PeerId,
        /// The peer's address.
        addr: String,
        /// Which end this socket is.
        side: Side,
    },
    /// A peer's connection ended.
    PeerDisconnected {
        /// The peer's identity.
        peer: PeerId,
        /// Why.
        reason: DisconnectReason,
    },
    /// A new connection was closed during its handshake.
    HandshakeRefused {
        /// The remote address.
        addr: String,
        /// Why.
        reason: RefusedReason,
    },
    /// The connect end will try `addr` again after `delay`.
    Reconnecting {
        /// The address as given to `connect`.
        addr: String,
        /// Failed tries in a row (1 after the first).
        attempt: u32,
        /// The wait before the next try.
        delay: Duration,
        /// What went wrong with the last try.
        error: ConnectError,
    },
    /// Messages were dropped; see [`DropReason`].
    Dropped {
        /// The peer concerned, if one is.
        peer: Option<PeerId>,
        /// How many.
        count: u64,
        /// Why.
        reason: DropReason,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerConnected { peer, addr, side } => {
                write!(f, "peer {peer} connected ({side} side, {addr})")
            }
            Self::PeerDisconnected { peer, reason } => write!(f, "peer {peer} disconnected: {reason}"),
            Self::HandshakeRefused { addr, reason } => write!(f, "handshake with {addr} refused: {reason}"),
            Self::Reconnecting { addr, attempt, delay, error } => {
                write!(f, "reconnecting to {addr} in {delay:?} (attempt {attempt}): {error}")
            }
            Self::Dropped { peer: Some(peer), count, reason } => {
                write!(f, "{count} message(s) for peer {peer} dropped: {reason}")
            }
            Self::Dropped { peer: None, count, reason } => write!(f, "{count} message(s) dropped: {reason}"),
        }
    }
}
