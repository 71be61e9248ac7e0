//! No task and no file descriptor outlives the connections that used it.
//! Alone in its own test binary, so that no other test opens descriptors
//! or spawns tasks meanwhile.

mod common;

use std::time::Duration;

use common::*;
use smartsock_transport::{Event, Frame, Outgoing, ReconnectStrategy, RefusedReason};

const CYCLES: usize = 200;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// Waits (bounded) until `measure` falls to at most `target`, returning its last value.
async fn settle(target: usize, measure: impl Fn() -> usize) -> usize {
    for _ in 0..1000 {
        if measure() <= target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    measure()
}

#[tokio::test]
async fn connect_and_close_200_times_without_leaking_tasks_or_descriptors() {
    let mut server_config = config();
    server_config.handshake_timeout = Duration::from_millis(100);
    let server = transport(server_config);
    let _server_id = server.transport.identity();
    let mut server_events = server.transport.events();
    let addr = server.transport.bind("127.0.0.1:0").await.unwrap().to_string();

    let tasks_before = alive_tasks();
    let fds_before = open_fds();

    for cycle in 0..CYCLES {
        let mut client_config = config();
        client_config.reconnect = ReconnectStrategy::fixed(Duration::from_millis(5));
        let client = transport(client_config);
        client.transport.connect(&addr).unwrap();
        let handle = wait_peer_count(&client.transport, 1).await[0].clone();
        handle.try_send(Outgoing::to_any_peer(Frame::Data(vec![cycle as u8].into()))).unwrap();
        let message = within("a message", server.inbound.recv()).await.unwrap();
        assert_eq!((message.peer, &message.payload[..]), (client.transport.identity(), &[cycle as u8][..]));

        if cycle % 10 == 0 {
            // Also: a short-lived bind end of its own, closed under a
            // connected client that then keeps reconnecting until closed.
            let other = transport(config());
            let mut events = client.transport.events();
            let other_addr = other.transport.bind("127.0.0.1:0").await.unwrap().tcp().unwrap();
            client.transport.connect(&other_addr.to_string()).unwrap();
            wait_peer_count(&client.transport, 2).await;
            other.transport.close().await;
            next_event(&mut events, "Reconnecting", |e| {
                matches!(e, Event::Reconnecting { .. }).then_some(())
            })
            .await;
        }
        if cycle % 20 == 5 {
            // Connections that never become peers: a refused HELLO and a
            // silent peer timed out, both closed by the server.
            let mut refused = RawPeer::connect(addr.as_str(), [0xEE; 16]).await;
            refused.write(&hello_v(2, [0xEE; 16])).await;
            refused.expect_closed().await;
            let mut silent = RawPeer::connect(addr.as_str(), [0xEF; 16]).await;
            silent.expect_closed().await;
            for expected in [RefusedReason::Version(2), RefusedReason::Timeout] {
                let reason = next_event(&mut server_events, "HandshakeRefused", |e| match e {
                    Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
                    _ => None,
                })
                .await;
                assert_eq!(reason, expected);
            }
        }
        within("client close", client.transport.close()).await;
        drop(client);
        drop(handle);
    }
    wait_peer_count(&server.transport, 0).await;

    let tasks_after = settle(tasks_before, alive_tasks).await;
    assert_eq!(tasks_after, tasks_before, "tasks alive before and after {CYCLES} cycles");
    let fds_after = settle(fds_before, open_fds).await;
    assert!(
        fds_after <= fds_before + 2,
        "{fds_before} descriptors before, {fds_after} after {CYCLES} cycles"
    );
    server.transport.close().await;
    let tasks_closed = settle(tasks_before - 1, alive_tasks).await;
    assert_eq!(tasks_closed, tasks_before - 1, "the server's accept loop is gone");
}
