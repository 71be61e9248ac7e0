//! One socket program over every transport: the same request and reply over
//! TCP, a Unix domain socket, an in-process name, and a stream opened by
//! someone else (attached). Only the address changes.
//!
//! `cargo run -p smartsock --example transports`

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use smartsock::{Side, Socket};
use tokio::time::timeout;

/// One request and its reply between a server and a client already joined.
async fn exchange(name: &str, server: &Socket, client: &Socket) -> Result<(), Box<dyn Error>> {
    client.send(format!("hello over {name}")).await?;
    let (peer, request) = timeout(Duration::from_secs(5), server.recv_from()).await?.ok_or("closed")?;
    server.send_to(peer, format!("re: {}", String::from_utf8_lossy(&request))).await?;
    let reply = timeout(Duration::from_secs(5), client.recv()).await?.ok_or("closed")?;
    println!("{name:>8}: {}", String::from_utf8_lossy(&reply));
    Ok(())
}

/// A server bound to `addr` and a client connected to where it listens.
async fn over(name: &str, addr: &str) -> Result<(), Box<dyn Error>> {
    let server = Socket::new()?;
    let bound = server.bind(addr).await?;
    let client = Socket::new()?;
    client.connect(&bound.to_string())?;
    println!("{name:>8}: listening on {bound}");
    exchange(name, &server, &client).await?;
    client.close().await;
    server.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    over("tcp", "tcp://127.0.0.1:0").await?;

    #[cfg(unix)]
    {
        let dir = std::env::temp_dir().join(format!("smartsock-example-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        over("unix", &format!("unix://{}", dir.join("demo.sock").display())).await?;
        // The socket file went with its socket; the directory is ours to remove.
        std::fs::remove_dir(&dir)?;
    }

    over("inproc", "inproc://transports-example").await?;

    // A stream someone else opened: here an in-memory pipe, just as well a
    // TcpStream from your own accept loop or a child process's pipes.
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (server, client) = (Socket::new()?, Socket::new()?);
    server.attach(a, Side::Bind)?;
    client.attach(b, Side::Connect)?;
    exchange("attached", &server, &client).await?;
    client.close().await;
    server.close().await;
    Ok(())
}
