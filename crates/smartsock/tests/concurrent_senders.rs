//! The `&self` send path under real concurrency: 8 tasks on a multi-thread
//! runtime, 10,000 numbered messages each, through clones of one round-robin
//! socket to 3 receivers over TCP. Every message arrives exactly once; each
//! receiver sees each sender's messages in the order they were sent; and
//! with a tiny peer queue (almost every send waits for room) the same holds
//! and no task starves.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::within;
use smartsock::{Bytes, Socket};

const TASKS: usize = 8;
const EACH: usize = 10_000;
const RECEIVERS: usize = 3;
/// A generous bound on one task's whole run: only a stuck or starved task
/// comes near it.
const TASK_BOUND: Duration = Duration::from_secs(30);

/// Message `i` of task `task`: both numbers, big-endian.
fn message(task: usize, i: usize) -> Bytes {
    let mut bytes = Vec::with_capacity(8);
    bytes.extend_from_slice(&(task as u32).to_be_bytes());
    bytes.extend_from_slice(&(i as u32).to_be_bytes());
    Bytes::from(bytes)
}

fn parse(bytes: &[u8]) -> (usize, usize) {
    assert_eq!(bytes.len(), 8, "not a test message: {bytes:02x?}");
    let task = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    let i = u32::from_be_bytes(bytes[4..].try_into().unwrap()) as usize;
    (task, i)
}

/// Runs the scenario. With `waits`, sends are expected to wait for room,
/// and the tasks to share the room fairly: when the first finishes, every
/// other has sent at least a tenth of its messages. (Without waits a send
/// never yields, so a task may run to its end before another starts: that
/// is the scheduler's order, not starvation.)
async fn many_senders(sender: Socket, waits: bool) {
    let mut receivers = Vec::new();
    for _ in 0..RECEIVERS {
        let receiver = Socket::new().unwrap();
        let addr = receiver.bind("127.0.0.1:0").await.unwrap();
        sender.connect(&addr.to_string()).unwrap();
        receivers.push(receiver);
    }
    assert!(within("three peers", sender.wait_for_peers(RECEIVERS)).await);

    // Each receiver keeps what it gets, in order, until its socket closes.
    let received = Arc::new(AtomicUsize::new(0));
    let collectors: Vec<_> = receivers
        .iter()
        .map(|receiver| {
            let (receiver, received) = (receiver.clone(), received.clone());
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(bytes) = receiver.recv().await {
                    got.push(parse(&bytes));
                    received.fetch_add(1, Ordering::Relaxed);
                }
                got
            })
        })
        .collect();

    // Progress of every task, to see that none is left behind.
    let progress: Arc<Vec<AtomicUsize>> = Arc::new((0..TASKS).map(|_| AtomicUsize::new(0)).collect());
    // Everyone's progress when the first task finished.
    let first_done: Arc<OnceLock<Vec<usize>>> = Arc::default();
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (sender, progress, first_done) = (sender.clone(), progress.clone(), first_done.clone());
            tokio::spawn(async move {
                for i in 0..EACH {
                    sender.send(message(task, i)).await.expect("send");
                    progress[task].store(i + 1, Ordering::Relaxed);
                }
                first_done.get_or_init(|| progress.iter().map(|p| p.load(Ordering::Relaxed)).collect());
                start.elapsed()
            })
        })
        .collect();
    for (task, handle) in tasks.into_iter().enumerate() {
        let took = tokio::time::timeout(TASK_BOUND, handle)
            .await
            .unwrap_or_else(|_| panic!("task {task} did not finish within {TASK_BOUND:?}: starved or stuck"))
            .expect("sender task");
        assert!(took < TASK_BOUND, "task {task} took {took:?}");
    }
    let snapshot = first_done.get().expect("tasks ran").clone();

    within("every message to arrive", async {
        while received.load(Ordering::Relaxed) < TASKS * EACH {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // Close the sender first (nothing more can come), then the receivers:
    // each collector then ends with everything it received.
    sender.close().await;
    for receiver in &receivers {
        receiver.close().await;
    }
    let mut seen = vec![vec![false; EACH]; TASKS];
    let mut total = 0;
    for (r, collector) in collectors.into_iter().enumerate() {
        let got = within("a collector", collector).await.expect("collector");
        let mut last: Vec<Option<usize>> = vec![None; TASKS];
        for (task, i) in got.iter().copied() {
            assert!(task < TASKS && i < EACH, "unknown message {task}:{i}");
            assert!(!seen[task][i], "message {task}:{i} arrived twice");
            seen[task][i] = true;
            assert!(
                last[task].is_none_or(|before| before < i),
                "receiver {r} got {task}:{i} after {task}:{}",
                last[task].unwrap()
            );
            last[task] = Some(i);
        }
        total += got.len();
    }
    assert_eq!(total, TASKS * EACH, "messages lost");
    if waits {
        assert!(
            snapshot.iter().all(|&sent| sent >= EACH / 10),
            "when the first task finished, another had sent under a tenth: {snapshot:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_tasks_on_clones_of_one_socket_deliver_every_message_once_in_per_sender_order() {
    many_senders(Socket::new().unwrap(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_tiny_peer_queue_every_send_waits_its_turn_and_no_task_starves() {
    many_senders(Socket::builder().peer_queue(2).build().unwrap(), true).await;
}
