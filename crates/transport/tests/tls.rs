//! TLS and mutual TLS over real loopback TCP, with certificates made here:
//! data both ways, peer certificates, reconnection after the server
//! restarts, and every refusal as an event while the socket serves others.
#![cfg(feature = "tls")]

mod common;
#[path = "common/pki.rs"]
mod pki;

use std::time::Duration;

use common::*;
use pki::Pki;
use smartsock_framing::Frame;
use smartsock_transport::{
    Event, Outgoing, RefusedReason, Side, TlsFailure, TransportConfig, TransportError, TransportParts,
};

fn server_config(pki: &Pki, client_ca: Option<&Pki>) -> TransportConfig {
    let mut config = config();
    config.tls_server = Some(pki.server(client_ca));
    config
}

fn client_config(trusted: &Pki, cert: Option<&pki::Leaf>) -> TransportConfig {
    let mut config = config();
    config.tls_client = Some(trusted.client(cert));
    config
}

/// Sends `payload` from `from` to the peer `to` and checks it arrives.
async fn exchange(from: &TransportParts, to: &TransportParts, payload: &'static str) {
    let table =
        wait_peers(&from.transport, "the peer", |t| t.iter().any(|p| p.id() == to.transport.identity()))
            .await;
    let peer = table.iter().find(|p| p.id() == to.transport.identity()).unwrap().clone();
    peer.try_send(Outgoing::to_any_peer(Frame::Data(payload.into()))).unwrap();
    let got = within("a message", to.inbound.recv()).await.unwrap();
    assert_eq!((got.peer, &got.payload[..]), (from.transport.identity(), payload.as_bytes()));
}

