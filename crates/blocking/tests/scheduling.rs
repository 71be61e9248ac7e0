//! The scheduling policy of the socket's own threads (Linux only):
//! `SCHED_BATCH` by default (smartsock's tests cover the function that sets
//! it), the default policy when turned off, and a runtime handed in left as
//! it is.
#![cfg(target_os = "linux")]

use std::sync::mpsc;
use std::time::Duration;

use smartsock_blocking::{Error, Socket};
use smartsock_testkit::sched::{BATCH, OTHER, started_plain, this_thread};
use thread_priority::unix::ThreadSchedulePolicy;

/// What a task on the socket's runtime sees of its worker thread.
fn worker_scheduling(socket: &Socket) -> (ThreadSchedulePolicy, i32) {
    let (tx, rx) = mpsc::channel();
    socket.runtime().spawn(async move {
        tx.send(this_thread()).expect("the test waits");
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("the task ran on a worker")
}

#[test]
fn the_socket_s_own_workers_run_under_sched_batch_by_default() -> Result<(), Error> {
    if !started_plain() {
        return Ok(());
    }
    let socket = Socket::new()?;
    assert_eq!(worker_scheduling(&socket), (BATCH, 0));
    // The application's thread is not touched.
    assert_eq!(this_thread(), (OTHER, 0));
    socket.close();
    Ok(())
}

#[test]
fn batch_scheduling_off_leaves_the_default_policy() -> Result<(), Error> {
    if !started_plain() {
        return Ok(());
    }
    let socket = Socket::builder().batch_scheduling(false).build()?;
    assert_eq!(worker_scheduling(&socket), (OTHER, 0));
    socket.close();
    Ok(())
}

#[test]
fn a_runtime_handed_in_is_left_as_it_is() -> Result<(), Error> {
    if !started_plain() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let socket = Socket::builder().runtime(runtime.handle().clone()).build()?;
    assert_eq!(worker_scheduling(&socket), (OTHER, 0));
    socket.close();
    Ok(())
}
