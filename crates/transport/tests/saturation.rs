//! A connection whose writer never finds its outbox empty still reads: the
//! writer and the reader share the connection's task, and the reader runs
//! only while the writer waits or yields.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use smartsock_transport::{Frame, Outgoing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_never_runs_dry_still_lets_its_connection_read() {
    let (a, b) = (transport(config()), transport(config()));
    let addr = b.transport.bind("127.0.0.1:0").await.unwrap().to_string();
    a.transport.connect(&addr).unwrap();
    let to_b = wait_peer_count(&a.transport, 1).await[0].clone();
    let to_a = wait_peer_count(&b.transport, 1).await[0].clone();

    // B takes everything A sends as fast as it comes, so that A's writes
    // seldom wait for the socket.
    let b_inbound = b.inbound.clone();
    let drain = tokio::spawn(async move { while b_inbound.recv().await.is_ok() {} });

    // A thread keeps A's outbox from running dry: its writer finds the next
    // batch waiting after every write.
    let stop = Arc::new(AtomicBool::new(false));
    // Each batch is at least 32 KiB, which the writer takes without giving
    // senders a turn to add to it (its gathering yields are not in play).
    let payload = bytes::Bytes::from(vec![7; 32 * 1024]);
    let pusher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + 2 * WAIT;
            let mut pushed = 0u64;
            while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                for _ in 0..256 {
                    pushed += u64::from(
                        to_b.try_send(Outgoing::to_this_peer(Frame::Data(payload.clone()))).is_ok(),
                    );
                }
            }
            pushed
        })
    };

    // Meanwhile B sends A a message at a time: each reaches A's
    // application while the stream goes on.
    for n in 0..20u8 {
        to_a.try_send(Outgoing::to_this_peer(Frame::Data(vec![n].into()))).unwrap();
        let got = within("B's message, read while A's writer is busy", a.inbound.recv()).await.unwrap();
        assert_eq!(got.payload[..], [n]);
        assert!(!pusher.is_finished(), "the stream was still going");
    }
    stop.store(true, Ordering::Relaxed);
    assert!(pusher.join().unwrap() > 0);
    a.transport.close().await;
    b.transport.close().await;
    drain.await.unwrap();
}
