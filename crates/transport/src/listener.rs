//! Listening: [`Acceptor`], what the accept loop needs from a listener, so
//! that one loop ([`accept_loop`]: admission, cancellation, pauses on errors)
//! serves every transport; and TCP listeners made on the transport's own
//! runtime ([`bind_tcp`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::time::sleep;
use tracing::{debug, warn};

use crate::connection;
use crate::shared::Shared;
use crate::upgrade::Upgrade;

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

/// Listens on the first address `host_port` resolves to that can be bound,
/// and accepts there until the transport closes; returns the address.
pub(crate) async fn bind_tcp(
    shared: &Arc<Shared>,
    host_port: &str,
    upgrade: Upgrade,
) -> io::Result<SocketAddr> {
    let mut last_error = io::Error::new(io::ErrorKind::InvalidInput, "no address to bind");
    for addr in tokio::net::lookup_host(host_port).await? {
        match listen_on(&shared.runtime, addr) {
            Ok(listener) => {
                let local = listener.local_addr()?;
                shared.local_addrs.lock().unwrap_or_else(|e| e.into_inner()).push(local);
                shared.tracker.spawn_on(accept_loop(shared.clone(), listener, upgrade), &shared.runtime);
                return Ok(local);
            }
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// A listener on `addr`, as `TcpListener::bind` makes one (address reuse on
/// Unix, a backlog of 1024), but registered with `runtime`, the transport's:
/// a listener belongs to the reactor of the runtime that makes it, and
/// `bind` may be awaited from another (a socket built on a runtime of its
/// own, used from the application's), which could stop driving it.
fn listen_on(runtime: &Handle, addr: SocketAddr) -> io::Result<TcpListener> {
    let _on_runtime = runtime.enter();
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts peers on `listener` until the transport closes: admission,
/// then each connection on a task of its own.
pub(crate) async fn accept_loop(shared: Arc<Shared>, mut listener: impl Acceptor, upgrade: Upgrade) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, remote)) => {
                let ticket = match shared.admission.admit(&remote) {
                    Ok(ticket) => ticket,
                    Err(reason) => {
                        // Dropping the stream closes it: nothing was read or written.
                        connection::report_refusal(&shared, &remote, reason);
                        continue;
                    }
                };
                let task = crate::upgrade::accepted(
                    shared.clone(),
                    stream,
                    remote.into(),
                    Some(ticket),
                    upgrade.clone(),
                );
                shared.tracker.spawn_on(
                    async move {
                        task.await;
                    },
                    &shared.runtime,
                );
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::select! {
                    () = sleep(Duration::from_millis(100)) => {}
                    () = shared.cancel.cancelled() => return,
                }
            }
        }
    }
}
