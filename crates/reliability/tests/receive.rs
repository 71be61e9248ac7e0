//! The receiving side over real TCP: raw peers write the protocol's exact
//! bytes to a bound transport, and the test checks what `ReceiveSide::take`
//! delivers and which ACKs come back, byte for byte. Repeats from one peer
//! are delivered once and acknowledged every time; the same id from two
//! peers is two messages; the ACK waits for the application to take the
//! message, unless the transport acknowledges on arrival.

mod common;

use std::time::Duration;

use common::{TcpPeer, WAIT, ack_bytes, data_bytes, data_req_bytes, within};
use smartsock_reliability::{DuplicateFilter, ReceiveSide};
use smartsock_transport::{Incoming, MsgId, PeerId, Transport, TransportConfig, TransportParts};

/// How long a raw peer listens to be sure nothing comes.
const QUIET: Duration = Duration::from_millis(300);

async fn receiver(config: TransportConfig) -> (TransportParts, std::net::SocketAddr) {
    let parts = Transport::new(config).expect("valid config");
    let addr = parts.transport.bind("127.0.0.1:0").await.expect("bind").tcp().expect("a TCP address");
    (parts, addr)
}

async fn next_incoming(parts: &TransportParts) -> Incoming {
    within("a message", WAIT, parts.inbound.recv()).await.expect("inbound open")
}

#[tokio::test]
async fn a_repeated_data_req_is_delivered_once_and_acknowledged_each_time() {
    let (parts, addr) = receiver(TransportConfig::default()).await;
    let side = ReceiveSide::new(1024);
    let mut peer = TcpPeer::connect(addr, parts.transport.identity()).await;
    let id = MsgId::from_bytes(*b"0123456789abcdef");

    let mut twice = data_req_bytes(id, b"once");
    twice.extend(data_req_bytes(id, b"once"));
    peer.write(&twice).await;

    let first = next_incoming(&parts).await;
    assert_eq!(first.request.as_ref().map(|ack| ack.id()), Some(id));
    assert_eq!(side.take(first), Some((peer.id, "once".into())));
    assert_eq!(peer.read_frame(WAIT).await, Some(ack_bytes(id)));

    let repeat = next_incoming(&parts).await;
    assert_eq!(side.take(repeat), None, "a repeat is not delivered again");
    assert_eq!(peer.read_frame(WAIT).await, Some(ack_bytes(id)), "a repeat is acknowledged again");

    assert_eq!(side.duplicates_dropped(), 1);
    assert_eq!(side.acks_not_sent(), 0);
    assert_eq!(peer.read_frame(QUIET).await, None);
    assert!(parts.inbound.is_empty());
    parts.transport.close().await;
}

#[tokio::test]
async fn the_same_id_from_two_peers_is_two_messages() {
    let (parts, addr) = receiver(TransportConfig::default()).await;
    let side = ReceiveSide::new(1024);
    let mut alice = TcpPeer::connect(addr, parts.transport.identity()).await;
    let mut bob = TcpPeer::connect(addr, parts.transport.identity()).await;
    let id = MsgId::from_bytes([7; 16]);

    alice.write(&data_req_bytes(id, b"from alice")).await;
    let from_alice = next_incoming(&parts).await;
    bob.write(&data_req_bytes(id, b"from bob")).await;
    let from_bob = next_incoming(&parts).await;

    assert_eq!(side.take(from_alice), Some((alice.id, "from alice".into())));
    assert_eq!(side.take(from_bob), Some((bob.id, "from bob".into())));
    assert_eq!(side.duplicates_dropped(), 0);
    // Each ACK goes back on the connection its DATA_REQ came on.
    assert_eq!(alice.read_frame(WAIT).await, Some(ack_bytes(id)));
    assert_eq!(bob.read_frame(WAIT).await, Some(ack_bytes(id)));
    assert_eq!(alice.read_frame(QUIET).await, None);
    assert_eq!(bob.read_frame(Duration::ZERO).await, None);
    parts.transport.close().await;
}

