//! A socket whose application stops taking messages still hears the ACKs
//! for its own at-least-once sends: they arrive on the same connection
//! behind the peer's messages, and the transport's look-ahead reads them
//! while the receive queue is full. Real TCP, generous bounds.

mod common;

use std::time::Duration;

use common::{numbered, within};
use smartsock::{Delivery, Socket};

/// The sender's receive queue: small, so that the peer fills it at once.
const QUEUE: usize = 4;

/// A stalled at-least-once sender (bound) and a peer (connected) that has
/// filled its receive queue and left two more messages waiting.
async fn stalled(lookahead: usize) -> (Socket, Socket) {
    let sender = Socket::builder()
        .delivery(Delivery::AtLeastOnce)
        .receive_queue(QUEUE)
        .receive_lookahead(lookahead)
        .resend_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let addr = sender.bind("127.0.0.1:0").await.unwrap();
    let peer = Socket::new().unwrap();
    peer.connect(&addr.to_string()).unwrap();
    within("the handshake", sender.wait_for_peers(1)).await;
    within("the handshake", peer.wait_for_peers(1)).await;
    for i in 0..QUEUE + 2 {
        within("a send", peer.send(numbered(i))).await.unwrap();
    }
    within("the sender's queue to fill", async {
        while sender.stats().received_queued < QUEUE {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    (sender, peer)
}

#[tokio::test]
async fn a_sender_that_takes_no_messages_still_gets_the_acks_for_its_own() {
    let (sender, peer) = stalled(smartsock::transport::DEFAULT_INBOUND_LOOKAHEAD).await;
    for i in 0..10 {
        within("a send", sender.send(numbered(100 + i))).await.unwrap();
    }
    // The peer takes them, and so acknowledges them behind the messages
    // that wait in the sender's full queue.
    for i in 0..10 {
        assert_eq!(within("a message", peer.recv()).await.unwrap(), numbered(100 + i));
    }
    within("every ACK", sender.settled()).await;
    assert_eq!(sender.in_flight(), 0);
    // The sender's application took nothing meanwhile.
    assert_eq!(sender.stats().received_queued, QUEUE);
    for i in 0..QUEUE + 2 {
        assert_eq!(within("a message", sender.recv()).await.unwrap(), numbered(i));
    }
    sender.close().await;
    peer.close().await;
}

#[tokio::test]
async fn without_the_lookahead_the_acks_wait_for_the_application() {
    let (sender, peer) = stalled(0).await;
    for i in 0..10 {
        within("a send", sender.send(numbered(100 + i))).await.unwrap();
    }
    for i in 0..10 {
        assert_eq!(within("a message", peer.recv()).await.unwrap(), numbered(100 + i));
    }
    // The ACKs are on their way but behind the waiting messages: nothing
    // is read until the application takes one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sender.in_flight(), 10);
    for i in 0..QUEUE + 2 {
        assert_eq!(within("a message", sender.recv()).await.unwrap(), numbered(i));
    }
    within("every ACK", sender.settled()).await;
    sender.close().await;
    peer.close().await;
}
