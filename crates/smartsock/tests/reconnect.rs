//! A server restarts on the same port: the client sees the peer go, retries,
//! reconnects to the new server, and everything it sent meanwhile arrives.

mod common;

use common::{connected, disconnected, next_event, numbered, recv, within};
use smartsock::{Error, Event, Side, Socket};

#[tokio::test]
async fn client_reconnects_to_a_restarted_server_and_traffic_resumes() -> Result<(), Error> {
    const OUTAGE: usize = 50;
    let first = Socket::new()?;
    let addr = first.bind("127.0.0.1:0").await?.to_string();
    let client = Socket::new()?;
    let mut events = Box::pin(client.events());
    client.connect(&addr)?;
    connected(&mut events, first.identity()).await;
    client.send("before").await?;
    assert_eq!(recv(&first).await, "before");

    let first_id = first.identity();
    first.close().await;
    drop(first);
    disconnected(&mut events, first_id).await;
    // The client keeps trying while nobody listens.
    let event = next_event(&mut events, "a reconnect try", |e| matches!(e, Event::Reconnecting { .. })).await;
    let Event::Reconnecting { addr: tried, attempt, .. } = event else { unreachable!() };
    assert_eq!(tried, addr);
    assert!(attempt >= 1);
    assert!(client.peers().is_empty());

    // Sent during the outage: buffered on the client.
    for i in 0..OUTAGE {
        client.send(numbered(i)).await?;
    }

    let second = Socket::new()?;
    let rebound = second.bind(&addr).await?;
    assert_eq!(rebound.to_string(), addr);
    let event = next_event(&mut events, "PeerConnected to the new server", |e| {
        matches!(e, Event::PeerConnected { .. })
    })
    .await;
    let Event::PeerConnected { peer, side, .. } = event else { unreachable!() };
    assert_eq!(peer, second.identity(), "the client reconnected to the new server");
    assert_eq!(side, Side::Connect);
    assert_eq!(client.peers(), vec![second.identity()]);

    for i in 0..OUTAGE {
        assert_eq!(recv(&second).await, numbered(i));
    }
    client.send("after").await?;
    assert_eq!(recv(&second).await, "after");
    within("the new server to see the client", second.wait_for_peers(1)).await;
    second.send_to(client.identity(), "welcome back").await?;
    assert_eq!(recv(&client).await, "welcome back");
    Ok(())
}
