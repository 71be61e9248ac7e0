//! At-least-once delivery across a receiver restart. The sender sends a
//! numbered stream as DATA_REQs; a receiver acknowledges each message when it
//! takes it. Mid-stream the receiver stops, with messages still queued that it
//! never took, and a new one binds the same port. Whatever was not
//! acknowledged is sent again (after `resend_timeout`), so every number
//! arrives; repeats are dropped by the receiver's duplicate filter and, across
//! the restart, by the application. Finally the sender closes with nothing
//! left unacknowledged.
//!
//! `cargo run -p smartsock --example at_least_once [MESSAGES]` (default 30)

#![allow(clippy::print_stdout)]

use std::collections::BTreeSet;
use std::error::Error;
use std::time::{Duration, Instant};

use futures::StreamExt;
use smartsock::{Delivery, Socket};
use tokio::time::{sleep, timeout};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let total: u32 = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(30).max(3);

    let receiver = Socket::new()?;
    let addr = receiver.bind("127.0.0.1:0").await?.to_string();

    let sender = Socket::builder()
        .delivery(Delivery::AtLeastOnce)
        // Resend soon, and keep trying well past the receiver's downtime.
        .resend_timeout(Duration::from_millis(300))
        .give_up(50, Duration::from_secs(30))
        .build()?;
    sender.connect(&addr)?;
    println!("sending {total} messages, at least once, to {addr}");
    // Spread over about 0.3 s, so that the receiver's stop falls mid-stream.
    let pace = Duration::from_millis(300) / total;
    let sending = tokio::spawn({
        let sender = sender.clone();
        async move {
            for n in 1..=total {
                sender.send(n.to_string()).await?;
                sleep(pace).await;
            }
            Ok::<_, smartsock::Error>(())
        }
    });

    // The first receiver takes a third of the stream, then stops while more
    // is arriving.
    let mut seen = BTreeSet::new();
    let mut first = Vec::new();
    while first.len() < total as usize / 3 {
        let message = timeout(Duration::from_secs(10), receiver.recv()).await?.ok_or("closed")?;
        let n: u32 = String::from_utf8_lossy(&message).parse()?;
        seen.insert(n);
        first.push(n);
    }
    println!("receiver 1 took (and acknowledged): {}", show(&first));
    sleep(Duration::from_millis(50)).await;
    receiver.close().await;
    // What arrived but was never taken was never acknowledged either: a
    // crashed process would lose exactly these, and the sender resends them.
    let stranded: Vec<_> = receiver
        .messages()
        .filter_map(|m| async move { String::from_utf8_lossy(&m).parse::<u32>().ok() })
        .collect()
        .await;
    println!(
        "receiver 1 stopped with {} messages queued, not acknowledged: {}",
        stranded.len(),
        show(&stranded)
    );

    sleep(Duration::from_millis(500)).await;
    let receiver = Socket::new()?;
    receiver.bind(&addr).await?;
    println!("receiver 2 bound {addr}, after 0.5 s down");

    let mut second = Vec::new();
    let mut repeats = Vec::new();
    while seen.len() < total as usize {
        let message = timeout(Duration::from_secs(15), receiver.recv())
            .await
            .map_err(|_| format!("only {} of {total} messages arrived", seen.len()))?
            .ok_or("closed")?;
        let n: u32 = String::from_utf8_lossy(&message).parse()?;
        if seen.insert(n) { second.push(n) } else { repeats.push(n) }
    }
    println!("receiver 2 took: {}", show(&second));
    let resent: Vec<_> = second.iter().copied().filter(|n| stranded.contains(n)).collect();
    println!("  of which resent because receiver 1 never acknowledged them: {}", show(&resent));
    println!(
        "repeats dropped: {} by receiver 2's duplicate filter, {} by the application",
        receiver.duplicates_dropped(),
        repeats.len()
    );
    timeout(Duration::from_secs(10), sending).await.map_err(|_| "sends stuck")???;

    // `close` waits (up to the linger time) for every ACK, then hands back
    // whatever is still unacknowledged on `undelivered`.
    let closing = Instant::now();
    sender.close().await;
    let undelivered: Vec<_> = timeout(Duration::from_secs(5), sender.undelivered().collect()).await?;
    println!(
        "sender: closed in {} ms with {} message(s) unacknowledged",
        closing.elapsed().as_millis(),
        undelivered.len()
    );
    receiver.close().await;
    if !undelivered.is_empty() {
        return Err("some messages were never acknowledged".into());
    }
    println!("all {total} messages arrived, every one acknowledged");
    Ok(())
}

/// A list of message numbers in arrival order, shortened when long.
fn show(numbers: &[u32]) -> String {
    if numbers.len() <= 24 {
        return format!("{numbers:?}");
    }
    let (head, tail) = (&numbers[..3], &numbers[numbers.len() - 3..]);
    let part = |list: &[u32]| list.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    format!("[{}, ..., {}] ({} messages)", part(head), part(tail), numbers.len())
}
