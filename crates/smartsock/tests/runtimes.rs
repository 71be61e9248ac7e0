//! A socket built on a runtime of its own serves from that runtime, even
//! when another runtime awaits its `bind` and then ends (the pattern the
//! crate docs show under "Runtimes"): its listeners belong to its runtime.

use std::time::Duration;

use smartsock::Socket;
use tokio::runtime::{Builder, Runtime};
use tokio::time::timeout;

/// Long enough for a slow machine, short of a hang.
const WAIT: Duration = Duration::from_secs(10);

fn own_runtime() -> Runtime {
    Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime")
}

/// Binds `addr` from a current-thread runtime that is dropped right after,
/// then checks that a client still reaches the socket.
fn bound_from_a_runtime_that_ends(addr: &str) {
    let own = own_runtime();
    let server = {
        let _on_own = own.enter();
        Socket::new().expect("a socket")
    };
    let endpoint = {
        let other = Builder::new_current_thread().enable_all().build().expect("a runtime");
        other.block_on(server.bind(addr)).expect("bound")
    };
    own.block_on(async {
        let client = Socket::new().expect("a socket");
        client.connect(&endpoint.to_string()).expect("a connectable endpoint");
        client.send("through").await.expect("queued");
        let got = timeout(WAIT, server.recv()).await.expect("the server accepted the client");
        assert_eq!(got.as_deref(), Some(&b"through"[..]));
        client.close().await;
        server.close().await;
    });
}

#[test]
fn a_tcp_listener_belongs_to_the_socket_s_runtime() {
    bound_from_a_runtime_that_ends("127.0.0.1:0");
}

#[cfg(unix)]
#[test]
fn a_unix_listener_belongs_to_the_socket_s_runtime() {
    let dir = tempfile::tempdir().expect("a temp dir");
    bound_from_a_runtime_that_ends(&format!("unix://{}", dir.path().join("s.sock").display()));
}

#[cfg(target_os = "linux")]
#[test]
fn an_abstract_unix_listener_belongs_to_the_socket_s_runtime() {
    bound_from_a_runtime_that_ends(&format!("unix://@smartsock-runtimes-{}", std::process::id()));
}
