//! Heartbeats and the liveness timeouts, to the millisecond: paused tokio time
//! over an in-memory duplex, with the test playing the peer through the codec.

mod common;

use std::time::Duration;

use common::*;
use smartsock_transport::{
    DisconnectReason, Event, Frame, Outgoing, PeerHandle, PeerId, RefusedReason, Side, TransportConfig,
    TransportParts,
};
use tokio::time::{Instant, sleep};

const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_millis(2500);
const PEER: PeerId = PeerId::from_bytes([0x42; 16]);

fn heartbeat_config() -> TransportConfig {
    let mut config = config();
    config.heartbeat_interval = INTERVAL;
    config.heartbeat_timeout = TIMEOUT;
    config
}

struct Open {
    parts: TransportParts,
    events: smartsock_transport::Events,
    peer: MemPeer,
    handle: PeerHandle,
    /// When the handshake completed.
    t0: Instant,
}

/// Serves one side of a duplex and completes the handshake from the other.
async fn open(side: Side, config: TransportConfig) -> Open {
    let parts = transport(config);
    let mut events = parts.transport.events();
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    parts.transport.serve(ours, side, "memory").unwrap();
    let mut peer = MemPeer::new(theirs);
    let id = parts.transport.identity();
    match side {
        Side::Connect => {
            peer.expect(Frame::hello(id)).await;
            peer.send(Frame::hello(PEER)).await;
        }
        Side::Bind => {
            peer.send(Frame::hello(PEER)).await;
            peer.expect(Frame::hello(id)).await;
        }
    }
    let connected = next_event(&mut events, "PeerConnected", |e| match e {
        Event::PeerConnected { peer, side, .. } => Some((*peer, *side)),
        _ => None,
    })
    .await;
    assert_eq!(connected, (PEER, side));
    let t0 = Instant::now();
    let handle = wait_peer_count(&parts.transport, 1).await[0].clone();
    Open { parts, events, peer, handle, t0 }
}

