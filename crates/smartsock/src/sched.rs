//! [`prefer_batch_scheduling`]: runtime threads that do not preempt the
//! thread that wakes them (Linux's `SCHED_BATCH`).
//!
//! A send queues the message on the calling thread and wakes the
//! connection's writer. When the writer's worker thread shares a CPU with
//! the sender, Linux's default policy lets the woken worker preempt the
//! sender: the writer takes the few messages queued so far, writes them and
//! parks, and the sender pays two switches per batch. Under `SCHED_BATCH` a
//! woken thread waits for the running one's time slice, so the sender runs
//! on and the writer takes a full queue per write.

/// Puts the calling thread under Linux's `SCHED_BATCH` scheduling policy,
/// keeping its nice value; made to be passed to tokio's
/// [`on_thread_start`](tokio::runtime::Builder::on_thread_start).
///
/// A thread under `SCHED_BATCH` does not preempt the running thread when it
/// is woken: it waits for a free CPU or the end of that thread's time
/// slice. For a runtime whose workers carry a socket's connections this
/// means fewer, bigger writes when the application sends faster than one
/// message per wake-up; measured on a 2-vCPU machine, one-way 64 B:
///
/// | application code | default policy | `SCHED_BATCH` workers |
/// |---|---:|---:|
/// | `smartsock-blocking` threads (it does this by default) | 3.9M msg/s | 6.0-7.0M msg/s |
/// | `block_on` on 2 workers (`#[tokio::main]`'s body) | 3.4M msg/s | 4.0-4.4M msg/s |
///
/// Request/reply latency on idle CPUs did not change; with both ends on
/// one CPU it fell. What it can cost: on CPUs kept busy by other threads,
/// a woken worker may wait up to a time slice (a few milliseconds) before
/// it runs. `#[tokio::main]` builds its runtime itself; build it by hand
/// to use this:
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let runtime = tokio::runtime::Builder::new_multi_thread()
///     .enable_all()
///     .on_thread_start(smartsock::prefer_batch_scheduling)
///     .build()?;
/// runtime.block_on(async {
///     let socket = smartsock::Socket::new().expect("a socket");
///     // ... the application ...
///     socket.close().await;
/// });
/// # Ok(())
/// # }
/// ```
///
/// A thread whose nice value is not 0 is left as it is: the only way to set
/// the policy without unsafe code sets the nice value too, and the
/// application's choice of niceness wins. A refusal by the system leaves
/// the thread under its policy: sockets work the same, only slower. On
/// other platforms, which have no such policy, this does nothing.
pub fn prefer_batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id,
        };
        use thread_priority::{ThreadPriority, ThreadPriorityOsValue};

        // On Linux a nice value belongs to the thread, and this reads the
        // calling thread's.
        if rustix::process::getpriority_process(None) != Ok(0) {
            return;
        }
        // The default `ThreadPriorityOsValue` is nice 0, what the thread has.
        let _ = set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Os(ThreadPriorityOsValue::default()),
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
        );
    }
}
