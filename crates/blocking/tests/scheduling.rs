//! The scheduling policy of the socket's own worker threads (Linux only):
//! `SCHED_BATCH` by default, the default policy when turned off, and a
//! niced thread's nice value never touched.
#![cfg(target_os = "linux")]

use std::sync::mpsc;
use std::thread;
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

#[test]
fn a_niced_thread_s_workers_keep_their_nice_value_and_policy() -> Result<(), Error> {
    // A thread of its own, so that the nice value set here (inherited by
    // the threads it starts) stays with it.
    thread::spawn(|| {
        rustix::process::setpriority_process(None, 5).expect("raising a nice value is always allowed");
        let socket = Socket::new()?;
        assert_eq!(worker_scheduling(&socket), (OTHER, 5));
        socket.close();
        Ok(())
    })
    .join()
    .expect("the niced thread")
}
