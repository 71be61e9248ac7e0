//! [`AtLeastOnceStats`]: the at-least-once sender's counters, added to
//! where the work happens and read as a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of an at-least-once sender.
#[derive(Debug, Default)]
pub struct AtLeastOnceStats {
    pub(crate) sent: AtomicU64,
    pub(crate) resent: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) undelivered: AtomicU64,
    pub(crate) undelivered_not_kept: AtomicU64,
    pub(crate) postponed: AtomicU64,
    pub(crate) unknown_acks: AtomicU64,
}

impl AtLeastOnceStats {
    /// Messages sent for the first time.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Sends after the first.
    pub fn resent(&self) -> u64 {
        self.resent.load(Ordering::Relaxed)
    }

    /// Messages acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Messages given up.
    pub fn undelivered(&self) -> u64 {
        self.undelivered.load(Ordering::Relaxed)
    }

    /// Given-up messages that found the undelivered queue at either of its
    /// marks, in messages or in bytes (reported as events and counted here,
    /// but not kept).
    pub fn undelivered_not_kept(&self) -> u64 {
        self.undelivered_not_kept.load(Ordering::Relaxed)
    }

    /// Resends skipped because the peer holding the message was still
    /// connected and acknowledging the messages sent before it: the message
    /// was still on its way, so a resend would only have made a duplicate.
    pub fn postponed(&self) -> u64 {
        self.postponed.load(Ordering::Relaxed)
    }

    /// ACKs that matched no pending message (repeats, or forged), ignored.
    pub fn unknown_acks(&self) -> u64 {
        self.unknown_acks.load(Ordering::Relaxed)
    }
}
