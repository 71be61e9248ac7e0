//! The driver task's life: it ends once nothing can use it any more.

use std::time::Duration;

use smartsock_patterns::{PeerSet, PeerSetConfig, RoundRobinLayer};
use smartsock_reliability::{AtLeastOnceConfig, AtLeastOnceLayer};
use smartsock_transport::{Transport, TransportConfig};
use tower::Layer;

#[tokio::test]
async fn driver_ends_when_every_service_and_the_layer_are_dropped() {
    let parts = Transport::new(TransportConfig::default()).unwrap();
    let peers = PeerSet::new(&parts.transport, parts.orphans, PeerSetConfig::default());
    let (layer, mut undelivered) = AtLeastOnceLayer::new(AtLeastOnceConfig::default(), parts.acks).unwrap();
    let service = layer.layer(RoundRobinLayer::new().layer(peers));
    let clone = service.clone();

    drop(service);
    drop(layer);
    // One service is still alive: the driver must still be running.
    assert!(tokio::time::timeout(Duration::from_millis(200), undelivered.recv()).await.is_err());

    drop(clone);
    // The driver owned the only sender of this channel: its end closes it.
    let ended = tokio::time::timeout(Duration::from_secs(5), undelivered.recv()).await;
    assert!(matches!(ended, Ok(None)), "driver still running: {ended:?}");
}
