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
    match second.bind(addr).await {
        Err(Error::Transport(TransportError::Bind { addr: named, source })) => {
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
    assert!(matches!(socket.connect("inproc://"), Err(Error::Transport(TransportError::BadAddress { .. }))));
    for addr in ["tls://localhost:1", "ws://localhost:1/", "wss://localhost:1/"] {
        assert!(
            matches!(socket.connect(addr), Err(Error::Transport(TransportError::UnsupportedScheme { .. }))),
            "{addr}"
        );
        assert!(
            matches!(
                socket.bind(addr).await,
                Err(Error::Transport(TransportError::UnsupportedScheme { .. }))
            ),
            "{addr}"
        );
    }
    Ok(())
}
