//! Publish to three subscribers, one of whose links stalls: the other two
//! get every message at the publisher's pace, and the stalled one's drops
//! are counted exactly (what it got + what was dropped for it = all).

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use smartsock::SendMode;
use smartsock_faults::{Figures, HEARTBEAT_INTERVAL, Ledger, Receiver, payload};
use smartsock_testkit::{Fault, FaultProxy, Trigger, WAIT, within};

const SUBSCRIBERS: usize = 3;
const STALLED: usize = 2;
const MESSAGES: usize = 6000;
/// 4 KiB: 24 MB in all, more than the kernel's socket buffers on both sides
/// of the stalled proxy hold, so the stalled subscriber's queue fills.
const MESSAGE_SIZE: usize = 4096;
/// The publisher's queue per subscriber: what a stalled one holds before
/// its copies are dropped.
const PEER_QUEUE: usize = 256;
/// Batches of 50 every 10 ms: about 5,000 messages a second, well within
/// what a live subscriber takes, so a live one never fills up.
const BATCH: usize = 50;

/// Liveness long enough that the stall (about 1.2 s) does not end the
/// connection: the drops, not a disconnect, are under test.
fn patient() -> smartsock::SocketBuilder {
    smartsock::Socket::builder().heartbeat(HEARTBEAT_INTERVAL, Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_costs_the_others_nothing() {
    let started = Instant::now();
    let publisher = patient().send_mode(SendMode::Publish).peer_queue(PEER_QUEUE).build().expect("publisher");
    let addr = publisher.bind("127.0.0.1:0").await.expect("bind").tcp().expect("TCP");
    // One ledger per subscriber: each must get each message at most once.
    let ledgers: Vec<_> = (0..SUBSCRIBERS).map(|_| Ledger::new(MESSAGES, 1, true)).collect();
    let got = || ledgers.iter().map(|l| l.deliveries()).collect::<Vec<_>>();
    let mut subscribers = Vec::new();
    let mut proxies = Vec::new();
    for ledger in &ledgers {
        let proxy = FaultProxy::start(addr).await.expect("proxy");
        // A subscriber connects; the port it binds (0, any) is unused.
        let sub = Receiver::start(patient(), "127.0.0.1:0", 0, ledger.clone()).await;
        sub.socket.connect(&proxy.addr().to_string()).expect("connect");
        subscribers.push(sub);
        proxies.push(proxy);
    }
    assert!(within("3 subscribers", publisher.wait_for_peers(SUBSCRIBERS)).await);
    proxies[STALLED].arm(Fault::Stall, Trigger::Now);

    let publishing = Instant::now();
    for batch in 0..MESSAGES / BATCH {
        for i in batch * BATCH..(batch + 1) * BATCH {
            publisher.send(payload(i as u32, MESSAGE_SIZE)).await.expect("publish");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let published_in = publishing.elapsed();
    let live_done = within("the live subscribers to get everything", async {
        smartsock_testkit::eventually("live subscribers complete", WAIT, Duration::from_millis(2), || {
            let got = got();
            (0..SUBSCRIBERS).filter(|&s| s != STALLED).all(|s| got[s] == MESSAGES as u64)
        })
        .await;
        publishing.elapsed()
    })
    .await;

    let stalled_id = subscribers[STALLED].socket.identity();
    let dropped = publisher
        .stats()
        .peer(stalled_id)
        .expect("the stalled subscriber is still connected")
        .traffic
        .dropped;
    proxies[STALLED].heal();
    let expected = MESSAGES as u64 - dropped;
    smartsock_testkit::eventually(
        "the stalled subscriber to catch up",
        WAIT,
        Duration::from_millis(5),
        || ledgers[STALLED].deliveries() >= expected,
    )
    .await;
    // Nothing more trickles in after the queue drained.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = got();
    let duplicates: u64 = ledgers.iter().map(|l| l.duplicates()).sum();
    let stats = publisher.stats();
    let drops_of = |s: usize| stats.peer(subscribers[s].socket.identity()).map_or(0, |p| p.traffic.dropped);
    let figures = Figures {
        scenario: "publish_stalled_subscriber",
        messages: MESSAGES as u64,
        faults: proxies.iter().map(|p| p.stats().faults() as u64).sum(),
        lost: 0,
        duplicates,
        given_up: 0,
        elapsed: started.elapsed(),
        extra: format!(
            "published_in={published_in:?} live_complete_after={live_done:?} stalled_got={} stalled_dropped={dropped} \
             slow_subscriber_drops={} per_subscriber={got:?}",
            got[STALLED],
            publisher.slow_subscriber_drops()
        ),
    };
    println!("{figures}");
    for s in (0..SUBSCRIBERS).filter(|&s| s != STALLED) {
        assert_eq!(got[s], MESSAGES as u64, "live subscriber {s} missed messages");
        assert_eq!(drops_of(s), 0, "copies dropped for live subscriber {s}");
        let order = ledgers[s].order(0);
        assert!(order.windows(2).all(|w| w[0] + 1 == w[1]), "subscriber {s} got a gap or a repeat");
    }
    assert!(dropped > 0, "the stalled subscriber never filled up");
    assert_eq!(got[STALLED] + dropped, MESSAGES as u64, "the stalled subscriber's drops are not exact");
    assert_eq!(publisher.slow_subscriber_drops(), dropped, "drops counted against another subscriber");
    assert_eq!(duplicates, 0);
    // The live ones kept the publisher's pace: done within a second of the last publish.
    assert!(live_done <= published_in + Duration::from_secs(1), "live subscribers lagged: {live_done:?}");

    within("the publisher to close", publisher.close()).await;
    for sub in subscribers {
        within("a subscriber to close", sub.stop()).await;
    }
}
