//! Hostile peers against an at-least-once round-robin sender (issue 12,
//! findings 1 and 2), played over raw TCP with the protocol's bytes written
//! by hand:
//!
//! - a peer that acknowledges its own messages and also forges ACKs (ids it
//!   predicts from the ones it saw, and the exact ids of another peer's
//!   messages) settles nothing but its own; the silent peer's messages are
//!   resent to it;
//! - a peer flooding random ACKs is disconnected as hostile, while another
//!   peer's ACKs keep settling messages and what the flooder held is resent
//!   at once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use common::{WAIT, number_of, numbered, within};
use futures::StreamExt;
use smartsock::transport::{DisconnectReason, MAX_UNKNOWN_ACKS_PER_SECOND};
use smartsock::{Delivery, Event, MsgId, PeerId, Socket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Messages the sender sends: half to each peer.
const SENT: usize = 20;

/// A peer on raw TCP that speaks the protocol by hand.
struct RawPeer {
    id: PeerId,
    stream: TcpStream,
    buf: BytesMut,
}

impl RawPeer {
    /// Connects to `addr` and completes the handshake with `server`.
    async fn connect(addr: SocketAddr, server: PeerId) -> Self {
        let stream = within("a TCP connect", TcpStream::connect(addr)).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let mut peer = Self { id: PeerId::random(), stream, buf: BytesMut::new() };
        let mut hello = vec![0, 0, 0, 0x12, 0x01, 0x01];
        hello.extend_from_slice(peer.id.as_bytes());
        peer.write(&hello).await;
        let (kind, body) = peer.frame().await.expect("the bind end's HELLO");
        assert_eq!((kind, &body[1..]), (0x01, &server.as_bytes()[..]));
        peer
    }

    async fn write(&mut self, bytes: &[u8]) {
        within("a raw write", self.stream.write_all(bytes)).await.expect("raw write");
    }

    /// The next frame (type, body), or `None` at EOF or a reset.
    async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if self.buf.len() >= 4 + len {
                    self.buf.advance(4);
                    let envelope = self.buf.split_to(len);
                    return Some((envelope[0], envelope[1..].to_vec()));
                }
            }
            match within("bytes from the sender", self.stream.read_buf(&mut self.buf)).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next DATA_REQ (id, message number), skipping heartbeats.
    async fn data_req(&mut self) -> (MsgId, usize) {
        loop {
            match self.frame().await.expect("the sender closed the connection") {
                (0x02, _) => {}
                (0x04, body) => {
                    let id = MsgId::from_bytes(body[..16].try_into().unwrap());
                    return (id, number_of(&body[16..]));
                }
                (kind, _) => panic!("expected a DATA_REQ, got a frame of type {kind:#04x}"),
            }
        }
    }

    /// Reads until the connection ends, skipping anything but its end.
    async fn expect_closed(&mut self) {
        while self.frame().await.is_some() {}
    }
}

fn ack(id: [u8; 16]) -> Vec<u8> {
    let mut bytes = vec![0x00, 0x00, 0x00, 0x11, 0x05];
    bytes.extend_from_slice(&id);
    bytes
}

/// `id` with its first 8 bytes (the sender's counter, big-endian) replaced.
fn with_counter(id: MsgId, counter: u64) -> [u8; 16] {
    let mut bytes = *id.as_bytes();
    bytes[..8].copy_from_slice(&counter.to_be_bytes());
    bytes
}

fn counter(id: MsgId) -> u64 {
    u64::from_be_bytes(id.as_bytes()[..8].try_into().unwrap())
}

async fn reliable_sender(resend_timeout: Duration) -> (Socket, SocketAddr) {
    let sender = Socket::builder()
        .delivery(Delivery::AtLeastOnce)
        .resend_timeout(resend_timeout)
        // Enough attempts that round-robin's coin never gives one up here.
        .give_up(30, Duration::from_secs(60))
        .build()
        .unwrap();
    let addr = sender.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
    (sender, addr)
}

/// Reads `peer`'s share of the first sends: `SENT / 2` DATA_REQs.
async fn first_share(peer: &mut RawPeer) -> BTreeMap<usize, MsgId> {
    let mut got = BTreeMap::new();
    while got.len() < SENT / 2 {
        let (id, n) = peer.data_req().await;
        assert!(got.insert(n, id).is_none(), "message {n} sent twice to one peer before any resend");
    }
    got
}

