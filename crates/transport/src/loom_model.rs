//! A loom model of the send core: concurrent senders, a writer draining, a
//! peer leaving, and the room signal that wakes senders waiting for room.
//!
//! Run with `cargo xtask loom` (it builds with `--cfg smartsock_loom`, so
//! that [`Outbox`] and [`RoomSignal`] use loom's mutexes and atomics, and
//! explores every interleaving of the threads below). A lost wake-up shows
//! as loom's deadlock report: a thread parked that nobody will unpark.
//!
//! The wake-ups at stake are those between a sender that found every outbox
//! full and the writer that makes room: the model runs the writer's own
//! step (`Outbox::poll_drain`) and the senders' own wait (`RoomWaiter`), so
//! a change to either is checked. A waiter that checks its condition
//! before registering (the classic lost wake-up) makes loom report a
//! deadlock in `a_peer_leaving_hands_back_or_writes_every_frame_and_wakes_everyone`
//! (tried on purpose while writing this model).
//!
//! Senders that write a frame to the stream themselves while the writer is
//! idle share the stream with the writer: the last model checks that every
//! frame reaches it exactly once, each sender's in its order, and that a
//! frame queued behind a sender's write still wakes the writer.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use loom::future::block_on;
use loom::thread;
use smartsock_framing::Frame;

use crate::chunk::{Chunk, decode};
use crate::direct::{WriteNow, WroteNow};
use crate::error::TrySendError;
use crate::outbox::{Direct, Outbox};
use crate::peer::Outgoing;
use crate::room::{RoomSignal, RoomWaiter};

fn frame(n: u8) -> Outgoing {
    Outgoing::to_any_peer(Frame::Data(Bytes::from(vec![n])))
}

fn payload(item: &Outgoing) -> u8 {
    item.frame.payload()[0]
}

/// A sender as `PeerHandle::send` is one: try, and on a full outbox wait
/// for the room signal, then try again. Returns whether the frame went in
/// (false: the outbox closed first).
fn send(outbox: &Outbox, room: &Arc<RoomSignal>, mut item: Outgoing) -> bool {
    loop {
        match outbox.try_push(item) {
            Ok(()) => return true,
            Err(TrySendError::Closed(_)) => return false,
            Err(TrySendError::Full(back)) => item = back,
        }
        let mut waiter = RoomWaiter::new(room.clone());
        block_on(waiter.until(|| outbox.has_room() || outbox.is_closed()));
    }
}

/// The writer as `write_loop` is one (the same `poll_drain`): take
/// everything queued and signal room, until `expected` frames are taken or
/// the outbox closes.
fn drain(outbox: &Outbox, room: &RoomSignal, expected: usize) -> Vec<u8> {
    let mut taken = Vec::new();
    let mut acks = Vec::new();
    let mut batch = VecDeque::new();
    let mut spare = None;
    while taken.len() < expected {
        let open = block_on(std::future::poll_fn(|cx| {
            outbox.poll_drain(cx, room, &mut acks, &mut batch, &mut spare)
        }));
        taken.extend(decode(std::mem::take(&mut batch)).iter().map(payload));
        if !open {
            break;
        }
    }
    taken
}

#[test]
fn a_sender_waiting_for_room_is_woken_by_any_drain() {
    loom::model(|| {
        // Room for one frame: two senders, so one of them must wait.
        let outbox = Arc::new(Outbox::new(1, usize::MAX, 1, usize::MAX));
        let room = Arc::new(RoomSignal::default());
        let senders: Vec<_> = (1..=2u8)
            .map(|n| {
                let (outbox, room) = (outbox.clone(), room.clone());
                thread::spawn(move || assert!(send(&outbox, &room, frame(n))))
            })
            .collect();
        let mut taken = drain(&outbox, &room, 2);
        for sender in senders {
            sender.join().unwrap();
        }
        taken.sort_unstable();
        assert_eq!(taken, [1, 2], "every frame written exactly once");
    });
}

#[test]
fn a_peer_leaving_hands_back_or_writes_every_frame_and_wakes_everyone() {
    loom::model(|| {
        let outbox = Arc::new(Outbox::new(1, usize::MAX, 1, usize::MAX));
        let room = Arc::new(RoomSignal::default());
        let sender = {
            let (outbox, room) = (outbox.clone(), room.clone());
            thread::spawn(move || {
                let first = send(&outbox, &room, frame(1));
                let second = send(&outbox, &room, frame(2));
                (first, second)
            })
        };
        let writer = {
            let (outbox, room) = (outbox.clone(), room.clone());
            thread::spawn(move || drain(&outbox, &room, 2))
        };
        // The connection ends: the outbox closes (and hands back what is
        // queued), then peers are told, as `serve` does on a disconnect.
        let handed_back: Vec<u8> = outbox.close(&mut Vec::new()).iter().map(payload).collect();
        room.notify();
        let (first, second) = sender.join().unwrap();
        let written = writer.join().unwrap();
        // Nothing is lost or doubled: each frame the sender saw accepted was
        // either written or handed back, and no refused one was.
        let mut seen: Vec<u8> = written.iter().chain(&handed_back).copied().collect();
        seen.sort_unstable();
        let accepted: Vec<u8> =
            [(first, 1), (second, 2)].iter().filter(|(ok, _)| *ok).map(|&(_, n)| n).collect();
        assert_eq!(seen, accepted);
    });
}

