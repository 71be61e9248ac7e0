//! When the payload of an acknowledged message is freed: by the next send
//! (on the sending thread, where the application allocates its next
//! payload), or by the driver's next tick (a tenth of the resend timeout)
//! when nothing more is sent. See `Retired` in `src/pending.rs`.
//!
//! Paused time over an in-memory peer played by the test.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{MemPeer, Sender, WAIT, reliable, send_in_one_turn, within};
use tokio::time::Instant;

/// A payload's buffer that says when it is freed.
struct Watched {
    bytes: Vec<u8>,
    freed: Arc<AtomicBool>,
}

impl AsRef<[u8]> for Watched {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.freed.store(true, Ordering::SeqCst);
    }
}

/// A payload of `text`, and the flag its buffer sets when it is freed.
fn watched(text: &str) -> (Bytes, Arc<AtomicBool>) {
    let freed = Arc::new(AtomicBool::new(false));
    let payload = Bytes::from_owner(Watched { bytes: text.as_bytes().to_vec(), freed: freed.clone() });
    (payload, freed)
}

/// Sends a watched payload to a new peer and has the peer acknowledge it.
async fn acknowledged(resend_timeout: Duration) -> (Sender, MemPeer, Arc<AtomicBool>) {
    let sender = Sender::new(reliable(resend_timeout, 6));
    let mut to = MemPeer::attach(&sender.transport, "to").await;
    sender.wait_for_peers(1).await;
    let (payload, freed) = watched("first");
    let id = send_in_one_turn(&sender, to.id, payload);
    assert_eq!(to.expect_data_req(WAIT).await.0, id);
    to.ack(id).await;
    sender.settled().await;
    (sender, to, freed)
}

#[tokio::test(start_paused = true)]
async fn an_acknowledged_payload_is_freed_by_the_next_send() {
    // Ticks six minutes apart: none comes during the test.
    let started = Instant::now();
    let (sender, to, freed) = acknowledged(Duration::from_secs(3600)).await;
    send_in_one_turn(&sender, to.id, Bytes::from_static(b"second"));
    assert!(freed.load(Ordering::SeqCst), "the next send frees the acknowledged payload");
    assert!(started.elapsed() < Duration::from_secs(360), "no tick came between");
}

#[tokio::test(start_paused = true)]
async fn with_nothing_more_sent_the_drivers_next_tick_frees_it() {
    let resend_timeout = Duration::from_secs(5);
    let tick = resend_timeout / 10;
    let (_sender, _to, freed) = acknowledged(resend_timeout).await;
    within("the driver's tick to free the payload", tick + Duration::from_millis(1), async {
        while !freed.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}
