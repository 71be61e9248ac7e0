//! Many tasks sending through one socket at once: no wake-up may be lost
//! while they wait for room, and no message may be lost or repeated.

use std::collections::HashSet;
use std::time::Duration;

use smartsock::{Delivery, Socket};

async fn contend(delivery: Delivery) {
    const TASKS: u32 = 8;
    const EACH: u32 = 500;
    let server = Socket::builder().receive_queue(4).build().unwrap();
    let addr = server.bind("127.0.0.1:0").await.unwrap();
    // Tiny queues: almost every send has to wait for room.
    let client = Socket::builder().peer_queue(2).max_in_flight(4).delivery(delivery).build().unwrap();
    client.connect(&addr.to_string()).unwrap();
    assert!(tokio::time::timeout(Duration::from_secs(10), client.wait_for_peers(1)).await.unwrap());

    let senders: Vec<_> = (0..TASKS)
        .map(|task| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    client.send(format!("{task}:{i}")).await.unwrap();
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let all = (TASKS * EACH) as usize;
    let received = tokio::time::timeout(Duration::from_secs(30), async {
        while seen.len() < all {
            let message = server.recv().await.expect("open");
            seen.insert(message);
        }
    })
    .await;
    assert!(received.is_ok(), "only {} of {all} messages arrived: a sender is stuck", seen.len());
    for sender in senders {
        tokio::time::timeout(Duration::from_secs(10), sender).await.expect("sender finished").unwrap();
    }
    for task in 0..TASKS {
        for i in 0..EACH {
            assert!(seen.contains(format!("{task}:{i}").as_bytes()), "{task}:{i} missing");
        }
    }
    client.close().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_tasks_share_a_tiny_queue_without_losing_a_wake_up() {
    contend(Delivery::AtMostOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_tasks_share_a_tiny_in_flight_window_without_losing_a_wake_up() {
    contend(Delivery::AtLeastOnce).await;
}
