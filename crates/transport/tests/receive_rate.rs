//! Liveness inside a frame: the bytes of a frame still arriving count as
//! life as long as the frame keeps up `min_receive_rate` (with one heartbeat
//! timeout of slack), to the millisecond: paused tokio time over an
//! in-memory duplex, the test writing the frame's bytes by hand.

mod common;

use std::time::Duration;

use common::*;
use smartsock_transport::{DisconnectReason, Event, PeerId, Side, TransportConfig, TransportParts};
use tokio::io::{AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::time::{Instant, sleep, sleep_until};

const INTERVAL: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_millis(2500);
/// One byte a millisecond, so that every deadline falls on a whole
/// millisecond (tokio's timer resolution).
const RATE: u64 = 1000;
const PEER: PeerId = PeerId::from_bytes([0x17; 16]);

fn rate_config() -> TransportConfig {
    let mut config = config();
    config.heartbeat_interval = INTERVAL;
    config.heartbeat_timeout = TIMEOUT;
    config.min_receive_rate = RATE;
    config
}

struct Open {
    parts: TransportParts,
    events: smartsock_transport::Events,
    /// The peer's writing end; what the transport writes is never read
    /// (a few heartbeats fit the duplex's buffer).
    wire: WriteHalf<DuplexStream>,
    _read: tokio::io::ReadHalf<DuplexStream>,
}

/// A connection on the bind side, its handshake done by hand.
async fn open(config: TransportConfig) -> Open {
    let parts = transport(config);
    let mut events = parts.transport.events();
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    parts.transport.serve(ours, Side::Bind, "memory").unwrap();
    let (read, mut wire) = tokio::io::split(theirs);
    wire.write_all(&hello(*PEER.as_bytes())).await.unwrap();
    next_event(&mut events, "PeerConnected", |e| matches!(e, Event::PeerConnected { .. }).then_some(()))
        .await;
    Open { parts, events, wire, _read: read }
}

async fn disconnected(events: &mut smartsock_transport::Events) -> DisconnectReason {
    next_event(events, "PeerDisconnected", |e| match e {
        Event::PeerDisconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await
}

/// The first bytes of a DATA frame of `envelope` bytes: its length and type.
fn data_header(envelope: usize) -> Vec<u8> {
    header(u32::try_from(envelope).unwrap(), 0x03)
}

#[tokio::test(start_paused = true)]
async fn a_frame_dripped_below_the_minimum_rate_is_cut_at_the_timeout_plus_its_bytes_at_that_rate() {
    let Open { parts, mut events, mut wire, .. } = open(rate_config()).await;
    let t0 = Instant::now();
    // The length prefix, then a byte a second: 6 bytes by 2 s, earning 6 ms.
    wire.write_all(&header(10_000, 0x03)[..4]).await.unwrap();
    for at in [1, 2] {
        sleep_until(t0 + Duration::from_secs(at)).await;
        wire.write_all(&[0x03]).await.unwrap();
    }
    assert_eq!(disconnected(&mut events).await, DisconnectReason::TooSlow);
    assert_eq!(t0.elapsed(), TIMEOUT + Duration::from_millis(6));
    assert!(parts.inbound.is_empty());
    parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_byte_just_inside_the_frames_deadline_keeps_it_alive() {
    let Open { parts, mut events, mut wire, .. } = open(rate_config()).await;
    let t0 = Instant::now();
    // 5 bytes, and a sixth at 2 s (so the peer is not silent): they earn
    // 6 ms, the deadline is 2.506 s. A byte at 2.505 s is in time and moves
    // it to 2.507 s; nothing more comes, so it is cut there.
    wire.write_all(&data_header(10_000)).await.unwrap();
    sleep_until(t0 + Duration::from_secs(2)).await;
    wire.write_all(&[0xAA]).await.unwrap();
    sleep_until(t0 + TIMEOUT + Duration::from_millis(5)).await;
    wire.write_all(&[0xAA]).await.unwrap();
    sleep_until(t0 + TIMEOUT + Duration::from_millis(6)).await;
    assert_eq!(parts.transport.peer_table().len(), 1, "cut although its byte came in time");
    assert_eq!(disconnected(&mut events).await, DisconnectReason::TooSlow);
    assert_eq!(t0.elapsed(), TIMEOUT + Duration::from_millis(7));
    parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_frame_at_exactly_the_minimum_rate_arrives_however_long_it_takes() {
    let Open { parts, mut events, mut wire, .. } = open(rate_config()).await;
    // 20,000 bytes at 1,000 bytes/s: 20 s, eight heartbeat timeouts.
    let envelope = 20_000 - 4;
    let mut bytes = data_header(envelope);
    bytes.extend(pattern(envelope - 1, 7));
    let t0 = Instant::now();
    let chunk = 250;
    for (i, piece) in bytes.chunks(chunk).enumerate() {
        sleep_until(t0 + Duration::from_millis((i * chunk) as u64)).await;
        wire.write_all(piece).await.unwrap();
    }
    let message = within("the slow frame", parts.inbound.recv()).await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_millis(19_750));
    assert_eq!(&message.payload[..], &pattern(envelope - 1, 7)[..]);
    no_event_queued(&mut events);
    assert_eq!(parts.transport.peer_table().len(), 1);
    parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_frame_that_stops_arriving_is_cut_for_silence_one_timeout_after_its_last_byte() {
    let Open { parts, mut events, mut wire, .. } = open(rate_config()).await;
    // Half of a frame at once (it earns 5 s at the minimum rate), then
    // nothing: silence, not the rate, is what ends it.
    let t0 = Instant::now();
    let mut bytes = data_header(10_000);
    bytes.extend(pattern(4_995, 1));
    wire.write_all(&bytes).await.unwrap();
    assert_eq!(disconnected(&mut events).await, DisconnectReason::HeartbeatTimeout);
    assert_eq!(t0.elapsed(), TIMEOUT);
    parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn with_the_defaults_a_16_mib_frame_at_1_mib_per_second_arrives_and_a_4_second_drip_is_cut_at_15_s() {
    const MIB: usize = 1024 * 1024;
    // The defaults: 15 s heartbeat timeout, 64 KiB/s. The frame takes 16 s,
    // longer than the timeout (which used to cut it at 15 s).
    let defaults = TransportConfig::default();
    let Open { parts, mut events, mut wire, .. } = open(defaults.clone()).await;
    let envelope = 16 * MIB;
    let t0 = Instant::now();
    wire.write_all(&data_header(envelope)).await.unwrap();
    let piece = vec![0x5A; 64 * 1024];
    let mut left = envelope - 1;
    let mut i = 0u64;
    while left > 0 {
        i += 1;
        // 64 KiB every 62.5 ms: 1 MiB/s.
        sleep_until(t0 + Duration::from_micros(62_500 * i)).await;
        let n = left.min(piece.len());
        wire.write_all(&piece[..n]).await.unwrap();
        left -= n;
    }
    let message = within("the 16 MiB frame", parts.inbound.recv()).await.unwrap();
    assert_eq!(message.payload.len(), envelope - 1);
    assert!(t0.elapsed() >= Duration::from_secs(16));
    no_event_queued(&mut events);
    drop(message);
    parts.transport.close().await;

    // The probe from the issue: a byte every 4 s. 4 bytes by 12 s earn
    // 61 µs at 64 KiB/s: cut at 15.0 s (the timer's millisecond rounds up).
    let Open { parts, mut events, mut wire, .. } = open(defaults).await;
    let t0 = Instant::now();
    for (at, byte) in [(0, 0u8), (4, 0), (8, 0x01), (12, 0x00)] {
        sleep_until(t0 + Duration::from_secs(at)).await;
        wire.write_all(&[byte]).await.unwrap();
    }
    assert_eq!(disconnected(&mut events).await, DisconnectReason::TooSlow);
    let cut = t0.elapsed();
    assert!(cut > Duration::from_secs(15) && cut <= Duration::from_millis(15_001), "cut after {cut:?}");
    parts.transport.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_rate_of_zero_is_refused_and_heartbeats_between_frames_count_as_ever() {
    let mut config = rate_config();
    config.min_receive_rate = 0;
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("min_receive_rate"), "{error}");
    config.min_receive_rate = 1;
    assert!(config.validate().is_ok());
    // Heartbeat frames between frames still count as ever: a connection
    // that only hears HEARTBEATs stays up.
    let Open { parts, mut events, mut wire, .. } = open(rate_config()).await;
    for _ in 0..5 {
        sleep(TIMEOUT - Duration::from_millis(1)).await;
        wire.write_all(&header(1, 0x02)).await.unwrap();
    }
    no_event_queued(&mut events);
    parts.transport.close().await;
}
