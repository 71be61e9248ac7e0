//! Unix domain sockets: what a path bind does with the file already there,
//! permissions, peer credentials, abstract names, cleanup on close.
#![cfg(unix)]

mod common;

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;

use common::{next_event, recv, within};
use smartsock::transport::TransportError;
use smartsock::{Error, Event, Socket};

/// The OS error kind behind a failed bind.
fn bind_error_kind(error: &Error) -> ErrorKind {
    match error.kind() {
        smartsock::ErrorKind::Transport(TransportError::Bind { source, .. }) => source.kind(),
        other => panic!("expected a bind error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("stale.sock");
    // A listener that went away without removing its file, as after a crash.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind a std listener"));
    assert!(path.exists());

    let addr = format!("unix://{}", path.display());
    let server = Socket::new()?;
    assert_eq!(server.bind(&addr).await?.to_string(), addr);
    let client = Socket::new()?;
    client.connect(&addr)?;
    client.send("through the new socket").await?;
    assert_eq!(recv(&server).await, "through the new socket");
    Ok(())
}

#[tokio::test]
async fn a_socket_someone_listens_on_is_address_in_use_and_kept() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = format!("unix://{}", dir.path().join("live.sock").display());
    let first = Socket::new()?;
    first.bind(&addr).await?;
    let second = Socket::new()?;
    let error = second.bind(&addr).await.expect_err("in use");
    assert_eq!(bind_error_kind(&error), ErrorKind::AddrInUse);
    assert!(error.to_string().starts_with(&format!("cannot bind {addr}: ")), "{error}");

    // The first socket still serves its file.
    let client = Socket::new()?;
    client.connect(&addr)?;
    client.send("still here").await?;
    assert_eq!(recv(&first).await, "still here");
    Ok(())
}

#[tokio::test]
async fn a_regular_file_is_refused_and_left_untouched() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, "do not delete").expect("write");
    let server = Socket::new()?;
    let error = server.bind(&format!("unix://{}", path.display())).await.expect_err("not a socket");
    assert_eq!(bind_error_kind(&error), ErrorKind::AlreadyExists);
    assert!(error.to_string().contains("is not a socket"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).expect("still there"), "do not delete");

    // Nor a directory.
    let error = server.bind(&format!("unix://{}", dir.path().display())).await.expect_err("a directory");
    assert_eq!(bind_error_kind(&error), ErrorKind::AlreadyExists);
    assert!(dir.path().is_dir());
    Ok(())
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn permission_denied_is_a_clear_error() -> Result<(), Error> {
    // sysfs refuses new files to everyone, root included.
    let server = Socket::new()?;
    let addr = "unix:///sys/smartsock-test.sock";
    let error = server.bind(addr).await.expect_err("sysfs takes no sockets");
    assert_eq!(bind_error_kind(&error), ErrorKind::PermissionDenied);
    assert!(error.to_string().starts_with("cannot bind unix:///sys/smartsock-test.sock: "), "{error}");
    Ok(())
}

#[tokio::test]
async fn a_directory_without_write_permission_is_refused_unless_root() -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).expect("mkdir");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).expect("chmod");
    let server = Socket::new()?;
    let result = server.bind(&format!("unix://{}", locked.join("s.sock").display())).await;
    // Root ignores directory permissions; everyone else is refused.
    let root = std::fs::metadata(dir.path()).expect("stat").uid() == 0;
    match result {
        Ok(_) => assert!(root, "bound in a read-only directory as a non-root user"),
        Err(error) => assert_eq!(bind_error_kind(&error), ErrorKind::PermissionDenied),
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).expect("chmod back");
    Ok(())
}

#[tokio::test]
async fn peer_credentials_are_in_the_connected_event() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = format!("unix://{}", dir.path().join("creds.sock").display());
    // Files made by this process belong to its user.
    let uid = std::fs::metadata(dir.path()).expect("stat").uid();
    let pid = std::process::id();

    let server = Socket::new()?;
    let mut server_events = Box::pin(server.events());
    server.bind(&addr).await?;
    let client = Socket::new()?;
    let mut client_events = Box::pin(client.events());
    client.connect(&addr)?;

    let expected = format!("{addr} (pid {pid}, uid {uid})");
    for events in [&mut server_events, &mut client_events] {
        let event = next_event(events, "PeerConnected", |e| matches!(e, Event::PeerConnected { .. })).await;
        let Event::PeerConnected { addr: reported, .. } = event else { unreachable!() };
        assert_eq!(reported, expected);
    }
    Ok(())
}

#[tokio::test]
async fn closing_removes_the_socket_file() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gone.sock");
    let server = Socket::new()?;
    server.bind(&format!("unix://{}", path.display())).await?;
    assert!(path.exists());
    within("close", server.close()).await;
    assert!(!path.exists(), "the socket file outlived its socket");
    Ok(())
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn abstract_names_need_no_file() -> Result<(), Error> {
    let addr = format!("unix://@smartsock-test-{}", std::process::id());
    let server = Socket::new()?;
    assert_eq!(server.bind(&addr).await?.to_string(), addr);
    let client = Socket::new()?;
    client.connect(&addr)?;
    client.send("abstract").await?;
    assert_eq!(recv(&server).await, "abstract");
    // Bound once: a second bind is refused by the kernel.
    let error = Socket::new()?.bind(&addr).await.expect_err("in use");
    assert_eq!(bind_error_kind(&error), ErrorKind::AddrInUse);
    Ok(())
}
