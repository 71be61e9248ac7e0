//! In-process transport: names bound once, connects that wait for a bind.

mod common;

use std::io::ErrorKind;

use common::{next_event, recv, within};
use smartsock::transport::TransportError;
use smartsock::{Error, Event, Socket};

#[tokio::test]
async fn a_connect_before_the_bind_waits_and_delivers() -> Result<(), Error> {
    let addr = "inproc://inproc-test-later";
    let client = Socket::new()?;
    let mut events = Box::pin(client.events());
    client.connect(addr)?;
    let event = next_event(&mut events, "a failed try", |e| matches!(e, Event::Reconnecting { .. })).await;
    assert!(matches!(event, Event::Reconnecting { addr: tried, attempt: 1, .. } if tried == addr));
    client.send("sent before the bind").await?;

    let server = Socket::new()?;
    server.bind(addr).await?;
    assert_eq!(recv(&server).await, "sent before the bind");
    Ok(())
}

#[tokio::test]
async fn a_name_is_bound_once_until_its_socket_closes() -> Result<(), Error> {
    let addr = "inproc://inproc-test-once";
    let first = Socket::new()?;
    first.bind(addr).await?;
    let second = Socket::new()?;
    match second.bind(addr).await.map_err(Error::into_kind) {
        Err(smartsock::ErrorKind::Transport(TransportError::Bind { addr: named, source })) => {
            assert_eq!(named, addr);
            assert_eq!(source.kind(), ErrorKind::AddrInUse);
        }
        other => panic!("expected address in use, got {other:?}"),
    }
    // The same socket may not bind it twice either.
    assert!(first.bind(addr).await.is_err());

    within("close", first.close()).await;
    second.bind(addr).await?;
    let client = Socket::new()?;
    client.connect(addr)?;
    client.send("to the second").await?;
    assert_eq!(recv(&second).await, "to the second");
    Ok(())
}

#[tokio::test]
async fn in_process_addresses_are_checked_at_once() -> Result<(), Error> {
    let socket = Socket::new()?;
    assert!(matches!(
        socket.connect("inproc://").map_err(Error::into_kind),
        Err(smartsock::ErrorKind::Transport(TransportError::BadAddress { .. }))
    ));
    // TLS addresses with no TLS config are refused at once, saying what is
    // missing (or, without the `tls` feature, that the scheme is not built in).
    for addr in ["tls://localhost:1", "wss://localhost:1/"] {
        let refused = |result: Result<_, Error>| match result.map_err(Error::into_kind) {
            Err(smartsock::ErrorKind::Transport(TransportError::TlsNotConfigured { .. })) => {
                cfg!(feature = "tls")
            }
            Err(smartsock::ErrorKind::Transport(TransportError::UnsupportedScheme { .. })) => {
                !cfg!(feature = "tls")
            }
            _ => false,
        };
        assert!(refused(socket.connect(addr)), "{addr}");
        assert!(refused(socket.bind(addr).await.map(drop)), "{addr}");
    }
    // A WebSocket address without a port is malformed.
    assert!(matches!(
        socket.connect("ws://localhost/feed").map_err(Error::into_kind),
        Err(smartsock::ErrorKind::Transport(
            TransportError::BadAddress { .. } | TransportError::UnsupportedScheme { .. }
        ))
    ));
    Ok(())
}

#[tokio::test]
async fn a_message_larger_than_the_pipe_arrives_whole() -> Result<(), Error> {
    let addr = "inproc://inproc-test-large";
    let server = Socket::new()?;
    server.bind(addr).await?;
    let client = Socket::new()?;
    client.connect(addr)?;
    // Four times the pipe's buffer: the writer waits for the reader, as on a full socket.
    let large: Vec<u8> = (0..4 * smartsock::transport::INPROC_PIPE_BYTES).map(|i| (i % 251) as u8).collect();
    client.send(large.clone()).await?;
    assert_eq!(recv(&server).await, large);
    Ok(())
}

#[tokio::test]
async fn more_connects_than_the_backlog_all_get_through() -> Result<(), Error> {
    let addr = "inproc://inproc-test-backlog";
    let server = Socket::new()?;
    server.bind(addr).await?;
    let count = smartsock::transport::INPROC_BACKLOG + 22;
    let clients: Vec<Socket> = (0..count).map(|_| Socket::new()).collect::<Result<_, _>>()?;
    for client in &clients {
        client.connect(addr)?;
    }
    assert!(within("every client", server.wait_for_peers(count)).await);
    assert_eq!(server.peers().len(), count);
    Ok(())
}
