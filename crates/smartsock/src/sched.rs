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
/// if it runs under the default policy at nice 0; made to be passed to
/// tokio's [`on_thread_start`](tokio::runtime::Builder::on_thread_start),
/// which runs it on every thread the runtime starts (its workers and its
/// blocking pool). If you already have an `on_thread_start` callback, call
/// this from it.
///
/// A thread under `SCHED_BATCH` does not preempt the running thread when it
/// is woken: it waits for a free CPU or the end of that thread's time
/// slice. For a runtime whose workers carry a socket's connections this
/// means fewer, bigger writes when the application sends faster than one
/// message per wake-up. In the bench on a 2-vCPU machine (one-way 64 B,
/// medians of runs of 1 s; the README has the latest):
///
/// | application code | default policy | `SCHED_BATCH` workers |
/// |---|---:|---:|
/// | `smartsock-blocking` threads (it does this by default) | 3.9M msg/s | 5.0-6.6M msg/s |
/// | `block_on` on 2 workers (`#[tokio::main]`'s body) | 3.3M msg/s | 4.8-5.0M msg/s |
///
/// The cost: on CPUs kept busy by other threads, a woken worker may wait up
/// to a time slice (a few milliseconds) before it runs, where it would have
/// preempted. `#[tokio::main]` builds its runtime itself; build it by hand
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
/// A thread under any other policy (real-time, idle, batch already) or with
/// a nice value other than 0 keeps its policy and nice value: the
/// application chose them, and the only way to set the policy without
/// unsafe code sets the nice value too. A refusal by the system leaves the
/// thread as it was: sockets work the same, only slower. Elsewhere than
/// Linux (Android included) this does nothing.
pub fn prefer_batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
            thread_native_id, thread_schedule_policy,
        };
        use thread_priority::{ThreadPriority, ThreadPriorityOsValue};

        let default_policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
        // On Linux a nice value belongs to the thread, and this reads the
        // calling thread's. Something that renices the thread between this
        // check and the call below would be undone, once, at thread start.
        if thread_schedule_policy() != Ok(default_policy)
            || rustix::process::getpriority_process(None) != Ok(0)
        {
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
