//! A resend goes through the routing below: when the peer that swallowed a
//! message loses its connection, round-robin gives the resend (same MsgId)
//! to another peer. Once over in-memory streams with paused time (exact
//! times), once over real TCP with real time.

mod common;

use std::time::Duration;

use common::{MemPeer, Sender, TcpPeer, WAIT, reliable, within};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn the_resend_after_a_cut_reaches_another_peer_in_memory() {
    let mut sender = Sender::new(reliable(Duration::from_secs(5), 6));
    let mut first = MemPeer::attach(&sender.transport, "first").await;
    sender.wait_for_peers(1).await;
    let mut second = MemPeer::attach(&sender.transport, "second").await;
    sender.wait_for_peers(2).await;

    let start = Instant::now();
    sender.send("precious").await.expect("sent");
    // Whichever peer round-robin picked swallows the message...
    let (picked, id) = tokio::select! {
        (id, payload) = first.expect_data_req(WAIT) => { assert_eq!(payload, "precious"); (0, id) }
        (id, payload) = second.expect_data_req(WAIT) => { assert_eq!(payload, "precious"); (1, id) }
    };
    assert_eq!(start.elapsed(), Duration::ZERO);
    let (cut, mut other) = if picked == 0 { (first, second) } else { (second, first) };
    // ...and its connection is cut.
    drop(cut);
    sender.wait_for_peers(1).await;

    let (again, payload) = other.expect_data_req(WAIT).await;
    assert_eq!((again, &payload[..]), (id, &b"precious"[..]));
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    other.ack(again).await;
    sender.settled().await;
    assert_eq!(sender.handle.in_flight(), 0);
    let stats = sender.handle.stats();
    assert_eq!((stats.sent(), stats.resent(), stats.acked(), stats.undelivered()), (1, 1, 1, 0));
    assert_eq!(other.next_frame(Duration::from_secs(60)).await, None);
}

#[tokio::test]
async fn the_resend_after_a_cut_reaches_another_peer_over_tcp() {
    let mut sender = Sender::new(reliable(Duration::from_millis(200), 50));
    let addr = sender.transport.bind("127.0.0.1:0").await.expect("bind").tcp().expect("a TCP address");
    let mut first = TcpPeer::connect(addr, sender.transport.identity()).await;
    sender.wait_for_peers(1).await;
    let mut second = TcpPeer::connect(addr, sender.transport.identity()).await;
    sender.wait_for_peers(2).await;

    sender.send("precious").await.expect("sent");
    let (picked, id) = tokio::select! {
        (id, payload) = first.expect_data_req(WAIT) => { assert_eq!(payload, "precious"); (0, id) }
        (id, payload) = second.expect_data_req(WAIT) => { assert_eq!(payload, "precious"); (1, id) }
    };
    let (cut, mut other) = if picked == 0 { (first, second) } else { (second, first) };
    drop(cut);

    let (again, payload) = other.expect_data_req(WAIT).await;
    assert_eq!((again, &payload[..]), (id, &b"precious"[..]));
    other.write(&common::ack_bytes(again)).await;
    within("the sender to settle", WAIT, sender.handle.settled()).await;
    assert_eq!(sender.handle.in_flight(), 0);
    let stats = sender.handle.stats();
    assert_eq!((stats.sent(), stats.acked(), stats.undelivered()), (1, 1, 0));
    assert!(stats.resent() >= 1);
    assert!(sender.undelivered.try_recv().is_err());
}
