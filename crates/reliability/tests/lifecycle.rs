//! The driver task's life: it ends once nothing can use it any more.

use std::time::Duration;

use smartsock_patterns::{Message, PeerSet, PeerSetConfig, RoundRobin, RoundRobinLayer};
use smartsock_reliability::{
    AtLeastOnce, AtLeastOnceConfig, AtLeastOnceLayer, UndeliveredReceiver, Untracked, Went,
};
use smartsock_transport::{Transport, TransportConfig};
use tower::Layer;

/// A layer over round-robin over a peer set with no peers, the service it
/// made, and where its undelivered messages arrive.
fn layer_and_service() -> (AtLeastOnceLayer, AtLeastOnce<RoundRobin<PeerSet>>, UndeliveredReceiver) {
    let parts = Transport::new(TransportConfig::default()).unwrap();
    let peers = PeerSet::new(&parts.transport, parts.orphans, PeerSetConfig::default());
    let (layer, undelivered) = AtLeastOnceLayer::new(AtLeastOnceConfig::default(), parts.acks).unwrap();
    let service = layer.layer(RoundRobinLayer::new().layer(peers));
    (layer, service, undelivered)
}

/// Waits for the driver's end: it owns the only sender of the undelivered
/// channel, so its end closes it.
async fn driver_ended(undelivered: &mut UndeliveredReceiver) {
    let ended = tokio::time::timeout(Duration::from_secs(5), undelivered.recv()).await;
    assert!(matches!(ended, Ok(None)), "driver still running: {ended:?}");
}

#[tokio::test]
async fn driver_ends_when_every_service_and_the_layer_are_dropped() {
    let (layer, service, mut undelivered) = layer_and_service();
    let clone = service.clone();

    drop(service);
    drop(layer);
    // One service is still alive: the driver must still be running.
    assert!(tokio::time::timeout(Duration::from_millis(200), undelivered.recv()).await.is_err());

    drop(clone);
    driver_ended(&mut undelivered).await;
}

#[tokio::test]
async fn once_the_driver_has_ended_a_handle_tracks_nothing_and_says_so() {
    let (layer, service, mut undelivered) = layer_and_service();
    let handle = layer.handle();
    drop(service);
    drop(layer);
    driver_ended(&mut undelivered).await;

    // Not shut down, and the limit is far: only the driver's end says no.
    assert!(!handle.is_shut_down());
    let mut called = false;
    let back = handle.try_send_tracked(Message::new("late"), |_| {
        called = true;
        Went::Out(None)
    });
    assert_eq!((back, called), (Err(Untracked::Closed(Message::new("late"))), false));
    assert_eq!(handle.in_flight(), 0);
}
