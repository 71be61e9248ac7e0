//! Typed messages: a job queue that sends and receives structs as JSON.
//!
//! `cargo run -p smartsock --example json --features json`

#![allow(clippy::print_stdout)]

use serde::{Deserialize, Serialize};
use smartsock::Socket;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Job {
    id: u32,
    task: String,
}

#[tokio::main]
async fn main() -> Result<(), smartsock::Error> {
    let worker = Socket::new()?;
    let addr = worker.bind("127.0.0.1:0").await?;
    let boss = Socket::new()?;
    boss.connect(&addr.to_string())?;

    for id in 0..3 {
        boss.send_json(&Job { id, task: format!("resize image {id}") }).await?;
    }
    boss.send("not json at all").await?;

    for _ in 0..4 {
        match worker.recv_json::<Job>().await.expect("socket open") {
            Ok(job) => println!("worker got job {}: {}", job.id, job.task),
            Err(error) => println!("worker refused a message: {error}"),
        }
    }
    boss.close().await;
    worker.close().await;
    Ok(())
}
