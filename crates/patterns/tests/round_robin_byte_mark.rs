//! Round-robin skips a peer at its outbox byte mark at once: with 1 MiB
//! messages, one peer that never reads holds its mark (8 MiB here) plus at
//! most the one batch its writer took, and every later message goes to the
//! healthy peer. (Before byte marks, such a peer kept its turn until it
//! held 1024 messages, then the default: a gigabyte.)

mod common;

use common::*;
use smartsock_patterns::{Attempt, Message, PeerSetConfig};
use smartsock_transport::TransportConfig;

const MIB: usize = 1024 * 1024;
/// The mark this test sets, in 1 MiB messages (the default is one): with
/// eight, the last message is taken at 7 MiB, well past the first.
const MARK: usize = 8;
/// Messages sent once the stalled peer is at its mark.
const AFTER: u32 = 40;

#[tokio::test]
async fn a_stalled_peer_at_its_byte_mark_gets_no_more_one_mib_messages_and_the_healthy_one_gets_the_rest() {
    let mut config = TransportConfig::default();
    config.outbox_bytes = MARK * MIB;
    // Far above what the byte mark lets in: only bytes can make it full.
    assert!(config.outbox_capacity >= 16 * MARK);
    let (sender, peers) = sender(config, PeerSetConfig::default());

    let (healthy_parts, addr) = receiver().await;
    let healthy = connect_in_order(&sender, addr, 0, healthy_parts.transport.identity()).await;
    // Its writer takes what is queued and then blocks on the gate for good.
    let stalled = connect_gated(&sender, 1).await;
    let inbound = healthy_parts.inbound.clone();
    let drain = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Ok(message) = inbound.recv().await {
            assert_eq!(message.payload.len(), MIB);
            got.push(seq(&message.payload));
        }
        got
    });

    let mut to_stalled = Vec::new();
    let mut to_healthy = Vec::new();
    let mut after_stuck = None;
    let mut next = 0u32;
    within("the stalled peer to reach its mark and 40 more sends", async {
        while after_stuck.is_none_or(|stuck_at| next < stuck_at + AFTER) {
            let queued_before = stalled.handle.queued();
            let mut message = Message::new(payload(next, MIB));
            let peer = loop {
                match peers.try_send(message).expect("send failed") {
                    Attempt::Sent(Some(peer)) => break peer,
                    Attempt::WouldWait(back) => {
                        // Both full: the healthy peer's writer is busy.
                        peers.room_for(&back).await;
                        message = back;
                    }
                    Attempt::Sent(None) | Attempt::Queued(_) => panic!("round-robin named no peer"),
                }
            };
            if peer == stalled.handle.id() {
                // Taken only while under the mark, and never once stuck.
                assert!(queued_before < MARK, "message {next} went to a peer holding {queued_before} MiB");
                assert!(after_stuck.is_none(), "message {next} went to the stalled peer after it was stuck");
                to_stalled.push(next);
            } else {
                assert_eq!(peer, healthy.id());
                to_healthy.push(next);
            }
            next += 1;
            if after_stuck.is_none() && stalled.is_stuck() {
                after_stuck = Some(next);
            }
            // Lets the writers run, as a real sender's awaits would.
            tokio::task::yield_now().await;
        }
    })
    .await;

    // Exactly the mark queued: 8 frames of 1 MiB, the eighth taken at 7 MiB.
    assert_eq!(stalled.handle.queued(), MARK);
    assert!(!stalled.handle.has_room());
    // Plus the one batch the writer took before it blocked: at most what an
    // outbox can hold, so at most twice the mark in all.
    let held = to_stalled.len();
    assert!((MARK + 1..=2 * MARK).contains(&held), "the stalled peer holds {held} MiB");
    let stuck_at = after_stuck.expect("stuck");
    assert!(to_healthy.ends_with(&(stuck_at..next).collect::<Vec<_>>()));

    // Once it reads again it gets exactly what it held, in order.
    stalled.gate.open();
    let mut raw = RawReader::new(stalled.stream);
    assert_eq!(raw.read(held).await, to_stalled);
    // And the healthy peer everything else, in order, once each.
    within("the sender to close", sender.close()).await;
    wait_for_peers(&healthy_parts.transport, 0).await;
    healthy_parts.transport.close().await;
    let got = within("the healthy peer's messages", drain).await.expect("drain panicked");
    assert_eq!(got, to_healthy);
}