/// Waits until `check` holds, polling: the counters have no wake-up.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn forged_acks_settle_nothing_and_the_silent_peers_messages_are_resent_to_the_honest_one() {
    let (sender, addr) = reliable_sender(Duration::from_millis(500)).await;
    let mut silent = RawPeer::connect(addr, sender.identity()).await;
    let mut forger = RawPeer::connect(addr, sender.identity()).await;
    assert!(within("two peers", sender.wait_for_peers(2)).await);
    for i in 0..SENT {
        sender.send(numbered(i)).await.unwrap();
    }
    // Round-robin: ten each.
    let to_silent = first_share(&mut silent).await;
    let to_forger = first_share(&mut forger).await;
    let all: BTreeSet<usize> = to_silent.keys().chain(to_forger.keys()).copied().collect();
    assert_eq!(all, (0..SENT).collect());

    // The forger acknowledges its own ten and, in the same write, forges:
    // the next ids it predicts from each it saw (counter + 1.., any tag),
    // its own ids with the counter changed (the neighbouring counters are
    // the silent peer's messages), and even the silent peer's exact ids.
    let mut acks = Vec::new();
    let mut forged = 0u64;
    for &id in to_forger.values() {
        acks.extend(ack(*id.as_bytes()));
        for step in 1..=4u64 {
            let mut predicted = with_counter(id, counter(id) + step);
            predicted[8..].fill(step as u8);
            acks.extend(ack(predicted));
            forged += 1;
        }
        for step in [1, 2] {
            acks.extend(ack(with_counter(id, counter(id) + step)));
            forged += 1;
        }
    }
    for &id in to_silent.values() {
        acks.extend(ack(*id.as_bytes()));
        forged += 1;
    }
    assert!(forged < MAX_UNKNOWN_ACKS_PER_SECOND as u64, "the forger must stay under the flood limit");
    forger.write(&acks).await;

    let stats = sender.delivery_stats().expect("at-least-once");
    until("the forger's ACKs to be read", || stats.acked() == 10 && stats.unknown_acks() == forged).await;
    // Its own ten settled; not one of the silent peer's.
    assert_eq!(sender.in_flight(), SENT / 2);
    assert_eq!(stats.acked(), (SENT / 2) as u64);
    assert_eq!(stats.unknown_acks(), forged);

    // Honest from now on: the silent peer's messages come round again (the
    // silent peer gets some of them back, and never answers) until every
    // one has reached the forger, who acknowledges each.
    let mut reached = to_forger.keys().copied().collect::<BTreeSet<_>>();
    within("every message to reach the acknowledging peer", async {
        while reached.len() < SENT {
            let (id, n) = forger.data_req().await;
            assert!(to_silent.contains_key(&n), "message {n} was resent although it was acknowledged");
            assert_eq!(id, to_silent[&n], "message {n} was resent with another id");
            forger.write(&ack(*id.as_bytes())).await;
            reached.insert(n);
        }
    })
    .await;
    within("the sender to settle", sender.settled()).await;
    assert_eq!(sender.in_flight(), 0);
    assert_eq!(stats.acked(), SENT as u64);
    assert_eq!(stats.unknown_acks(), forged, "an honest ACK was counted as unknown");
    assert_eq!(stats.undelivered(), 0);
    assert!(stats.resent() >= (SENT / 2) as u64);
    sender.close().await;
    drop(silent);
}

#[tokio::test]
async fn a_peer_flooding_random_acks_is_cut_off_while_another_peers_acks_keep_settling() {
    // Long enough that only a resend on disconnect can settle the flooder's
    // messages within the test's waits.
    let resend_timeout = Duration::from_secs(60);
    assert!(resend_timeout > 2 * WAIT);
    let (sender, addr) = reliable_sender(resend_timeout).await;
    let mut events = sender.events();
    let mut flooder = RawPeer::connect(addr, sender.identity()).await;
    let mut honest = RawPeer::connect(addr, sender.identity()).await;
    assert!(within("two peers", sender.wait_for_peers(2)).await);
    for i in 0..SENT {
        sender.send(numbered(i)).await.unwrap();
    }
    let to_flooder = first_share(&mut flooder).await;
    let to_honest = first_share(&mut honest).await;
    let stats = sender.delivery_stats().expect("at-least-once");

    // Half the honest ACKs before the flood, half while it is read.
    let honest_ids: Vec<MsgId> = to_honest.values().copied().collect();
    honest.write(&honest_ids[..5].iter().flat_map(|id| ack(*id.as_bytes())).collect::<Vec<_>>()).await;
    until("the first honest ACKs", || stats.acked() == 5).await;

    // Random ids, more than the limit allows in a second, in one write.
    let flood: Vec<u8> = (0..2 * MAX_UNKNOWN_ACKS_PER_SECOND).flat_map(|_| ack(rand_id())).collect();
    let flooder_id = flooder.id;
    let flooding = tokio::spawn(async move {
        // The sender may cut the connection before it has read everything.
        let _ = flooder.stream.write_all(&flood).await;
        flooder.expect_closed().await;
    });
    honest.write(&honest_ids[5..].iter().flat_map(|id| ack(*id.as_bytes())).collect::<Vec<_>>()).await;

    let (peer, reason) = within("the flooder to be disconnected", async {
        loop {
            match events.next().await.expect("events") {
                Event::PeerDisconnected { peer, reason } => return (peer, reason),
                _ => continue,
            }
        }
    })
    .await;
    assert!(matches!(reason, DisconnectReason::Protocol(_)), "{reason:?}");
    within("the flooder's connection to end", flooding).await.unwrap();
    assert_eq!(peer, flooder_id);
    assert!(stats.unknown_acks() > MAX_UNKNOWN_ACKS_PER_SECOND as u64);

    // What the flooder held is resent at once to the one peer left, which
    // acknowledges it; the honest peer's own ten had settled.
    let mut resent = BTreeSet::new();
    within("the flooder's messages to be resent", async {
        while resent.len() < SENT / 2 {
            let (id, n) = honest.data_req().await;
            assert_eq!(id, to_flooder[&n], "message {n} resent with another id, or not the flooder's");
            honest.write(&ack(*id.as_bytes())).await;
            resent.insert(n);
        }
    })
    .await;
    within("the sender to settle", sender.settled()).await;
    assert_eq!(stats.acked(), SENT as u64);
    assert_eq!(stats.undelivered(), 0);
    assert_eq!(sender.peers(), vec![honest.id]);
    sender.close().await;
}

/// A random 16-byte id.
fn rand_id() -> [u8; 16] {
    *PeerId::random().as_bytes()
}
