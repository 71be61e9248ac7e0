//! Typed JSON messages (feature `json`): round trips, and payloads that are
//! not the expected JSON handed back inside `ErrorKind::Decode`.

#![cfg(feature = "json")]

mod common;

use common::{pair, recv, within};
use serde::{Deserialize, Serialize};
use smartsock::{Bytes, Error, ErrorKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u32,
    name: String,
    tags: Vec<String>,
    deadline: Option<u64>,
}

fn job(id: u32) -> Job {
    Job { id, name: format!("job {id} ✓"), tags: vec!["a".into(), "b\"quoted\"".into()], deadline: Some(7) }
}

#[tokio::test]
async fn send_json_and_recv_json_round_trip_a_struct() -> Result<(), Error> {
    let (server, client) = pair().await;
    for id in 0..10 {
        client.send_json(&job(id)).await?;
    }
    for id in 0..10 {
        let got: Job = within("a JSON message", server.recv_json()).await.expect("open")?;
        assert_eq!(got, job(id));
    }

    // By identity, with the sender's identity on receipt.
    server.send_json_to(client.identity(), &vec![job(1), job(2)]).await?;
    let (from, jobs): (_, Vec<Job>) = within("a JSON reply", client.recv_json_from()).await.expect("open")?;
    assert_eq!(from, server.identity());
    assert_eq!(jobs, vec![job(1), job(2)]);

    // What goes on the wire is plain JSON text.
    client.send_json(&job(3)).await?;
    let raw = recv(&server).await;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&raw).expect("json")["id"], 3);
    Ok(())
}

#[tokio::test]
async fn a_payload_that_is_not_the_expected_json_is_handed_back() -> Result<(), Error> {
    let (server, client) = pair().await;
    client.send("not json at all").await?;
    client.send(r#"{"id": "not a number"}"#).await?;
    client.send(Bytes::from_static(&[0xff, 0x00, 0xfe])).await?;
    client.send_json(&job(9)).await?;

    for expected in [&b"not json at all"[..], &br#"{"id": "not a number"}"#[..], &[0xff, 0x00, 0xfe][..]] {
        let error =
            within("a JSON error", server.recv_json::<Job>()).await.expect("open").expect_err("not a Job");
        match error.kind() {
            ErrorKind::Decode(error) => {
                assert_eq!(error.payload(), expected);
                assert_eq!(error.peer(), client.identity());
                assert!(error.cause().is::<serde_json::Error>(), "{:?}", error.cause());
            }
            other => panic!("expected ErrorKind::Decode, got {other:?}"),
        }
        assert!(error.to_string().contains("JSON"), "{error}");
        assert_eq!(error.into_payload().expect("the bytes are handed back"), expected);
    }
    // The bad messages were consumed; the next good one comes through.
    let good: Job = within("the good message", server.recv_json()).await.expect("open")?;
    assert_eq!(good, job(9));

    // After close and drain, `None`.
    server.close().await;
    assert!(within("the end", server.recv_json::<Job>()).await.is_none());
    Ok(())
}
