//! Waiting on a future from a plain thread without entering the runtime:
//! the future is polled on the calling thread, and its waker unparks that
//! thread. For futures that need no runtime context (the socket's receive
//! side: a queue and a `Notify`), this is a poll and a park, where
//! `Handle::block_on` would also enter and leave the runtime every call.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

/// Wakes one thread: a flag, so that a wake-up is never lost between a poll
/// and the park, and an unpark.
struct Parker {
    thread: Thread,
    woken: AtomicBool,
}

impl Wake for Parker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::Release) {
            self.thread.unpark();
        }
    }
}

thread_local! {
    /// One parker per thread, made on its first wait.
    static WAKER: (Arc<Parker>, Waker) = {
        let parker = Arc::new(Parker { thread: thread::current(), woken: AtomicBool::new(false) });
        (parker.clone(), Waker::from(parker))
    };
}

/// Polls `future` on this thread until it is ready, parking in between;
/// `None` if `deadline` passes first (the future is dropped then).
pub(crate) fn wait<F: Future>(future: F, deadline: Option<Instant>) -> Option<F::Output> {
    WAKER.with(|(parker, waker)| {
        let mut cx = Context::from_waker(waker);
        let mut future = pin!(future);
        loop {
            // Cleared before the poll: a wake-up during the poll is kept.
            parker.woken.store(false, Ordering::Relaxed);
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return Some(output);
            }
            // `park` may return without an unpark, and an unpark meant for
            // an earlier wait may be pending: the flag decides.
            while !parker.woken.load(Ordering::Acquire) {
                match deadline {
                    None => thread::park(),
                    Some(deadline) => {
                        let now = Instant::now();
                        if now >= deadline {
                            return None;
                        }
                        thread::park_timeout(deadline - now);
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_ready_future_returns_at_once() {
        assert_eq!(wait(async { 7 }, None), Some(7));
    }

    #[test]
    fn a_future_woken_from_another_thread_completes() {
        let (tx, mut rx) = futures_channel();
        let (polled, first_poll) = std::sync::mpsc::channel();
        let sender = thread::spawn(move || {
            // Only once the waiter has looked and found nothing: the wake-up
            // that completes it then comes from this thread.
            first_poll.recv().expect("the waiter polls");
            tx.send(5).expect("receiver waits");
        });
        let watched = std::future::poll_fn(move |cx| {
            let poll = std::pin::Pin::new(&mut rx).poll(cx);
            let _ = polled.send(());
            poll
        });
        assert_eq!(wait(watched, None).map(Result::ok), Some(Some(5)));
        sender.join().expect("sender");
    }

    #[test]
    fn a_deadline_that_passes_gives_none() {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(30);
        assert_eq!(wait(std::future::pending::<()>(), Some(deadline)), None);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn waits_run_one_after_another_on_one_thread() {
        for i in 0..100 {
            let (tx, rx) = futures_channel();
            let sender = thread::spawn(move || tx.send(i).expect("receiver waits"));
            assert_eq!(wait(rx, None).map(Result::ok), Some(Some(i)));
            sender.join().expect("sender");
        }
    }

    fn futures_channel() -> (tokio::sync::oneshot::Sender<i32>, tokio::sync::oneshot::Receiver<i32>) {
        tokio::sync::oneshot::channel()
    }
}
