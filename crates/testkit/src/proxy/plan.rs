//! The fault plan of a [`FaultProxy`](super::FaultProxy): which way bytes
//! travel, when an armed fault fires, what it does, and the frame counting
//! that lets a trigger name a frame.

use std::time::Duration;

/// Which way bytes travel through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the connecting client to the upstream (bind) end.
    Up,
    /// From the upstream (bind) end back to the client.
    Down,
}

impl Direction {
    pub(super) fn index(self) -> usize {
        match self {
            Direction::Up => 0,
            Direction::Down => 1,
        }
    }
}

/// When an armed fault fires. Counts start when it is armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// At once, on every connection (and, for link faults, both directions).
    Now,
    /// Once exactly this many more bytes have been forwarded in the direction.
    AfterBytes(Direction, u64),
    /// Once exactly this many more whole frames have been forwarded in the
    /// direction: at a frame boundary.
    AfterFrames(Direction, u64),
    /// After this many more whole frames and then this many more bytes (at
    /// least one): inside the next frame if it is longer than that, else
    /// in a later one.
    InsideFrame(Direction, u64, u64),
}

impl Trigger {
    pub(super) fn direction(self) -> Option<Direction> {
        match self {
            Trigger::Now => None,
            Trigger::AfterBytes(d, _) | Trigger::AfterFrames(d, _) | Trigger::InsideFrame(d, _, _) => Some(d),
        }
    }
}

/// What happens when a trigger fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Both ends of the connection get a RST (SO_LINGER 0): what a crashed
    /// host's kernel or a middlebox sends.
    Reset,
    /// Both ends of the connection get a FIN, at that exact byte: a peer
    /// that closed in the middle of whatever it was writing.
    Close,
    /// Nothing more is forwarded either way (connections stay open, new ones
    /// are accepted and stalled too) until [`FaultProxy::heal`](super::FaultProxy::heal)(super::FaultProxy::heal).
    Stall,
    /// At most this many bytes per second in the trigger's direction (both
    /// for [`Trigger::Now`]).
    Throttle(u64),
    /// Each chunk is held this long before it is forwarded, in the trigger's
    /// direction (both for [`Trigger::Now`]). One chunk is in the air at a
    /// time, so it also caps the rate at [`CHUNK`](super::CHUNK) per delay.
    Delay(Duration),
    /// The next this many bytes in the trigger's direction vanish (both for
    /// [`Trigger::Now`]): the byte stream loses its framing, as after a
    /// broken middlebox.
    Drop(u64),
}

#[derive(Debug)]
pub(super) struct Armed {
    pub(super) fault: Fault,
    pub(super) trigger: Trigger,
    pub(super) bytes: u64,
    pub(super) frames: u64,
    /// Bytes forwarded after the K-th frame (for `InsideFrame`).
    pub(super) after: u64,
}

impl Armed {
    pub(super) fn satisfied(&self) -> bool {
        match self.trigger {
            Trigger::Now => true,
            Trigger::AfterBytes(_, k) => self.bytes >= k,
            Trigger::AfterFrames(_, k) => self.frames >= k,
            Trigger::InsideFrame(_, k, extra) => self.frames >= k && self.after >= extra.max(1),
        }
    }

    /// The most bytes that can go before this one must be looked at again.
    pub(super) fn bytes_needed(&self) -> u64 {
        match self.trigger {
            Trigger::AfterBytes(_, k) => k - self.bytes,
            Trigger::InsideFrame(_, k, extra) if self.frames >= k => extra.max(1) - self.after,
            _ => u64::MAX,
        }
    }
}

/// Where a direction's parser is in the aiomsg framing.
#[derive(Debug, Default)]
pub(super) struct FrameParser {
    header: [u8; 4],
    have: usize,
    body_left: u64,
}

impl FrameParser {
    /// The most bytes the next step may take from `available`.
    pub(super) fn step(&self, available: usize) -> usize {
        if self.have < 4 { 1 } else { usize::try_from(self.body_left).unwrap_or(usize::MAX).min(available) }
    }

    /// Takes `bytes` (at most one step); true if a frame ended with them.
    pub(super) fn consume(&mut self, bytes: &[u8]) -> bool {
        if self.have < 4 {
            self.header[self.have] = bytes[0];
            self.have += 1;
            if self.have == 4 {
                self.body_left = u64::from(u32::from_be_bytes(self.header));
                if self.body_left == 0 {
                    self.have = 0;
                    return true;
                }
            }
            false
        } else {
            self.body_left -= bytes.len() as u64;
            if self.body_left == 0 {
                self.have = 0;
                return true;
            }
            false
        }
    }
}
