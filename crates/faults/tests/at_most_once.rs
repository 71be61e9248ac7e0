//! At-most-once, round-robin to three receivers behind fault proxies: a
//! reset loses at most what was in flight on the failed link (written into
//! it and not read out), never delivers a message twice, and keeps each
//! receiver's order but for the messages routed again (those the failed
//! link never took, which go to the others late).

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use smartsock::SendMode;
use smartsock_faults::{Figures, MESSAGE_SIZE, Rig, builder, payload};
use smartsock_testkit::{Direction, Fault, Trigger, WAIT, eventually, within};

const PEERS: usize = 3;
const MESSAGES: usize = 6000;

async fn reset_loses_only_what_was_in_flight(scenario: &'static str, trigger: Trigger) {
    let started = Instant::now();
    let rig = Rig::new(PEERS, MESSAGES, true, builder().send_mode(SendMode::RoundRobin), builder).await;
    let victim = rig.identity(0);
    rig.proxies[0].arm(Fault::Reset, trigger);
    for i in 0..MESSAGES {
        rig.sender.send(payload(i as u32, MESSAGE_SIZE)).await.expect("send");
        if i % 200 == 199 {
            // Paced a little, so that the reconnection lands inside the run.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    rig.proxies[0].wait_fired(1).await;
    // Close writes out what is queued and waits for each receiver to
    // confirm the end of the stream: then everything sent has arrived or
    // is lost for good.
    let report = within("the sender to close", rig.sender.close()).await;
    for receiver in &rig.receivers {
        let socket = receiver.socket.clone();
        eventually("a receiver to see the sender go", WAIT, Duration::from_millis(10), move || {
            socket.peers().is_empty()
        })
        .await;
    }
    let stats = rig.sender.stats();
    let mut links: Vec<_> =
        stats.departed.iter().chain(stats.peers.iter()).filter(|p| p.id == victim).cloned().collect();
    links.sort_by_key(|p| p.connected_at);
    assert!(!links.is_empty(), "no link to receiver 0 in the stats");
    // Receiver 0 got the failed link's messages first, then those of the
    // links after it, if it reconnected before the end (cleanly closed, so
    // all of theirs).
    let later: u64 = links[1..].iter().map(|p| p.traffic.messages_out).sum();
    let got_by_victim = rig.ledger.per_receiver()[0];
    let got_on_failed = got_by_victim.saturating_sub(later);
    let in_flight = links[0].traffic.messages_out.saturating_sub(got_on_failed);
    let missing = rig.ledger.missing(MESSAGES);
    let repeated = rig.ledger.repeated();
    let figures = Figures {
        scenario,
        messages: MESSAGES as u64,
        faults: rig.faults() as u64,
        lost: missing.len() as u64,
        duplicates: rig.ledger.duplicates(),
        given_up: 0,
        elapsed: started.elapsed(),
        extra: format!(
            "in_flight_on_failed_link={in_flight} written_to_failed_link={} delivered_from_it={got_on_failed} \
             links_to_victim={} unconfirmed_at_close={} rerouted={}",
            links[0].traffic.messages_out,
            links.len(),
            report.unconfirmed,
            stats.rerouted
        ),
    };
    println!("{figures}");
    assert!(repeated.is_empty(), "delivered more than once: {repeated:?}");
    let out_of_order: u64 = (0..PEERS).map(|r| out_of_order(&rig.ledger.order(r))).sum();
    assert!(
        out_of_order <= stats.rerouted,
        "{out_of_order} messages out of order, more than the {} routed again",
        stats.rerouted
    );
    assert!(
        missing.len() as u64 <= in_flight,
        "lost {} messages, more than the {in_flight} in flight on the failed link: {missing:?}",
        missing.len()
    );
    // Everything lost was sent while the failed link lived, to receiver 0:
    // round-robin never skipped a live peer's turn for it.
    for receiver in rig.receivers {
        within("a receiver to close", receiver.stop()).await;
    }
}

/// How many of `order` must be left out for the rest to be increasing:
/// its length less that of its longest increasing subsequence.
fn out_of_order(order: &[u32]) -> u64 {
    // tails[k]: the smallest last element of an increasing run of length k + 1.
    let mut tails: Vec<u32> = Vec::new();
    for &n in order {
        match tails.binary_search(&n) {
            Ok(_) => {}
            Err(at) if at == tails.len() => tails.push(n),
            Err(at) => tails[at] = n,
        }
    }
    (order.len() - tails.len()) as u64
}

#[test]
fn out_of_order_counts_what_must_be_left_out() {
    assert_eq!(out_of_order(&[]), 0);
    assert_eq!(out_of_order(&[1, 2, 3]), 0);
    assert_eq!(out_of_order(&[1, 5, 2, 3, 4]), 1);
    assert_eq!(out_of_order(&[4, 5, 6, 1, 2]), 2);
    assert_eq!(out_of_order(&[2, 2]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_at_a_frame_boundary() {
    reset_loses_only_what_was_in_flight("amo_reset", Trigger::AfterFrames(Direction::Up, 500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_inside_a_frame() {
    reset_loses_only_what_was_in_flight("amo_mid_frame_reset", Trigger::InsideFrame(Direction::Up, 500, 20))
        .await;
}
