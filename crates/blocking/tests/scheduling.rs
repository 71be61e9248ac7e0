//! The scheduling policy of the socket's own worker threads (Linux only):
//! `SCHED_BATCH` by default (smartsock's tests cover the function that sets
//! it), the default policy when turned off.
#![cfg(target_os = "linux")]

use std::sync::mpsc;
use std::time::Duration;

use smartsock_blocking::{Error, Socket};
use thread_priority::unix::{NormalThreadSchedulePolicy, ThreadSchedulePolicy, thread_schedule_policy};

/// What a task on the socket's runtime sees of its worker thread: the
/// scheduling policy and the nice value.
fn worker_scheduling(socket: &Socket) -> (ThreadSchedulePolicy, i32) {
    let (tx, rx) = mpsc::channel();
    socket.runtime().spawn(async move {
        let policy = thread_schedule_policy().expect("the worker's policy");
        let nice = rustix::process::getpriority_process(None).expect("the worker's nice value");
        tx.send((policy, nice)).expect("the test waits");
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("the task ran on a worker")
}

const BATCH: ThreadSchedulePolicy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
const OTHER: ThreadSchedulePolicy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);

#[test]
fn the_socket_s_own_workers_run_under_sched_batch_by_default() -> Result<(), Error> {
    let socket = Socket::builder().worker_threads(2).build()?;
    assert_eq!(worker_scheduling(&socket), (BATCH, 0));
    // The application's thread is not touched.
    assert_eq!(thread_schedule_policy().expect("this thread's policy"), OTHER);
    socket.close();
    Ok(())
}

#[test]
fn batch_scheduling_off_leaves_the_default_policy() -> Result<(), Error> {
    let socket = Socket::builder().batch_scheduling(false).build()?;
    assert_eq!(worker_scheduling(&socket), (OTHER, 0));
    socket.close();
    Ok(())
}
