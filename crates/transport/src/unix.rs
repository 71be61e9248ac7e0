//! Unix domain sockets: `unix:///path`, and `unix://@name` (abstract, Linux).
//!
//! The protocol runs unchanged over the stream; only binding differs from
//! TCP. A path bind must deal with the file a socket leaves behind: a socket
//! file nobody listens on (a crashed process's) is removed and bound again,
//! one somebody listens on is "address in use", and anything that is not a
//! socket is never touched.
//!
//! Unlike TCP's, a Unix socket's send buffer does not grow with the
//! traffic: at the kernel's default (about 208 KiB) a writer's batch of 4096
//! small frames (about 280 KiB at 64 B) did not go in one write, and
//! one-way 64 B was 8-10% slower than with batches of 1024 (medians of 8
//! pairs each way). Each stream's send buffer is raised to the outbox's
//! byte mark (the kernel caps it at `net.core.wmem_max`), never lowered.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};
use tokio::runtime::Handle;
use tracing::debug;

use crate::address::Endpoint;
use crate::listener::Acceptor;

/// A bound Unix listener. Removes its socket file when dropped (when the
/// transport closes), if the file is still the one it made.
pub(crate) struct UnixAcceptor {
    listener: UnixListener,
    /// What events report as the address: the endpoint's own text.
    label: String,
    /// The file and its (device, inode), for the cleanup.
    file: Option<(PathBuf, (u64, u64))>,
    /// What each accepted stream's send buffer is raised to.
    send_buffer: usize,
}

impl Acceptor for UnixAcceptor {
    type Stream = UnixStream;

    async fn accept(&mut self) -> io::Result<(UnixStream, String)> {
        let (stream, _unnamed) = self.listener.accept().await?;
        raise_send_buffer(&stream, self.send_buffer);
        let label = with_credentials(&self.label, &stream);
        Ok((stream, label))
    }
}

impl Drop for UnixAcceptor {
    fn drop(&mut self) {
        let Some((path, id)) = &self.file else { return };
        // Someone may have removed ours and bound their own since: leave theirs.
        if std::fs::symlink_metadata(path).is_ok_and(|meta| (meta.dev(), meta.ino()) == *id) {
            if let Err(e) = std::fs::remove_file(path) {
                debug!(path = %path.display(), error = %e, "cannot remove the socket file");
            }
        }
    }
}

/// Binds a socket file at `path`, first removing a stale one; the listener
/// is registered with `runtime`, and accepted streams get a send buffer of
/// at least `send_buffer` bytes.
pub(crate) async fn bind_path(
    path: &Path,
    runtime: &Handle,
    send_buffer: usize,
) -> io::Result<(UnixAcceptor, Endpoint)> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path).await {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another socket is listening on this path",
                ));
            }
            // Nobody listens: the file outlived its socket (a crash, a kill -9).
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                debug!(path = %path.display(), "removing a stale socket file");
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        },
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket (it was left untouched)",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = {
        let _on_runtime = runtime.enter();
        UnixListener::bind(path)?
    };
    let meta = std::fs::symlink_metadata(path)?;
    let endpoint = Endpoint::Unix(path.to_owned());
    let acceptor = UnixAcceptor {
        listener,
        label: endpoint.to_string(),
        file: Some((path.to_owned(), (meta.dev(), meta.ino()))),
        send_buffer,
    };
    Ok((acceptor, endpoint))
}

/// Binds a Linux abstract name: no file, so nothing stale to handle. The
/// listener is registered with `runtime`, and accepted streams get a send
/// buffer of at least `send_buffer` bytes.
pub(crate) fn bind_abstract(
    name: &str,
    runtime: &Handle,
    send_buffer: usize,
) -> io::Result<(UnixAcceptor, Endpoint)> {
    let listener = {
        let _on_runtime = runtime.enter();
        UnixListener::bind(abstract_path(name))?
    };
    let endpoint = Endpoint::UnixAbstract(name.to_owned());
    Ok((UnixAcceptor { listener, label: endpoint.to_string(), file: None, send_buffer }, endpoint))
}

/// One connect try to `path` (already in tokio's form for abstract names);
/// the stream gets a send buffer of at least `send_buffer` bytes.
pub(crate) async fn connect(
    path: &Path,
    label: &str,
    send_buffer: usize,
) -> io::Result<(UnixStream, String)> {
    let stream = UnixStream::connect(path).await?;
    raise_send_buffer(&stream, send_buffer);
    let label = with_credentials(label, &stream);
    Ok((stream, label))
}

