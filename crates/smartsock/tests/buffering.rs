//! Sends made before any peer exists are buffered and delivered, in order,
//! once one connects: on the connect end (the peer binds later) and on the
//! bind end (the peer connects later).

mod common;

use common::{next_event, numbered, recv, reserve_port, within};
use smartsock::{Error, Event, SendMode, Socket};

const N: usize = 200;

#[tokio::test]
async fn connect_end_buffers_until_the_peer_binds() -> Result<(), Error> {
    let addr = reserve_port().to_string();
    let client = Socket::new()?;
    let mut events = Box::pin(client.events());
    client.connect(&addr)?;
    // Proof that nobody listens yet: a try failed.
    next_event(&mut events, "a failed connect try", |e| matches!(e, Event::Reconnecting { .. })).await;

    // Buffered: each send returns without a peer.
    within("buffered sends", async {
        for i in 0..N {
            client.send(numbered(i)).await?;
        }
        Ok::<_, Error>(())
    })
    .await?;
    assert!(client.peers().is_empty());

    let server = Socket::new()?;
    server.bind(&addr).await?;
    for i in 0..N {
        assert_eq!(recv(&server).await, numbered(i));
    }
    // Sends after the flush keep coming, after the buffered ones.
    client.send("live").await?;
    assert_eq!(recv(&server).await, "live");
    Ok(())
}

#[tokio::test]
async fn bind_end_buffers_until_someone_connects() -> Result<(), Error> {
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?;
    within("buffered sends", async {
        for i in 0..N {
            server.send(numbered(i)).await?;
        }
        Ok::<_, Error>(())
    })
    .await?;
    assert!(server.peers().is_empty());

    let client = Socket::new()?;
    client.connect(&addr.to_string())?;
    for i in 0..N {
        assert_eq!(recv(&client).await, numbered(i));
    }
    Ok(())
}

#[tokio::test]
async fn publish_buffers_until_a_subscriber_connects() -> Result<(), Error> {
    let publisher = Socket::builder().send_mode(SendMode::Publish).build()?;
    let addr = publisher.bind("127.0.0.1:0").await?;
    for i in 0..N {
        publisher.send(numbered(i)).await?;
    }
    let subscriber = Socket::new()?;
    subscriber.connect(&addr.to_string())?;
    for i in 0..N {
        assert_eq!(recv(&subscriber).await, numbered(i));
    }
    Ok(())
}
