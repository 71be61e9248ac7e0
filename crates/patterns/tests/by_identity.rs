//! Sends addressed to one peer by identity, under both routing layers: they
//! reach exactly that peer, and an unknown identity fails at once with the
//! message handed back.

mod common;

use bytes::Bytes;
use common::*;
use futures::FutureExt;
use smartsock_patterns::{
    Destination, Message, PeerSet, PeerSetConfig, PublishLayer, RoundRobinLayer, SendError, SendErrorKind,
};
use smartsock_transport::{PeerId, TransportConfig};
use tower::{Layer, Service, ServiceExt};

/// Sends `Message::to_peer` to each of `ids` in turn, `rounds` times, through
/// `service`; payloads number the messages from `first`.
async fn send_addressed<S>(service: &mut S, ids: &[PeerId], rounds: u32, first: u32)
where
    S: Service<Message, Response = (), Error = SendError>,
{
    let mut next = first;
    for _ in 0..rounds {
        for &id in ids {
            within("an addressed send", async {
                service.ready().await?.call(Message::to_peer(id, payload(next, 32))).await
            })
            .await
            .expect("send failed");
            next += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_addressed_message_goes_to_exactly_that_peer_under_both_layers() {
    const PEERS: usize = 3;
    const ROUNDS: u32 = 50;
    let (sender, peers) = sender(TransportConfig::default(), PeerSetConfig::default());
    let mut receivers = Vec::new();
    for position in 0..PEERS {
        let (parts, addr) = receiver().await;
        connect_in_order(&sender, addr, position, parts.transport.identity()).await;
        receivers.push(parts);
    }
    // Address them in an order other than connection order.
    let order = [2, 0, 1];
    let ids: Vec<PeerId> = order.iter().map(|&i| receivers[i].transport.identity()).collect();

    let mut round_robin = RoundRobinLayer::new().layer(peers.clone());
    let mut publish = PublishLayer::new().layer(peers);
    send_addressed(&mut round_robin, &ids, ROUNDS, 0).await;
    let published_from = ROUNDS * PEERS as u32;
    send_addressed(&mut publish, &ids, ROUNDS, published_from).await;

    for (slot, &index) in order.iter().enumerate() {
        let got = seqs(&collect(&receivers[index].inbound, 2 * ROUNDS as usize).await);
        let expected: Vec<u32> = (slot as u32..2 * published_from).step_by(PEERS).collect();
        assert_eq!(got, expected, "peer {index} got others' messages or lost its own");
    }
    let transports: Vec<_> = receivers.iter().map(|r| &r.transport).collect();
    close_and_settle(&sender, &transports).await;
    for (index, receiver) in receivers.iter().enumerate() {
        assert_drained(&receiver.inbound, &format!("peer {index}"));
    }
}

/// Asserts that `service` refuses a send to `id` at once, handing back the
/// message with its destination and payload intact.
fn assert_unknown_peer<S>(service: &mut S, id: PeerId, body: &'static str)
where
    S: Service<Message, Response = (), Error = SendError>,
{
    let ready = service.ready().now_or_never().expect("not ready");
    let error = ready
        .expect("poll_ready failed")
        .call(Message::to_peer(id, body))
        .now_or_never()
        .expect("a send to an unknown peer waited")
        .expect_err("a send to an unknown peer succeeded");
    assert_eq!(error.kind(), &SendErrorKind::UnknownPeer(id));
    assert_eq!(error.message().to, Destination::Peer(id));
    assert_eq!(error.into_message().into_payload(), Bytes::from_static(body.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_identity_fails_at_once_and_hands_the_message_back() {
    let (sender, peers) = sender(TransportConfig::default(), PeerSetConfig::default());
    let mut round_robin = RoundRobinLayer::new().layer(peers.clone());
    let mut publish = PublishLayer::new().layer(peers.clone());
    let mut bare: PeerSet = peers;
    let stranger = PeerId::random();

    // With no peer at all: not buffered, refused.
    assert_unknown_peer(&mut round_robin, stranger, "to nobody, round-robin");
    assert_unknown_peer(&mut publish, stranger, "to nobody, publish");
    assert_unknown_peer(&mut bare, stranger, "to nobody, bare");
    assert_eq!(bare.buffered(), 0, "an addressed message was buffered");

    // With peers up, an identity that is not one of them.
    let (first, first_addr) = receiver().await;
    let (second, second_addr) = receiver().await;
    connect_in_order(&sender, first_addr, 0, first.transport.identity()).await;
    connect_in_order(&sender, second_addr, 1, second.transport.identity()).await;
    assert_unknown_peer(&mut round_robin, stranger, "to a stranger, round-robin");
    assert_unknown_peer(&mut publish, stranger, "to a stranger, publish");

    // A peer that was known and has left.
    let gone = first.transport.identity();
    within("the first receiver to close", first.transport.close()).await;
    wait_for_peers(&sender, 1).await;
    assert_unknown_peer(&mut round_robin, gone, "to a departed peer, round-robin");
    assert_unknown_peer(&mut publish, gone, "to a departed peer, publish");

    // The remaining peer still gets what is addressed to it.
    let id = second.transport.identity();
    within("a send to the remaining peer", async {
        round_robin.ready().await?.call(Message::to_peer(id, payload(7, 8))).await
    })
    .await
    .expect("send failed");
    assert_eq!(seqs(&collect(&second.inbound, 1).await), [7]);
    close_and_settle(&sender, &[&second.transport]).await;
    assert_drained(&second.inbound, "the remaining peer");
}
