//! The messages waiting for their ACKs, by counter.
//!
//! Counters are handed out in order and ACKs come back mostly in order, so
//! the table is a ring indexed by counter: a send writes at its back, an
//! ACK clears a slot near its front, and the cleared front is dropped
//! (once per batch of ACKs). Both touch memory that was just touched, where
//! a hash table keyed by counter wrote every entry to a cold slot of its
//! own (the insert's copy into that slot was a fifth of the at-least-once
//! sender's bookkeeping).
//!
//! What the ring cannot hold goes to a small map: a message whose slot was
//! dropped before its hand-over (counters taken in one order and handed
//! over in another), and the oldest messages once the ring would span more
//! than its limit. So one message that is never acknowledged costs, past
//! that limit, a map entry, not a ring that grows with every message sent
//! after it. The ring's memory is bounded by its limit (it keeps its
//! capacity once grown).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;
use smartsock_patterns::Message;
use smartsock_transport::{Frame, MsgId, PeerId};
use tokio::time::Instant;

/// Fibonacci hashing of counters: spreads consecutive keys over the whole
/// table; the keys are ours, so there is nothing to defend against.
#[derive(Default)]
pub(crate) struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type SeqMap<V> = HashMap<u64, V, BuildHasherDefault<SeqHasher>>;

/// One message waiting for its ACK.
pub(crate) struct Pending {
    /// The DATA_REQ, as sent.
    pub(crate) message: Message,
    pub(crate) attempts: u32,
    /// When its first send's bucket was cut (no earlier than the send);
    /// `None` until the driver has seen it.
    pub(crate) first_sent: Option<Instant>,
    /// The peer it went to last, when the route said so; an ACK from any
    /// other peer does not count.
    pub(crate) peer: Option<PeerId>,
    /// When it was last sent, in send order (first sends and resends share
    /// one counter): a peer that has acknowledged only messages sent before
    /// this one is still working through its queue.
    pub(crate) order: u64,
}

impl Pending {
    /// The id the message went out with.
    pub(crate) fn id(&self) -> Option<MsgId> {
        request_id(&self.message)
    }
}

/// The id a DATA_REQ goes out with (`None` for any other frame).
pub(crate) fn request_id(message: &Message) -> Option<MsgId> {
    match message.frame {
        Frame::DataReq { id, .. } => Some(id),
        _ => None,
    }
}

/// Payloads of acknowledged messages kept this long or shorter go to
/// [`Retired`]; longer ones are freed where the ACK is read.
pub(crate) const MAX_RETIRED_LEN: usize = 1024;

/// [`Retired`] keeps at most this many payloads; past it, payloads are
/// freed where the ACK is read.
pub(crate) const MAX_RETIRED: usize = 1024;

/// Payloads of acknowledged messages, freed one a send by the thread that
/// sends, and all at once by the driver's next tick.
///
/// Why: an application that makes a fresh payload for each message
/// allocates on its sending thread, and under at-most-once the payload is
/// freed right after, so the allocator's per-thread cache serves every
/// message. Under at-least-once the payloads come back by the hundred with
/// each read of ACKs (on a multi-thread runtime, on another thread), more
/// than that cache holds, and glibc's slower shared bins (a locked
/// compare-and-swap each) cost the sender 7% of its throughput on 64-byte
/// messages. Freed one a send, each payload makes room for the next one
/// allocated.
///
/// Bounded in count and in length ([`MAX_RETIRED`] payloads of at most
/// [`MAX_RETIRED_LEN`] bytes); a payload kept here may share a larger
/// buffer, which it keeps alive until then (at most one tick, a tenth of
/// the resend timeout).
#[derive(Default)]
pub(crate) struct Retired(Vec<Bytes>);

impl Retired {
    /// Takes the payload of `entry` (acknowledged), if it is short and
    /// there is room; else moves it to `to_free`, for the caller to free
    /// once it has let go of the table (a large payload's free can be a
    /// system call).
    fn keep_from(&mut self, entry: &mut Pending, to_free: &mut Vec<Bytes>) {
        if let Frame::DataReq { payload, .. } = &mut entry.message.frame {
            let payload = std::mem::take(payload);
            if payload.len() <= MAX_RETIRED_LEN && self.0.len() < MAX_RETIRED {
                self.0.push(payload);
            } else {
                to_free.push(payload);
            }
        }
    }

