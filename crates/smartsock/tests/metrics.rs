//! The `metrics` feature: after a scripted exchange, the Prometheus page
//! served by `metrics-exporter-prometheus` over loopback HTTP carries the
//! expected series with the right values.
//!
//! One test in this binary: the exporter is the process's global recorder.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{recv_from, within};
use metrics_exporter_prometheus::PrometheusBuilder;
use smartsock::Socket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The body of `GET /metrics`, retried while the exporter's listener starts.
async fn scrape(page: SocketAddr) -> String {
    within("the /metrics page", async {
        let mut stream = loop {
            match tokio::net::TcpStream::connect(page).await {
                Ok(stream) => break stream,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        // HTTP/1.0: the reply is whole when the connection ends.
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await.expect("request");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.expect("reply");
        assert!(reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"), "{reply}");
        reply.split_once("\r\n\r\n").expect("a body").1.to_owned()
    })
    .await
}

/// The value of the series `name` whose labels include every one of
/// `labels`, if the page has one.
fn value(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        let matches = metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        matches.then(|| value.parse().expect("a number"))
    })
}

#[tokio::test]
async fn the_prometheus_page_shows_the_exchange() -> Result<(), Box<dyn std::error::Error>> {
    let page: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    PrometheusBuilder::new().with_http_listener(page).install()?;

    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0").await?.to_string();
    let client = Socket::new()?;
    client.connect(&addr)?;
    for _ in 0..3 {
        client.send(vec![1u8; 100]).await?;
    }
    for _ in 0..3 {
        recv_from(&server).await;
    }
    server.send_to(client.identity(), "pong").await?;
    within("the reply", client.recv()).await;
    // The reply's write is counted just after it reaches the wire.
    within("the reply counted", async {
        while server.stats().totals.messages_out < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // A HELLO of version 9: one refusal.
    let mut bad = tokio::net::TcpStream::connect(&addr).await?;
    let mut hello = vec![0x00, 0x00, 0x00, 0x12, 0x01, 9];
    hello.extend_from_slice(smartsock::PeerId::random().as_bytes());
    bad.write_all(&hello).await?;
    within("the refusal counted", async {
        while server.stats().refusals.version < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    server.publish_metrics("server");
    let text = scrape(page).await;
    let socket = [("socket", "server")];
    let peer_id = client.identity().to_string();
    let peer = [("socket", "server"), ("peer", peer_id.as_str())];
    let expect = |name: &str, labels: &[(&str, &str)], wanted: f64| {
        assert_eq!(value(&text, name, labels), Some(wanted), "{name} {labels:?} in:\n{text}");
    };
    expect("smartsock_messages_received_total", &socket, 3.0);
    expect("smartsock_received_bytes_total", &socket, 300.0);
    expect("smartsock_messages_sent_total", &socket, 1.0);
    expect("smartsock_sent_bytes_total", &socket, 4.0);
    expect("smartsock_connections_total", &socket, 1.0);
    expect("smartsock_peers", &socket, 1.0);
    expect("smartsock_buffered_messages", &socket, 0.0);
    expect("smartsock_handshake_refusals_total", &[("socket", "server"), ("reason", "version")], 1.0);
    expect("smartsock_handshake_refusals_total", &[("socket", "server"), ("reason", "timeout")], 0.0);
    expect("smartsock_peer_messages_received_total", &peer, 3.0);
    expect("smartsock_peer_received_bytes_total", &peer, 300.0);
    expect("smartsock_peer_messages_sent_total", &peer, 1.0);
    expect("smartsock_peer_outbox_messages", &peer, 0.0);
    assert!(value(&text, "smartsock_peer_last_heard_timestamp_seconds", &peer).is_some_and(|t| t > 1.0e9));
    // At-most-once: no at-least-once series.
    assert_eq!(value(&text, "smartsock_messages_acked_total", &socket), None);
    assert!(text.contains("# TYPE smartsock_messages_received_total counter"), "{text}");

    // The task form publishes on its own; more traffic shows up there.
    let publisher = server.spawn_metrics("server", Duration::from_millis(50));
    client.send(vec![1u8; 100]).await?;
    recv_from(&server).await;
    within("the next publish", async {
        while value(&scrape(page).await, "smartsock_messages_received_total", &socket) != Some(4.0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // It ends by itself once the socket is closed.
    server.close().await;
    within("the publisher's end", publisher).await?;
    Ok(())
}
