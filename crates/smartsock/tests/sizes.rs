//! Messages of many sizes (empty, one byte, 64 KiB, 1 MiB) round-trip
//! intact: client to server and echoed back, byte for byte, in order.

mod common;

use common::{recv, within};
use smartsock::{Bytes, Error, Socket};

const SIZES: [usize; 6] = [0, 1, 2, 64 * 1024, 1024 * 1024, 17];
const COUNT: usize = 240;

/// Message `i`: its size picked from [`SIZES`], its bytes a pattern of `i`
/// (so a message swapped, cut or shifted is caught).
fn message(i: usize) -> Bytes {
    let len = SIZES[i % SIZES.len()];
    let seed = i as u32;
    (0..len).map(|j| (j as u32).wrapping_mul(2_654_435_761).wrapping_add(seed).rotate_left(7) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_every_size_round_trip_intact() -> Result<(), Error> {
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?;
    let client = Socket::new()?;
    client.connect(&addr.to_string())?;

    let echo = tokio::spawn({
        let server = server.clone();
        async move {
            for _ in 0..COUNT {
                let (from, payload) = server.recv_from().await.expect("open");
                server.send_to(from, payload).await?;
            }
            Ok::<_, Error>(())
        }
    });
    let sending = tokio::spawn({
        let client = client.clone();
        async move {
            for i in 0..COUNT {
                client.send(message(i)).await?;
            }
            Ok::<_, Error>(())
        }
    });
    for i in 0..COUNT {
        let got = recv(&client).await;
        let expected = message(i);
        assert_eq!(got.len(), expected.len(), "message {i}'s length");
        assert!(got == expected, "message {i}'s bytes ({} of them) differ", expected.len());
    }
    within("the sender", sending).await.expect("task")?;
    within("the echo", echo).await.expect("task")?;
    Ok(())
}

#[tokio::test]
async fn a_message_at_the_default_limit_goes_through() -> Result<(), Error> {
    // The default limit is 16 MiB of envelope: 1 type byte + payload.
    const LIMIT: usize = 16 * 1024 * 1024;
    let (server, client) = common::pair().await;
    let biggest = Bytes::from(vec![0xa5; LIMIT - 1]);
    client.send(biggest.clone()).await?;
    let got = recv(&server).await;
    assert!(got == biggest, "the largest message arrives intact");
    let error = within("a refused send", client.send(vec![0u8; LIMIT])).await.expect_err("too large");
    assert_eq!(error.into_payload().map(|p| p.len()), Some(LIMIT));
    Ok(())
}

#[tokio::test]
async fn a_receiver_with_a_lower_limit_drops_the_peer_that_exceeds_it() -> Result<(), Error> {
    // The sender allows more than the receiver: the receiver closes that
    // connection (the protocol says so) and keeps its other peers.
    let server = Socket::builder().max_frame_length(1024).build()?;
    let mut events = Box::pin(server.events());
    let addr = server.bind("127.0.0.1:0").await?.to_string();
    let greedy = Socket::new()?;
    let polite = Socket::new()?;
    greedy.connect(&addr)?;
    polite.connect(&addr)?;
    within("two peers", server.wait_for_peers(2)).await;

    greedy.send(vec![1u8; 4096]).await?;
    let event = common::next_event(&mut events, "the oversized peer dropped", |e| {
        matches!(e, smartsock::Event::PeerDisconnected { .. })
    })
    .await;
    assert!(
        matches!(&event, smartsock::Event::PeerDisconnected { peer, reason: smartsock::DisconnectReason::Protocol(_) } if *peer == greedy.identity()),
        "{event:?}"
    );
    polite.send("still here").await?;
    assert_eq!(recv(&server).await, "still here");
    Ok(())
}
