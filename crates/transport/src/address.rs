//! [`Address`] (what `bind` and `connect` are given) and [`Endpoint`] (what
//! `bind` hands back): one parser for every transport's scheme.
//!
//! Adding a transport: a variant of [`Scheme`] (recognised, so that a build
//! without it says so instead of guessing), a variant of [`Address`] made by
//! [`Address::parse`], and one branch each in `Transport::bind` and
//! `Transport::connect`. Nothing else knows about schemes.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::TransportError;

/// The longest Unix socket path the kernel accepts, in bytes, without the
/// terminating NUL (`sun_path` is 108 bytes on Linux, 104 on macOS and the BSDs).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const MAX_UNIX_PATH: usize = 107;
/// The longest Unix socket path the kernel accepts, in bytes, without the
/// terminating NUL (`sun_path` is 108 bytes on Linux, 104 on macOS and the BSDs).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const MAX_UNIX_PATH: usize = 103;

/// The scheme of an address: the part before `://` (none means TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `tcp://host:port`, or a bare `host:port`.
    Tcp,
    /// `unix:///path` or, on Linux, `unix://@abstract-name`.
    Unix,
    /// `inproc://name`: sockets of one process.
    Inproc,
    /// `tls://host:port`: the protocol inside TLS (feature `tls`).
    Tls,
    /// `ws://host:port/path`: the protocol inside WebSocket binary messages
    /// (feature `ws`).
    Ws,
    /// `wss://host:port/path`: WebSocket inside TLS (features `ws` and `tls`).
    Wss,
}