#[tokio::test]
async fn the_ack_waits_until_the_application_takes_the_message() {
    let (parts, addr) = receiver(TransportConfig::default()).await;
    let side = ReceiveSide::new(1024);
    let mut peer = TcpPeer::connect(addr, parts.transport.identity()).await;
    let id = MsgId::from_bytes([0x42; 16]);

    peer.write(&data_req_bytes(id, b"take me")).await;
    // Not received from the inbound queue yet: no ACK.
    assert_eq!(peer.read_frame(QUIET).await, None);
    // Received, but not taken: still no ACK.
    let incoming = next_incoming(&parts).await;
    assert_eq!(incoming.request.as_ref().map(|ack| (ack.id(), ack.already_sent())), Some((id, false)));
    assert_eq!(peer.read_frame(QUIET).await, None);

    assert_eq!(side.take(incoming), Some((peer.id, "take me".into())));
    assert_eq!(peer.read_frame(WAIT).await, Some(ack_bytes(id)));
    assert_eq!(peer.read_frame(QUIET).await, None, "exactly one ACK");
    parts.transport.close().await;
}

#[tokio::test]
async fn with_ack_on_arrival_the_ack_comes_without_take_and_only_once() {
    let mut config = TransportConfig::default();
    config.ack_on_arrival = true;
    let (parts, addr) = receiver(config).await;
    let side = ReceiveSide::new(1024);
    let mut peer = TcpPeer::connect(addr, parts.transport.identity()).await;
    let id = MsgId::from_bytes([0x24; 16]);

    peer.write(&data_req_bytes(id, b"early")).await;
    assert_eq!(peer.read_frame(WAIT).await, Some(ack_bytes(id)), "acknowledged on arrival");

    let incoming = next_incoming(&parts).await;
    assert_eq!(incoming.request.as_ref().map(|ack| (ack.id(), ack.already_sent())), Some((id, true)));
    assert_eq!(side.take(incoming), Some((peer.id, "early".into())));
    assert_eq!(peer.read_frame(QUIET).await, None, "take does not acknowledge again");

    // A repeat is acknowledged on arrival again and filtered by take.
    peer.write(&data_req_bytes(id, b"early")).await;
    assert_eq!(peer.read_frame(WAIT).await, Some(ack_bytes(id)));
    assert_eq!(side.take(next_incoming(&parts).await), None);
    assert_eq!(side.duplicates_dropped(), 1);
    parts.transport.close().await;
}

#[tokio::test]
async fn data_is_never_acknowledged_nor_filtered() {
    let (parts, addr) = receiver(TransportConfig::default()).await;
    let side = ReceiveSide::new(1024);
    let mut peer = TcpPeer::connect(addr, parts.transport.identity()).await;

    let mut twice = data_bytes(b"same");
    twice.extend(data_bytes(b"same"));
    peer.write(&twice).await;
    for _ in 0..2 {
        let incoming = next_incoming(&parts).await;
        assert!(incoming.request.is_none());
        assert_eq!(side.take(incoming), Some((peer.id, "same".into())));
    }
    assert_eq!(side.duplicates_dropped(), 0);
    assert_eq!(peer.read_frame(QUIET).await, None);
    parts.transport.close().await;
}

#[tokio::test]
async fn without_a_window_repeats_are_delivered_and_still_acknowledged() {
    let (parts, addr) = receiver(TransportConfig::default()).await;
    let side = ReceiveSide::new(0);
    let mut peer = TcpPeer::connect(addr, parts.transport.identity()).await;
    let id = MsgId::from_bytes([9; 16]);

    let mut twice = data_req_bytes(id, b"again");
    twice.extend(data_req_bytes(id, b"again"));
    peer.write(&twice).await;
    for _ in 0..2 {
        assert_eq!(side.take(next_incoming(&parts).await), Some((peer.id, "again".into())));
        assert_eq!(peer.read_frame(WAIT).await, Some(ack_bytes(id)));
    }
    assert_eq!(side.duplicates_dropped(), 0);
    parts.transport.close().await;
}

