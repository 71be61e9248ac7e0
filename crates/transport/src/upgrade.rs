//! Where a TCP stream becomes the stream the protocol runs over: TLS around
//! it, then, on the bind end, the first byte tells the raw protocol (`0x00`,
//! a HELLO's length) from a WebSocket upgrade (`G` of `GET`), per
//! PROTOCOL.md. Everything after is `connection::serve`, the same for all.
//!
//! Both steps happen before the protocol handshake, each bounded by the
//! handshake timeout and under the accept loop's handshake permit; a failure
//! is a [`HandshakeRefused`](crate::Event::HandshakeRefused) event and ends
//! only that connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::admission::Ticket;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, timeout, timeout_at};
use tracing::warn;

use crate::connection::{self, Writes};
use crate::event::{Event, RefusedReason, Side};
use crate::shared::Shared;

/// What the accept loop of one listener does with each stream before the
/// protocol starts.
#[derive(Clone, Default)]
pub(crate) struct Upgrade {
    /// Run the TLS server handshake first (a `tls://` or `wss://` bind).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// Tell WebSocket from raw by the first byte (TCP and TLS binds).
    #[cfg(feature = "ws")]
    pub(crate) websocket: bool,
}

impl Upgrade {
    fn is_plain(&self) -> bool {
        let plain = true;
        #[cfg(feature = "tls")]
        let plain = plain && self.tls.is_none();
        #[cfg(feature = "ws")]
        let plain = plain && !self.websocket;
        plain
    }
}

/// Serves one accepted stream to its end: upgrade, then the protocol.
pub(crate) async fn accepted<S>(
    shared: Arc<Shared>,
    stream: S,
    remote: Arc<str>,
    permit: Option<Ticket>,
    upgrade: Upgrade,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    // Every stage below is boxed, so that a connection's task holds the
    // stage it is in, not room for the largest of them all (a TLS session,
    // a WebSocket upgrade, the protocol over each kind of stream): tens of
    // KiB per idle connection otherwise.
    if upgrade.is_plain() {
        Box::pin(connection::serve(shared, stream, Side::Bind, remote, permit, Writes::Direct)).await;
        return;
    }
    let deadline = Instant::now() + shared.config.handshake_timeout;
    #[cfg(feature = "tls")]
    if let Some(config) = upgrade.tls.clone() {
        Box::pin(tls_then_detect(shared, stream, remote, permit, upgrade, config, deadline)).await;
        return;
    }
    let checks = Checks { certified: None, deadline, writes: Writes::Direct };
    Box::pin(detect(shared, stream, remote, permit, &upgrade, checks)).await;
}

/// The TLS server handshake, then the first byte.
#[cfg(feature = "tls")]
async fn tls_then_detect<S>(
    shared: Arc<Shared>,
    stream: S,
    remote: Arc<str>,
    permit: Option<Ticket>,
    upgrade: Upgrade,
    config: Arc<rustls::ServerConfig>,
    deadline: Instant,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let handshake = Box::pin(timeout_at(deadline, crate::tls::accept(config, stream)));
    let accepted = tokio::select! {
        accepted = handshake => accepted.unwrap_or(Err(crate::TlsFailure::Timeout)),
        () = shared.cancel.cancelled() => return,
    };
    match accepted {
        Ok((stream, certificate)) => {
            let certified = shared
                .config
                .bind_identity_to_certificate
                .then(|| certificate.as_ref().map(crate::tls::certified_identities).unwrap_or_default());
            let stream = Guarded::new(&shared, &remote, certificate, stream);
            let checks = Checks { certified, deadline, writes: Writes::WriterOnly };
            Box::pin(detect(shared, stream, remote, permit, &upgrade, checks)).await;
        }
        Err(failure) => refuse(&shared, &remote, RefusedReason::Tls(failure), None::<&mut S>).await,
    }
}

/// What is checked before the protocol starts, and by when.
struct Checks {
    /// With identity binding, the identities the peer's certificate carries
    /// (none if it presented no certificate).
    certified: Option<Vec<smartsock_framing::PeerId>>,
    deadline: Instant,
    /// Whether senders may write to the stream (not over TLS or WebSocket).
    writes: Writes,
}

