//! The fault proxy over real loopback sockets: each fault does exactly what
//! it says, at exactly the byte its trigger names.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use smartsock_testkit::wire::{HEARTBEAT, data};
use smartsock_testkit::{Direction, Fault, FaultProxy, Trigger, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server, a proxy in front of it, and a client connected through it:
/// (client, the server's end, proxy).
async fn through_proxy() -> (TcpStream, TcpStream, FaultProxy) {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = FaultProxy::start(server.local_addr().unwrap()).await.unwrap();
    let client = TcpStream::connect(proxy.addr()).await.unwrap();
    let (accepted, _) = within("the proxied connection", server.accept()).await.unwrap();
    proxy.wait_until("the connection to be live", |s| s.live == 1).await;
    (client, accepted, proxy)
}

/// Reads until the stream ends: the bytes, and whether it ended in a reset.
async fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    within("the stream to end", async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return (got, false),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, true),
                Err(e) => panic!("read failed: {e}"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn bytes_pass_both_ways_and_are_counted_in_frames() {
    let (mut client, mut server, proxy) = through_proxy().await;
    let up = [data(b"hello"), HEARTBEAT.to_vec()].concat();
    client.write_all(&up).await.unwrap();
    let mut got = vec![0; up.len()];
    within("the bytes upstream", server.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, up);
    server.write_all(&HEARTBEAT).await.unwrap();
    let mut back = [0u8; 5];
    within("the bytes downstream", client.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, HEARTBEAT);
    let stats = proxy.stats();
    assert_eq!(stats.bytes, [up.len() as u64, 5]);
    assert_eq!(stats.frames, [2, 1]);
    assert_eq!(stats.connections, 1);
}

#[tokio::test]
async fn reset_after_k_frames_sends_rst_both_ways_at_the_boundary() {
    let (mut client, mut server, proxy) = through_proxy().await;
    proxy.arm(Fault::Reset, Trigger::AfterFrames(Direction::Up, 2));
    let frames = [data(b"one"), data(b"two"), data(b"three")].concat();
    client.write_all(&frames).await.unwrap();
    let (got, reset) = read_to_end(&mut server).await;
    assert_eq!(got, [data(b"one"), data(b"two")].concat(), "exactly two frames, not a byte more");
    assert!(reset, "the server end got a RST, not a FIN");
    let (back, client_reset) = read_to_end(&mut client).await;
    assert!(back.is_empty());
    assert!(client_reset, "the client end got a RST, not a FIN");
    assert_eq!(proxy.stats().fired, vec![Fault::Reset]);
}

#[tokio::test]
async fn close_inside_a_frame_ends_the_stream_at_that_byte() {
    let (mut client, mut server, proxy) = through_proxy().await;
    proxy.arm(Fault::Close, Trigger::InsideFrame(Direction::Up, 1, 3));
    let frames = [data(b"first"), data(b"second")].concat();
    client.write_all(&frames).await.unwrap();
    let (got, reset) = read_to_end(&mut server).await;
    let first = data(b"first");
    assert_eq!(got.len(), first.len() + 3, "the cut is 3 bytes into the second frame");
    assert_eq!(&got[..first.len()], &first[..]);
    assert!(!reset, "a clean FIN");
}

#[tokio::test]
async fn a_stall_holds_everything_until_healed_and_loses_nothing() {
    let (mut client, mut server, proxy) = through_proxy().await;
    proxy.arm(Fault::Stall, Trigger::AfterBytes(Direction::Up, 4));
    client.write_all(&data(b"stalled")).await.unwrap();
    let mut head = [0u8; 4];
    within("the bytes before the stall", server.read_exact(&mut head)).await.unwrap();
    let mut more = [0u8; 1];
    let quiet = tokio::time::timeout(Duration::from_millis(300), server.read(&mut more)).await;
    assert!(quiet.is_err(), "a byte got through the stall: {quiet:?}");
    // The other direction is stalled as well.
    server.write_all(&HEARTBEAT).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(100), client.read(&mut more)).await;
    assert!(quiet.is_err(), "a byte got back through the stall");
    proxy.heal();
    let mut rest = vec![0u8; data(b"stalled").len() - 4];
    within("the rest after healing", server.read_exact(&mut rest)).await.unwrap();
    assert_eq!([&head[..], &rest[..]].concat(), data(b"stalled"));
    let mut back = [0u8; 5];
    within("the held heartbeat", client.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, HEARTBEAT);
}

#[tokio::test]
async fn drop_makes_the_next_bytes_vanish() {
    let (mut client, mut server, proxy) = through_proxy().await;
    proxy.arm(Fault::Drop(3), Trigger::AfterBytes(Direction::Up, 2));
    client.write_all(b"abcdefgh").await.unwrap();
    let mut got = [0u8; 5];
    within("what is left", server.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"abfgh");
    assert_eq!(proxy.stats().dropped, [3, 0]);
}

#[tokio::test]
async fn throttle_caps_the_rate() {
    let (mut client, mut server, proxy) = through_proxy().await;
    proxy.arm(Fault::Throttle(50_000), Trigger::Now);
    let bytes = vec![7u8; 25_000];
    let started = Instant::now();
    client.write_all(&bytes).await.unwrap();
    let mut got = vec![0u8; bytes.len()];
    within("the throttled bytes", server.read_exact(&mut got)).await.unwrap();
    let took = started.elapsed();
    // 25 kB at 50 kB/s: half a second, less the first slice's head start.
    assert!(took >= Duration::from_millis(450), "25 kB at 50 kB/s took only {took:?}");
    assert_eq!(got, bytes);
}

#[tokio::test]
async fn delay_holds_each_chunk() {
    let (mut client, mut server, proxy) = through_proxy().await;
    proxy.arm(Fault::Delay(Duration::from_millis(200)), Trigger::Now);
    let started = Instant::now();
    client.write_all(&HEARTBEAT).await.unwrap();
    let mut got = [0u8; 5];
    within("the delayed bytes", server.read_exact(&mut got)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200), "arrived after {:?}", started.elapsed());
}

#[tokio::test]
async fn while_refusing_new_connections_are_reset_and_upstream_can_move() {
    let (_client, _server, proxy) = through_proxy().await;
    proxy.set_refusing(true);
    let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
    let (got, reset) = read_to_end(&mut refused).await;
    assert!(got.is_empty() && reset, "a refused connection is reset");
    assert_eq!(proxy.stats().refused, 1);
    // A restarted server elsewhere: new connections go there.
    let moved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    proxy.set_upstream(moved.local_addr().unwrap());
    proxy.heal();
    let _again = TcpStream::connect(proxy.addr()).await.unwrap();
    within("a connection at the new upstream", moved.accept()).await.unwrap();
}
