//! Helpers shared by the transport's integration tests: bounded waits, event
//! matching, the protocol's exact bytes written by hand, a raw TCP peer and an
//! in-memory peer that speaks through the framing codec.

// Each test binary uses a different subset of these helpers (and of the
// testkit's, re-exported here).
#![allow(dead_code, unused_imports)]

use futures::{SinkExt, StreamExt};
use smartsock_framing::{Codec, Frame};
use smartsock_transport::{Event, PeerTable, Transport, TransportConfig, TransportParts};
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
use tokio_util::codec::{FramedRead, FramedWrite};

pub(crate) use smartsock_testkit::wire::{HEARTBEAT, ack, data, data_req, header, hello, hello_v, pattern};
pub(crate) use smartsock_testkit::{RawPeer, WAIT, within};

/// A config whose identity is known to the test.
pub(crate) fn config() -> TransportConfig {
    TransportConfig::default()
}

/// A transport made from `config`.
pub(crate) fn transport(config: TransportConfig) -> TransportParts {
    Transport::new(config).expect("valid config")
}

/// Waits until the peer table satisfies `check`, and returns it.
pub(crate) async fn wait_peers(
    transport: &Transport,
    what: &str,
    check: impl FnMut(&PeerTable) -> bool,
) -> PeerTable {
    let mut peers: smartsock_transport::PeerWatch = transport.peers();
    within(what, peers.wait_for(check)).await.expect("the peer table lives as long as the transport").clone()
}

/// Waits until exactly `n` peers are connected.
pub(crate) async fn wait_peer_count(transport: &Transport, n: usize) -> PeerTable {
    wait_peers(transport, &format!("{n} peers"), |table| table.len() == n).await
}

/// Receives events until `pick` returns `Some`, skipping the others.
pub(crate) async fn next_event<T>(
    events: &mut smartsock_transport::Events,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                Err(smartsock_transport::EventsError::Lagged(n)) => {
                    panic!("lost {n} events waiting for {what}")
                }
                Err(_) => panic!("event stream closed waiting for {what}"),
            }
        }
    })
    .await
}

/// Receives the next event, whatever it is.
pub(crate) async fn any_event(events: &mut smartsock_transport::Events) -> Event {
    next_event(events, "any event", |event| Some(event.clone())).await
}

/// Asserts that no event is waiting right now.
pub(crate) fn no_event_queued(events: &mut smartsock_transport::Events) {
    match events.try_recv() {
        Err(smartsock_transport::EventsError::Empty) => {}
        other => panic!("expected no event, got {other:?}"),
    }
}

/// The test's end of an in-memory connection, speaking through the framing codec.
pub(crate) struct MemPeer {
    pub(crate) reader: FramedRead<ReadHalf<DuplexStream>, Codec>,
    pub(crate) writer: FramedWrite<WriteHalf<DuplexStream>, Codec>,
}

impl MemPeer {
    pub(crate) fn new(stream: DuplexStream) -> Self {
        let (read, write) = tokio::io::split(stream);
        Self { reader: FramedRead::new(read, Codec::new()), writer: FramedWrite::new(write, Codec::new()) }
    }

    pub(crate) async fn send(&mut self, frame: Frame) {
        within("a frame to be written", self.writer.send(frame)).await.expect("write to the duplex");
    }

    /// The next frame, or `None` at a clean end of stream.
    pub(crate) async fn next(&mut self) -> Option<Frame> {
        within("a frame", self.reader.next()).await.map(|frame| frame.expect("a well-formed frame"))
    }

    pub(crate) async fn expect(&mut self, expected: Frame) {
        assert_eq!(self.next().await, Some(expected));
    }
}