/// Reads the first byte and serves the raw protocol or a WebSocket.
async fn detect<S>(
    shared: Arc<Shared>,
    mut stream: S,
    remote: Arc<str>,
    permit: Option<Ticket>,
    upgrade: &Upgrade,
    checks: Checks,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let deadline = checks.deadline;
    #[cfg(feature = "ws")]
    let websocket = upgrade.websocket;
    #[cfg(not(feature = "ws"))]
    let websocket = {
        let _ = upgrade;
        false
    };
    if !websocket {
        Box::pin(serve_checked(shared, Rewind::new(Vec::new(), stream), remote, permit, checks)).await;
        return;
    }
    let mut first = [0u8; 1];
    let read = tokio::select! {
        read = timeout_at(deadline, stream.read(&mut first)) => read,
        () = shared.cancel.cancelled() => return,
    };
    let refused = match read {
        Err(_) => RefusedReason::Timeout,
        Ok(Err(e)) => RefusedReason::Io(e.to_string()),
        Ok(Ok(0)) => RefusedReason::Io("closed before sending anything".into()),
        Ok(Ok(_)) if first[0] == 0x00 => {
            let stream = Rewind::new(first.to_vec(), stream);
            Box::pin(serve_checked(shared, stream, remote, permit, checks)).await;
            return;
        }
        #[cfg(feature = "ws")]
        Ok(Ok(_)) if first[0] == b'G' => {
            let stream = Rewind::new(first.to_vec(), stream);
            let max = shared.config.max_frame_length;
            let upgraded = tokio::select! {
                upgraded = Box::pin(timeout_at(deadline, crate::ws::accept(stream, max))) => upgraded,
                () = shared.cancel.cancelled() => return,
            };
            let reason = match upgraded {
                Ok(Ok(ws)) => {
                    let checks = Checks { writes: Writes::WriterOnly, ..checks };
                    Box::pin(serve_checked(shared, Rewind::new(Vec::new(), ws), remote, permit, checks))
                        .await;
                    return;
                }
                Ok(Err(why)) => RefusedReason::WebSocket(why),
                Err(_) => RefusedReason::WebSocket("no upgrade within the handshake timeout".into()),
            };
            // The stream went with the failed upgrade, and is closed with it.
            refuse(&shared, &remote, reason, None::<&mut S>).await;
            return;
        }
        Ok(Ok(_)) => RefusedReason::UnknownFirstByte(first[0]),
    };
    refuse(&shared, &remote, refused, Some(&mut stream)).await;
}

/// Serves the protocol, after checking the peer's identity against its
/// certificate when identity binding is on. The peer's HELLO is read here
/// (the bind end waits for the peer's first bytes in any case) and put back
/// for the handshake to read again; bytes that are not a HELLO are left for
/// the handshake to refuse.
async fn serve_checked<S>(
    shared: Arc<Shared>,
    mut stream: Rewind<S>,
    remote: Arc<str>,
    permit: Option<Ticket>,
    checks: Checks,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    if let Some(certified) = checks.certified {
        let read = tokio::select! {
            read = timeout_at(checks.deadline, stream.read_hello()) => read,
            () = shared.cancel.cancelled() => return,
        };
        let refused = match read {
            Err(_) => Some(RefusedReason::Timeout),
            Ok(Err(e)) => Some(RefusedReason::Io(e.to_string())),
            Ok(Ok(Some(claimed))) if !certified.contains(&claimed) => {
                Some(RefusedReason::IdentityNotCertified(claimed))
            }
            Ok(Ok(_)) => None,
        };
        if let Some(reason) = refused {
            refuse(&shared, &remote, reason, Some(&mut stream)).await;
            return;
        }
    }
    connection::serve(shared, stream, Side::Bind, remote, permit, checks.writes).await;
}

/// Logs and reports a connection refused before the protocol started.
async fn refuse<W: AsyncWrite + Unpin>(
    shared: &Shared,
    addr: &str,
    reason: RefusedReason,
    writer: Option<&mut W>,
) {
    warn!(remote = %addr, %reason, "connection refused");
    shared.emit(Event::HandshakeRefused { addr: addr.to_owned(), reason });
    if let Some(writer) = writer {
        // Bounded: the peer may not be reading at all.
        let _ = timeout(shared.config.linger, writer.shutdown()).await;
    }
}

/// A stream with the bytes already read from it put back in front.
struct Rewind<S> {
    read: Vec<u8>,
    /// How much of `read` has been handed out again.
    replayed: usize,
    inner: S,
}

/// A HELLO's bytes: length prefix `00 00 00 12`, type, version, identity.
const HELLO_BYTES: usize = 22;

impl<S: AsyncRead + Unpin> Rewind<S> {
    fn new(read: Vec<u8>, inner: S) -> Self {
        Self { read, replayed: 0, inner }
    }

