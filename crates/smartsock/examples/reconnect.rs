//! Reconnection: the server restarts (its socket is closed and a new one
//! binds the same port) and the client simply carries on. What the client
//! sends while the server is down waits in its buffer and is delivered once
//! the connection is back. The client's connection events are printed as
//! they happen.
//!
//! `cargo run -p smartsock --example reconnect [MESSAGES_PER_PHASE]` (default 3)

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use smartsock::{Event, ReconnectStrategy, Socket};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let count: usize = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(3);

    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?.to_string();
    println!("server bound to {addr}");

    let client = Socket::builder().reconnect(ReconnectStrategy::fixed(Duration::from_millis(150))).build()?;
    // Watch before connecting, so that the first connection shows too. The
    // watcher prints every event and passes it on for `main` to wait on.
    let events = client.events();
    let (seen, mut watch) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut events = pin!(events);
        while let Some(event) = events.next().await {
            println!("  [client event] {}", describe(&event));
            let _ = seen.send(event);
        }
    });
    client.connect(&addr)?;

    wait_for(&mut watch, "connected", |e| matches!(e, Event::PeerConnected { .. })).await?;
    send(&client, "before the restart", count).await?;
    receive(&server, "server", count).await?;

    println!("server: closing (restart begins)");
    server.close().await;
    wait_for(&mut watch, "disconnected", |e| matches!(e, Event::PeerDisconnected { .. })).await?;

    // No peer now: these wait in the client's buffer instead of failing.
    send(&client, "during the outage", count).await?;
    sleep(Duration::from_millis(400)).await;

    let server = Socket::new()?;
    server.bind(&addr).await?;
    println!("server: bound {addr} again (restart done)");
    wait_for(&mut watch, "reconnected", |e| matches!(e, Event::PeerConnected { .. })).await?;
    send(&client, "after the restart", count).await?;
    receive(&server, "new server", 2 * count).await?;

    client.close().await;
    server.close().await;
    println!("the new server got all {} messages sent during and after the outage", 2 * count);
    Ok(())
}

async fn send(client: &Socket, phase: &str, count: usize) -> Result<(), smartsock::Error> {
    for n in 1..=count {
        client.send(format!("{phase} #{n}")).await?;
    }
    println!("client: sent {count} messages {phase}");
    Ok(())
}

async fn receive(server: &Socket, name: &str, count: usize) -> Result<(), Box<dyn Error>> {
    for _ in 0..count {
        let message = timeout(Duration::from_secs(10), server.recv())
            .await
            .map_err(|_| format!("{name} is missing messages"))?
            .ok_or("server closed")?;
        println!("{name}: got {:?}", String::from_utf8_lossy(&message));
    }
    Ok(())
}

/// Waits (at most 10 s) for an event that `wanted` accepts.
async fn wait_for(
    watch: &mut mpsc::UnboundedReceiver<Event>,
    what: &str,
    wanted: impl Fn(&Event) -> bool,
) -> Result<(), String> {
    let found = async {
        while let Some(event) = watch.recv().await {
            if wanted(&event) {
                return true;
            }
        }
        false
    };
    match timeout(Duration::from_secs(10), found).await {
        Ok(true) => Ok(()),
        _ => Err(format!("the client never {what}")),
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::PeerConnected { peer, addr, side } => {
            format!("PeerConnected: {} at {addr} ({side} side)", &peer.to_string()[..8])
        }
        Event::PeerDisconnected { peer, reason } => {
            format!("PeerDisconnected: {}, {reason}", &peer.to_string()[..8])
        }
        Event::Reconnecting { addr, attempt, delay, error } => {
            format!("Reconnecting to {addr} ({error}): attempt {attempt}, next try in {delay:?}")
        }
        other => format!("{other:?}"),
    }
}
