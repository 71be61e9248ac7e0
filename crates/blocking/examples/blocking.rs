//! A threaded program with no async code: a producer thread, a pool of
//! worker threads sharing one socket, and a results collector.
//!
//! `cargo run -p smartsock-blocking --example blocking [JOBS]` (default 20)

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::thread;
use std::time::Duration;

use smartsock_blocking::Socket;

const WORKERS: usize = 3;

fn main() -> Result<(), Box<dyn Error>> {
    let jobs: usize = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(20);

    // Workers pull jobs round-robin from the producer and push results to the collector.
    let results = Socket::new()?;
    let results_addr = results.bind("127.0.0.1:0")?.to_string();
    let producer = Socket::new()?;
    let jobs_addr = producer.bind("127.0.0.1:0")?.to_string();

    let workers = Socket::new()?;
    workers.connect(&jobs_addr)?;
    workers.connect(&results_addr)?;
    let pool: Vec<_> = (0..WORKERS)
        .map(|n| {
            let socket = workers.clone();
            let results_peer = results.identity();
            thread::spawn(move || -> Result<usize, smartsock_blocking::Error> {
                let mut done = 0;
                // Every thread blocks in recv; one message wakes one thread.
                for job in &socket {
                    if job == "stop" {
                        break;
                    }
                    let answer = format!("worker {n}: {} squared is {}", text(&job), square(&job));
                    socket.send_to(results_peer, answer)?;
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();

    // Jobs sent earlier would simply be buffered, but `send_to` answers
    // only a peer that is connected: wait until the workers see both ends.
    assert!(workers.wait_for_peers(2, Duration::from_secs(5)), "the workers connected");
    for job in 0..jobs {
        producer.send(job.to_string())?;
    }
    for _ in 0..WORKERS {
        producer.send("stop")?;
    }

    for _ in 0..jobs {
        let line = results.recv_timeout(Duration::from_secs(5))?;
        println!("{}", text(&line));
    }
    let mut total = 0;
    for worker in pool {
        total += worker.join().map_err(|_| "a worker panicked")??;
    }
    println!("{total} jobs done by {WORKERS} threads");
    assert_eq!(total, jobs);
    for socket in [&workers, &producer, &results] {
        socket.close();
    }
    Ok(())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn square(job: &[u8]) -> u64 {
    text(job).parse::<u64>().map_or(0, |n| n * n)
}