impl Scheme {
    /// The scheme named `name` (without `://`), if it is one smartsock knows.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "tcp" => Self::Tcp,
            "unix" => Self::Unix,
            "inproc" => Self::Inproc,
            "tls" => Self::Tls,
            "ws" => Self::Ws,
            "wss" => Self::Wss,
            _ => return None,
        })
    }

    /// Its name, as written before `://`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Unix => "unix",
            Self::Inproc => "inproc",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    /// Whether this build can bind and connect with it.
    pub fn is_supported(self) -> bool {
        match self {
            Self::Tcp | Self::Inproc => true,
            Self::Unix => cfg!(unix),
            Self::Tls => cfg!(feature = "tls"),
            Self::Ws => cfg!(feature = "ws"),
            Self::Wss => cfg!(all(feature = "ws", feature = "tls")),
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed address for `bind` or `connect`.
///
/// ```
/// use smartsock_transport::{Address, Scheme};
///
/// assert_eq!(Address::parse("127.0.0.1:5555")?, Address::Tcp("127.0.0.1:5555".into()));
/// assert_eq!(Address::parse("tcp://localhost:80")?, Address::Tcp("localhost:80".into()));
/// assert_eq!(Address::parse("unix:///tmp/app.sock")?, Address::Unix("/tmp/app.sock".into()));
/// assert_eq!(Address::parse("inproc://jobs")?, Address::Inproc("jobs".into()));
/// # #[cfg(target_os = "linux")]
/// assert_eq!(Address::parse("unix://@app")?, Address::UnixAbstract("app".into()));
///
///
/// // With the `tls` and `ws` features (on by default):
/// if Scheme::Wss.is_supported() {
///     assert_eq!(Address::parse("tls://example.com:443")?, Address::Tls("example.com:443".into()));
///     assert_eq!(
///         Address::parse("ws://example.com:80/feed")?,
///         Address::Ws { host_port: "example.com:80".into(), path: "/feed".into() },
///     );
///     assert_eq!(
///         Address::parse("wss://example.com:443")?,
///         Address::Wss { host_port: "example.com:443".into(), path: "/".into() },
///     );
/// } else {
///     let error = Address::parse("wss://example.com:443").unwrap_err();
///     assert_eq!(error.to_string(), "wss:// addresses are not supported by this build (\"wss://example.com:443\")");
/// }
///
/// // Unknown schemes are refused at once, never taken for TCP (and so are
/// // `tls`, `ws` and `wss` in a build without their features).
/// let error = Address::parse("ipc:///tmp/x").unwrap_err();
/// assert_eq!(error.to_string(), "invalid address \"ipc:///tmp/x\": unknown scheme (expected tcp, tls, ws, wss, unix or inproc)");
/// # Ok::<(), smartsock_transport::TransportError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// TCP: `host:port`, resolved when used (again on every reconnect).
    Tcp(String),
    /// A Unix domain socket at a filesystem path.
    Unix(PathBuf),
    /// A Linux abstract Unix socket name (no file; gone when its socket closes).
    UnixAbstract(String),
    /// An in-process name.
    Inproc(String),
    /// TLS over TCP: `host:port`. The connect end checks that the server's
    /// certificate names `host` (or [`TransportConfig::tls_server_name`](crate::TransportConfig::tls_server_name)).
    Tls(String),
    /// WebSocket over TCP. On `bind`, the same as TCP (every TCP bind end
    /// also accepts WebSocket peers); on `connect`, an HTTP upgrade to `path`.
    Ws {
        /// `host:port`.
        host_port: String,
        /// The request path, `/` if the address had none.
        path: String,
    },
    /// WebSocket inside TLS. On `bind`, the same as `tls://`.
    Wss {
        /// `host:port`.
        host_port: String,
        /// The request path, `/` if the address had none.
        path: String,
    },
}

impl Address {
    /// Parses `addr`; a malformed address or a scheme this build lacks is an
    /// error before any I/O.
    pub fn parse(addr: &str) -> Result<Self, TransportError> {
        let bad = |reason| TransportError::BadAddress { addr: addr.to_owned(), reason };
        let Some((name, rest)) = addr.split_once("://") else {
            check_host_port(addr).map_err(bad)?;
            return Ok(Self::Tcp(addr.to_owned()));
        };
        let scheme = Scheme::from_name(name)
            .ok_or_else(|| bad("unknown scheme (expected tcp, tls, ws, wss, unix or inproc)"))?;
        if !scheme.is_supported() {
            return Err(TransportError::UnsupportedScheme { addr: addr.to_owned(), scheme });
        }
        match scheme {
            Scheme::Tcp => {
                check_host_port(rest).map_err(bad)?;
                Ok(Self::Tcp(rest.to_owned()))
            }
            Scheme::Unix => parse_unix(rest).map_err(bad),
            Scheme::Inproc => {
                if rest.is_empty() {
                    return Err(bad("the in-process name is empty"));
                }
                Ok(Self::Inproc(rest.to_owned()))
            }
            Scheme::Tls => {
                check_host_port(rest).map_err(bad)?;
                Ok(Self::Tls(rest.to_owned()))
            }
            Scheme::Ws | Scheme::Wss => {
                let (host_port, path) = match rest.find('/') {
                    Some(at) => (&rest[..at], &rest[at..]),
                    None => (rest, "/"),
                };
                check_host_port(host_port).map_err(bad)?;
                if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                    return Err(bad("the WebSocket path cannot contain spaces or control characters"));
                }
                let (host_port, path) = (host_port.to_owned(), path.to_owned());
                Ok(if scheme == Scheme::Ws {
                    Self::Ws { host_port, path }
                } else {
                    Self::Wss { host_port, path }
                })
            }
        }
    }

    /// Its scheme.
    pub fn scheme(&self) -> Scheme {
        match self {
            Self::Tcp(_) => Scheme::Tcp,
            Self::Unix(_) | Self::UnixAbstract(_) => Scheme::Unix,
            Self::Inproc(_) => Scheme::Inproc,
            Self::Tls(_) => Scheme::Tls,
            Self::Ws { .. } => Scheme::Ws,
            Self::Wss { .. } => Scheme::Wss,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(host_port) => write!(f, "tcp://{host_port}"),
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::UnixAbstract(name) => write!(f, "unix://@{name}"),
            Self::Inproc(name) => write!(f, "inproc://{name}"),
            Self::Tls(host_port) => write!(f, "tls://{host_port}"),
            Self::Ws { host_port, path } => write!(f, "ws://{host_port}{path}"),
            Self::Wss { host_port, path } => write!(f, "wss://{host_port}{path}"),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = TransportError;

    fn from_str(addr: &str) -> Result<Self, Self::Err> {
        Self::parse(addr)
    }
}

/// Where `bind` listens, as a peer would connect to it.
///
/// Its `Display` is an address that `connect` accepts: a TCP endpoint shows
/// as a bare `host:port` (as `SocketAddr` did), the others with their scheme.
///
/// ```
/// use smartsock_transport::Endpoint;
///
/// let tcp = Endpoint::Tcp("127.0.0.1:5555".parse().unwrap());
/// assert_eq!(tcp.to_string(), "127.0.0.1:5555");
/// assert_eq!(tcp.port(), Some(5555));
/// assert_eq!(Endpoint::Unix("/tmp/a.sock".into()).to_string(), "unix:///tmp/a.sock");
/// assert_eq!(Endpoint::Inproc("jobs".into()).to_string(), "inproc://jobs");
/// let tls = Endpoint::Tls("127.0.0.1:5556".parse().unwrap());
/// assert_eq!((tls.to_string().as_str(), tls.port()), ("tls://127.0.0.1:5556", Some(5556)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// A bound TCP address (with the port picked, if 0 was asked for).
    Tcp(SocketAddr),
    /// A Unix socket file.
    Unix(PathBuf),
    /// A Linux abstract Unix socket name.
    UnixAbstract(String),
    /// An in-process name.
    Inproc(String),
    /// A bound TLS address: TLS over TCP (WebSocket inside TLS too).
    Tls(SocketAddr),
}

impl Endpoint {
    /// The TCP address, if this is TCP (or TLS, which runs over TCP).
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(addr) | Self::Tls(addr) => Some(*addr),
            _ => None,
        }
    }

    /// The TCP port, if this is TCP or TLS.
    pub fn port(&self) -> Option<u16> {
        self.tcp().map(|addr| addr.port())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::UnixAbstract(name) => write!(f, "unix://@{name}"),
            Self::Inproc(name) => write!(f, "inproc://{name}"),
            Self::Tls(addr) => write!(f, "tls://{addr}"),
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Self::Tcp(addr)
    }
}

