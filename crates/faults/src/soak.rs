//! The soak (`cargo xtask soak`): every send pattern at once, each through
//! fault proxies under a seeded fault schedule, round after round with
//! fresh sockets, checking after each round that
//!
//! - at-least-once (round-robin, least-loaded, by identity) lost nothing
//!   and gave nothing up;
//! - publish dropped, for its stalled subscriber only, exactly what that
//!   one did not get;
//!
//! and at the end that the process's open fds and the runtime's live tasks
//! are back to their baseline, and that resident memory stayed flat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use smartsock::{Delivery, SendMode};
use smartsock_testkit::{Direction, Fault, FaultProxy, Trigger, WAIT, eventually, within, within_for};
use tokio::sync::watch;

use crate::{Figures, Ledger, MESSAGE_SIZE, Receiver, Rig, Schedule, builder, payload, reliable_sender};

/// Messages a second each at-least-once pattern sends.
const RATE: usize = 2000;

/// One round: every pattern at once for `length`, faults drawn from `seed`.
/// Panics (the figures in the message) if a check fails.
pub async fn round(seed: u64, length: Duration) -> Vec<Figures> {
    let (rr, least, identity, publish) = tokio::join!(
        at_least_once(
            "soak_round_robin",
            reliable_sender().send_mode(SendMode::RoundRobin),
            3,
            false,
            seed,
            length
        ),
        at_least_once(
            "soak_least_loaded",
            reliable_sender().send_mode(SendMode::LeastLoaded),
            2,
            false,
            seed ^ 0xA5A5,
            length
        ),
        at_least_once("soak_by_identity", reliable_sender(), 1, true, seed ^ 0x5A5A, length),
        publish_stalled(length),
    );
    vec![rr, least, identity, publish]
}

/// Sends (paced at [`RATE`]) to `peers` receivers behind proxies while a
/// seeded schedule injects faults; then every message must arrive. With
/// `by_identity`, every message goes to the first receiver by its identity.
async fn at_least_once(
    scenario: &'static str,
    sender: smartsock::SocketBuilder,
    peers: usize,
    by_identity: bool,
    seed: u64,
    length: Duration,
) -> Figures {
    let capacity = RATE * (length.as_secs() as usize + 5);
    let started = Instant::now();
    let rig = Rig::new(peers, capacity, false, sender, builder).await;
    let to = by_identity.then(|| rig.identity(0));
    let (done_tx, done) = watch::channel(false);
    let send = paced(&rig.sender, to, MESSAGE_SIZE, capacity, done);
    let drive = async {
        let mut schedule = Schedule::new(seed);
        while started.elapsed() + Duration::from_secs(3) < length {
            inject(&mut schedule, &rig.proxies).await;
        }
        done_tx.send_replace(true);
    };
    let (sent, ()) = tokio::join!(send, drive);
    within_for("the sender to settle", Duration::from_secs(60), rig.sender.settled()).await;
    let delivery = rig.sender.stats().delivery.expect("at-least-once stats");
    let all = rig.ledger.wait_distinct(sent as u64, WAIT).await;
    let missing = rig.ledger.missing(sent);
    let figures = Figures {
        scenario,
        messages: sent as u64,
        faults: rig.faults() as u64,
        lost: missing.len() as u64,
        duplicates: rig.ledger.duplicates(),
        given_up: delivery.undelivered,
        elapsed: started.elapsed(),
        extra: format!("resent={}", delivery.resent),
    };
    assert!(all && missing.is_empty(), "{figures}\n{scenario}: lost {} messages", missing.len());
    assert_eq!(delivery.undelivered, 0, "{figures}\n{scenario}: messages given up");
    rig.shutdown().await;
    figures
}

