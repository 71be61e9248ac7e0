//! A guided tour of smartsock in one process, over real TCP on 127.0.0.1:
//! round-robin, publish, replies by identity, buffering before a peer
//! exists, reconnection and at-least-once delivery, in about a second.
//!
//! `cargo run -p smartsock --example demo`

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::pin::pin;
use std::time::{Duration, Instant};

use futures::StreamExt;
use smartsock::{Delivery, Event, PeerId, SendMode, Socket};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

#[tokio::main]
async fn main() -> Result {
    let started = Instant::now();
    println!("smartsock demo: every socket below is real TCP on 127.0.0.1, all in this process");
    round_robin().await?;
    publish().await?;
    by_identity().await?;
    buffering().await?;
    reconnection().await?;
    at_least_once().await?;
    println!(
        "\nDone in {:.1} s. More in crates/smartsock/examples/, for instance:",
        started.elapsed().as_secs_f64()
    );
    println!("  cargo run -p smartsock --example request_reply");
    Ok(())
}

async fn round_robin() -> Result {
    section(1, "Round-robin", "One socket binds, three workers connect; each send goes to the next worker.");
    let boss = Socket::new()?;
    let addr = boss.bind("127.0.0.1:0").await?.to_string();
    let workers = connect(&boss, &addr, 3).await?;
    for n in 1..=6 {
        boss.send(format!("job {n}")).await?;
    }
    for (name, worker) in ["A", "B", "C"].iter().zip(&workers) {
        println!("   worker {name} got {}", recv_n(worker, 2).await?);
    }
    Ok(())
}

async fn publish() -> Result {
    section(2, "Publish", "A publishing socket sends every message to every connected peer.");
    let publisher = Socket::builder().send_mode(SendMode::Publish).build()?;
    let addr = publisher.bind("127.0.0.1:0").await?.to_string();
    let subscribers = connect(&publisher, &addr, 3).await?;
    publisher.send("tick 1").await?;
    publisher.send("tick 2").await?;
    for (name, subscriber) in ["A", "B", "C"].iter().zip(&subscribers) {
        println!("   subscriber {name} got {}", recv_n(subscriber, 2).await?);
    }
    Ok(())
}

async fn by_identity() -> Result {
    section(3, "By identity", "recv_from() tells who sent a message; send_to() answers exactly that peer.");
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?.to_string();
    let clients = connect(&server, &addr, 2).await?;
    for (name, client) in ["A", "B"].iter().zip(&clients) {
        client.send(format!("hello from {name}")).await?;
    }
    for _ in 0..2 {
        let (from, message) = within(server.recv_from()).await?.ok_or("closed")?;
        let message = String::from_utf8_lossy(&message).into_owned();
        println!("   server got {message:?} from peer {}", short(from));
        let name = message.replace("hello from ", "");
        server.send_to(from, format!("welcome, {name}")).await?;
    }
    for (name, client) in ["A", "B"].iter().zip(&clients) {
        println!("   client {name}, identity {}, got {}", short(client.identity()), recv_n(client, 1).await?);
    }
    Ok(())
}

async fn buffering() -> Result {
    section(4, "Buffering before a peer exists", "With nobody connected, sends wait in a bounded buffer.");
    let early = Socket::new()?;
    let addr = early.bind("127.0.0.1:0").await?.to_string();
    for n in 1..=3 {
        early.send(format!("early {n}")).await?;
    }
    println!("   sent 3 messages with {} peers connected", early.peers().len());
    sleep(Duration::from_millis(200)).await;
    let late = connect(&early, &addr, 1).await?;
    println!("   a receiver that connects 200 ms later gets {}", recv_n(&late[0], 3).await?);
    Ok(())
}

