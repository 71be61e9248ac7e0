//! Which ACKs count (issue 12, finding 1): message ids are the sender's
//! counter plus a random tag, so one id reveals no other; and an ACK counts
//! only from the peer the message was sent to. Everything else is an
//! unknown ACK: ignored and counted. Also the hand-over of a tracked
//! message to the pending table after its send: an ACK that overtakes it,
//! and a deadline checked before it; and tracking and sending in one step.
//!
//! Paused time over in-memory peers played by the test.

mod common;

use std::time::Duration;

use common::{MemPeer, Sender, WAIT, reliable, send_in_one_turn, within};
use smartsock_patterns::Message;
use smartsock_reliability::{Untracked, Went};
use smartsock_transport::{Frame, MsgId, Outgoing, PeerId};
use tower::{Service, ServiceExt};

const RESEND: Duration = Duration::from_secs(5);

/// Tracks `payload` and queues the DATA_REQ for `to` by hand, telling the
/// sender where it went; returns its id.
fn send_to(sender: &Sender, to: PeerId, payload: &'static str) -> MsgId {
    let (tracked, request, id) = send_without_handover(sender, to, payload);
    sender.handle.sent(tracked, Some(to), request).expect("tracked");
    id
}

/// Waits (virtual time) until the sender has counted `n` unknown ACKs.
async fn unknown_acks(sender: &Sender, n: u64) {
    within(&format!("{n} unknown ACKs"), WAIT, async {
        while sender.handle.stats().unknown_acks() < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(sender.handle.stats().unknown_acks(), n);
}

fn counter(id: MsgId) -> u64 {
    u64::from_be_bytes(id.as_bytes()[..8].try_into().unwrap())
}

fn tag(id: MsgId) -> [u8; 8] {
    id.as_bytes()[8..].try_into().unwrap()
}

fn id_of(counter: u64, tag: [u8; 8]) -> MsgId {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&counter.to_be_bytes());
    bytes[8..].copy_from_slice(&tag);
    MsgId::from_bytes(bytes)
}

#[tokio::test(start_paused = true)]
async fn an_ack_counts_only_from_the_peer_the_message_was_sent_to() {
    let sender = Sender::new(reliable(RESEND, 6));
    let mut to = MemPeer::attach(&sender.transport, "to").await;
    let mut other = MemPeer::attach(&sender.transport, "other").await;
    sender.wait_for_peers(2).await;

    let id = send_to(&sender, to.id, "x");
    let (got, payload) = to.expect_data_req(WAIT).await;
    assert_eq!((got, &payload[..]), (id, &b"x"[..]));

    // The right id, from the wrong peer: ignored and counted.
    other.ack(id).await;
    unknown_acks(&sender, 1).await;
    assert_eq!(sender.handle.in_flight(), 1);
    assert_eq!(sender.handle.stats().acked(), 0);

    // From the peer it went to, it settles.
    to.ack(id).await;
    sender.settled().await;
    assert_eq!(sender.handle.stats().acked(), 1);
    assert_eq!(sender.handle.stats().unknown_acks(), 1);
    // The wrong peer's ACK had no effect on the resend either: none was due.
    assert_eq!(sender.handle.stats().resent(), 0);
}

#[tokio::test(start_paused = true)]
async fn ids_are_a_counter_and_a_random_tag_and_a_guessed_id_settles_nothing() {
    let first = Sender::new(reliable(RESEND, 6));
    let second = Sender::new(reliable(RESEND, 6));
    let mut peer = MemPeer::attach(&first.transport, "peer").await;
    let peer2 = MemPeer::attach(&second.transport, "peer2").await;
    first.wait_for_peers(1).await;
    second.wait_for_peers(1).await;

    let ids: Vec<MsgId> = ["a", "b", "c"].into_iter().map(|p| send_to(&first, peer.id, p)).collect();
    let ids2: Vec<MsgId> = ["a", "b", "c"].into_iter().map(|p| send_to(&second, peer2.id, p)).collect();
    // Consecutive counters from 0; tags drawn at random by each sender.
    assert_eq!(ids.iter().map(|&id| counter(id)).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(ids2.iter().map(|&id| counter(id)).collect::<Vec<_>>(), [0, 1, 2]);
    for (a, b) in ids.iter().zip(&ids2) {
        assert_ne!(tag(*a), tag(*b), "two senders tagged counter {} alike", counter(*a));
    }
    for expected in &ids {
        assert_eq!(peer.expect_data_req(WAIT).await.0, *expected);
    }

    // Guesses from what the peer saw: the next counter with a seen tag, a
    // seen counter with another seen tag, the other sender's id for the
    // same counter, and the next counter with any tag.
    let guesses = [
        id_of(3, tag(ids[2])),
        id_of(1, tag(ids[0])),
        id_of(0, tag(ids[1])),
        ids2[1],
        id_of(1, [0; 8]),
        id_of(3, [0xFF; 8]),
    ];
    for &guess in &guesses {
        peer.ack(guess).await;
    }
    unknown_acks(&first, guesses.len() as u64).await;
    assert_eq!(first.handle.in_flight(), 3);
    assert_eq!(first.handle.stats().acked(), 0);

    // The exact ids settle.
    for &id in &ids {
        peer.ack(id).await;
    }
    first.settled().await;
    assert_eq!(first.handle.stats().acked(), 3);
    assert_eq!(first.handle.stats().unknown_acks(), guesses.len() as u64);
}

/// A gap, kept as a test to make pass: through the tower stack
/// (`AtLeastOnce<RoundRobin<PeerSet>>`) the route's peer is not reported to
/// the at-least-once core, so an ACK counts from any peer that knows the id.
#[tokio::test(start_paused = true)]
#[ignore = "known gap: the tower stack does not record the peer a message went to"]
async fn through_the_tower_stack_an_ack_counts_only_from_the_peer_the_message_went_to() {
    let mut sender = Sender::new(reliable(RESEND, 6));
    let mut a = MemPeer::attach(&sender.transport, "a").await;
    let mut b = MemPeer::attach(&sender.transport, "b").await;
    sender.wait_for_peers(2).await;
    let service = within("ready", WAIT, ServiceExt::<Message>::ready(&mut sender.service)).await.unwrap();
    service.call(Message::new("x")).await.unwrap();
    // Whichever peer got it, the other acknowledges it.
    let (id, wrong) = tokio::select! {
        (id, _) = a.expect_data_req(WAIT) => (id, &mut b),
        (id, _) = b.expect_data_req(WAIT) => (id, &mut a),
    };
    wrong.ack(id).await;
    unknown_acks(&sender, 1).await;
    assert_eq!(sender.handle.in_flight(), 1);
}

/// Tracks `payload` and queues its DATA_REQ for `to` by hand, but does not
/// hand the request over yet (as a sending thread held up right after its
/// send would not have).
fn send_without_handover(
    sender: &Sender,
    to: PeerId,
    payload: &'static str,
) -> (smartsock_reliability::Tracked, Message, MsgId) {
    let (tracked, request) = sender.handle.try_track(Message::new(payload)).expect("room in flight");
    let Frame::DataReq { id, .. } = request.frame else { panic!("not a DATA_REQ: {:?}", request.frame) };
    let table = sender.transport.peer_table();
    let peer = table.iter().find(|p| p.id() == to).expect("connected");
    peer.try_send(Outgoing::to_this_peer(request.frame.clone())).expect("room in the outbox");
    (tracked, request, id)
}

/// Lets every task run until the runtime is idle: under paused time a
/// sleep ends only then, so an ACK written by a peer has been read.
async fn settle_tasks() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn an_ack_that_overtakes_the_handover_settles_the_message_at_the_handover() {
    let sender = Sender::new(reliable(RESEND, 6));
    let mut to = MemPeer::attach(&sender.transport, "to").await;
    sender.wait_for_peers(1).await;
    let (tracked, request, id) = send_without_handover(&sender, to.id, "x");
    assert_eq!(to.expect_data_req(WAIT).await.0, id);
    // The ACK comes before the request is in the table: it is kept.
    to.ack(id).await;
    settle_tasks().await;
    assert_eq!(sender.handle.stats().unknown_acks(), 0);
    assert_eq!(sender.handle.in_flight(), 1, "tracked, on its way into the table");
    sender.handle.sent(tracked, Some(to.id), request).expect("tracked");
    // Settled at the hand-over: never resent.
    within("settled", WAIT, sender.settled()).await;
    assert_eq!(to.next_frame(RESEND * 3).await, None, "no resend");
    let stats = sender.handle.stats();
    assert_eq!((stats.acked(), stats.resent(), stats.unknown_acks()), (1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_early_ack_with_another_tag_or_from_another_peer_settles_nothing() {
    let sender = Sender::new(reliable(RESEND, 6));
    let mut to = MemPeer::attach(&sender.transport, "to").await;
    let mut other = MemPeer::attach(&sender.transport, "other").await;
    sender.wait_for_peers(2).await;
    let (tracked, request, id) = send_without_handover(&sender, to.id, "x");
    assert_eq!(to.expect_data_req(WAIT).await.0, id);
    // A guess at the tag, then the right id from the wrong peer.
    let guessed = id_of(counter(id), tag(id).map(|b| !b));
    to.ack(guessed).await;
    settle_tasks().await;
    other.ack(id).await;
    settle_tasks().await;
    // One hand-over is due, so one early ACK is kept (the guess); the
    // second finds no room and is unknown at once.
    assert_eq!(sender.handle.stats().unknown_acks(), 1);
    sender.handle.sent(tracked, Some(to.id), request).expect("tracked");
    // The kept guess does not match: unknown too, and the message pending.
    assert_eq!(sender.handle.stats().unknown_acks(), 2);
    assert_eq!(sender.handle.in_flight(), 1);
    let (again, _) = to.expect_data_req(RESEND * 3).await;
    assert_eq!(again, id);
    to.ack(id).await;
    within("settled", WAIT, sender.settled()).await;
    let stats = sender.handle.stats();
    assert_eq!((stats.acked(), stats.resent(), stats.unknown_acks()), (1, 1, 2));
}

#[tokio::test(start_paused = true)]
async fn with_no_handover_due_an_unknown_ack_is_not_kept() {
    let sender = Sender::new(reliable(RESEND, 6));
    let mut to = MemPeer::attach(&sender.transport, "to").await;
    sender.wait_for_peers(1).await;
    let id = send_to(&sender, to.id, "x");
    assert_eq!(to.expect_data_req(WAIT).await.0, id);
    to.ack(id).await;
    within("settled", WAIT, sender.settled()).await;
    // A repeat of that ACK, with no hand-over due: unknown at once.
    to.ack(id).await;
    unknown_acks(&sender, 1).await;
    // And a later hand-over finds nothing kept for it.
    let (tracked, request, next) = send_without_handover(&sender, to.id, "y");
    sender.handle.sent(tracked, Some(to.id), request).expect("tracked");
    assert_eq!(to.expect_data_req(WAIT).await.0, next);
    assert_eq!(sender.handle.in_flight(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_message_handed_over_after_its_deadline_was_checked_gets_a_deadline_of_its_own() {
    let sender = Sender::new(reliable(RESEND, 6));
    let mut to = MemPeer::attach(&sender.transport, "to").await;
    sender.wait_for_peers(1).await;
    // One message in the table keeps the driver cutting and checking.
    let first = send_to(&sender, to.id, "a");
    let (tracked, request, late) = send_without_handover(&sender, to.id, "b");
    assert_eq!(to.expect_data_req(WAIT).await.0, first);
    assert_eq!(to.expect_data_req(WAIT).await.0, late);
    // Past the deadline of both: the first is resent; the second was not
    // in the table when its bucket was checked.
    assert_eq!(to.expect_data_req(RESEND * 2).await.0, first);
    to.ack(first).await;
    sender.handle.sent(tracked, Some(to.id), request).expect("tracked");
    // Handed over late, it is still resent, and settles.
    let (again, payload) = to.expect_data_req(RESEND * 3).await;
    assert_eq!((again, &payload[..]), (late, &b"b"[..]));
    to.ack(late).await;
    sender.settled().await;
    let stats = sender.handle.stats();
    assert_eq!((stats.acked(), stats.resent(), stats.undelivered()), (2, 2, 0));
}

/// A sender with one message sent to a peer and not handed over yet
/// (the peer has read it), then shut down. At shutdown the driver waits
/// up to 100 ms (`HANDOVER_WAITS` turns of 1 ms) for such a hand-over.
async fn shut_down_before_a_handover() -> (Sender, MemPeer, smartsock_reliability::Tracked, Message, MsgId) {
    let sender = Sender::new(reliable(RESEND, 6));
    let mut to = MemPeer::attach(&sender.transport, "to").await;
    sender.wait_for_peers(1).await;
    let (tracked, request, id) = send_without_handover(&sender, to.id, "x");
    assert_eq!(to.expect_data_req(WAIT).await.0, id);
    sender.handle.shutdown();
    (sender, to, tracked, request, id)
}

/// Handed over inside the driver's wait, the message is handed back like
/// every message still pending.
#[tokio::test(start_paused = true)]
async fn at_shutdown_a_message_handed_over_inside_the_wait_is_handed_back() {
    let (mut sender, to, tracked, request, id) = shut_down_before_a_handover().await;
    // The last millisecond of the wait.
    tokio::time::sleep(Duration::from_millis(99)).await;
    assert!(
        tokio::time::timeout(Duration::ZERO, sender.undelivered.recv()).await.is_err(),
        "the driver is still waiting"
    );
    sender.handle.sent(tracked, Some(to.id), request).expect("tracked");
    let undelivered = within("the hand-back", WAIT, sender.undelivered.recv()).await.expect("handed back");
    assert_eq!((undelivered.id, undelivered.attempts), (id, 1));
    assert_eq!(undelivered.message.payload(), "x");
    assert_eq!(sender.handle.in_flight(), 0);
}

/// A hand-over later than that wait finds the driver gone: the message is
/// handed back to the caller, never left in a table nobody drains.
#[tokio::test(start_paused = true)]
async fn at_shutdown_a_message_handed_over_after_the_wait_is_handed_back_to_its_caller() {
    let (mut sender, to, tracked, request, _) = shut_down_before_a_handover().await;
    // The driver ends after its wait (100 ms): its channel closes.
    tokio::time::sleep(Duration::from_millis(101)).await;
    assert!(within("the driver's end", WAIT, sender.undelivered.recv()).await.is_none());
    let back = sender.handle.sent(tracked, Some(to.id), request).expect_err("the driver has ended");
    assert_eq!(back.frame, Frame::Data("x".into()));
    assert_eq!(sender.handle.in_flight(), 0);
    assert_eq!(sender.handle.stats().sent(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_message_tracked_in_one_turn_counts_an_ack_only_from_its_peer() {
    let sender = Sender::new(reliable(RESEND, 6));
    let mut to = MemPeer::attach(&sender.transport, "to").await;
    let mut other = MemPeer::attach(&sender.transport, "other").await;
    sender.wait_for_peers(2).await;

    let id = send_in_one_turn(&sender, to.id, "x");
    assert_eq!(to.expect_data_req(WAIT).await.0, id);
    assert_eq!(sender.handle.in_flight(), 1);
    other.ack(id).await;
    unknown_acks(&sender, 1).await;
    assert_eq!(sender.handle.in_flight(), 1);
    to.ack(id).await;
    sender.settled().await;
    assert_eq!((sender.handle.stats().sent(), sender.handle.stats().acked()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_send_in_one_turn_that_did_not_go_is_handed_back_untracked() {
    let mut config = reliable(RESEND, 6);
    config.max_in_flight = 1;
    let sender = Sender::new(config);
    let mut to = MemPeer::attach(&sender.transport, "to").await;
    sender.wait_for_peers(1).await;

    // The route took nothing: the message comes back as it was given, the
    // sender holds nothing, and its counter is not used up.
    let back = sender.handle.try_send_tracked(Message::new("no room"), |_| Went::Nowhere);
    assert_eq!(back, Err(Untracked::NotSent(Message::new("no room"))));
    assert_eq!((sender.handle.in_flight(), sender.handle.stats().sent()), (0, 0));

    // Only DATA messages are tracked.
    let heartbeat = Message { to: smartsock_patterns::Destination::AnyOne, frame: Frame::Heartbeat };
    let back = sender.handle.try_send_tracked(heartbeat.clone(), |_| Went::Out(None));
    assert_eq!(back, Err(Untracked::NotData(heartbeat)));

    // At the in-flight limit, the send is not even called.
    let id = send_in_one_turn(&sender, to.id, "first");
    assert_eq!(counter(id), 0, "the first counter, unused by the send that did not go");
    let mut called = false;
    let back = sender.handle.try_send_tracked(Message::new("second"), |_| {
        called = true;
        Went::Out(None)
    });
    assert_eq!((back, called), (Err(Untracked::NoRoom(Message::new("second"))), false));

    // Room again once the first is acknowledged; closed after shutdown.
    assert_eq!(to.expect_data_req(WAIT).await.0, id);
    to.ack(id).await;
    sender.settled().await;
    sender.handle.shutdown();
    let back = sender.handle.try_send_tracked(Message::new("third"), |_| Went::Out(None));
    assert_eq!(back, Err(Untracked::Closed(Message::new("third"))));
}

#[tokio::test(start_paused = true)]
async fn outstanding_counts_each_peers_pending_messages_across_runs_of_sends() {
    let sender = Sender::new(reliable(RESEND, 6));
    let mut a = MemPeer::attach(&sender.transport, "a").await;
    let mut b = MemPeer::attach(&sender.transport, "b").await;
    sender.wait_for_peers(2).await;
    let handle = &sender.handle;
    let acked = |n: u64| {
        within("ACKs", WAIT, async move {
            while handle.stats().acked() < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    // A run of sends to one peer, and an ACK for one of them before the
    // counts are read.
    let first = send_in_one_turn(&sender, a.id, "a1");
    let second = send_in_one_turn(&sender, a.id, "a2");
    assert_eq!(a.expect_data_req(WAIT).await.0, first);
    assert_eq!(a.expect_data_req(WAIT).await.0, second);
    a.ack(first).await;
    acked(1).await;
    assert_eq!((sender.handle.outstanding(a.id), sender.handle.outstanding(b.id)), (1, 0));
    // Then the other peer, then back.
    let to_b = send_in_one_turn(&sender, b.id, "b");
    let third = send_in_one_turn(&sender, a.id, "a3");
    assert_eq!((sender.handle.outstanding(a.id), sender.handle.outstanding(b.id)), (2, 1));
    assert_eq!(b.expect_data_req(WAIT).await.0, to_b);
    b.ack(to_b).await;
    acked(2).await;
    assert_eq!((sender.handle.outstanding(a.id), sender.handle.outstanding(b.id)), (2, 0));
    assert_eq!(a.expect_data_req(WAIT).await.0, third);
    a.ack(second).await;
    a.ack(third).await;
    sender.settled().await;
    assert_eq!((sender.handle.outstanding(a.id), sender.handle.outstanding(b.id)), (0, 0));
}