async fn disconnected(events: &mut smartsock_transport::Events) -> DisconnectReason {
    next_event(events, "PeerDisconnected", |e| match e {
        Event::PeerDisconnected { peer, reason } => {
            assert_eq!(*peer, PEER);
            Some(reason.clone())
        }
        _ => None,
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_goes_out_after_exactly_the_interval_of_idleness() {
    for side in [Side::Connect, Side::Bind] {
        let Open { parts, mut peer, t0, .. } = open(side, heartbeat_config()).await;
        for n in 1..=4u32 {
            peer.expect(Frame::Heartbeat).await;
            assert_eq!(t0.elapsed(), INTERVAL * n, "{side}: heartbeat {n} at the wrong time");
            // Keep the connection alive from our side.
            peer.send(Frame::Heartbeat).await;
        }
        assert!(parts.inbound.is_empty(), "heartbeats reached the application");
        parts.transport.close().await;
    }
}

#[tokio::test(start_paused = true)]
async fn no_heartbeat_while_frames_are_being_sent() {
    for side in [Side::Connect, Side::Bind] {
        let Open { parts, mut peer, handle, t0, .. } = open(side, heartbeat_config()).await;
        // A frame every 0.9 s for 9 s: the interval never passes idle.
        let step = Duration::from_millis(900);
        for i in 1..=10u32 {
            sleep(step).await;
            let payload = format!("message {i}");
            handle.try_send(Outgoing::to_this_peer(Frame::Data(payload.clone().into()))).unwrap();
            peer.expect(Frame::Data(payload.into())).await;
            assert_eq!(t0.elapsed(), step * i);
            peer.send(Frame::Heartbeat).await;
        }
        // Then idle: the heartbeat comes exactly one interval after the last frame.
        let last = Instant::now();
        peer.expect(Frame::Heartbeat).await;
        assert_eq!(last.elapsed(), INTERVAL, "{side}");
        parts.transport.close().await;
    }
}

#[tokio::test(start_paused = true)]
async fn receiving_does_not_stand_in_for_sending_heartbeats() {
    let Open { parts, mut peer, t0, .. } = open(Side::Connect, heartbeat_config()).await;
    // The peer talks every 300 ms, the transport says nothing of its own.
    let mut writer = peer.writer;
    let talker = tokio::spawn(async move {
        for i in 0..12u8 {
            sleep(Duration::from_millis(300)).await;
            futures::SinkExt::send(&mut writer, Frame::Data(vec![i].into())).await.unwrap();
        }
        writer
    });
    for n in 1..=3u32 {
        let frame = within("heartbeat", futures::StreamExt::next(&mut peer.reader)).await.unwrap().unwrap();
        assert_eq!(frame, Frame::Heartbeat);
        assert_eq!(t0.elapsed(), INTERVAL * n);
    }
    let _writer = within("talker", talker).await.unwrap();
    for i in 0..12u8 {
        let message = within("DATA", parts.inbound.recv()).await.unwrap();
        assert_eq!(&message.payload[..], &[i]);
    }
    // 3.6 s after the handshake and never silent for 2.5 s: still up.
    assert_eq!(parts.transport.peer_table().len(), 1);
    parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn silence_for_the_timeout_tears_the_connection_down_at_the_timeout() {
    for side in [Side::Connect, Side::Bind] {
        let Open { parts, mut events, mut peer, handle, t0 } = open(side, heartbeat_config()).await;
        // The peer says nothing. It hears heartbeats at 1 s and 2 s, then the close at 2.5 s.
        peer.expect(Frame::Heartbeat).await;
        assert_eq!(t0.elapsed(), INTERVAL);
        peer.expect(Frame::Heartbeat).await;
        assert_eq!(t0.elapsed(), INTERVAL * 2);
        assert_eq!(peer.next().await, None, "{side}: expected the connection to be closed");
        assert_eq!(t0.elapsed(), TIMEOUT);
        assert_eq!(disconnected(&mut events).await, DisconnectReason::HeartbeatTimeout);
        assert_eq!(t0.elapsed(), TIMEOUT);
        // A served stream is not reconnected.
        no_event_queued(&mut events);
        assert!(handle.is_closed());
        assert!(parts.transport.peer_table().is_empty());
        parts.transport.close().await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_peers_heartbeats_keep_the_connection_up_until_they_stop() {
    let Open { parts, mut events, mut peer, t0, .. } = open(Side::Bind, heartbeat_config()).await;
    // Just inside the timeout, five times over: 12 s with no disconnect.
    let step = Duration::from_millis(2400);
    for _ in 0..5 {
        sleep(step).await;
        peer.send(Frame::Heartbeat).await;
    }
    let last = Instant::now();
    assert_eq!(last - t0, step * 5);
    no_event_queued(&mut events);
    assert_eq!(parts.transport.peer_table().len(), 1);
    assert_eq!(disconnected(&mut events).await, DisconnectReason::HeartbeatTimeout);
    assert_eq!(last.elapsed(), TIMEOUT);
    // Everything it sent meanwhile was heartbeats, one per interval of idleness.
    let mut heartbeats = 0;
    while let Some(frame) = peer.next().await {
        assert_eq!(frame, Frame::Heartbeat);
        heartbeats += 1;
    }
    assert_eq!(heartbeats, 14, "one per second for 14.5 s");
    parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_duplex_peer_is_refused_at_the_handshake_timeout() {
    let mut config = heartbeat_config();
    config.handshake_timeout = Duration::from_millis(700);
    for side in [Side::Connect, Side::Bind] {
        let parts = transport(config.clone());
        let mut events = parts.transport.events();
        let (ours, theirs) = tokio::io::duplex(1024);
        let started = Instant::now();
        parts.transport.serve(ours, side, "memory").unwrap();
        let mut peer = MemPeer::new(theirs);
        if side == Side::Connect {
            peer.expect(Frame::hello(parts.transport.identity())).await;
        }
        assert_eq!(peer.next().await, None);
        assert_eq!(started.elapsed(), Duration::from_millis(700), "{side}");
        assert_eq!(
            any_event(&mut events).await,
            Event::HandshakeRefused { addr: "memory".into(), reason: RefusedReason::Timeout }
        );
        parts.transport.close().await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_heartbeat_counts_from_the_hello_we_sent() {
    // The bind end answers once it has read the peer's whole HELLO; the
    // peer then waits 600 ms before its first frame. The HELLO was a frame
    // sent, so the first heartbeat is due one interval after it.
    let parts = transport(heartbeat_config());
    let (ours, theirs) = tokio::io::duplex(1024);
    parts.transport.serve(ours, Side::Bind, "memory").unwrap();
    let (read, mut write) = tokio::io::split(theirs);
    let mut reader = tokio_util::codec::FramedRead::new(read, smartsock_framing::Codec::new());
    let hello_bytes = hello(*PEER.as_bytes());
    tokio::io::AsyncWriteExt::write_all(&mut write, &hello_bytes[..1]).await.unwrap();
    sleep(Duration::from_millis(600)).await;
    tokio::io::AsyncWriteExt::write_all(&mut write, &hello_bytes[1..]).await.unwrap();
    let frame = within("HELLO", futures::StreamExt::next(&mut reader)).await.unwrap().unwrap();
    assert_eq!(frame, Frame::hello(parts.transport.identity()));
    let hello_sent = Instant::now();
    let frame = within("heartbeat", futures::StreamExt::next(&mut reader)).await.unwrap().unwrap();
    assert_eq!(frame, Frame::Heartbeat);
    assert_eq!(hello_sent.elapsed(), INTERVAL);
    parts.transport.close().await;
}