async fn reconnection() -> Result {
    section(5, "Reconnection", "The server restarts on the same port; the client reconnects by itself.");
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?.to_string();
    let client = Socket::new()?;
    let (seen, mut events) = mpsc::unbounded_channel();
    let watched = client.events();
    tokio::spawn(async move {
        let mut watched = pin!(watched);
        while let Some(event) = watched.next().await {
            let _ = seen.send(event);
        }
    });
    client.connect(&addr)?;
    client.send("before").await?;
    println!("   server got {}; now it closes", recv_n(&server, 1).await?);
    server.close().await;
    within(async {
        while !client.peers().is_empty() {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await?;
    client.send("during the outage").await?;
    println!("   the client sends \"during the outage\" to nobody: it is buffered");
    sleep(Duration::from_millis(300)).await;
    let server = Socket::new()?;
    server.bind(&addr).await?;
    println!("   a new server binds {addr} and gets {}", recv_n(&server, 1).await?);
    // Runs of one event (a Reconnecting per failed try) are shown once, counted.
    let mut runs: Vec<(&str, usize)> = Vec::new();
    while let Ok(event) = events.try_recv() {
        let name = match event {
            Event::PeerConnected { .. } => "PeerConnected",
            Event::PeerDisconnected { .. } => "PeerDisconnected",
            Event::Reconnecting { .. } => "Reconnecting",
            _ => "other",
        };
        match runs.last_mut() {
            Some((last, count)) if *last == name => *count += 1,
            _ => runs.push((name, 1)),
        }
    }
    let runs: Vec<_> =
        runs.iter().map(|(name, n)| if *n > 1 { format!("{name} x{n}") } else { name.to_string() }).collect();
    println!("   the client's events(): {}", runs.join(" -> "));
    Ok(())
}

async fn at_least_once() -> Result {
    section(6, "At-least-once", "Each message is acknowledged when taken, and resent until it is.");
    let receiver = Socket::new()?;
    let addr = receiver.bind("127.0.0.1:0").await?.to_string();
    let sender = Socket::builder()
        .delivery(Delivery::AtLeastOnce)
        .resend_timeout(Duration::from_millis(300))
        .build()?;
    sender.connect(&addr)?;
    for n in 1..=5 {
        sender.send(format!("order {n}")).await?;
    }
    let taken = recv_n(&receiver, 2).await?;
    receiver.close().await;
    let untaken = receiver.messages().count().await;
    println!("   receiver 1 takes {taken}, then stops with {untaken} untaken, so unacknowledged");
    let receiver = Socket::new()?;
    receiver.bind(&addr).await?;
    let restarted = Instant::now();
    // Not only the untaken ones: any still on the wire at the stop were lost too.
    let resent = recv_n(&receiver, 3).await?;
    let waited = restarted.elapsed().as_millis();
    println!("   receiver 2 binds the same port and gets {resent}, resent after {waited} ms");
    sender.close().await;
    let undelivered = within(sender.undelivered().count()).await?;
    println!("   the sender closes with {undelivered} messages unacknowledged: none lost");
    Ok(())
}

fn section(number: u32, title: &str, explanation: &str) {
    println!("\n{number}. {title}\n   {explanation}");
}

/// `count` new sockets connected to `server` at `addr`, one after the other,
/// so that round-robin takes them in this order.
async fn connect(server: &Socket, addr: &str, count: usize) -> Result<Vec<Socket>> {
    let mut sockets = Vec::new();
    for _ in 0..count {
        let socket = Socket::new()?;
        socket.connect(addr)?;
        sockets.push(socket);
        within(server.wait_for_peers(sockets.len())).await?;
    }
    Ok(sockets)
}

/// The next `count` messages, quoted and joined.
async fn recv_n(socket: &Socket, count: usize) -> Result<String> {
    let mut texts = Vec::new();
    for _ in 0..count {
        let message = within(socket.recv()).await?.ok_or("socket closed")?;
        texts.push(format!("{:?}", String::from_utf8_lossy(&message)));
    }
    Ok(texts.join(", "))
}

/// Bounds every wait, so that a broken run fails instead of hanging.
async fn within<T>(future: impl Future<Output = T>) -> Result<T> {
    Ok(timeout(Duration::from_secs(10), future).await.map_err(|_| "timed out after 10 s")?)
}

/// The first 8 of an identity's 32 hex digits: enough to tell peers apart.
fn short(id: PeerId) -> String {
    format!("{}…", &id.to_string()[..8])
}
