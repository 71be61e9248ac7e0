//! The blocking socket from plain threads: producer and consumer, a pool of
//! receivers, timeouts, close while blocked, settings passed through.

use std::collections::HashSet;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use smartsock_blocking::{Error, RecvTimeoutError, SendMode, Socket};

/// The bound on every wait: generous for slow machines, short of a hang.
const WAIT: Duration = Duration::from_secs(10);

fn numbered(i: usize) -> String {
    format!("m{i:05}")
}

#[test]
fn a_producer_thread_and_a_consumer_thread() -> Result<(), Error> {
    const N: usize = 2_000;
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0")?.to_string();
    let producer = thread::spawn(move || -> Result<(), Error> {
        let client = Socket::new()?;
        client.connect(&addr)?;
        for i in 0..N {
            client.send(numbered(i))?;
        }
        client.close();
        Ok(())
    });
    let consumer = thread::spawn(move || {
        (0..N).map(|_| server.recv_timeout(WAIT).expect("a message")).collect::<Vec<_>>()
    });
    producer.join().expect("producer")?;
    let got = consumer.join().expect("consumer");
    assert_eq!(got, (0..N).map(numbered).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn a_pool_of_threads_shares_one_socket_and_each_message_goes_to_one() -> Result<(), Error> {
    const N: usize = 1_000;
    const THREADS: usize = 4;
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0")?.to_string();
    let pool: Vec<_> = (0..THREADS)
        .map(|_| {
            let socket = server.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                // Each thread stops at the first "stop"; there is one per thread.
                loop {
                    let message = socket.recv_timeout(WAIT).expect("a message");
                    if message == "stop" {
                        return got;
                    }
                    got.push(message);
                }
            })
        })
        .collect();
    let client = Socket::new()?;
    client.connect(&addr)?;
    for i in 0..N {
        client.send(numbered(i))?;
    }
    for _ in 0..THREADS {
        client.send("stop")?;
    }
    let mut all = HashSet::new();
    for worker in pool {
        for message in worker.join().expect("worker") {
            assert!(all.insert(message.clone()), "{message:?} delivered twice");
        }
    }
    assert_eq!(all, (0..N).map(|i| numbered(i).into()).collect::<HashSet<_>>());
    Ok(())
}

#[test]
fn stats_count_what_the_threads_exchanged() -> Result<(), Error> {
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0")?.to_string();
    let client = Socket::new()?;
    client.connect(&addr)?;
    for i in 0..5 {
        client.send(numbered(i))?;
    }
    for _ in 0..5 {
        server.recv_timeout(WAIT).expect("a message");
    }
    let stats = server.stats();
    let peer = stats.peer(client.identity()).expect("connected");
    assert_eq!((peer.traffic.messages_in, peer.traffic.bytes_in), (5, 30));
    assert_eq!(stats.totals.messages_in, 5);
    Ok(())
}

#[test]
fn recv_timeout_times_out_then_receives() -> Result<(), Error> {
    let server = Socket::new()?;
    let addr = server.bind("inproc://blocking-timeout")?.to_string();
    let started = Instant::now();
    assert_eq!(server.recv_timeout(Duration::from_millis(100)), Err(RecvTimeoutError::Timeout));
    assert!(started.elapsed() >= Duration::from_millis(100));

    let client = Socket::new()?;
    client.connect(&addr)?;
    client.send("late")?;
    assert_eq!(server.recv_timeout(WAIT).expect("a message"), "late");
    let (from, message) = {
        client.send("who")?;
        server.recv_from_timeout(WAIT).expect("a message")
    };
    assert_eq!((from, message.as_ref()), (client.identity(), &b"who"[..]));
    Ok(())
}

#[test]
fn close_wakes_a_thread_blocked_in_recv() -> Result<(), Error> {
    let socket = Socket::new()?;
    socket.bind("127.0.0.1:0")?;
    let (done, finished) = mpsc::channel();
    let receiver = socket.clone();
    let blocked = thread::spawn(move || {
        let got = receiver.recv();
        done.send(()).expect("report");
        got
    });
    socket.close();
    finished.recv_timeout(WAIT).expect("recv returned after close");
    assert_eq!(blocked.join().expect("receiver"), None);
    assert_eq!(socket.recv_timeout(WAIT), Err(RecvTimeoutError::Closed));
    let error = socket.send("after close").expect_err("closed");
    assert!(error.is_closed(), "{error}");
    assert_eq!(error.into_payload().expect("handed back"), "after close");
    Ok(())
}

#[test]
fn the_iterator_ends_when_the_socket_closes() -> Result<(), Error> {
    let server = Socket::new()?;
    let addr = server.bind("inproc://blocking-iterator")?.to_string();
    let client = Socket::new()?;
    client.connect(&addr)?;
    for i in 0..3 {
        client.send(numbered(i))?;
    }
    assert!(server.wait_for_peers(1, WAIT));
    let first: Vec<_> = server.messages().take(3).collect();
    assert_eq!(first, (0..3).map(numbered).collect::<Vec<_>>());
    let closer = server.clone();
    let rest = thread::spawn(move || (&closer).into_iter().count());
    server.close();
    assert_eq!(rest.join().expect("iterator thread"), 0);
    Ok(())
}

