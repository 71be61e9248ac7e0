//! The fault battery's harness, shared by its tests (`tests/`) and the soak
//! (`cargo xtask soak`): real sockets on loopback, each receiver behind a
//! [`FaultProxy`], and a [`Ledger`] that says exactly what arrived.
//!
//! Messages are numbered ([`smartsock_testkit::wire::payload`]): the
//! ledger counts each number's deliveries, so lost (never delivered) and
//! duplicated (delivered more than once) are exact, and it keeps each
//! receiver's arrival order for the at-most-once order check.
//!
//! Liveness settings are short ([`HEARTBEAT_INTERVAL`], [`HEARTBEAT_TIMEOUT`],
//! [`RESEND_TIMEOUT`]) so that a dead link is found in about a second;
//! every wait is bounded.

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

pub mod soak;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use smartsock::{Delivery, Event, PeerId, SendMode, Socket, SocketBuilder};
use smartsock_testkit::FaultProxy;
use smartsock_testkit::wire::seq;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use smartsock_testkit::wire::payload;

/// Heartbeat interval of every socket in the battery.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);
/// Heartbeat timeout of every socket in the battery: a silent link is
/// declared dead this long after its last frame.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an at-least-once sender waits for an ACK before sending again.
pub const RESEND_TIMEOUT: Duration = Duration::from_millis(500);
/// Payload size of the battery's messages.
pub const MESSAGE_SIZE: usize = 64;

/// A builder with the battery's liveness settings.
pub fn builder() -> SocketBuilder {
    Socket::builder()
        .heartbeat(HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT)
        .handshake_timeout(Duration::from_secs(2))
        // Closing at the end of a scenario waits this long at most for a
        // peer behind a dead link to confirm.
        .linger(Duration::from_secs(1))
}

/// An at-least-once round-robin sender that never gives up within a test's
/// time: any message given up would be a failure of the battery.
pub fn reliable_sender() -> SocketBuilder {
    builder()
        .send_mode(SendMode::RoundRobin)
        .delivery(Delivery::AtLeastOnce)
        .resend_timeout(RESEND_TIMEOUT)
        .give_up(10_000, Duration::from_secs(600))
}

/// Exactly what arrived: deliveries per message number, and each
/// receiver's arrival order.
#[derive(Debug)]
pub struct Ledger {
    inner: Mutex<LedgerInner>,
    distinct: watch::Sender<u64>,
}

#[derive(Debug)]
struct LedgerInner {
    counts: Vec<u32>,
    deliveries: u64,
    order: Option<Vec<Vec<u32>>>,
    per_receiver: Vec<u64>,
}

impl Ledger {
    /// A ledger for messages `0..messages` and `receivers` receivers; keeps
    /// arrival orders if `keep_order`.
    pub fn new(messages: usize, receivers: usize, keep_order: bool) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(LedgerInner {
                counts: vec![0; messages],
                deliveries: 0,
                order: keep_order.then(|| vec![Vec::new(); receivers]),
                per_receiver: vec![0; receivers],
            }),
            distinct: watch::Sender::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LedgerInner> {
        self.inner.lock().expect("ledger lock")
    }

    /// Records that `receiver` got message `number`.
    pub fn record(&self, receiver: usize, number: u32) {
        let mut inner = self.lock();
        let slot = inner.counts.get_mut(number as usize).expect("a message number the test sent");
        *slot += 1;
        let first = *slot == 1;
        inner.deliveries += 1;
        inner.per_receiver[receiver] += 1;
        if let Some(order) = &mut inner.order {
            order[receiver].push(number);
        }
        drop(inner);
        if first {
            self.distinct.send_modify(|n| *n += 1);
        }
    }

    /// Messages delivered at least once.
    pub fn distinct(&self) -> u64 {
        *self.distinct.borrow()
    }

    /// Deliveries beyond the first of each message.
    pub fn duplicates(&self) -> u64 {
        self.lock().deliveries - self.distinct()
    }