impl PartialEq<SocketAddr> for Endpoint {
    fn eq(&self, other: &SocketAddr) -> bool {
        self.tcp() == Some(*other)
    }
}

/// Refuses what is plainly not `host:port` before any I/O.
fn check_host_port(addr: &str) -> Result<(), &'static str> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("expected host:port");
    };
    if host.is_empty() {
        return Err("the host is empty");
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("an IPv6 host must be written in brackets, as [::1]:port");
    }
    if port.parse::<u16>().is_err() {
        return Err("the port must be a number from 0 to 65535");
    }
    Ok(())
}

fn parse_unix(rest: &str) -> Result<Address, &'static str> {
    if rest.contains('\0') {
        return Err("a Unix socket path cannot contain NUL");
    }
    if let Some(name) = rest.strip_prefix('@') {
        if !cfg!(any(target_os = "linux", target_os = "android")) {
            return Err("abstract Unix socket names (unix://@name) exist only on Linux");
        }
        if name.is_empty() {
            return Err("the abstract name is empty");
        }
        // The leading NUL that marks a name abstract takes the place of the
        // terminating NUL a path needs, so the limit is the same.
        if name.len() > MAX_UNIX_PATH {
            return Err("the abstract name is longer than a Unix socket address allows (107 bytes)");
        }
        return Ok(Address::UnixAbstract(name.to_owned()));
    }
    if rest.is_empty() {
        return Err("the Unix socket path is empty (write unix:///absolute/path)");
    }
    if rest.len() > MAX_UNIX_PATH {
        return Err(
            "the Unix socket path is longer than the kernel allows (107 bytes on Linux, 103 elsewhere)",
        );
    }
    Ok(Address::Unix(PathBuf::from(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_addresses_are_checked_before_any_io() {
        for good in ["127.0.0.1:0", "localhost:5555", "[::1]:80", "example.com:65535", "tcp://[::1]:1"] {
            assert!(matches!(Address::parse(good), Ok(Address::Tcp(_))), "{good} refused");
        }
        for bad in
            ["", "localhost", ":80", "host:port", "host:65536", "::1:80", "host:-1", "tcp://", "tcp://x"]
        {
            assert!(matches!(Address::parse(bad), Err(TransportError::BadAddress { .. })), "{bad} accepted");
        }
    }

    #[test]
    fn unix_paths_and_their_limits() {
        assert_eq!(Address::parse("unix://rel/a.sock").unwrap(), Address::Unix("rel/a.sock".into()));
        let longest = format!("unix:///{}", "a".repeat(MAX_UNIX_PATH - 1));
        assert!(matches!(Address::parse(&longest), Ok(Address::Unix(_))));
        let too_long = format!("unix:///{}", "a".repeat(MAX_UNIX_PATH));
        assert!(matches!(Address::parse(&too_long), Err(TransportError::BadAddress { .. })));
        for bad in ["unix://", "unix://a\0b"] {
            assert!(
                matches!(Address::parse(bad), Err(TransportError::BadAddress { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_names_on_linux() {
        assert_eq!(Address::parse("unix://@n").unwrap(), Address::UnixAbstract("n".into()));
        assert!(Address::parse("unix://@").is_err());
        assert!(Address::parse(&format!("unix://@{}", "n".repeat(MAX_UNIX_PATH))).is_ok());
        assert!(Address::parse(&format!("unix://@{}", "n".repeat(MAX_UNIX_PATH + 1))).is_err());
    }

    #[test]
    fn schemes_without_a_transport_are_refused_by_name() {
        for (addr, scheme) in
            [("tls://h:1", Scheme::Tls), ("ws://h:1/x", Scheme::Ws), ("wss://h:1", Scheme::Wss)]
        {
            match Address::parse(addr) {
                Err(TransportError::UnsupportedScheme { scheme: got, .. }) => {
                    assert!(!scheme.is_supported());
                    assert_eq!(got, scheme);
                }
                Ok(parsed) => {
                    assert!(scheme.is_supported());
                    assert_eq!(parsed.scheme(), scheme);
                }
                other => panic!("{addr}: {other:?}"),
            }
        }
        let unknown = Address::parse("ipc:///tmp/x").unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "invalid address \"ipc:///tmp/x\": unknown scheme (expected tcp, tls, ws, wss, unix or inproc)"
        );
        assert!(Address::parse("inproc://").is_err());
    }

    #[cfg(all(feature = "tls", feature = "ws"))]
    #[test]
    fn tls_and_websocket_addresses() {
        assert_eq!(Address::parse("tls://[::1]:7").unwrap(), Address::Tls("[::1]:7".into()));
        assert_eq!(
            Address::parse("ws://h:1").unwrap(),
            Address::Ws { host_port: "h:1".into(), path: "/".into() }
        );
        assert_eq!(
            Address::parse("wss://h:1/a/b?c=d").unwrap(),
            Address::Wss { host_port: "h:1".into(), path: "/a/b?c=d".into() }
        );
        for bad in ["tls://h", "tls://:1", "ws://h/x", "wss://h:99999/", "ws://h:1/a b", "ws://h:1/\r\n"] {
            assert!(
                matches!(Address::parse(bad), Err(TransportError::BadAddress { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        #[cfg(all(feature = "tls", feature = "ws"))]
        for addr in ["tls://h:1", "ws://h:1/", "wss://h:1/x?y"] {
            assert_eq!(Address::parse(addr).unwrap().to_string(), addr);
        }
        for addr in ["tcp://h:1", "unix:///tmp/x.sock", "inproc://a/b"] {
            assert_eq!(Address::parse(addr).unwrap().to_string(), addr);
        }
    }
}