#[tokio::test]
async fn an_ack_that_cannot_be_sent_is_counted_and_the_message_still_delivered() {
    let (parts, addr) = receiver(TransportConfig::default()).await;
    let side = ReceiveSide::new(1024);
    let mut peer = TcpPeer::connect(addr, parts.transport.identity()).await;
    let id = MsgId::from_bytes([3; 16]);

    peer.write(&data_req_bytes(id, b"orphan")).await;
    let incoming = next_incoming(&parts).await;
    let from = peer.id;
    drop(peer);
    let mut peers = parts.transport.peers();
    within("the peer to leave", WAIT, peers.wait_for(|table| table.is_empty())).await.expect("table");

    assert_eq!(side.take(incoming), Some((from, "orphan".into())));
    assert_eq!(side.acks_not_sent(), 1);
    parts.transport.close().await;
}

#[test]
fn the_duplicate_window_forgets_a_whole_generation_at_a_time() {
    let mut filter = DuplicateFilter::new(2);
    let peer = PeerId::random();
    let [a, b, c, d, e] = [[1; 16], [2; 16], [3; 16], [4; 16], [5; 16]].map(MsgId::from_bytes);
    assert!(filter.first_time(peer, a));
    assert!(filter.first_time(peer, b));
    assert!(!filter.first_time(peer, a), "a repeat inside the window");
    assert!(filter.first_time(peer, c));
    assert!(!filter.first_time(peer, a), "a, b and c: up to twice the capacity less one");
    assert!(filter.first_time(peer, d), "the window turns: a and b leave together");
    assert!(filter.first_time(peer, b), "b is seen as new, and recorded again");
    assert!(!filter.first_time(peer, c), "the last two, at least, are held");
    assert!(!filter.first_time(peer, d));
    assert!(filter.first_time(peer, e), "the window turns again: c and d leave");
    assert!(filter.first_time(peer, c));
    assert!(!filter.first_time(peer, b), "b and e are held");
}

#[test]
fn the_duplicate_window_answers_as_a_model_of_its_generations_would() {
    // Many turns of the window, over ids that repeat at every distance:
    // each answer checked against a model that numbers the messages
    // recorded. The n-th (from 0) belongs to generation n / CAPACITY; the
    // window is the current generation and the one before it. So it always
    // holds the last CAPACITY recorded, and never the 2 * CAPACITY-th back.
    const CAPACITY: usize = 37;
    let mut filter = DuplicateFilter::new(CAPACITY);
    let mut recorded_at: std::collections::HashMap<(PeerId, MsgId), usize> = Default::default();
    let mut recorded = 0;
    let (mut repeats, mut forgotten) = (0, 0);
    let peers = [PeerId::from_bytes([1; 16]), PeerId::from_bytes([2; 16])];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let peer = peers[(state & 1) as usize];
        let id = MsgId::from_bytes([(state >> 8) as u8 % 97; 16]);
        let in_window =
            recorded_at.get(&(peer, id)).is_some_and(|&n| n / CAPACITY + 1 >= recorded / CAPACITY);
        let held = filter.contains(peer, id);
        if let Some(&n) = recorded_at.get(&(peer, id)) {
            // The documented bounds, on the filter's own answer.
            let back = recorded - n;
            assert!(back > CAPACITY || held, "the last CAPACITY are always held");
            assert!(back < 2 * CAPACITY || !held, "never more than 2 * CAPACITY - 1");
            if held {
                repeats += 1;
            } else {
                forgotten += 1;
            }
        }
        assert_eq!(held, in_window);
        assert_eq!(filter.first_time(peer, id), !in_window);
        if !in_window {
            recorded_at.insert((peer, id), recorded);
            recorded += 1;
        }
        assert!(filter.contains(peer, id), "just recorded or already there");
    }
    assert!(
        repeats > 1000 && forgotten > 1000,
        "both answers well exercised: {repeats} repeats, {forgotten} forgotten"
    );
}
