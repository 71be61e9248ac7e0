//! TLS, mutual TLS and WebSocket, in one process: a CA and certificates are
//! made on the spot (with rcgen) and written as PEM files, as yours would be.
//!
//! - TLS: the bind end is the server, the connect end checks its name;
//! - mutual TLS: the server requires a client certificate from its CA and
//!   sees who the client is (`Socket::peer_info`);
//! - refused: a client without a certificate is an event on the server,
//!   which goes on serving the others;
//! - WebSocket: a `ws://` and a `wss://` client on the same ports as the raw
//!   peers (a browser would connect the same way).
//!
//! `cargo run -p smartsock --example secure`

#![allow(clippy::print_stdout)]

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use smartsock::{Event, Socket, tls};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// Writes ca.pem, server.pem/.key (localhost) and client.pem/.key into `dir`.
fn make_certificates(dir: &Path) -> Result<(), Box<dyn Error>> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "example CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    for (name, sans) in [("server", "localhost"), ("client", "worker-7.example")] {
        let mut params = CertificateParams::new(vec![sans.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate()?;
        std::fs::write(dir.join(format!("{name}.pem")), params.signed_by(&key, &ca)?.pem())?;
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem())?;
    }
    Ok(())
}

/// One request and its reply.
async fn exchange(label: &str, server: &Socket, client: &Socket) -> Result<(), Box<dyn Error>> {
    client.send(format!("hello over {label}")).await?;
    let (peer, request) = timeout(WAIT, server.recv_from()).await?.ok_or("closed")?;
    server.send_to(peer, format!("re: {}", String::from_utf8_lossy(&request))).await?;
    let reply = timeout(WAIT, client.recv()).await?.ok_or("closed")?;
    println!("{label:>10}: {}", String::from_utf8_lossy(&reply));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    make_certificates(dir.path())?;
    let pem = |file: &str| dir.path().join(file);

    // The server: its certificate, and the CA its clients' must come from.
    let server = Socket::builder()
        .tls_server(tls::server_config_from_files(
            &pem("server.pem"),
            &pem("server.key"),
            Some(&pem("ca.pem")),
        )?)
        .build()?;
    let mut events = Box::pin(server.events());
    let secure = server.bind("tls://127.0.0.1:0").await?;
    let plain = server.bind("127.0.0.1:0").await?;
    let port = secure.port().ok_or("a TCP port")?;

    // A client with a certificate of its own: mutual TLS.
    let client = Socket::builder()
        .tls_client(tls::client_config_from_files(
            &pem("ca.pem"),
            Some((&pem("client.pem"), &pem("client.key"))),
        )?)
        .build()?;
    client.connect(&format!("tls://localhost:{port}"))?;
    exchange("mutual TLS", &server, &client).await?;
    let info = server.peer_info(client.identity()).ok_or("connected")?;
    let certificate = info.certificate.ok_or("a client certificate")?;
    println!("{:>10}: the client is {} ({:?})", "mTLS", certificate.subject, certificate.subject_alt_names);

    // A client without a certificate: refused during the TLS handshake.
    let stranger =
        Socket::builder().tls_client(tls::client_config_from_files(&pem("ca.pem"), None)?).build()?;
    stranger.connect(&format!("tls://localhost:{port}"))?;
    let refused = timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if let Event::HandshakeRefused { reason, .. } = event {
                return Some(reason);
            }
        }
        None
    })
    .await?
    .ok_or("a refusal")?;
    println!("{:>10}: {refused}", "refused");
    stranger.close().await;

    // WebSocket on the plain port, and inside TLS on the TLS port.
    let ws = Socket::new()?;
    ws.connect(&format!("ws://127.0.0.1:{}/feed", plain.port().ok_or("a TCP port")?))?;
    exchange("ws", &server, &ws).await?;
    let wss = Socket::builder()
        .tls_client(tls::client_config_from_files(
            &pem("ca.pem"),
            Some((&pem("client.pem"), &pem("client.key"))),
        )?)
        .build()?;
    wss.connect(&format!("wss://localhost:{port}/feed"))?;
    exchange("wss", &server, &wss).await?;

    for socket in [client, ws, wss, server] {
        socket.close().await;
    }
    Ok(())
}
