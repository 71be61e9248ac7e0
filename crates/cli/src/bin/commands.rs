//! `smartsock recv` and `smartsock send`.

use std::io;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use smartsock::{Delivery, DropReason, Event, PeerId, Socket};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{Endpoints, RecvArgs, SendArgs};
use crate::format::Format;
use crate::progress::Progress;
use crate::rates;
use crate::{Failure, note, write_line};

/// Prints messages as they arrive, until `--count` or Ctrl-C.
pub(crate) async fn recv(args: RecvArgs) -> Result<(), Failure> {
    let mut builder = args.tls.files().apply(Socket::builder())?;
    if let Some(identity) = args.identity {
        builder = builder.identity(identity);
    }
    let socket = builder.build()?;
    if args.verbose {
        tokio::spawn(report_events(socket.events()));
    }
    open(&socket, &args.endpoints).await?;
    let format = match (args.hex, args.json) {
        (true, _) => Format::Hex,
        (_, true) => Format::Json,
        _ => Format::Text,
    };
    let started = tokio::time::Instant::now();
    let reporter = args.stats.then(|| rates::report_every_second(socket.clone(), started));
    let mut interrupted = pin!(tokio::signal::ctrl_c());
    let mut received = 0;
    let outcome = loop {
        if args.count.is_some_and(|count| received >= count) {
            break Ok(());
        }
        let next = tokio::select! {
            next = socket.recv_from() => next,
            _ = &mut interrupted => break Ok(()),
        };
        let Some((from, payload)) = next else { break Ok(()) };
        received += 1;
        match write_line(&format.line(from, &payload)) {
            Ok(()) => {}
            // The reader went away (`| head`): stop quietly.
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => break Ok(()),
            Err(error) => break Err(Failure::runtime(format!("cannot write to stdout: {error}"))),
        }
    };
    if let Some(reporter) = reporter {
        reporter.abort();
        note(rates::Rates::new(started).summary(&socket.stats(), tokio::time::Instant::now()));
    }
    // Lets the acknowledgements of what was taken reach their senders.
    socket.close().await;
    outcome
}

/// Sends the messages given (or stdin's lines), then closes, lingering until
/// they are delivered. Fails if any never reached a peer.
pub(crate) async fn send(args: SendArgs) -> Result<(), Failure> {
    let delivery = if args.at_least_once { Delivery::AtLeastOnce } else { Delivery::AtMostOnce };
    let mut builder = args
        .tls
        .files()
        .apply(Socket::builder())?
        .send_mode(args.mode.into())
        .delivery(delivery)
        .linger(args.linger);
    if let Some(identity) = args.identity {
        builder = builder.identity(identity);
    }
    let socket = builder.build()?;
    // Subscribed before anything can happen, read only at the end: counts drops.
    let mut outcome_events = Box::pin(socket.events());
    if args.verbose {
        tokio::spawn(report_events(socket.events()));
    }
    open(&socket, &args.endpoints).await?;
    if args.wait_peers > 0 {
        socket.wait_for_peers(args.wait_peers).await;
    }

    let mut sent = 0u64;
    let outcome = if args.messages.is_empty() {
        let progress = Progress::stdin(!args.verbose);
        let outcome = send_stdin(&socket, args.to, args.send_timeout, &progress, &mut sent).await;
        progress.finish(outcome.is_ok());
        outcome
    } else {
        // Made once: repeats share the payloads (`Bytes` clones).
        let messages: Vec<Bytes> = args.messages.into_iter().map(Bytes::from).collect();
        let progress = Progress::messages(messages.len() as u64 * args.count, !args.verbose);
        let outcome = async {
            for _ in 0..args.count {
                for message in &messages {
                    deliver(&socket, args.to, message.clone(), args.send_timeout).await?;
                    sent += 1;
                    progress.sent(message.len());
                }
            }
            Ok(())
        }
        .await;
        progress.finish(outcome.is_ok());
        outcome
    };
    outcome?;

    let report = socket.close().await;
    // Drops while sending are events; what the close could not confirm is
    // in its report (some of it reported as events too: counted once).
    let publish = matches!(args.mode.into(), smartsock::SendMode::Publish);
    let lost = dropped(&mut outcome_events, publish).await.max(report.not_confirmed()).min(sent);
    if lost > 0 {
        return Err(Failure::runtime(format!(
            "{lost} of {sent} message(s) not confirmed as delivered within --linger: {}",
            if args.at_least_once {
                "not acknowledged"
            } else {
                "no peer took them, or the peer did not confirm it read them"
            }
        )));
    }
    Ok(())
}

