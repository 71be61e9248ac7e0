//! At-least-once, round-robin to three receivers, each behind a fault
//! proxy: each fault in turn, then a seeded mix. Every message arrives (0
//! lost), repeats are counted, nothing is given up; and where the test makes
//! delivery impossible, what is given up is handed back, all of it.

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use smartsock_faults::{
    Figures, HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, MESSAGE_SIZE, Rig, Schedule, builder, payload,
    reliable_sender, seed,
};
use smartsock_testkit::wire::seq;
use smartsock_testkit::{Direction, Fault, Trigger, WAIT, within, within_for};
use tokio::sync::watch;

const PEERS: usize = 3;
const MESSAGES: usize = 3000;
/// Frames towards receiver 0, counted from the moment the fault is armed,
/// after which it fires: about a third of its share, well inside the run.
const AT_FRAME: u64 = 300;
/// The bound on the sender settling (every message acknowledged) after a
/// fault: resends every 0.5 s, a dead link found in about 1 s.
const SETTLE: Duration = Duration::from_secs(30);

/// Sends `MESSAGES` numbered messages with the fault armed on receiver 0's
/// proxy; if `heal_after_disconnect`, waits for the sender to drop that
/// peer (returning how long it took from the fault) and then heals the link.
async fn one_fault(scenario: &'static str, fault: Fault, trigger: Trigger, heal_after_disconnect: bool) {
    let started = Instant::now();
    let mut rig = Rig::new(PEERS, MESSAGES, false, reliable_sender(), builder).await;
    let victim = rig.identity(0);
    rig.proxies[0].arm(fault, trigger);
    let sender = rig.sender.clone();
    let send = async move {
        for i in 0..MESSAGES {
            sender.send(payload(i as u32, MESSAGE_SIZE)).await.expect("send");
        }
    };
    let watch_fault = async {
        rig.proxies[0].wait_fired(1).await;
        let fired = Instant::now();
        if heal_after_disconnect {
            rig.disconnected(victim, WAIT).await;
            let detected = fired.elapsed();
            rig.proxies[0].heal();
            Some(detected)
        } else {
            None
        }
    };
    let ((), detected) = tokio::join!(send, watch_fault);
    finish(scenario, rig, MESSAGES, 0, started, detected.map(|d| format!("detected_after={d:?}"))).await;
    if let Some(detected) = detected {
        // The link went silent at the fault: the last frame from the
        // receiver came at most then, so the timeout ran out at most
        // HEARTBEAT_TIMEOUT later, plus the check's own tick.
        assert!(
            detected <= HEARTBEAT_TIMEOUT + HEARTBEAT_INTERVAL,
            "{scenario}: the stalled peer was dropped only after {detected:?}"
        );
    }
}

