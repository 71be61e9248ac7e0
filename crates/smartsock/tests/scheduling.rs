//! `prefer_batch_scheduling` on a runtime's threads (Linux only):
//! `SCHED_BATCH` for a thread under the default policy at nice 0, and any
//! other thread (niced, or under another policy) left as it is.
#![cfg(target_os = "linux")]

use std::thread;

use smartsock_testkit::sched::{BATCH, IDLE, OTHER, started_plain, this_thread};
use thread_priority::unix::{ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id};
use thread_priority::{ThreadPriority, ThreadPriorityOsValue};

/// Builds a 2-worker runtime with `prefer_batch_scheduling` on each thread,
/// and reports what a task on it sees of its worker.
fn worker_scheduling() -> (ThreadSchedulePolicy, i32) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(smartsock::prefer_batch_scheduling)
        .build()
        .expect("a runtime");
    let on_a_worker = runtime.spawn(async { this_thread() });
    runtime.block_on(on_a_worker).expect("the task ran on a worker")
}

/// Runs `f` on a thread of its own: what it changes of its own scheduling
/// (inherited by the threads it starts) stays with it.
fn on_own_thread(f: impl FnOnce() + Send + 'static) {
    thread::spawn(f).join().expect("the test thread");
}

#[test]
fn workers_run_under_sched_batch_and_the_caller_does_not() {
    if !started_plain() {
        return;
    }
    on_own_thread(|| {
        assert_eq!(worker_scheduling(), (BATCH, 0));
        assert_eq!(this_thread(), (OTHER, 0));
    });
}

#[test]
fn a_niced_thread_s_workers_keep_their_nice_value_and_policy() {
    if !started_plain() {
        return;
    }
    on_own_thread(|| {
        rustix::process::setpriority_process(None, 5).expect("raising a nice value is allowed");
        assert_eq!(worker_scheduling(), (OTHER, 5));
    });
}

#[test]
fn a_thread_under_another_policy_keeps_it() {
    if !started_plain() {
        return;
    }
    on_own_thread(|| {
        // SCHED_IDLE, which any thread may move to, at nice 0.
        set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Os(ThreadPriorityOsValue::default()),
            IDLE,
        )
        .expect("moving to SCHED_IDLE is allowed");
        assert_eq!(worker_scheduling(), (IDLE, 0));
    });
}
