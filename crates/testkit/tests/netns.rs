//! Network namespaces: a pulled link is silent (no FIN, no RST, bytes just
//! stop), and data sent meanwhile arrives once it is mended (TCP resends).

#![allow(clippy::print_stdout)]

use std::time::Duration;

use smartsock_testkit::{NetLab, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

#[tokio::test(flavor = "current_thread")]
async fn a_cut_link_is_silent_and_a_mended_one_carries_on() {
    let lab = match NetLab::star(1) {
        Ok(lab) => lab,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let addr = format!("{}:7100", lab.leaf_addr(0));
    let (ready_tx, ready) = oneshot::channel();
    let (bytes_tx, bytes) = oneshot::channel();
    // The server, in the leaf: accepts one connection, reads 10 bytes.
    let server = NetLab::spawn_in(lab.leaf(0), move || async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind in the leaf");
        ready_tx.send(()).unwrap();
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut got = [0u8; 10];
        stream.read_exact(&mut got).await.unwrap();
        bytes_tx.send(got).unwrap();
    });
    within("the server to listen", ready).await.unwrap();
    NetLab::enter(lab.hub());
    let mut client =
        within("a connection across the link", tokio::net::TcpStream::connect((lab.leaf_addr(0), 7100)))
            .await
            .unwrap();
    client.write_all(b"01234").await.unwrap();
    lab.cut(0);
    client.write_all(b"56789").await.unwrap();
    // Silence: no error, no end, nothing.
    let mut byte = [0u8; 1];
    let quiet = tokio::time::timeout(Duration::from_millis(500), client.read(&mut byte)).await;
    assert!(quiet.is_err(), "the cut link said something: {quiet:?}");
    lab.mend(0);
    let got = within("the bytes after mending", bytes).await.unwrap();
    assert_eq!(&got, b"0123456789");
    server.join().unwrap();
}