    /// Deliveries in all.
    pub fn deliveries(&self) -> u64 {
        self.lock().deliveries
    }

    /// Deliveries per receiver.
    pub fn per_receiver(&self) -> Vec<u64> {
        self.lock().per_receiver.clone()
    }

    /// The numbers among `0..sent` never delivered.
    pub fn missing(&self, sent: usize) -> Vec<u32> {
        let inner = self.lock();
        (0..sent).filter(|&i| inner.counts[i] == 0).map(|i| i as u32).collect()
    }

    /// The numbers delivered more than once.
    pub fn repeated(&self) -> Vec<u32> {
        let inner = self.lock();
        (0..inner.counts.len()).filter(|&i| inner.counts[i] > 1).map(|i| i as u32).collect()
    }

    /// `receiver`'s arrival order (empty unless kept).
    pub fn order(&self, receiver: usize) -> Vec<u32> {
        self.lock().order.as_ref().map(|o| o[receiver].clone()).unwrap_or_default()
    }

    /// Waits, at most `limit`, until `count` distinct messages have arrived;
    /// false if they did not.
    pub async fn wait_distinct(&self, count: u64, limit: Duration) -> bool {
        let mut seen = self.distinct.subscribe();
        tokio::time::timeout(limit, seen.wait_for(|n| *n >= count)).await.is_ok()
    }
}

/// A bound socket that records everything it receives in a [`Ledger`].
#[derive(Debug)]
pub struct Receiver {
    /// The socket.
    pub socket: Socket,
    /// Where it is bound.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Binds `builder`'s socket to `addr` and records what it receives as
    /// receiver `index`.
    pub async fn start(builder: SocketBuilder, addr: &str, index: usize, ledger: Arc<Ledger>) -> Self {
        let socket = builder.build().expect("receiver socket");
        let endpoint = socket.bind(addr).await.expect("bind");
        let addr = endpoint.tcp().expect("a TCP address");
        let task = tokio::spawn(record(socket.clone(), index, ledger));
        Self { socket, addr, task }
    }

    /// Closes the socket (taking what was queued first) and waits for its
    /// recording task to end.
    pub async fn stop(self) {
        self.socket.close().await;
        let _ = self.task.await;
    }
}

/// Takes every message of `socket` into `ledger` until the socket closes.
pub async fn record(socket: Socket, index: usize, ledger: Arc<Ledger>) {
    while let Some(message) = socket.recv().await {
        ledger.record(index, seq(&message));
    }
}

/// Receivers, one [`FaultProxy`] in front of each, and a sender connected
/// to every proxy.
pub struct Rig {
    /// The sending socket.
    pub sender: Socket,
    /// Its events, subscribed before it connected.
    pub events: futures::stream::BoxStream<'static, Event>,
    /// The receivers, in connection order.
    pub receivers: Vec<Receiver>,
    /// Receiver `i`'s proxy.
    pub proxies: Vec<FaultProxy>,
    /// What arrived.
    pub ledger: Arc<Ledger>,
    receiver_builder: fn() -> SocketBuilder,
}

impl Rig {
    /// `peers` receivers made by `receiver`, each behind a proxy; a sender
    /// from `sender` connected to every proxy, handshakes done.
    pub async fn new(
        peers: usize,
        messages: usize,
        keep_order: bool,
        sender: SocketBuilder,
        receiver: fn() -> SocketBuilder,
    ) -> Self {
        let ledger = Ledger::new(messages, peers, keep_order);
        let mut receivers = Vec::new();
        let mut proxies = Vec::new();
        for i in 0..peers {
            let r = Receiver::start(receiver(), "127.0.0.1:0", i, ledger.clone()).await;
            proxies.push(FaultProxy::start(r.addr).await.expect("proxy"));
            receivers.push(r);
        }
        let sender = sender.build().expect("sender socket");
        let events = sender.events();
        for proxy in &proxies {
            sender.connect(&proxy.addr().to_string()).expect("connect");
        }
        let rig = Self { sender, events, receivers, proxies, ledger, receiver_builder: receiver };
        let all = rig.sender.wait_for_peers(peers);
        assert!(smartsock_testkit::within("the sender's handshakes", all).await, "sender closed");
        rig
    }

