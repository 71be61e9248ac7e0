//! Request/reply by identity, without a broker: workers connect to a
//! dispatcher and say "ready"; the dispatcher answers each one, by the
//! identity `recv_from` gave it, with a job; a worker sends back its result,
//! which also means "ready for the next". Unlike plain round-robin, fast
//! workers end up doing more of the work than slow ones.
//!
//! `cargo run -p smartsock --example request_reply [JOBS]` (default 12)

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::error::Error;
use std::time::Duration;

use smartsock::Socket;
use tokio::time::{sleep, timeout};

const WORKERS: u64 = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let jobs: u64 = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(12);

    let dispatcher = Socket::new()?;
    let addr = dispatcher.bind("127.0.0.1:0").await?.to_string();
    println!("dispatcher bound to {addr}, {jobs} jobs to hand out");

    let mut names = HashMap::new();
    let mut workers = Vec::new();
    for number in 1..=WORKERS {
        let worker = Socket::new()?;
        worker.connect(&addr)?;
        names.insert(worker.identity(), number);
        // Worker 1 is the fastest, worker 3 the slowest.
        let pace = Duration::from_millis(10 * number);
        workers.push(tokio::spawn(run_worker(worker, pace)));
    }

    // The dispatcher's loop: every message from a worker asks for more work.
    let mut next_job = 1;
    let mut results = 0;
    let mut stopped = 0;
    let mut done_by: HashMap<u64, u64> = HashMap::new();
    while stopped < WORKERS {
        let (worker, message) = timeout(Duration::from_secs(10), dispatcher.recv_from())
            .await
            .map_err(|_| "the dispatcher heard nothing for 10 s")?
            .ok_or("dispatcher closed")?;
        let name = names[&worker];
        let message = String::from_utf8_lossy(&message);
        if message != "ready" {
            println!("  worker {name} -> {message}");
            results += 1;
            *done_by.entry(name).or_default() += 1;
        }
        if next_job <= jobs {
            dispatcher.send_to(worker, format!("{next_job}")).await?;
            next_job += 1;
        } else {
            dispatcher.send_to(worker, "stop").await?;
            stopped += 1;
        }
    }

    for worker in workers {
        timeout(Duration::from_secs(10), worker).await.map_err(|_| "a worker did not stop")???;
    }
    let mut shares: Vec<_> = done_by.into_iter().collect();
    shares.sort();
    for (name, count) in shares {
        println!("worker {name} did {count} jobs");
    }
    dispatcher.close().await;
    if results != jobs {
        return Err(format!("{results} results for {jobs} jobs").into());
    }
    println!("all {jobs} results are in");
    Ok(())
}

/// Announces itself, then squares numbers until told to stop.
async fn run_worker(worker: Socket, pace: Duration) -> Result<(), smartsock::Error> {
    // Sent before the connection is even up: the socket buffers it.
    worker.send("ready").await?;
    while let Some(job) = worker.recv().await {
        if job == "stop" {
            break;
        }
        let n: u64 = String::from_utf8_lossy(&job).parse().unwrap_or(0);
        sleep(pace).await;
        worker.send(format!("{n}² = {}", n * n)).await?;
    }
    worker.close().await;
    Ok(())
}