/// Waits for every message to be acknowledged and delivered, asserts 0
/// lost and 0 given up, and prints the figures.
/// `injected` counts faults made outside the proxies (a restart).
async fn finish(
    scenario: &'static str,
    rig: Rig,
    sent: usize,
    injected: u64,
    started: Instant,
    extra: Option<String>,
) {
    within_for("the sender to settle", SETTLE, rig.sender.settled()).await;
    let delivery = rig.sender.stats().delivery.expect("at-least-once stats");
    let all = rig.ledger.wait_distinct(sent as u64, WAIT).await;
    let missing = rig.ledger.missing(sent);
    let figures = Figures {
        scenario,
        messages: sent as u64,
        faults: rig.faults() as u64 + injected,
        lost: missing.len() as u64,
        duplicates: rig.ledger.duplicates(),
        given_up: delivery.undelivered,
        elapsed: started.elapsed(),
        extra: format!(
            "resent={} per_receiver={:?} {}",
            delivery.resent,
            rig.ledger.per_receiver(),
            extra.unwrap_or_default()
        ),
    };
    println!("{figures}");
    assert!(all && missing.is_empty(), "{scenario}: lost {} messages: {missing:?}", missing.len());
    assert_eq!(delivery.undelivered, 0, "{scenario}: messages given up although every peer came back");
    assert!(figures.faults >= 1, "{scenario}: the fault never fired");
    assert_eq!(rig.sender.in_flight(), 0);
    rig.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_at_a_frame_boundary() {
    one_fault("alo_reset", Fault::Reset, Trigger::AfterFrames(Direction::Up, AT_FRAME), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_on_the_ack_path() {
    // The ACKs coming back are cut: what was delivered is sent again.
    one_fault("alo_reset_acks", Fault::Reset, Trigger::AfterFrames(Direction::Down, 50), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_inside_a_frame() {
    // A FIN ten bytes into a frame: the receiver sees the stream end mid-frame.
    one_fault("alo_mid_frame_cut", Fault::Close, Trigger::InsideFrame(Direction::Up, AT_FRAME, 10), false)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_inside_a_frame() {
    one_fault("alo_mid_frame_reset", Fault::Reset, Trigger::InsideFrame(Direction::Up, AT_FRAME, 30), false)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_until_the_heartbeat_gives_up() {
    one_fault("alo_stall", Fault::Stall, Trigger::AfterFrames(Direction::Up, AT_FRAME), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_restart() {
    let started = Instant::now();
    let mut rig = Rig::new(PEERS, MESSAGES, false, reliable_sender(), builder).await;
    let victim = rig.identity(0);
    let sender = rig.sender.clone();
    // Paced, so that the restart lands in the middle of the run.
    let send = async move {
        for i in 0..MESSAGES {
            sender.send(payload(i as u32, MESSAGE_SIZE)).await.expect("send");
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let restart = async {
        smartsock_testkit::eventually("receiver 0 to take 200", WAIT, Duration::from_millis(5), || {
            rig.ledger.per_receiver()[0] >= 200
        })
        .await;
        rig.restart(0).await;
        // A restarted process is a new socket with a new identity: the
        // sender sees the old peer go and a new one come through the proxy.
        rig.disconnected(victim, WAIT).await;
        let fresh = rig.identity(0);
        rig.connected(fresh, WAIT).await;
    };
    tokio::join!(send, restart);
    finish("alo_peer_restart", rig, MESSAGES, 0, started, Some("restarts=1".into())).await;
}

/// A seeded mix of every fault, one at a time on a peer picked by the
/// schedule, while the sender keeps sending. `SMARTSOCK_FAULT_SEED` picks
/// another schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_mix() {
    const STEPS: usize = 12;
    const CAPACITY: usize = 200_000;
    let seed = seed(0x005e_ed15);
    let started = Instant::now();
    let rig = Rig::new(PEERS, CAPACITY, false, reliable_sender(), builder).await;
    let (done_tx, mut done) = watch::channel(false);
    let sender = rig.sender.clone();
    let send = async move {
        let mut sent = 0;
        // Batches of 20 every 10 ms (about 2,000 a second) until the
        // schedule is over.
        while !*done.borrow_and_update() && sent + 20 <= CAPACITY {
            for _ in 0..20 {
                sender.send(payload(sent as u32, MESSAGE_SIZE)).await.expect("send");
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sent
    };
    let proxies = &rig.proxies;
    let mut kinds = Vec::new();
    let drive = async {
        let mut schedule = Schedule::new(seed);
        for _ in 0..STEPS {
            let p = schedule.range(0, PEERS as u64) as usize;
            let k = schedule.range(20, 200);
            let proxy = &proxies[p];
            let before = proxy.stats().faults();
            let (name, fault, trigger, hold) = match schedule.range(0, 8) {
                0 => ("reset", Fault::Reset, Trigger::AfterFrames(Direction::Up, k), 0),
                1 => ("reset_acks", Fault::Reset, Trigger::AfterFrames(Direction::Down, k / 4 + 1), 0),
                2 => ("cut", Fault::Close, Trigger::InsideFrame(Direction::Up, k, schedule.range(1, 20)), 0),
                3 => ("stall_long", Fault::Stall, Trigger::AfterFrames(Direction::Up, k), 1500),
                4 => ("stall_short", Fault::Stall, Trigger::Now, 300),
                5 => ("throttle", Fault::Throttle(20_000), Trigger::Now, 500),
                6 => ("delay", Fault::Delay(Duration::from_millis(20)), Trigger::Now, 500),
                _ => {
                    ("drop", Fault::Drop(schedule.range(1, 50)), Trigger::AfterFrames(Direction::Up, k), 1200)
                }
            };
            proxy.arm(fault, trigger);
            // A quiet link may not carry k frames soon: then the step is skipped.
            let fired =
                tokio::time::timeout(Duration::from_secs(3), proxy.wait_fired(before + 1)).await.is_ok();
            if fired {
                kinds.push(format!("{name}@{p}"));
                tokio::time::sleep(Duration::from_millis(hold)).await;
            }
            proxy.heal();
            // Let the link come back before the next fault.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        done_tx.send_replace(true);
    };
    let (sent, ()) = tokio::join!(send, drive);
    println!("seeded_mix: seed={seed} faults fired: {kinds:?}");
    let extra = format!("seed={seed} kinds={}", kinds.join(","));
    assert!(kinds.len() >= STEPS / 2, "too few faults fired: {kinds:?}");
    finish("alo_seeded_mix", rig, sent, 0, started, Some(extra)).await;
}

/// Where the test makes delivery impossible (the only peer's link stalls
/// for good), every message is given up after its attempts and handed back,
/// and none is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_up_only_when_delivery_is_impossible() {
    const SENT: usize = 20;
    let started = Instant::now();
    let sender = reliable_sender().give_up(3, Duration::from_secs(3));
    let rig = Rig::new(1, SENT, false, sender, builder).await;
    let mut undelivered = rig.sender.undelivered();
    rig.proxies[0].arm(Fault::Stall, Trigger::Now);
    for i in 0..SENT {
        rig.sender.send(payload(i as u32, MESSAGE_SIZE)).await.expect("send");
    }
    let mut handed_back = Vec::new();
    within("every message to be handed back", async {
        while handed_back.len() < SENT {
            let message = undelivered.next().await.expect("the undelivered stream ends with the socket");
            handed_back.push(seq(message.message.payload()));
        }
    })
    .await;
    handed_back.sort_unstable();
    assert_eq!(handed_back, (0..SENT as u32).collect::<Vec<_>>(), "not every message was handed back");
    let delivery = rig.sender.stats().delivery.expect("at-least-once stats");
    let figures = Figures {
        scenario: "alo_impossible_given_up",
        messages: SENT as u64,
        faults: rig.faults() as u64,
        // Neither delivered nor handed back.
        lost: (SENT - handed_back.len()) as u64 - rig.ledger.distinct(),
        duplicates: rig.ledger.duplicates(),
        given_up: delivery.undelivered,
        elapsed: started.elapsed(),
        extra: format!("handed_back={}", handed_back.len()),
    };
    println!("{figures}");
    assert_eq!(delivery.undelivered, SENT as u64);
    assert_eq!(rig.ledger.distinct(), 0, "a message went through a stalled link");
    assert_eq!(rig.sender.in_flight(), 0);
    // Dropping the proxies ends the stalled link without letting a byte through.
    let Rig { sender, receivers, proxies, .. } = rig;
    drop(proxies);
    within("the sender to close", sender.close()).await;
    for receiver in receivers {
        within("the receiver to close", receiver.stop()).await;
    }
}

/// A fault while recovering from one: receiver 0's link is reset, and the
/// reconnection's HELLO is then cut 10 bytes in; the third connection holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconnections_handshake_is_cut_too() {
    let started = Instant::now();
    let mut rig = Rig::new(PEERS, MESSAGES, false, reliable_sender(), builder).await;
    let victim = rig.identity(0);
    rig.proxies[0].arm(Fault::Reset, Trigger::AfterFrames(Direction::Up, AT_FRAME));
    let sender = rig.sender.clone();
    let send = async move {
        for i in 0..MESSAGES {
            sender.send(payload(i as u32, MESSAGE_SIZE)).await.expect("send");
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let faults = async {
        rig.proxies[0].wait_fired(1).await;
        // The next bytes towards receiver 0 are the new connection's HELLO.
        rig.proxies[0].arm(Fault::Close, Trigger::InsideFrame(Direction::Up, 0, 10));
        rig.proxies[0].wait_fired(2).await;
        rig.disconnected(victim, WAIT).await;
        rig.connected(victim, WAIT).await;
    };
    tokio::join!(send, faults);
    let connections = rig.proxies[0].stats().connections;
    assert!(connections >= 3, "receiver 0 took {connections} connections, not 3 or more");
    finish(
        "alo_handshake_cut",
        rig,
        MESSAGES,
        0,
        started,
        Some(format!("connections_to_victim={connections}")),
    )
    .await;
}

/// Every link resets at once: nothing has a live peer until the connect
/// ends come back, and then everything still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_link_resets_at_once() {
    let started = Instant::now();
    let rig = Rig::new(PEERS, MESSAGES, false, reliable_sender(), builder).await;
    let sender = rig.sender.clone();
    let send = async move {
        for i in 0..MESSAGES {
            sender.send(payload(i as u32, MESSAGE_SIZE)).await.expect("send");
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let reset = async {
        smartsock_testkit::eventually(
            "a third of the messages to arrive",
            WAIT,
            Duration::from_millis(2),
            || rig.ledger.distinct() >= (MESSAGES / 3) as u64,
        )
        .await;
        for proxy in &rig.proxies {
            proxy.reset_all();
        }
    };
    tokio::join!(send, reset);
    finish("alo_all_links_reset", rig, MESSAGES, 0, started, None).await;
}