#[test]
fn a_frame_pushed_while_the_writer_parks_is_never_stranded() {
    loom::model(|| {
        let outbox = Arc::new(Outbox::new(4, usize::MAX, 4, usize::MAX));
        let room = Arc::new(RoomSignal::default());
        let senders: Vec<_> = (1..=2u8)
            .map(|n| {
                let outbox = outbox.clone();
                thread::spawn(move || outbox.try_push(frame(n)).is_ok())
            })
            .collect();
        let taken = drain(&outbox, &room, 2);
        for sender in senders {
            assert!(sender.join().unwrap());
        }
        assert_eq!(taken.len(), 2);
    });
}

/// A stream whose first write takes only 3 bytes (so the rest of that
/// frame is queued as a tail), every later one whole; the bytes go into a
/// shared record of the wire.
struct Wire {
    bytes: Arc<loom::sync::Mutex<Vec<u8>>>,
    writes: loom::sync::atomic::AtomicUsize,
}

impl WriteNow for Wire {
    fn write_now(&self, bytes: &[u8]) -> WroteNow {
        let first = self.writes.fetch_add(1, loom::sync::atomic::Ordering::Relaxed) == 0;
        let n = if first { bytes.len().min(3) } else { bytes.len() };
        self.bytes.lock().unwrap().extend_from_slice(&bytes[..n]);
        WroteNow { bytes: n, flushed: true }
    }
}

/// The one-byte payloads of the DATA frames on `wire`; panics if the bytes
/// do not decode (a frame cut into by another).
fn payloads(wire: &[u8]) -> Vec<u8> {
    use tokio_util::codec::Decoder;
    let mut codec = smartsock_framing::Codec::new();
    let mut bytes = bytes::BytesMut::from(wire);
    let mut payloads = Vec::new();
    while let Some(frame) = codec.decode_eof(&mut bytes).expect("the wire decodes") {
        payloads.push(frame.payload()[0]);
    }
    payloads
}

#[test]
fn senders_writing_to_the_stream_themselves_keep_every_frame_once_and_in_order() {
    loom::model(|| {
        let wire = Arc::new(loom::sync::Mutex::new(Vec::new()));
        let totals = Arc::default();
        let id = smartsock_framing::PeerId::from_bytes([1; 16]);
        let counters = Arc::new(crate::stats::PeerCounters::new(id, "x".into(), crate::Side::Bind, totals));
        let stream = Wire { bytes: wire.clone(), writes: loom::sync::atomic::AtomicUsize::new(0) };
        let direct = Direct { stream: Box::new(stream), counters };
        let outbox = Arc::new(Outbox::new(4, usize::MAX, 4, usize::MAX).with_direct(direct));
        let room = Arc::new(RoomSignal::default());
        // The writer, as `write_loop` is one: take, write (a leading tail
        // first), and only then park again (on an empty outbox: idle, so
        // senders may write).
        let writer = {
            let (outbox, room, wire) = (outbox.clone(), room.clone(), wire.clone());
            thread::spawn(move || {
                let (mut acks, mut batch, mut spare) = (Vec::new(), VecDeque::new(), None);
                loop {
                    let open = block_on(std::future::poll_fn(|cx| {
                        outbox.poll_drain(cx, &room, &mut acks, &mut batch, &mut spare)
                    }));
                    let mut written = wire.lock().unwrap();
                    for chunk in batch.drain(..) {
                        match chunk {
                            Chunk::Encoded { bytes, .. } | Chunk::Tail { bytes, .. } => {
                                written.extend_from_slice(&bytes)
                            }
                            Chunk::Own(_) => unreachable!("small frames only"),
                        }
                    }
                    drop(written);
                    if !open {
                        return;
                    }
                }
            })
        };
        // One sender sends three frames in a row; the other is the reader
        // re-arming the direct write (a message came) and a reply to it.
        let first = {
            let outbox = outbox.clone();
            thread::spawn(move || {
                for n in 1..=3 {
                    outbox.try_push(frame(n)).unwrap();
                }
            })
        };
        let reply = {
            let outbox = outbox.clone();
            thread::spawn(move || {
                outbox.arm_direct();
                outbox.try_push(frame(4)).unwrap();
            })
        };
        first.join().unwrap();
        reply.join().unwrap();
        // The socket closes once the senders are done: what is still queued
        // (a sender's tail first) goes out last, in the writer's closing
        // write (`write_loop`'s cancel branch).
        let unsent = outbox.close_chunks(&mut Vec::new());
        writer.join().unwrap();
        let mut bytes = wire.lock().unwrap().clone();
        for chunk in unsent {
            match chunk {
                Chunk::Encoded { bytes: run, .. } | Chunk::Tail { bytes: run, .. } => {
                    bytes.extend_from_slice(&run)
                }
                Chunk::Own(_) => unreachable!("small frames only"),
            }
        }
        let wire = payloads(&bytes);
        let in_order: Vec<u8> = wire.iter().copied().filter(|&n| n <= 3).collect();
        assert!(in_order.is_sorted(), "a sender's frames reach the wire in its order: {wire:?}");
        let mut seen = wire.clone();
        seen.sort_unstable();
        assert_eq!(seen, [1, 2, 3, 4], "every frame exactly once, whole: {wire:?}");
    });
}