    /// One payload, for the caller to drop once it has let go of the table.
    pub(crate) fn take_one(&mut self) -> Option<Bytes> {
        self.0.pop()
    }

    /// Every payload kept, for the caller to drop once it has let go of
    /// the table.
    pub(crate) fn take_all(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.0)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The payload bytes `entry` holds on to: what the in-flight byte mark
/// counts.
fn payload_len(entry: &Pending) -> usize {
    entry.message.frame.payload().len()
}

/// The pending messages by counter: a ring from `base`, and a map for what
/// lies before it.
pub(crate) struct PendingTable {
    /// The counter of `ring[0]`.
    base: u64,
    /// Slot `i` holds message `base + i`, or nothing (acknowledged, given
    /// up, not handed over yet, or never sent). Never starts with an empty
    /// slot, and never spans more than `span_limit` counters.
    ring: VecDeque<Option<Pending>>,
    /// Pending messages below `base`.
    before: SeqMap<Pending>,
    /// Entries in the ring and in `before`.
    len: usize,
    /// Their payload bytes.
    bytes: usize,
    span_limit: usize,
}

impl PendingTable {
    /// A table whose ring spans at most `span_limit` counters (at least 1).
    pub(crate) fn new(span_limit: usize) -> Self {
        Self {
            base: 0,
            ring: VecDeque::new(),
            before: SeqMap::default(),
            len: 0,
            bytes: 0,
            span_limit: span_limit.max(1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The payload bytes of the pending messages.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Index of `seq` in the ring, if it lies at or past `base`.
    fn index(&self, seq: u64) -> Option<usize> {
        seq.checked_sub(self.base).map(|offset| usize::try_from(offset).unwrap_or(usize::MAX))
    }

    /// Puts message `seq` in the table (replacing one of the same counter);
    /// returns it where it now lies.
    pub(crate) fn insert(&mut self, seq: u64, entry: Pending) -> &mut Pending {
        self.bytes += payload_len(&entry);
        let Some(index) = self.index(seq) else {
            return match self.before.entry(seq) {
                Entry::Occupied(mut slot) => {
                    self.bytes -= payload_len(&slot.insert(entry));
                    slot.into_mut()
                }
                Entry::Vacant(slot) => {
                    self.len += 1;
                    slot.insert(entry)
                }
            };
        };
        if index >= self.span_limit {
            // The ring would span too far: its oldest messages move out.
            self.move_before(seq - (self.span_limit as u64 - 1));
        }
        if self.ring.is_empty() {
            // The ring starts at this message (never with an empty slot).
            self.base = seq;
        }
        let index = self.index(seq).expect("at or past the base");
        if index < self.ring.len() {
            let slot = &mut self.ring[index];
            match slot {
                Some(replaced) => self.bytes -= payload_len(replaced),
                None => self.len += 1,
            }
            return slot.insert(entry);
        }
        // Past the back (usually just past it): empty slots for the
        // counters in between, taken but not handed over yet.
        self.ring.resize_with(index, || None);
        self.ring.push_back(Some(entry));
        self.len += 1;
        self.ring.back_mut().and_then(Option::as_mut).expect("just pushed")
    }

    /// Moves every message below `new_base` to the map, and the ring's
    /// start to `new_base` (or past the empty slots after it).
    fn move_before(&mut self, new_base: u64) {
        let below = usize::try_from(new_base - self.base).map_or(self.ring.len(), |n| n.min(self.ring.len()));
        for (seq, slot) in (self.base..).zip(self.ring.drain(..below)) {
            if let Some(entry) = slot {
                self.before.insert(seq, entry);
            }
        }
        self.base = new_base;
        self.trim_front();
    }

    /// Drops the empty slots at the ring's start (in one drain: a pop
    /// would copy each whole slot out to drop it).
    fn trim_front(&mut self) {
        let empty = self.ring.iter().take_while(|slot| slot.is_none()).count();
        if empty > 0 {
            self.ring.drain(..empty);
            self.base += empty as u64;
        }
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&Pending> {
        match self.index(seq) {
            Some(index) => self.ring.get(index)?.as_ref(),
            None => self.before.get(&seq),
        }
    }

    pub(crate) fn get_mut(&mut self, seq: u64) -> Option<&mut Pending> {
        match self.index(seq) {
            Some(index) => self.ring.get_mut(index)?.as_mut(),
            None => self.before.get_mut(&seq),
        }
    }

    pub(crate) fn remove(&mut self, seq: u64) -> Option<Pending> {
        let entry = match self.index(seq) {
            Some(index) => self.ring.get_mut(index)?.take(),
            None => self.before.remove(&seq),
        };
        self.bytes -= entry.as_ref().map_or(0, payload_len);
        self.removed(seq, entry.is_some());
        entry
    }

    /// Drops message `seq` where it lies, if it is pending, as one of a run
    /// of removals (a batch of ACKs), for a caller that has read what it
    /// needs of it (no copy of the entry out); its payload goes to
    /// `retired`, or to `to_free` (see [`Retired::keep_from`]). The ring's
    /// cleared front stays until
    /// [`end_run`](Self::end_run) drops it once, which the caller must call
    /// before it lets go of the table (until then the ring may start with
    /// empty slots; lookups do not mind).
    pub(crate) fn discard_in_run(
        &mut self,
        seq: u64,
        retired: &mut Retired,
        to_free: &mut Vec<Bytes>,
    ) -> bool {
        let found = match self.index(seq) {
            Some(index) => match self.ring.get_mut(index) {
                Some(Some(entry)) => {
                    self.bytes -= payload_len(entry);
                    retired.keep_from(entry, to_free);
                    self.ring[index] = None;
                    true
                }
                _ => false,
            },
            None => self
                .before
                .remove(&seq)
                .map(|mut entry| {
                    self.bytes -= payload_len(&entry);
                    retired.keep_from(&mut entry, to_free);
                })
                .is_some(),
        };
        self.len -= usize::from(found);
        found
    }

    /// Ends a run of [`discard_in_run`](Self::discard_in_run): drops the
    /// ring's cleared front, in one go.
    pub(crate) fn end_run(&mut self) {
        self.trim_front();
    }

    /// Counts a removal, and drops the ring's cleared front.
    fn removed(&mut self, seq: u64, found: bool) {
        self.len -= usize::from(found);
        if found && seq == self.base {
            self.trim_front();
        }
    }

    /// Puts the counters of the pending messages from `from` up to `to`
    /// (not included) in `counters`, in order (it is cleared first; the
    /// caller keeps it, so that a tick allocates nothing under the table's
    /// lock). Visits only what may be pending there (the map, when it holds
    /// anything, and the ring's slots in that range), not every counter of
    /// the range: most of a tick's counters were acknowledged long before it.
    pub(crate) fn counters_between(&self, from: u64, to: u64, counters: &mut Vec<u64>) {
        counters.clear();
        if !self.before.is_empty() {
            counters.extend(self.before.keys().copied().filter(|seq| (from..to).contains(seq)));
            counters.sort_unstable();
        }
        let slot = |seq: u64| self.index(seq).map_or(0, |index| index.min(self.ring.len()));
        let (first, end) = (slot(from), slot(to));
        if first < end {
            let ring = self.ring.range(first..end).zip(self.base + first as u64..);
            counters.extend(ring.filter_map(|(entry, seq)| entry.as_ref().map(|_| seq)));
        }
    }

    /// Every pending message with its counter, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Pending)> {
        let ring = self.ring.iter().zip(self.base..).filter_map(|(slot, seq)| Some((seq, slot.as_ref()?)));
        ring.chain(self.before.iter().map(|(&seq, entry)| (seq, entry)))
    }

    /// Takes every pending message out, in counter order.
    pub(crate) fn drain(&mut self) -> Vec<(u64, Pending)> {
        let mut all: Vec<(u64, Pending)> = self.before.drain().collect();
        let base = self.base;
        all.extend(self.ring.drain(..).zip(base..).filter_map(|(slot, seq)| Some((seq, slot?))));
        all.sort_unstable_by_key(|&(seq, _)| seq);
        self.len = 0;
        self.bytes = 0;
        all
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use smartsock_patterns::Destination;

    use super::*;

    fn entry(seq: u64) -> Pending {
        entry_of(seq, 0)
    }

    /// An entry whose payload is `len` bytes.
    fn entry_of(seq: u64, len: usize) -> Pending {
        let mut id = [0; 16];
        id[..8].copy_from_slice(&seq.to_be_bytes());
        let frame = Frame::DataReq { id: MsgId::from_bytes(id), payload: Bytes::from(vec![0; len]) };
        Pending {
            message: Message { to: Destination::AnyOne, frame },
            attempts: 1,
            first_sent: None,
            peer: None,
            order: seq,
        }
    }

    fn counters(table: &PendingTable) -> Vec<u64> {
        let mut seqs: Vec<u64> = table
            .iter()
            .map(|(seq, entry)| {
                assert_eq!(entry.order, seq, "each entry under its own counter");
                seq
            })
            .collect();
        seqs.sort_unstable();
        seqs
    }

    #[test]
    fn the_ring_spans_exactly_its_limit_and_one_more_moves_the_oldest_out() {
        let mut table = PendingTable::new(4);
        for seq in 10..14 {
            table.insert(seq, entry(seq));
        }
        assert_eq!((table.base, table.ring.len(), table.before.len()), (10, 4, 0));
        table.insert(14, entry(14));
        assert_eq!((table.base, table.ring.len(), table.before.len()), (11, 4, 1));
        assert_eq!(table.get(10).map(|e| e.order), Some(10), "moved, still found");
        assert_eq!(counters(&table), vec![10, 11, 12, 13, 14]);
        // A far jump moves everything out.
        table.insert(100, entry(100));
        assert_eq!((table.base, table.ring.len(), table.before.len()), (100, 1, 5));
        assert_eq!(table.len(), 6);
        assert_eq!(table.remove(10).map(|e| e.order), Some(10));
        assert_eq!(table.remove(10).map(|e| e.order), None);
        assert_eq!(table.len(), 5);
    }

    #[test]
    fn the_ring_drops_its_cleared_front_and_a_late_hand_over_goes_before_it() {
        let mut table = PendingTable::new(8);
        // 0 is taken but handed over late; 1..4 are in.
        for seq in 1..4 {
            table.insert(seq, entry(seq));
        }
        assert_eq!(table.base, 1);
        table.remove(2);
        assert_eq!((table.base, table.ring.len()), (1, 3), "a hole in the middle stays");
        table.remove(1);
        assert_eq!((table.base, table.ring.len()), (3, 1), "the cleared front goes");
        table.insert(0, entry(0));
        assert_eq!(table.before.len(), 1);
        assert_eq!(counters(&table), vec![0, 3]);
        let drained: Vec<u64> = table.drain().into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(drained, vec![0, 3]);
        assert!(table.is_empty());
    }

    /// An entry for counter `seq` whose payload is `len` bytes.
    fn entry_of_len(seq: u64, len: usize) -> Pending {
        let mut pending = entry(seq);
        if let Frame::DataReq { payload, .. } = &mut pending.message.frame {
            *payload = Bytes::from(vec![7; len]);
        }
        pending
    }

    #[test]
    fn acknowledged_payloads_are_kept_up_to_their_length_and_count_and_the_rest_handed_out_to_free() {
        let mut table = PendingTable::new(2 * MAX_RETIRED);
        let mut retired = Retired::default();
        let mut to_free = Vec::new();
        // By length: one at the bound is kept, one byte more is not.
        table.insert(0, entry_of_len(0, MAX_RETIRED_LEN));
        table.insert(1, entry_of_len(1, MAX_RETIRED_LEN + 1));
        assert!(table.discard_in_run(0, &mut retired, &mut to_free));
        assert!(table.discard_in_run(1, &mut retired, &mut to_free));
        table.end_run();
        assert_eq!(retired.len(), 1);
        assert_eq!(retired.take_one().map(|payload| payload.len()), Some(MAX_RETIRED_LEN));
        let lengths: Vec<usize> = to_free.drain(..).map(|payload| payload.len()).collect();
        assert_eq!(lengths, vec![MAX_RETIRED_LEN + 1], "not freed under the table's lock");
        // By count: the first MAX_RETIRED are kept, the next two are not.
        for seq in 2..MAX_RETIRED as u64 + 4 {
            table.insert(seq, entry_of_len(seq, 1));
            assert!(table.discard_in_run(seq, &mut retired, &mut to_free));
        }
        table.end_run();
        assert_eq!(retired.len(), MAX_RETIRED);
        assert_eq!(to_free.len(), 2);
        assert!(table.is_empty());
        assert_eq!(retired.take_all().len(), MAX_RETIRED);
        assert_eq!(retired.len(), 0);
    }

    /// The table against a plain ordered map, over inserts in and out of
    /// order, removals near the front and far from it, and jumps past the
    /// ring's limit; its payload bytes too (what the in-flight byte mark
    /// reads), through replacements and moves to the map.
    #[test]
    fn the_table_agrees_with_an_ordered_map() {
        let mut table = PendingTable::new(16);
        let mut retired = Retired::default();
        let mut model: BTreeMap<u64, usize> = BTreeMap::new();
        let mut scratch = Vec::new();
        let mut next = 0u64;
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for step in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let pick = state % 100;
            if pick < 45 {
                // A send, at times handed over out of order, at times far on.
                let seq = match pick {
                    0..=4 => next.saturating_sub(state >> 8 & 31),
                    5 => next + 40,
                    _ => next,
                };
                next = next.max(seq + 1);
                // What `insert` returns is the entry kept (a counter
                // inserted again replaces its entry, payload and all).
                let len = (state >> 50) as usize % 9;
                table.insert(seq, entry_of(seq, len)).attempts = 7;
                assert_eq!(table.get(seq).map(|kept| kept.attempts), Some(7), "step {step}");
                model.insert(seq, len);
            } else if !model.is_empty() {
                // A batch of one to three ACKs, mostly of old messages, at
                // times of any: taken out one by one, or dropped where they
                // lie in one run.
                let in_run = state >> 20 & 1 == 1;
                for k in 0..=(state >> 21) % 3 {
                    let Some(&oldest) = model.keys().next() else { break };
                    let bits = state >> (8 + 4 * k);
                    let seq = if pick < 80 { oldest + (bits & 3) } else { oldest + bits % (next - oldest) };
                    let found = if in_run {
                        table.discard_in_run(seq, &mut retired, &mut Vec::new())
                    } else {
                        table.remove(seq).is_some()
                    };
                    assert_eq!(found, model.remove(&seq).is_some(), "step {step}");
                }
                if in_run {
                    table.end_run();
                }
            }
            assert_eq!(table.len(), model.len(), "step {step}");
            assert_eq!(table.bytes(), model.values().sum::<usize>(), "step {step}");
            assert!(table.ring.len() <= 16, "step {step}: the ring spans {}", table.ring.len());
            assert!(!matches!(table.ring.front(), Some(None)), "step {step}: starts with an empty slot");
            assert!(table.before.keys().all(|&seq| seq < table.base), "step {step}");
            if step % 1000 == 0 {
                assert_eq!(counters(&table), model.keys().copied().collect::<Vec<_>>(), "step {step}");
            }
            // What the driver's tick asks: the pending counters of a range,
            // one that starts and ends anywhere (before the ring, in it,
            // past it, or empty).
            let from = next.saturating_sub(state >> 32 & 63);
            let to = from + (state >> 40 & 63);
            let expected: Vec<u64> = model.range(from..to).map(|(&seq, _)| seq).collect();
            table.counters_between(from, to, &mut scratch);
            assert_eq!(scratch, expected, "step {step}: {from}..{to}");
        }
        let drained = table.drain();
        assert_eq!(
            drained.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
            model.keys().copied().collect::<Vec<_>>()
        );
        assert_eq!((table.len(), table.bytes()), (0, 0), "drained");
    }
}
