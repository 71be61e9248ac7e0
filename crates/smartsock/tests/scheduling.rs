//! `prefer_batch_scheduling` on a runtime's worker threads (Linux only):
//! `SCHED_BATCH` with the nice value kept, and a niced thread left alone.
#![cfg(target_os = "linux")]

use std::thread;

use thread_priority::unix::{NormalThreadSchedulePolicy, ThreadSchedulePolicy, thread_schedule_policy};

const BATCH: ThreadSchedulePolicy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
const OTHER: ThreadSchedulePolicy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);

/// Builds a 2-worker runtime with `prefer_batch_scheduling` on each worker,
/// and reports what a task on it sees of its thread: policy and nice value.
fn worker_scheduling() -> (ThreadSchedulePolicy, i32) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(smartsock::prefer_batch_scheduling)
        .build()
        .expect("a runtime");
    let on_a_worker = runtime.spawn(async {
        let policy = thread_schedule_policy().expect("the worker's policy");
        let nice = rustix::process::getpriority_process(None).expect("the worker's nice value");
        (policy, nice)
    });
    runtime.block_on(on_a_worker).expect("the task ran on a worker")
}

#[test]
fn workers_run_under_sched_batch_and_the_caller_does_not() {
    // A thread of its own: the test harness's threads are not ours to change.
    thread::spawn(|| {
        assert_eq!(worker_scheduling(), (BATCH, 0));
        assert_eq!(thread_schedule_policy().expect("this thread's policy"), OTHER);
    })
    .join()
    .expect("the test thread");
}

#[test]
fn a_niced_thread_s_workers_keep_their_nice_value_and_policy() {
    // The nice value set here is inherited by the threads this one starts.
    thread::spawn(|| {
        rustix::process::setpriority_process(None, 5).expect("raising a nice value is always allowed");
        assert_eq!(worker_scheduling(), (OTHER, 5));
    })
    .join()
    .expect("the niced thread");
}