#[test]
fn builder_settings_reach_the_socket() -> Result<(), Error> {
    let publisher = Socket::builder().send_mode(SendMode::Publish).worker_threads(2).build()?;
    let addr = publisher.bind("127.0.0.1:0")?.to_string();
    let subscribers: Vec<Socket> = (0..3).map(|_| Socket::new()).collect::<Result<_, _>>()?;
    for subscriber in &subscribers {
        subscriber.connect(&addr)?;
    }
    assert!(publisher.wait_for_peers(3, WAIT));
    publisher.send("to all")?;
    for subscriber in &subscribers {
        assert_eq!(subscriber.recv_timeout(WAIT).expect("a copy"), "to all");
    }

    for threads in [0, smartsock_blocking::MAX_WORKER_THREADS + 1] {
        let error = Socket::builder().worker_threads(threads).build().expect_err("out of range");
        assert!(matches!(error, Error::Config(_)), "{error}");
    }
    assert!(Socket::builder().worker_threads(smartsock_blocking::MAX_WORKER_THREADS).build().is_ok());
    Ok(())
}

#[test]
fn a_runtime_handed_in_is_used() -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let a = Socket::builder().runtime(runtime.handle().clone()).build()?;
    let b = Socket::builder().runtime(runtime.handle().clone()).build()?;
    let addr = a.bind("inproc://blocking-shared-runtime")?.to_string();
    b.connect(&addr)?;
    b.send("shared")?;
    assert_eq!(a.recv_timeout(WAIT).expect("a message"), "shared");
    a.close();
    b.close();
    Ok(())
}

#[cfg(unix)]
#[test]
fn unix_sockets_from_threads() -> Result<(), Error> {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = format!("unix://{}", dir.path().join("b.sock").display());
    let server = Socket::new()?;
    server.bind(&addr)?;
    let client = Socket::new()?;
    client.connect(&addr)?;
    client.send("over unix")?;
    assert_eq!(server.recv_timeout(WAIT).expect("a message"), "over unix");
    Ok(())
}

#[test]
fn close_wakes_a_thread_blocked_in_recv_timeout() -> Result<(), Error> {
    let socket = Socket::new()?;
    socket.bind("127.0.0.1:0")?;
    let receiver = socket.clone();
    let blocked = thread::spawn(move || {
        let started = Instant::now();
        (receiver.recv_timeout(WAIT), started.elapsed())
    });
    socket.close();
    let (got, waited) = blocked.join().expect("receiver");
    assert_eq!(got, Err(RecvTimeoutError::Closed));
    assert!(waited < WAIT, "waited {waited:?}: the close did not wake it");
    Ok(())
}

#[test]
fn a_send_that_must_wait_blocks_until_room_then_goes() -> Result<(), Error> {
    // No peer, and room for one buffered message: the second send waits
    // (the slow path) until a peer connects and the buffer drains.
    let client =
        Socket::builder().buffer(1, 1 << 20).when_buffer_full(smartsock_blocking::WhenFull::Wait).build()?;
    client.send("first")?;
    let sender = client.clone();
    let (done, sent) = mpsc::channel();
    let second = thread::spawn(move || {
        let outcome = sender.send("second");
        done.send(()).expect("report");
        outcome
    });
    let server = Socket::new()?;
    let addr = server.bind("127.0.0.1:0")?.to_string();
    client.connect(&addr)?;
    sent.recv_timeout(WAIT).expect("the waiting send went once the peer came");
    second.join().expect("sender")?;
    assert_eq!(server.recv_timeout(WAIT).expect("first"), "first");
    assert_eq!(server.recv_timeout(WAIT).expect("second"), "second");
    Ok(())
}

#[test]
fn a_send_that_must_wait_gives_up_at_its_timeout_with_the_message() -> Result<(), Error> {
    let client = Socket::builder()
        .buffer(1, 1 << 20)
        .when_buffer_full(smartsock_blocking::WhenFull::Wait)
        .send_timeout(Duration::from_millis(100))
        .build()?;
    client.send("first")?;
    let started = Instant::now();
    let error = client.send("second").expect_err("no room within the timeout");
    assert!(started.elapsed() >= Duration::from_millis(100), "gave up early: {:?}", started.elapsed());
    assert!(!error.is_closed(), "{error}");
    assert_eq!(error.into_payload().expect("handed back"), "second");
    // send_to a peer that is not connected fails at once, message inside.
    let error = client.send_to(smartsock_blocking::PeerId::random(), "nobody").expect_err("unknown peer");
    assert_eq!(error.into_payload().expect("handed back"), "nobody");
    Ok(())
}
