//! The writer's turns for the connection's reader, counted exactly: the
//! writer's future is polled by hand over a stream that refills the outbox
//! on every write, so that the writer finds the next batch waiting each
//! time (see `READER_TURN_AFTER` in writer.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;

use bytes::Bytes;
use smartsock_framing::{Frame, PeerId};
use smartsock_testkit::WriteSink;

use crate::outbox::Outbox;
use crate::stats::PeerCounters;
use crate::writer::{READER_TURN_AFTER, WriteLedger, write_loop};
use crate::{Side, Transport, TransportConfig};

fn frame() -> Frame {
    Frame::Data(Bytes::from_static(b"more"))
}

// Paused time: the heartbeat never comes due while the test polls.
#[tokio::test(start_paused = true)]
async fn the_writer_yields_after_exactly_its_count_of_writes_in_a_row_and_counts_again_after_parking() {
    let parts = Transport::new(TransportConfig::default()).unwrap();
    let shared = parts.transport.shared.clone();
    let outbox = Arc::new(Outbox::new(16, 1 << 20, 16, 1 << 24));
    let writes = Arc::new(AtomicUsize::new(0));
    let refill = Arc::new(AtomicBool::new(true));
    // Takes every write whole and counts it; while `refill` is set, each
    // write queues one more frame.
    let mut stream = WriteSink::new({
        let (outbox, writes, refill) = (outbox.clone(), writes.clone(), refill.clone());
        move || {
            writes.fetch_add(1, Ordering::SeqCst);
            if refill.load(Ordering::SeqCst) {
                outbox.try_push_frame(&frame(), true).expect("room in the outbox");
            }
        }
    });
    let id = PeerId::from_bytes([9; 16]);
    let counters = PeerCounters::new(id, "x".into(), Side::Bind, Arc::default());
    let mut ledger = WriteLedger::default();
    outbox.try_push_frame(&frame(), true).unwrap();
    let start = tokio::time::Instant::now();
    let mut writer = Box::pin(write_loop(&shared, &mut stream, &outbox, &counters, &mut ledger, start));
    // One poll of the writer: it runs until it yields or parks.
    let mut turn = async || {
        let polled = std::future::poll_fn(|cx| Poll::Ready(writer.as_mut().poll(cx))).await;
        assert!(polled.is_pending(), "the writer runs on");
        writes.load(Ordering::SeqCst)
    };
    let every = READER_TURN_AFTER as usize;

    // Each write found the next batch waiting: a yield after exactly
    // `every` of them, each time.
    assert_eq!(turn().await, every);
    assert_eq!(turn().await, 2 * every);

    // The next write finds nothing after it: the writer parks...
    refill.store(false, Ordering::SeqCst);
    assert_eq!(turn().await, 2 * every + 1);
    // ...and counts from nothing again once woken.
    refill.store(true, Ordering::SeqCst);
    outbox.try_push_frame(&frame(), true).unwrap();
    assert_eq!(turn().await, 3 * every + 1);

    drop(writer);
    parts.transport.close().await;
}