/// tokio takes a path that starts with NUL as an abstract name.
pub(crate) fn abstract_path(name: &str) -> PathBuf {
    PathBuf::from(format!("\0{name}"))
}

/// Raises `stream`'s send buffer to `bytes` if it is smaller. A refusal
/// costs only speed, so it is logged, not returned.
fn raise_send_buffer(stream: &UnixStream, bytes: usize) {
    // The option is a C int: a larger mark (a "no limit" of 1 << 32, say)
    // would wrap, to 0 at worst, and shrink the buffer to the kernel's
    // minimum. The kernel caps it at `wmem_max` anyway.
    let bytes = bytes.min(i32::MAX as usize);
    let socket = socket2::SockRef::from(stream);
    // Linux reports twice what was set (its bookkeeping share): a buffer
    // set to `bytes` before reads back as more than `bytes`.
    if socket.send_buffer_size().is_ok_and(|now| now >= bytes) {
        return;
    }
    if let Err(e) = socket.set_send_buffer_size(bytes) {
        debug!(error = %e, bytes, "could not raise a Unix socket's send buffer");
    }
}

/// `label` with the peer process's credentials, where the platform tells
/// them: `unix:///run/app.sock (pid 4242, uid 1000)`.
fn with_credentials(label: &str, stream: &UnixStream) -> String {
    match stream.peer_cred() {
        Ok(cred) => match cred.pid() {
            Some(pid) => format!("{label} (pid {pid}, uid {})", cred.uid()),
            None => format!("{label} (uid {})", cred.uid()),
        },
        Err(e) => {
            debug!(error = %e, "peer credentials unavailable");
            label.to_owned()
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The kernel's cap on a send buffer set by a process.
    fn wmem_max() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/wmem_max")
            .expect("wmem_max")
            .trim()
            .parse()
            .expect("a number")
    }

    fn send_buffer(stream: &UnixStream) -> usize {
        socket2::SockRef::from(stream).send_buffer_size().expect("SO_SNDBUF")
    }

    /// Connects to a fresh abstract name, both ends asking for `bytes`:
    /// the connecting end's and the accepted end's send buffers.
    async fn pair_asking_for(bytes: usize) -> (usize, usize) {
        // Tests may run as threads of one process, several asking for the
        // same size at once: each pair gets a name of its own.
        static PAIRS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let pair = PAIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("smartsock-sndbuf-{}-{pair}", std::process::id());
        let (mut acceptor, _) = bind_abstract(&name, &Handle::current(), bytes).expect("bind");
        let (dialed, _) = connect(&abstract_path(&name), "test", bytes).await.expect("connect");
        let (accepted, _) = acceptor.accept().await.expect("accept");
        (send_buffer(&dialed), send_buffer(&accepted))
    }

    /// What both ends should read back after asking for `asked`: the
    /// default if it already reads back as much; else what was set, capped
    /// at `wmem_max`, which Linux reports doubled.
    async fn expected_for(asked: usize) -> (usize, usize) {
        let (default, _) = pair_asking_for(0).await;
        let asked = asked.min(i32::MAX as usize);
        let raised = if default >= asked { default } else { 2 * asked.min(wmem_max()) };
        (raised, raised)
    }

    #[tokio::test]
    async fn both_ends_send_buffers_are_raised_to_the_outbox_byte_mark_within_the_kernels_cap() {
        let mark = 1024 * 1024;
        assert_eq!(pair_asking_for(mark).await, expected_for(mark).await);
    }

    #[tokio::test]
    async fn a_send_buffer_already_larger_is_not_lowered() {
        let (default, _) = pair_asking_for(0).await;
        assert!(default > 1024, "the kernel's default: {default}");
        assert_eq!(pair_asking_for(1024).await, (default, default));
    }

    #[cfg(target_pointer_width = "64")]
    #[tokio::test]
    async fn a_mark_past_what_the_option_holds_raises_the_buffer_to_the_cap_and_never_wraps() {
        // 1 << 32 would wrap to 0, the kernel's minimum buffer.
        for mark in [1 << 32, (1 << 32) + 1024, usize::MAX] {
            assert_eq!(pair_asking_for(mark).await, expected_for(mark).await, "a mark of {mark}");
        }
    }
}