/// Sends each line of standard input as it is read, counting into `sent`.
async fn send_stdin(
    socket: &Socket,
    to: Option<PeerId>,
    limit: Option<Duration>,
    progress: &Progress,
    sent: &mut u64,
) -> Result<(), Failure> {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = stdin
            .read_until(b'\n', &mut line)
            .await
            .map_err(|error| Failure::runtime(format!("cannot read stdin: {error}")))?;
        if read == 0 {
            return Ok(());
        }
        let message = line.strip_suffix(b"\n").unwrap_or(&line);
        let message = message.strip_suffix(b"\r").unwrap_or(message);
        deliver(socket, to, Bytes::copy_from_slice(message), limit).await?;
        *sent += 1;
        progress.sent(read);
    }
}

/// [`deliver_waiting`], waiting for room (and, with `to`, for that peer to
/// connect) for at most `limit` when one is given.
async fn deliver(
    socket: &Socket,
    to: Option<PeerId>,
    message: Bytes,
    limit: Option<Duration>,
) -> Result<(), Failure> {
    let Some(limit) = limit else { return deliver_waiting(socket, to, message).await };
    tokio::time::timeout(limit, deliver_waiting(socket, to, message)).await.map_err(|_| {
        Failure::runtime(format!(
            "a message could not be queued within --send-timeout ({} s): no peer is taking messages",
            limit.as_secs_f64()
        ))
    })?
}

/// Sends one message by the socket's mode, or to `to` once it is connected.
async fn deliver_waiting(socket: &Socket, to: Option<PeerId>, message: Bytes) -> Result<(), Failure> {
    match to {
        None => socket.send(message).await?,
        Some(peer) => {
            let mut table = socket.transport().peers();
            // The socket, and so the table's sender, lives as long as `socket`.
            let _ = table.wait_for(|peers| peers.iter().any(|p| p.id() == peer)).await;
            socket.send_to(peer, message).await?;
        }
    }
    Ok(())
}

/// Binds and connects as asked; reports each address bound on stderr (the
/// port chosen when it was 0).
pub(crate) async fn open(socket: &Socket, endpoints: &Endpoints) -> Result<(), Failure> {
    for addr in &endpoints.bind {
        let local = socket.bind(addr).await?;
        note(format_args!("listening on {local}"));
    }
    for addr in &endpoints.connect {
        socket.connect(addr)?;
    }
    Ok(())
}

/// Messages reported dropped so far: the events already queued, plus any
/// that arrive within a moment (at-least-once gives up in its own task).
/// Under publish a drop for one departed subscriber is one copy, not a
/// message: only what reached no peer at all counts.
async fn dropped(events: &mut (impl Stream<Item = Event> + Unpin), publish: bool) -> u64 {
    let mut lost = 0;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(50), events.next()).await {
        if let Event::Dropped { peer, count, reason: DropReason::PeerGone | DropReason::Undelivered } = event
        {
            if !(publish && peer.is_some()) {
                lost += count;
            }
        }
    }
    lost
}

/// `--verbose`: one stderr line per connection event.
pub(crate) async fn report_events(events: impl Stream<Item = Event>) {
    let mut events = pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Event::PeerConnected { peer, addr, side } => {
                note(format_args!("peer {peer} connected ({side} {addr})"))
            }
            Event::PeerDisconnected { peer, reason } => {
                note(format_args!("peer {peer} disconnected: {reason}"))
            }
            Event::HandshakeRefused { addr, reason } => note(format_args!("refused {addr}: {reason}")),
            Event::Reconnecting { addr, attempt, delay, error } => {
                note(format_args!("cannot reach {addr} ({error}; try {attempt}); again in {delay:?}"));
            }
            Event::Dropped { peer, count, reason } => {
                let peer = peer.map(|p| format!(" for {p}")).unwrap_or_default();
                note(format_args!("dropped {count} message(s){peer}: {reason:?}"));
            }
            other => note(format_args!("{other:?}")),
        }
    }
}
