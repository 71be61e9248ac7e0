//! The scheduling policy and nice value of the calling thread (Linux), for
//! the tests of `smartsock::prefer_batch_scheduling` and of the blocking
//! API's own runtime.

use thread_priority::unix::{NormalThreadSchedulePolicy, ThreadSchedulePolicy, thread_schedule_policy};

/// Linux's default policy (`SCHED_OTHER`).
pub const OTHER: ThreadSchedulePolicy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
/// `SCHED_BATCH`.
pub const BATCH: ThreadSchedulePolicy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
/// `SCHED_IDLE`.
pub const IDLE: ThreadSchedulePolicy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);

/// The calling thread's policy and nice value.
pub fn this_thread() -> (ThreadSchedulePolicy, i32) {
    let policy = thread_schedule_policy().expect("a thread's policy");
    let nice = rustix::process::getpriority_process(None).expect("a thread's nice value");
    (policy, nice)
}

/// Whether the calling thread runs as a plain process's does (the default
/// policy at nice 0). Under `nice` or `chrt` a scheduling test has nothing
/// to compare with: it should return early, and this logs why (a warning).
pub fn started_plain() -> bool {
    let (policy, nice) = this_thread();
    let plain = (policy, nice) == (OTHER, 0);
    if !plain {
        tracing::warn!(
            ?policy,
            nice,
            "skipped: the test process does not run under the default policy at nice 0"
        );
    }
    plain
}
