//! A relay between two sockets: producers send to the relay's front socket;
//! the relay publishes each message on its back socket to every subscriber,
//! and acknowledges the producer by identity with `send_to(producer, "ack")`.
//! A producer sends its next message only once the last one is acknowledged.
//!
//! `cargo run -p smartsock --example relay [MESSAGES_PER_PRODUCER]` (default 3)

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use smartsock::{SendMode, Socket, WhenFull};
use tokio::task::JoinSet;
use tokio::time::timeout;

const PRODUCERS: usize = 2;
const SUBSCRIBERS: usize = 2;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let per_producer: usize = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(3);
    let total = PRODUCERS * per_producer;

    // The relay: a front socket for producers, a publishing back socket.
    let front = Socket::new()?;
    let front_addr = front.bind("127.0.0.1:0").await?.to_string();
    let back = Socket::builder().send_mode(SendMode::Publish).when_subscriber_full(WhenFull::Wait).build()?;
    let back_addr = back.bind("127.0.0.1:0").await?.to_string();
    println!("relay: producers connect to {front_addr}, subscribers to {back_addr}");

    let mut subscribers = JoinSet::new();
    for number in 1..=SUBSCRIBERS {
        let subscriber = Socket::new()?;
        subscriber.connect(&back_addr)?;
        subscribers.spawn(async move {
            let mut received = 0;
            while received < total {
                let Some(message) = subscriber.recv().await else { break };
                println!("  subscriber {number} <- {}", String::from_utf8_lossy(&message));
                received += 1;
            }
            subscriber.close().await;
            received
        });
    }
    // Anything published before the subscribers are up would not reach them all.
    timeout(Duration::from_secs(10), back.wait_for_peers(SUBSCRIBERS))
        .await
        .map_err(|_| "subscribers did not connect")?;

    let relay = tokio::spawn({
        let (front, back) = (front.clone(), back.clone());
        async move {
            for _ in 0..total {
                let Some((producer, message)) = front.recv_from().await else { break };
                back.send(message).await?;
                front.send_to(producer, "ack").await?;
            }
            Ok::<_, smartsock::Error>(())
        }
    });

    let mut producers = JoinSet::new();
    for number in 1..=PRODUCERS {
        let producer = Socket::new()?;
        producer.connect(&front_addr)?;
        producers.spawn(async move {
            for n in 1..=per_producer {
                producer.send(format!("producer {number}, message {n}")).await?;
                let ack = producer.recv().await.unwrap_or_default();
                println!("producer {number}: message {n} -> {}", String::from_utf8_lossy(&ack));
            }
            producer.close().await;
            Ok::<_, smartsock::Error>(())
        });
    }

    let everyone = async {
        for result in producers.join_all().await {
            result?;
        }
        relay.await??;
        if subscribers.join_all().await.iter().any(|&received| received != total) {
            return Err("a subscriber missed messages".into());
        }
        Ok::<_, Box<dyn Error>>(())
    };
    timeout(Duration::from_secs(30), everyone).await.map_err(|_| "the relay did not finish")??;
    front.close().await;
    back.close().await;
    println!("relayed {total} messages to {SUBSCRIBERS} subscribers, every one acknowledged");
    Ok(())
}
