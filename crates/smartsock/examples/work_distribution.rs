//! Work distribution by round-robin, both ways round: first a producer that
//! binds with workers that connect to it, then a producer that connects to
//! workers that bind. Either way each job goes to one worker, in turn, and
//! every worker answers on the same socket; the producer tells the answers
//! apart by the workers' identities.
//!
//! `cargo run -p smartsock --example work_distribution [JOBS]` (default 12)

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::error::Error;
use std::time::Duration;

use smartsock::Socket;
use tokio::time::timeout;

const WORKERS: usize = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let jobs: usize = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(12);

    println!("== 1. the producer binds, {WORKERS} workers connect");
    let producer = Socket::new()?;
    let addr = producer.bind("127.0.0.1:0").await?.to_string();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let worker = Socket::new()?;
        worker.connect(&addr)?;
        workers.push(worker);
    }
    distribute(producer, workers, jobs).await?;

    println!("\n== 2. {WORKERS} workers bind, the producer connects to each");
    let producer = Socket::new()?;
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let worker = Socket::new()?;
        producer.connect(&worker.bind("127.0.0.1:0").await?.to_string())?;
        workers.push(worker);
    }
    distribute(producer, workers, jobs).await?;
    Ok(())
}

/// Sends `jobs` jobs from `producer`, lets each worker do its share and
/// prints who did what. The sockets are already bound or connected.
async fn distribute(producer: Socket, workers: Vec<Socket>, jobs: usize) -> Result<(), Box<dyn Error>> {
    let mut names = BTreeMap::new();
    for (number, worker) in workers.iter().enumerate() {
        names.insert(worker.identity(), number + 1);
        let worker = worker.clone();
        tokio::spawn(async move {
            // Ends when the worker socket is closed below.
            while let Some(job) = worker.recv().await {
                let done = format!("{} done", String::from_utf8_lossy(&job));
                if worker.send(done).await.is_err() {
                    break;
                }
            }
        });
    }

    // Round-robin spreads over the peers connected at the moment of each
    // send; before anyone is up, the first to arrive would get the backlog.
    timeout(Duration::from_secs(10), producer.wait_for_peers(workers.len()))
        .await
        .map_err(|_| "workers did not all connect")?;
    for n in 1..=jobs {
        producer.send(format!("job #{n}")).await?;
    }

    let mut shares: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for _ in 0..jobs {
        let (from, answer) = timeout(Duration::from_secs(10), producer.recv_from())
            .await
            .map_err(|_| "an answer did not come back")?
            .ok_or("producer closed")?;
        let worker = names.get(&from).ok_or("an answer from a stranger")?;
        let job = String::from_utf8_lossy(&answer).trim_end_matches(" done").to_owned();
        shares.entry(*worker).or_default().push(job);
    }
    for (worker, done) in &shares {
        let list = if done.len() <= 8 { format!(": {}", done.join(", ")) } else { String::new() };
        println!("worker {worker}: {} of {jobs} jobs{list}", done.len());
    }

    producer.close().await;
    for worker in &workers {
        worker.close().await;
    }
    Ok(())
}
