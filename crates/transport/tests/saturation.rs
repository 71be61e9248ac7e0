//! A connection whose writer never finds its outbox empty still reads: the
//! writer and the reader share the connection's task, and the reader runs
//! only while the writer waits or yields.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use smartsock_testkit::WriteSink;
use smartsock_transport::{Frame, Outgoing, PeerId, Side};

const WRITE_TAKES: Duration = Duration::from_millis(1);
/// For all of the peer's 20 messages to be read, while the writer is busy.
const READ_WITHIN: Duration = Duration::from_secs(5);

fn busy() {
    let until = std::time::Instant::now() + WRITE_TAKES;
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_never_runs_dry_still_lets_its_connection_read() {
    let parts = transport(config());
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    // Our end reads what the test's peer writes, and takes every write
    // whole after a short busy wait, so the writer never waits for it (nor
    // for the runtime's budget, which it does not use), and a sender on
    // another thread refills the outbox during each write.
    let busy_stream = tokio::io::join(ours, WriteSink::new(busy));
    parts.transport.serve(busy_stream, Side::Bind, "memory").unwrap();
    // The test is the peer; what we write it never sees.
    let mut peer = MemPeer::new(theirs);
    peer.send(Frame::hello(PeerId::from_bytes([0x42; 16]))).await;
    let to_peer = wait_peer_count(&parts.transport, 1).await[0].clone();

    // A thread keeps the outbox from running dry. Each batch is at least
    // 32 KiB, which the writer takes without giving senders a turn to add
    // to it, so its gathering yields are not in play either.
    let stop = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(AtomicU64::new(0));
    let payload = bytes::Bytes::from(vec![7; 32 * 1024]);
    let pusher = {
        let (stop, pushed) = (stop.clone(), pushed.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + 2 * WAIT;
            while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                if to_peer.try_send(Outgoing::to_this_peer(Frame::Data(payload.clone()))).is_ok() {
                    pushed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    within("the stream to start", async {
        while pushed.load(Ordering::Relaxed) < 1000 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let before = pushed.load(Ordering::Relaxed);

    // Meanwhile the peer sends a message at a time: each reaches the
    // application while the stream goes on. The reader gets a turn every
    // few writes, so the 20 take well under a second; the bound is
    // generous. (A writer that never yielded let them through only when
    // the sending thread was preempted for longer than a write: it ran
    // past this bound in 4 runs of 4.)
    let exchange = async {
        for n in 0..20u8 {
            peer.send(Frame::Data(vec![n].into())).await;
            let got = parts.inbound.recv().await.unwrap();
            assert_eq!(got.payload[..], [n]);
            assert!(!pusher.is_finished(), "the stream was still going");
        }
    };
    tokio::time::timeout(READ_WITHIN, exchange)
        .await
        .expect("the peer's messages read while the writer is busy");
    // The stream was not stalled for good: pushes go on (waited for, not
    // sampled at once: on a loaded machine the pushing thread can be off
    // the CPU for the whole exchange, and a full outbox of 1 MiB takes
    // only 32 of these frames, so pushes come in bursts a write apart).
    within("the stream to go on", async {
        while pushed.load(Ordering::Relaxed) <= before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    pusher.join().unwrap();
    // The peer's end closes ours: the close has nothing to wait for.
    drop(peer);
    parts.transport.close().await;
}