    /// Receiver `i`'s identity.
    pub fn identity(&self, i: usize) -> PeerId {
        self.receivers[i].socket.identity()
    }

    /// Restarts receiver `i` as after a crash: a new receiver process (a new
    /// socket, so a new identity) on a fresh port behind the same proxy, and
    /// the old one's connection reset, so what it had taken but not yet
    /// acknowledged never is. The old one then records what it still had
    /// queued (as a crashed process would have, had it lived) and stops.
    pub async fn restart(&mut self, i: usize) {
        let fresh = Receiver::start((self.receiver_builder)(), "127.0.0.1:0", i, self.ledger.clone()).await;
        self.proxies[i].set_upstream(fresh.addr);
        self.proxies[i].reset_all();
        let old = std::mem::replace(&mut self.receivers[i], fresh);
        smartsock_testkit::within("the old receiver to stop", old.stop()).await;
    }

    /// Waits for the sender's next `PeerDisconnected` naming `peer`.
    pub async fn disconnected(&mut self, peer: PeerId, limit: Duration) {
        let events = &mut self.events;
        smartsock_testkit::within_for("PeerDisconnected", limit, async {
            while let Some(event) = events.next().await {
                if matches!(event, Event::PeerDisconnected { peer: p, .. } if p == peer) {
                    return;
                }
            }
            panic!("the sender's events ended");
        })
        .await;
    }

    /// Waits for the sender's next `PeerConnected` naming `peer`.
    pub async fn connected(&mut self, peer: PeerId, limit: Duration) {
        let events = &mut self.events;
        smartsock_testkit::within_for("PeerConnected", limit, async {
            while let Some(event) = events.next().await {
                if matches!(event, Event::PeerConnected { peer: p, .. } if p == peer) {
                    return;
                }
            }
            panic!("the sender's events ended");
        })
        .await;
    }

    /// Faults fired over every proxy.
    pub fn faults(&self) -> usize {
        self.proxies.iter().map(|p| p.stats().faults()).sum()
    }

    /// Closes the sender, then every receiver.
    pub async fn shutdown(self) {
        smartsock_testkit::within("the sender to close", self.sender.close()).await;
        for receiver in self.receivers {
            smartsock_testkit::within("a receiver to close", receiver.stop()).await;
        }
    }
}

/// A deterministic generator (splitmix64) for fault schedules: the same
/// seed gives the same schedule on every machine and every version.
#[derive(Debug, Clone)]
pub struct Schedule(u64);

impl Schedule {
    /// A schedule from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low)
    }
}

/// The seed for seeded schedules: `SMARTSOCK_FAULT_SEED` if set, else `default`.
pub fn seed(default: u64) -> u64 {
    std::env::var("SMARTSOCK_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// What a scenario measured, printed as one line that can be quoted.
#[derive(Debug, Default)]
pub struct Figures {
    /// The scenario's name.
    pub scenario: &'static str,
    /// Messages sent.
    pub messages: u64,
    /// Faults injected (fired).
    pub faults: u64,
    /// Messages never delivered.
    pub lost: u64,
    /// Deliveries beyond the first.
    pub duplicates: u64,
    /// Messages given up (and handed back).
    pub given_up: u64,
    /// Time the scenario took.
    pub elapsed: Duration,
    /// Anything else worth quoting.
    pub extra: String,
}

/// One line, `FIGURES <scenario>: messages=… faults=… …`, to grep for.
impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FIGURES {}: messages={} faults={} lost={} duplicates={} given_up={} time={:.2}s {}",
            self.scenario,
            self.messages,
            self.faults,
            self.lost,
            self.duplicates,
            self.given_up,
            self.elapsed.as_secs_f64(),
            self.extra
        )
    }
}
