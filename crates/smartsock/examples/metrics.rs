//! A socket's figures on a Prometheus `/metrics` page.
//!
//! Installs `metrics-exporter-prometheus` (it serves `/metrics` over HTTP),
//! has the server socket publish its stats every 100 ms, exchanges a few
//! messages, then reads the page the way Prometheus would and prints the
//! smartsock series. Exits by itself.
//!
//! `cargo run -p smartsock --example metrics --features metrics`

#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use metrics_util::MetricKindMask;
use smartsock::Socket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A free port for the exporter (it takes an address, not a listener).
    let page: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    PrometheusBuilder::new()
        .with_http_listener(page)
        // Series of departed peers vanish a minute after their last update.
        .idle_timeout(MetricKindMask::ALL, Some(Duration::from_secs(60)))
        .install()?;

    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?;
    let publisher = server.spawn_metrics("server", Duration::from_millis(100));

    let client = Socket::new()?;
    client.connect(&addr.to_string())?;
    for i in 0..10 {
        client.send(format!("reading {i}")).await?;
    }
    for _ in 0..10 {
        let (from, _) = server.recv_from().await.expect("open");
        server.send_to(from, "ok").await?;
    }
    for _ in 0..10 {
        client.recv().await.expect("open");
    }

    // The next publish sees the whole exchange.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = scrape(page).await?;
    println!("GET http://{page}/metrics (smartsock series only):");
    for line in text.lines().filter(|line| line.starts_with("smartsock_")) {
        println!("  {line}");
    }
    assert!(text.contains(r#"smartsock_messages_received_total{socket="server"} 10"#));

    publisher.abort();
    client.close().await;
    server.close().await;
    Ok(())
}

/// What Prometheus would see: the body of `GET /metrics`.
async fn scrape(page: SocketAddr) -> std::io::Result<String> {
    let mut tries = 0;
    let mut stream = loop {
        // The exporter's listener starts on a task of its own.
        match tokio::net::TcpStream::connect(page).await {
            Ok(stream) => break stream,
            Err(_) if tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    };
    // HTTP/1.0: the reply ends when the connection does, never chunked.
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    Ok(reply.split_once("\r\n\r\n").map_or(reply.clone(), |(_, body)| body.to_owned()))
}