async fn refusal(events: &mut smartsock_transport::Events, what: &str) -> RefusedReason {
    next_event(events, what, |e| match e {
        Event::HandshakeRefused { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn mutual_tls_carries_data_both_ways_and_shows_each_peer_its_certificate() {
    let (servers, clients) = (Pki::new("server CA"), Pki::new("client CA"));
    let server = transport(server_config(&servers, Some(&clients)));
    let endpoint = server.transport.bind("tls://127.0.0.1:0").await.unwrap();
    assert!(endpoint.to_string().starts_with("tls://127.0.0.1:"), "{endpoint}");

    let leaf = clients.leaf("client-a", &["a.clients.example"]);
    let client = transport(client_config(&servers, Some(&leaf)));
    client.transport.connect(&endpoint.to_string()).unwrap();

    exchange(&client, &server, "up").await;
    exchange(&server, &client, "down").await;

    let seen_by_server = server.transport.peer_info(client.transport.identity()).unwrap();
    assert_eq!(seen_by_server.side, Side::Bind);
    let certificate = seen_by_server.certificate.unwrap();
    assert_eq!(certificate.subject, "CN=client-a");
    assert_eq!(certificate.subject_alt_names, ["DNS:a.clients.example"]);

    let seen_by_client = client.transport.peer_info(server.transport.identity()).unwrap();
    assert_eq!(seen_by_client.side, Side::Connect);
    let certificate = seen_by_client.certificate.unwrap();
    assert_eq!(certificate.subject, "CN=server");
    assert_eq!(certificate.subject_alt_names, ["DNS:localhost", "IP:127.0.0.1"]);

    client.transport.close().await;
    wait_peer_count(&server.transport, 0).await;
    assert!(server.transport.peer_info(client.transport.identity()).is_none());
    server.transport.close().await;
}

#[tokio::test]
async fn the_server_name_is_the_host_dialled_or_the_one_configured() {
    let servers = Pki::new("server CA");
    let server = transport(server_config(&servers, None));
    let port = server.transport.bind("tls://127.0.0.1:0").await.unwrap().port().unwrap();

    // By name: the certificate names localhost.
    let by_name = transport(client_config(&servers, None));
    by_name.transport.connect(&format!("tls://localhost:{port}")).unwrap();
    exchange(&by_name, &server, "by name").await;

    // By IP address, with the name to check given.
    let mut config = client_config(&servers, None);
    config.tls_server_name = Some("localhost".into());
    let named = transport(config);
    named.transport.connect(&format!("tls://127.0.0.1:{port}")).unwrap();
    exchange(&named, &server, "named").await;

    for t in [by_name, named, server] {
        t.transport.close().await;
    }
}

#[tokio::test]
async fn the_client_reconnects_after_the_tls_server_restarts() {
    let servers = Pki::new("server CA");
    let first = transport(server_config(&servers, None));
    let port = first.transport.bind("tls://127.0.0.1:0").await.unwrap().port().unwrap();
    let mut client_config = client_config(&servers, None);
    client_config.reconnect = smartsock_transport::ReconnectStrategy::fixed(Duration::from_millis(50));
    let client = transport(client_config);
    client.transport.connect(&format!("tls://127.0.0.1:{port}")).unwrap();
    exchange(&client, &first, "before").await;

    first.transport.close().await;
    wait_peer_count(&client.transport, 0).await;
    let second = transport(server_config(&servers, None));
    second.transport.bind(&format!("tls://127.0.0.1:{port}")).await.unwrap();
    exchange(&client, &second, "after").await;
    exchange(&second, &client, "and back").await;

    client.transport.close().await;
    second.transport.close().await;
}

#[tokio::test]
async fn tls_addresses_without_a_tls_config_are_refused_at_once() {
    let plain = transport(config());
    match plain.transport.bind("tls://127.0.0.1:0").await {
        Err(e @ TransportError::TlsNotConfigured { .. }) => assert_eq!(
            e.to_string(),
            "\"tls://127.0.0.1:0\" needs a TLS server configuration to bind (TransportConfig::tls_server)"
        ),
        other => panic!("{other:?}"),
    }
    match plain.transport.connect("wss://127.0.0.1:9/x") {
        Err(e @ TransportError::TlsNotConfigured { .. }) => assert_eq!(
            e.to_string(),
            "\"wss://127.0.0.1:9/x\" needs a TLS client configuration to connect (TransportConfig::tls_client)"
        ),
        other => panic!("{other:?}"),
    }
    plain.transport.close().await;
}

/// Every refusal is an event with its reason, and the bind end keeps
/// serving a good client all along.
#[tokio::test]
async fn refusals_are_events_and_the_socket_serves_others() {
    let (servers, clients, strangers) =
        (Pki::new("server CA"), Pki::new("client CA"), Pki::new("stranger CA"));
    let server = transport(server_config(&servers, Some(&clients)));
    let mut server_events = server.transport.events();
    let port = server.transport.bind("tls://127.0.0.1:0").await.unwrap().port().unwrap();
    let addr = format!("tls://127.0.0.1:{port}");
    let good_leaf = clients.leaf("good", &["good.example"]);
    let good = transport(client_config(&servers, Some(&good_leaf)));
    good.transport.connect(&addr).unwrap();
    exchange(&good, &server, "first").await;

    // Each bad client is closed when its case is checked; the server's
    // events and the good client are checked after each.
    async fn bad_client(
        config: TransportConfig,
        addr: &str,
    ) -> (TransportParts, smartsock_transport::Events) {
        let client = transport(config);
        let events = client.transport.events();
        client.transport.connect(addr).unwrap();
        (client, events)
    }

    // 1. The client does not trust the server's CA.
    let (client, mut events) = bad_client(client_config(&strangers, Some(&good_leaf)), &addr).await;
    assert_eq!(refusal(&mut events, "unknown CA").await, RefusedReason::Tls(TlsFailure::UnknownIssuer));
    assert_eq!(
        refusal(&mut server_events, "unknown CA alert").await,
        RefusedReason::Tls(TlsFailure::UnknownIssuer)
    );
    client.transport.close().await;

    // 2. The server's certificate does not carry the name checked.
    let mut config = client_config(&servers, Some(&good_leaf));
    config.tls_server_name = Some("elsewhere.example".into());
    let (client, mut events) = bad_client(config, &addr).await;
    assert_eq!(refusal(&mut events, "bad name").await, RefusedReason::Tls(TlsFailure::BadName));
    let _ = refusal(&mut server_events, "the server's side of a bad name").await;
    client.transport.close().await;

    // 3. No client certificate under mutual TLS (TLS 1.3: the client hears
    //    of it when it reads; the server says why).
    let (client, _events) = bad_client(client_config(&servers, None), &addr).await;
    assert_eq!(
        refusal(&mut server_events, "no client certificate").await,
        RefusedReason::Tls(TlsFailure::NoClientCertificate)
    );
    client.transport.close().await;

    // 4. A client certificate from a CA the server does not trust.
    let stranger_leaf = strangers.leaf("stranger", &["stranger.example"]);
    let (client, _events) = bad_client(client_config(&servers, Some(&stranger_leaf)), &addr).await;
    assert_eq!(
        refusal(&mut server_events, "untrusted client certificate").await,
        RefusedReason::Tls(TlsFailure::UnknownIssuer)
    );
    client.transport.close().await;

    // 5. An expired client certificate.
    let expired_leaf = clients.expired_leaf("old", &["old.example"]);
    let (client, _events) = bad_client(client_config(&servers, Some(&expired_leaf)), &addr).await;
    assert_eq!(
        refusal(&mut server_events, "expired client certificate").await,
        RefusedReason::Tls(TlsFailure::Expired)
    );
    client.transport.close().await;

    // 6. Plain protocol bytes to the TLS port.
    let mut raw = RawPeer::connect(("127.0.0.1", port), [7; 16]).await;
    raw.write(&hello([7; 16])).await;
    assert_eq!(refusal(&mut server_events, "plain bytes").await, RefusedReason::Tls(TlsFailure::NotTls));
    drop(raw);

    assert_eq!(server.transport.peer_table().len(), 1, "only the good client is a peer");
    exchange(&good, &server, "still served").await;
    exchange(&server, &good, "both ways").await;
    good.transport.close().await;
    server.transport.close().await;
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused_by_the_client() {
    let servers = Pki::new("server CA");
    let leaf = servers.expired_leaf("old server", &["localhost", "127.0.0.1"]);
    let mut config = config();
    config.tls_server = Some(Pki::server_from(&leaf, None));
    let server = transport(config);
    let mut server_events = server.transport.events();
    let port = server.transport.bind("tls://127.0.0.1:0").await.unwrap().port().unwrap();

    let client = transport(client_config(&servers, None));
    let mut events = client.transport.events();
    client.transport.connect(&format!("tls://127.0.0.1:{port}")).unwrap();
    assert_eq!(refusal(&mut events, "expired").await, RefusedReason::Tls(TlsFailure::Expired));
    assert_eq!(refusal(&mut server_events, "expired alert").await, RefusedReason::Tls(TlsFailure::Expired));
    // The reconnect loop goes on trying (the certificate may be renewed).
    next_event(&mut events, "a reconnect", |e| matches!(e, Event::Reconnecting { .. }).then_some(())).await;
    client.transport.close().await;
    server.transport.close().await;
}

#[tokio::test]
async fn a_tls_client_on_a_plain_port_is_refused_on_both_ends() {
    let servers = Pki::new("server CA");
    let server = transport(config());
    let mut server_events = server.transport.events();
    let port = server.transport.bind("127.0.0.1:0").await.unwrap().port().unwrap();
    let client = transport(client_config(&servers, None));
    let mut events = client.transport.events();
    client.transport.connect(&format!("tls://127.0.0.1:{port}")).unwrap();

    assert_eq!(refusal(&mut server_events, "a TLS hello").await, RefusedReason::UnknownFirstByte(0x16));
    assert_eq!(refusal(&mut events, "a closed handshake").await, RefusedReason::Tls(TlsFailure::Closed));
    assert_eq!(
        RefusedReason::UnknownFirstByte(0x16).to_string(),
        "the first byte was 0x16, a TLS handshake: a TLS client on a plain (non-TLS) port"
    );
    client.transport.close().await;
    server.transport.close().await;
}

#[tokio::test]
async fn a_silent_tls_peer_is_refused_after_the_handshake_timeout() {
    let servers = Pki::new("server CA");
    let mut config = server_config(&servers, None);
    config.handshake_timeout = Duration::from_millis(300);
    let server = transport(config);
    let mut server_events = server.transport.events();
    let port = server.transport.bind("tls://127.0.0.1:0").await.unwrap().port().unwrap();
    let mut raw = RawPeer::connect(("127.0.0.1", port), [1; 16]).await;
    assert_eq!(refusal(&mut server_events, "a timeout").await, RefusedReason::Tls(TlsFailure::Timeout));
    raw.expect_closed().await;
    server.transport.close().await;
}

/// Identity binding: a client's HELLO must name the identity its
/// certificate carries. An impostor with a good certificate of its own can
/// neither take over a connected peer's identity nor lock it out.
#[tokio::test]
async fn identity_binding_refuses_impostors_and_keeps_the_real_peer() {
    let (servers, clients) = (Pki::new("server CA"), Pki::new("client CA"));
    let mut config = server_config(&servers, Some(&clients));
    config.bind_identity_to_certificate = true;
    let server = transport(config);
    let mut server_events = server.transport.events();
    let addr = server.transport.bind("tls://127.0.0.1:0").await.unwrap().to_string();

    let (alice_id, mallory_id) = ([0xa1; 16], [0x66; 16]);
    let alice_leaf = clients.identity_leaf("alice", alice_id);
    let mallory_leaf = clients.identity_leaf("mallory", mallory_id);
    let client = |leaf: &pki::Leaf, identity: [u8; 16]| {
        let mut config = client_config(&servers, Some(leaf));
        config.identity = identity.into();
        transport(config)
    };

    // Mallory, with her own good certificate, claims Alice's identity first:
    // that would lock Alice out as a duplicate. Refused.
    let impostor = client(&mallory_leaf, alice_id);
    impostor.transport.connect(&addr).unwrap();
    assert_eq!(
        refusal(&mut server_events, "an impostor").await,
        RefusedReason::IdentityNotCertified(alice_id.into())
    );
    impostor.transport.close().await;

    // Alice comes with her own: accepted, her certificate visible.
    let alice = client(&alice_leaf, alice_id);
    alice.transport.connect(&addr).unwrap();
    exchange(&alice, &server, "it is alice").await;
    let certificate = server.transport.peer_info(alice_id.into()).unwrap().certificate.unwrap();
    assert_eq!(certificate.subject, "CN=alice");

    // A client with no identity in its certificate is refused too.
    let anonymous = client(&clients.leaf("anonymous", &["anon.example"]), [0x33; 16]);
    anonymous.transport.connect(&addr).unwrap();
    assert_eq!(
        refusal(&mut server_events, "an uncertified identity").await,
        RefusedReason::IdentityNotCertified([0x33; 16].into())
    );
    anonymous.transport.close().await;

    // Mallory as herself is fine; Alice was served all along.
    let mallory = client(&mallory_leaf, mallory_id);
    mallory.transport.connect(&addr).unwrap();
    exchange(&mallory, &server, "it is mallory").await;
    exchange(&server, &alice, "still alice").await;
    for t in [alice, mallory, server] {
        t.transport.close().await;
    }
}
