//! A job queue: one slow worker and two fast ones, explicit acks, and the
//! two ways of sharing the jobs side by side. Round-robin gives every
//! worker a third, so the slow one holds everyone up; least-loaded gives
//! each job to the worker with the fewest jobs on its hands, so the fast
//! ones take more and the queue empties sooner.
//!
//! `cargo run -p smartsock --example job_queue [JOBS]` (default 600)

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use smartsock::{AckTiming, Delivery, SendMode, Socket};
use tokio::time::timeout;

/// Time a job takes on each worker: the first is ten times slower.
const WORK: [Duration; 3] = [Duration::from_millis(10), Duration::from_millis(1), Duration::from_millis(1)];

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let jobs: usize = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(600);
    for mode in [SendMode::RoundRobin, SendMode::LeastLoaded] {
        let (done, elapsed) = run(mode, jobs).await?;
        println!("{mode:?}: jobs per worker (slow, fast, fast) {done:?}, all done in {elapsed:.2?}");
    }
    Ok(())
}

/// Sends `jobs` jobs through a queue in `mode`; returns how many each worker
/// did and how long the whole took.
async fn run(mode: SendMode, jobs: usize) -> Result<(Vec<usize>, Duration), Box<dyn Error>> {
    // A small in-flight window keeps jobs waiting at the queue, where the
    // choice of worker can still follow who is free.
    let queue =
        Socket::builder().send_mode(mode).delivery(Delivery::AtLeastOnce).max_in_flight(30).build()?;
    let addr = queue.bind("127.0.0.1:0").await?.to_string();
    let counts: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
    let mut workers = Vec::new();
    for (index, work) in WORK.into_iter().enumerate() {
        let worker = Socket::builder().ack_timing(AckTiming::Explicit).build()?;
        worker.connect(&addr)?;
        workers.push(worker.clone());
        let counts = counts.clone();
        tokio::spawn(async move {
            while let Some(job) = worker.recv_with_ack().await {
                tokio::time::sleep(work).await;
                // Acknowledged once done: had the worker died before this,
                // the queue would have sent the job to another.
                if job.ack.ack().is_ok() {
                    counts[index].fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    // Jobs sent before the workers are up would all go to the first.
    queue.wait_for_peers(WORK.len()).await;
    let started = Instant::now();
    for n in 0..jobs {
        queue.send(format!("job {n}")).await?;
    }
    timeout(Duration::from_secs(60), queue.settled()).await?;
    let elapsed = started.elapsed();
    let report = queue.close().await;
    assert!(report.is_complete(), "{report:?}");
    for worker in workers {
        worker.close().await;
    }
    Ok((counts.iter().map(|count| count.load(Ordering::Relaxed)).collect(), elapsed))
}