    /// Reads until a HELLO's worth of bytes is held (nothing handed out
    /// yet) and returns the identity it names, or `None` if they are not a
    /// HELLO. At most [`HELLO_BYTES`] are read; EOF before is an error.
    async fn read_hello(&mut self) -> io::Result<Option<smartsock_framing::PeerId>> {
        while self.read.len() < HELLO_BYTES {
            let mut more = [0u8; HELLO_BYTES];
            let want = HELLO_BYTES - self.read.len();
            let n = self.inner.read(&mut more[..want]).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the handshake"));
            }
            self.read.extend_from_slice(&more[..n]);
        }
        let hello = &self.read[..HELLO_BYTES];
        if hello[..5] != [0, 0, 0, 0x12, 0x01] {
            return Ok(None);
        }
        let identity: [u8; 16] = hello[6..].try_into().expect("16 bytes");
        Ok(Some(smartsock_framing::PeerId::from_bytes(identity)))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.replayed < self.read.len() {
            let this = &mut *self;
            let n = (this.read.len() - this.replayed).min(buf.remaining());
            buf.put_slice(&this.read[this.replayed..this.replayed + n]);
            this.replayed += n;
            if this.replayed == this.read.len() {
                // Given back: a long-lived connection keeps no copy.
                this.read = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TLS stream that keeps its peer's certificate in the transport's table
/// (for [`Transport::peer_info`](crate::Transport::peer_info)) for as long
/// as the stream lives.
#[cfg(feature = "tls")]
pub(crate) struct Guarded<S> {
    inner: S,
    _certificate: Option<crate::peer_info::CertificateGuard>,
}

#[cfg(feature = "tls")]
impl<S> Guarded<S> {
    pub(crate) fn new(
        shared: &Shared,
        remote: &Arc<str>,
        certificate: Option<crate::PeerCertificate>,
        inner: S,
    ) -> Self {
        let guard = certificate.map(|c| shared.certificates.insert(remote.clone(), Arc::new(c)));
        Self { inner, _certificate: guard }
    }
}

#[cfg(feature = "tls")]
impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(feature = "tls")]
impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How the connect end dials a TLS, `ws://` or `wss://` address: TCP, then
/// TLS (with `tls`), then the WebSocket upgrade (with `ws_url`). A TLS
/// failure is reported as an event (the reconnect loop only logs connect
/// errors, and this one the user must see: it will not fix itself).
#[derive(Clone)]
pub(crate) struct Dialer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) host_port: Arc<str>,
    #[cfg(feature = "tls")]
    pub(crate) label: Arc<str>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
    #[cfg(feature = "ws")]
    pub(crate) ws_url: Option<Arc<str>>,
}

/// The stream a [`Dialer`] makes.
pub(crate) type Dialed = Box<dyn Stream>;

/// A byte stream the connection code can run over.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<S: AsyncRead + AsyncWrite + Send + Unpin> Stream for S {}

impl Dialer {
    pub(crate) async fn dial(self) -> io::Result<(Dialed, String)> {
        let stream = tokio::net::TcpStream::connect(&*self.host_port).await?;
        stream.set_nodelay(true)?;
        let remote = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| self.host_port.to_string());
        let deadline = Instant::now() + self.shared.config.handshake_timeout;
        let remote_label: Arc<str> = remote.as_str().into();
        #[cfg(feature = "tls")]
        let stream: Dialed = match &self.tls {
            Some((config, name)) => {
                let handshake =
                    timeout_at(deadline, crate::tls::connect(config.clone(), name.clone(), stream));
                match handshake.await.unwrap_or(Err(crate::TlsFailure::Timeout)) {
                    Ok((stream, certificate)) => {
                        Box::new(Guarded::new(&self.shared, &remote_label, certificate, stream))
                    }
                    Err(failure) => {
                        let why = failure.to_string();
                        refuse(&self.shared, &remote, RefusedReason::Tls(failure), None::<&mut Dialed>).await;
                        return Err(io::Error::other(format!("TLS with {}: {why}", self.label)));
                    }
                }
            }
            None => Box::new(stream),
        };
        #[cfg(not(feature = "tls"))]
        let stream: Dialed = Box::new(stream);
        let _ = remote_label;
        #[cfg(feature = "ws")]
        if let Some(url) = &self.ws_url {
            let max = self.shared.config.max_frame_length;
            let upgraded = timeout_at(deadline, crate::ws::connect(url, stream, max)).await;
            let ws = match upgraded {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => {
                    let reason = RefusedReason::WebSocket(e.to_string());
                    refuse(&self.shared, &remote, reason, None::<&mut Dialed>).await;
                    return Err(e);
                }
                Err(_) => {
                    let reason = RefusedReason::WebSocket("no upgrade within the handshake timeout".into());
                    refuse(&self.shared, &remote, reason, None::<&mut Dialed>).await;
                    return Err(io::ErrorKind::TimedOut.into());
                }
            };
            return Ok((Box::new(ws), remote));
        }
        let _ = deadline;
        Ok((stream, remote))
    }
}
