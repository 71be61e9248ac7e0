//! Unix domain sockets: `unix:///path`, and `unix://@name` (abstract, Linux).
//!
//! The protocol runs unchanged over the stream; only binding differs from
//! TCP. A path bind must deal with the file a socket leaves behind: a socket
//! file nobody listens on (a crashed process's) is removed and bound again,
//! one somebody listens on is "address in use", and anything that is not a
//! socket is never touched.

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
}

impl Acceptor for UnixAcceptor {
    type Stream = UnixStream;

    async fn accept(&mut self) -> io::Result<(UnixStream, String)> {
        let (stream, _unnamed) = self.listener.accept().await?;
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
/// is registered with `runtime`.
pub(crate) async fn bind_path(path: &Path, runtime: &Handle) -> io::Result<(UnixAcceptor, Endpoint)> {
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
    };
    Ok((acceptor, endpoint))
}

/// Binds a Linux abstract name: no file, so nothing stale to handle. The
/// listener is registered with `runtime`.
pub(crate) fn bind_abstract(name: &str, runtime: &Handle) -> io::Result<(UnixAcceptor, Endpoint)> {
    let listener = {
        let _on_runtime = runtime.enter();
        UnixListener::bind(abstract_path(name))?
    };
    let endpoint = Endpoint::UnixAbstract(name.to_owned());
    Ok((UnixAcceptor { listener, label: endpoint.to_string(), file: None }, endpoint))
}

/// One connect try to `path` (already in tokio's form for abstract names).
pub(crate) async fn connect(path: &Path, label: &str) -> io::Result<(UnixStream, String)> {
    let stream = UnixStream::connect(path).await?;
    let label = with_credentials(label, &stream);
    Ok((stream, label))
}

/// tokio takes a path that starts with NUL as an abstract name.
pub(crate) fn abstract_path(name: &str) -> PathBuf {
    PathBuf::from(format!("\0{name}"))
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
