//! Publish/subscribe flipped around: ten subscribers bind, and one publisher
//! connects to all ten. Which end binds is independent of who sends: a
//! socket that connects to many peers publishes to them all the same.
//!
//! `cargo run -p smartsock --example pubsub_flipped [MESSAGES]` (default 5)

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use smartsock::{SendMode, Socket, WhenFull};
use tokio::task::JoinSet;
use tokio::time::timeout;

const SUBSCRIBERS: usize = 10;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let messages: usize = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(5);

    let publisher =
        Socket::builder().send_mode(SendMode::Publish).when_subscriber_full(WhenFull::Wait).build()?;

    let mut subscribers = JoinSet::new();
    for number in 1..=SUBSCRIBERS {
        let subscriber = Socket::new()?;
        let addr = subscriber.bind("127.0.0.1:0").await?;
        println!("subscriber {number:>2} bound to {addr}");
        // One socket, many connections: the publisher dials every subscriber.
        publisher.connect(&addr.to_string())?;
        subscribers.spawn(async move {
            let mut received = Vec::with_capacity(messages);
            while received.len() < messages {
                let Some(message) = subscriber.recv().await else { break };
                received.push(message);
            }
            subscriber.close().await;
            (number, received)
        });
    }

    // `connect` returns at once; publish reaches only peers that are up, so
    // wait until all ten handshakes are done.
    timeout(Duration::from_secs(10), publisher.wait_for_peers(SUBSCRIBERS))
        .await
        .map_err(|_| "the publisher did not reach every subscriber")?;
    println!(
        "publisher connected to {} subscribers; publishing {messages} messages",
        publisher.peers().len()
    );

    for n in 1..=messages {
        publisher.send(format!("news #{n}")).await?;
    }

    let mut results = timeout(Duration::from_secs(30), subscribers.join_all())
        .await
        .map_err(|_| "subscribers did not receive everything in time")?;
    results.sort_by_key(|(number, _)| *number);
    for (number, received) in &results {
        let last = received.last().map(|m| String::from_utf8_lossy(m).into_owned()).unwrap_or_default();
        println!("subscriber {number:>2}: {} of {messages} messages, last {last:?}", received.len());
        if received.len() != messages {
            return Err(format!("subscriber {number} missed messages").into());
        }
    }
    publisher.close().await;
    println!("every subscriber got every message");
    Ok(())
}
