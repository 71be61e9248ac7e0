//! [`Acceptor`]: what the accept loop needs from a listener, so that one loop
//! (handshake permits, cancellation, pauses on errors) serves every transport.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

/// A bound listener of some transport.
pub(crate) trait Acceptor: Send + 'static {
    /// The byte stream of one accepted connection.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;

    /// The next connection and the address its events report.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, String)>> + Send;
}

impl Acceptor for TcpListener {
    type Stream = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, String)> {
        let (stream, remote) = TcpListener::accept(self).await?;
        // Small frames go out as they are written; the writer batches already.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%remote, error = %e, "cannot set TCP_NODELAY");
        }
        Ok((stream, remote.to_string()))
    }
}