/// Sends `0..` (of `size` bytes) paced at [`RATE`] (to `to` by identity if
/// given) until `done` or `capacity`; returns how many. A send by identity to a peer that is
/// reconnecting fails at once: it is tried again once the peer is back.
async fn paced(
    sender: &smartsock::Socket,
    to: Option<smartsock::PeerId>,
    size: usize,
    capacity: usize,
    mut done: watch::Receiver<bool>,
) -> usize {
    let mut sent = 0;
    let batch = RATE / 100;
    while !*done.borrow_and_update() && sent + batch <= capacity {
        for _ in 0..batch {
            let message = payload(sent as u32, size);
            match to {
                None => sender.send(message).await.expect("send"),
                Some(peer) => {
                    let mut tries = 0;
                    while let Err(e) = sender.send_to(peer, message.clone()).await {
                        tries += 1;
                        assert!(tries < 1000, "send_to kept failing: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sent
}

/// One step of the seeded fault mix on one of `proxies`: arm, wait for it
/// to fire (or skip it after 3 s), hold it, heal, let the link recover.
pub async fn inject(schedule: &mut Schedule, proxies: &[FaultProxy]) -> Option<&'static str> {
    let proxy = &proxies[schedule.range(0, proxies.len() as u64) as usize];
    let k = schedule.range(20, 200);
    let before = proxy.stats().faults();
    let (name, fault, trigger, hold) = match schedule.range(0, 8) {
        0 => ("reset", Fault::Reset, Trigger::AfterFrames(Direction::Up, k), 0),
        1 => ("reset_acks", Fault::Reset, Trigger::AfterFrames(Direction::Down, k / 4 + 1), 0),
        2 => ("cut", Fault::Close, Trigger::InsideFrame(Direction::Up, k, schedule.range(1, 20)), 0),
        3 => ("stall_long", Fault::Stall, Trigger::AfterFrames(Direction::Up, k), 1500),
        4 => ("stall_short", Fault::Stall, Trigger::Now, 300),
        5 => ("throttle", Fault::Throttle(20_000), Trigger::Now, 500),
        6 => ("delay", Fault::Delay(Duration::from_millis(20)), Trigger::Now, 500),
        _ => ("drop", Fault::Drop(schedule.range(1, 50)), Trigger::AfterFrames(Direction::Up, k), 1200),
    };
    proxy.arm(fault, trigger);
    let fired = tokio::time::timeout(Duration::from_secs(3), proxy.wait_fired(before + 1)).await.is_ok();
    if fired {
        tokio::time::sleep(Duration::from_millis(hold)).await;
    }
    proxy.heal();
    tokio::time::sleep(Duration::from_millis(300)).await;
    fired.then_some(name)
}

/// Publish (at-most-once) to two subscribers; one's link stalls for a
/// while in the middle: the other gets everything, the stalled one's
/// drops are exact.
async fn publish_stalled(length: Duration) -> Figures {
    let started = Instant::now();
    let patient = || builder().heartbeat(crate::HEARTBEAT_INTERVAL, Duration::from_secs(60));
    let capacity = RATE * (length.as_secs() as usize + 5);
    let publisher = patient().send_mode(SendMode::Publish).peer_queue(256).build().expect("publisher");
    let addr = publisher.bind("127.0.0.1:0").await.expect("bind").tcp().expect("TCP");
    // One ledger per subscriber: each must get each message at most once.
    let ledgers = [Ledger::new(capacity, 1, false), Ledger::new(capacity, 1, false)];
    let mut subs = Vec::new();
    let mut proxies = Vec::new();
    for ledger in &ledgers {
        let proxy = FaultProxy::start(addr).await.expect("proxy");
        let sub =
            Receiver::start(patient().delivery(Delivery::AtMostOnce), "127.0.0.1:0", 0, ledger.clone()).await;
        sub.socket.connect(&proxy.addr().to_string()).expect("connect");
        subs.push(sub);
        proxies.push(proxy);
    }
    assert!(within("2 subscribers", publisher.wait_for_peers(2)).await);
    let (done_tx, done) = watch::channel(false);
    // 2 KiB copies: a third of a round's worth is more than the kernel's
    // socket buffers around the stalled proxy hold, so its queue fills.
    let send = paced(&publisher, None, 2048, capacity, done);
    let drive = async {
        // Stall subscriber 1 for a third of the round, in the middle.
        tokio::time::sleep(length / 3).await;
        proxies[1].arm(Fault::Stall, Trigger::Now);
        tokio::time::sleep(length / 3).await;
        done_tx.send_replace(true);
    };
    let (sent, ()) = tokio::join!(send, drive);
    let live = ledgers[0].clone();
    eventually("the live subscriber to get everything", WAIT, Duration::from_millis(5), move || {
        live.deliveries() == sent as u64
    })
    .await;
    let stalled = subs[1].socket.identity();
    let dropped =
        publisher.stats().peer(stalled).expect("the stalled subscriber is connected").traffic.dropped;
    proxies[1].heal();
    let slow: Arc<Ledger> = ledgers[1].clone();
    eventually("the stalled subscriber to catch up", WAIT, Duration::from_millis(5), move || {
        slow.deliveries() >= sent as u64 - dropped
    })
    .await;
    let got = [ledgers[0].deliveries(), ledgers[1].deliveries()];
    let duplicates = ledgers[0].duplicates() + ledgers[1].duplicates();
    let figures = Figures {
        scenario: "soak_publish",
        messages: sent as u64,
        faults: 1,
        lost: dropped,
        duplicates,
        given_up: 0,
        elapsed: started.elapsed(),
        extra: format!("stalled_got={} stalled_dropped={dropped} live_got={}", got[1], got[0]),
    };
    assert_eq!(duplicates, 0, "{figures}\nsoak_publish: a subscriber got a message twice");
    assert_eq!(got[0], sent as u64, "{figures}\nsoak_publish: the live subscriber missed messages");
    assert_eq!(
        got[1] + dropped,
        sent as u64,
        "{figures}\nsoak_publish: the stalled subscriber's drops are not exact"
    );
    assert_eq!(
        publisher.slow_subscriber_drops(),
        dropped,
        "{figures}\nsoak_publish: drops for the live subscriber"
    );
    within("the publisher to close", publisher.close()).await;
    drop(proxies);
    for sub in subs {
        within("a subscriber to close", sub.stop()).await;
    }
    figures
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

/// Resident memory of this process, in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
