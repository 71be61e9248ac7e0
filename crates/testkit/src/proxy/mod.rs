//! [`FaultProxy`]: a deterministic fault-injection TCP proxy on loopback.
//!
//! It sits between a connect end and a bind end: the connect end dials
//! [`FaultProxy::addr`], the proxy dials the upstream address and copies
//! bytes both ways, one task per direction (so a full receiver on one side
//! never holds up the other direction, as with a real network). On command
//! it injects one [`Fault`] at the exact moment a [`Trigger`] names: after
//! K bytes or K whole frames in one [`Direction`] (it parses the aiomsg
//! framing, a 4-byte big-endian length prefix), or K frames and some bytes
//! into the next (a cut inside a frame). Counts start when the fault is
//! armed and run across connections.
//!
//! Stall, throttle, delay and drop change the *link*, in one direction or
//! both, for every connection through the proxy until [`FaultProxy::heal`];
//! reset and close end the connection that carried the trigger (all of
//! them with [`Trigger::Now`]).
//!
//! Every queue is bounded: a direction holds at most one read chunk
//! ([`CHUNK`]) that it has not forwarded yet, and stops reading meanwhile,
//! so back-pressure reaches the sender as it would through a slow network.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::wait::within;

mod plan;

use plan::{Armed, FrameParser};
pub use plan::{Direction, Fault, Trigger};

/// The largest read a direction makes, and so the most it holds unforwarded.
pub const CHUNK: usize = 64 * 1024;

/// How many faults can be armed at once (a test arms a handful).
const MAX_ARMED: usize = 16;

/// What went through the proxy so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections: u64,
    /// Connections open now.
    pub live: u64,
    /// Bytes forwarded, per direction (`[up, down]`).
    pub bytes: [u64; 2],
    /// Whole frames forwarded, per direction.
    pub frames: [u64; 2],
    /// Bytes dropped by [`Fault::Drop`], per direction.
    pub dropped: [u64; 2],
    /// Faults fired, in order.
    pub fired: Vec<Fault>,
    /// Connections refused (reset at once) while refusing, or because the
    /// upstream could not be reached.
    pub refused: u64,
}

impl ProxyStats {
    /// How many faults have fired.
    pub fn faults(&self) -> usize {
        self.fired.len()
    }
}

/// The link's state in one direction.
#[derive(Debug, Clone, Copy, Default)]
struct Link {
    stalled: bool,
    rate: Option<u64>,
    delay: Option<Duration>,
    drop_left: u64,
}

#[derive(Debug)]
struct State {
    upstream: SocketAddr,
    refusing: bool,
    armed: Vec<Armed>,
    links: [Link; 2],
    stats: ProxyStats,
    /// The kill switch of each open connection.
    conns: Vec<(u64, watch::Sender<Kill>)>,
    next_conn: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    Alive,
    Reset,
    Close,
}

struct Shared {
    state: Mutex<State>,
    /// Bumped on every change a waiting direction may care about (a heal,
    /// a fault fired, a byte forwarded): stalled directions and waiters
    /// watch it.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("proxy state lock")
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// A fault-injection TCP proxy on loopback; see the [module docs](self).
/// Dropping it stops it and closes every connection through it.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                upstream,
                refusing: false,
                armed: Vec::new(),
                links: [Link::default(); 2],
                stats: ProxyStats::default(),
                conns: Vec::new(),
                next_conn: 0,
            }),
            changed: watch::Sender::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self { addr, shared, accept })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forwards new connections to `upstream` from now on (a restarted peer
    /// on another port); open connections keep theirs.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        self.shared.lock().upstream = upstream;
    }

    /// While `refusing`, new connections are reset as soon as accepted: a
    /// host whose peer process is down.
    pub fn set_refusing(&self, refusing: bool) {
        self.shared.lock().refusing = refusing;
    }

    /// Arms `fault` to fire at `trigger`. [`Trigger::Now`] fires before this returns.
    pub fn arm(&self, fault: Fault, trigger: Trigger) {
        let mut state = self.shared.lock();
        if trigger == Trigger::Now {
            fire_now(&mut state, fault);
        } else {
            assert!(state.armed.len() < MAX_ARMED, "more than {MAX_ARMED} faults armed at once");
            state.armed.push(Armed { fault, trigger, bytes: 0, frames: 0, after: 0 });
        }
        drop(state);
        self.shared.bump();
    }

    /// Ends every link fault (stall, throttle, delay, bytes still to drop),
    /// stops refusing, and disarms faults that have not fired. Connections
    /// that were reset stay gone.
    pub fn heal(&self) {
        let mut state = self.shared.lock();
        state.links = [Link::default(); 2];
        state.refusing = false;
        state.armed.clear();
        drop(state);
        self.shared.bump();
    }

    /// Resets every open connection now (same as arming [`Fault::Reset`]
    /// with [`Trigger::Now`]).
    pub fn reset_all(&self) {
        self.arm(Fault::Reset, Trigger::Now);
    }

    /// What went through so far.
    pub fn stats(&self) -> ProxyStats {
        self.shared.lock().stats.clone()
    }

    /// Faults armed that have not fired yet.
    pub fn armed(&self) -> usize {
        self.shared.lock().armed.len()
    }

    /// Waits (bounded by [`WAIT`](crate::WAIT)) until `n` faults in all have fired.
    pub async fn wait_fired(&self, n: usize) {
        self.wait_until(&format!("{n} faults to fire"), |s| s.fired.len() >= n).await;
    }

    /// Waits (bounded by [`WAIT`](crate::WAIT)) until `check` holds for the stats.
    pub async fn wait_until(&self, what: &str, mut check: impl FnMut(&ProxyStats) -> bool) {
        let mut changed = self.shared.changed.subscribe();
        within(what, async {
            loop {
                if check(&self.shared.lock().stats) {
                    return;
                }
                changed.changed().await.expect("the proxy outlives its waiters");
            }
        })
        .await;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Close, not reset: dropping a proxy is the end of a test, not a fault.
        for (_, kill) in self.shared.lock().conns.drain(..) {
            kill.send_replace(Kill::Close);
        }
    }
}

fn fire_now(state: &mut State, fault: Fault) {
    match fault {
        Fault::Reset | Fault::Close => {
            let kill = if fault == Fault::Reset { Kill::Reset } else { Kill::Close };
            for (_, switch) in &state.conns {
                switch.send_replace(kill);
            }
        }
        _ => {
            for link in &mut state.links {
                apply_link(link, fault);
            }
        }
    }
    state.stats.fired.push(fault);
}

fn apply_link(link: &mut Link, fault: Fault) {
    match fault {
        Fault::Stall => link.stalled = true,
        Fault::Throttle(rate) => link.rate = Some(rate.max(1)),
        Fault::Delay(delay) => link.delay = Some(delay),
        Fault::Drop(n) => link.drop_left += n,
        Fault::Reset | Fault::Close => {}
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of fds or the like: a test proxy just tries again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(serve(client, shared.clone()));
    }
}

async fn serve(client: TcpStream, shared: Arc<Shared>) {
    let (upstream, refusing) = {
        let mut state = shared.lock();
        state.stats.connections += 1;
        (state.upstream, state.refusing)
    };
    let server = if refusing { None } else { TcpStream::connect(upstream).await.ok() };
    let Some(server) = server else {
        // The client sees its peer's host answer with a reset.
        let _ = client.set_zero_linger();
        shared.lock().stats.refused += 1;
        shared.bump();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (kill_tx, kill_rx) = watch::channel(Kill::Alive);
    let id = {
        let mut state = shared.lock();
        let id = state.next_conn;
        state.next_conn += 1;
        state.conns.push((id, kill_tx.clone()));
        state.stats.live += 1;
        id
    };
    shared.bump();
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = tokio::spawn(pump(Direction::Up, client_read, server_write, shared.clone(), kill_tx.clone()));
    let down = tokio::spawn(pump(Direction::Down, server_read, client_write, shared.clone(), kill_tx));
    drop(kill_rx);
    let _ = up.await;
    let _ = down.await;
    let mut state = shared.lock();
    state.conns.retain(|(c, _)| *c != id);
    state.stats.live -= 1;
    drop(state);
    shared.bump();
}

/// What a direction decided to do with the bytes it holds.
enum Step {
    /// Wait for the link to change (stalled).
    Wait,
    /// Forward the first `n` bytes, then apply `fired` if any.
    Forward { n: usize, fired: Option<Fault>, delay: Option<Duration>, rate: Option<u64> },
    /// The first `n` bytes vanish.
    Drop(usize),
}

/// Copies one direction of one connection, injecting what is armed for it.
async fn pump(
    dir: Direction,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: Arc<Shared>,
    kill: watch::Sender<Kill>,
) {
    let mut killed = kill.subscribe();
    let mut changed = shared.changed.subscribe();
    let mut parser = FrameParser::default();
    let mut buf = vec![0u8; CHUNK];
    // Bytes read and not forwarded yet: buf[start..end].
    let (mut start, mut end) = (0usize, 0usize);
    let mut read_at = Instant::now();
    let mut next_send = Instant::now();
    let outcome = loop {
        if *killed.borrow_and_update() != Kill::Alive {
            break *killed.borrow();
        }
        if start == end {
            tokio::select! {
                read = from.read(&mut buf) => match read {
                    Ok(0) => {
                        // A clean end: pass the FIN on, let the other direction finish.
                        let _ = to.shutdown().await;
                        return;
                    }
                    Ok(n) => {
                        (start, end) = (0, n);
                        read_at = Instant::now();
                    }
                    // A reset from this side: the other side gets one too.
                    Err(_) => break Kill::Reset,
                },
                _ = killed.changed() => continue,
            }
        }
        let step = decide(dir, &mut parser, &buf[start..end], &shared);
        match step {
            Step::Wait => {
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = killed.changed() => {}
                }
            }
            Step::Drop(n) => start += n,
            Step::Forward { n, fired, delay, rate } => {
                let mut wait_until = None;
                if let Some(delay) = delay {
                    wait_until = Some(read_at + delay);
                }
                if let Some(rate) = rate {
                    let now = Instant::now();
                    if next_send < now {
                        next_send = now;
                    }
                    wait_until = Some(wait_until.map_or(next_send, |w: Instant| w.max(next_send)));
                    next_send += Duration::from_secs_f64(n as f64 / rate as f64);
                }
                if let Some(at) = wait_until {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        _ = killed.changed() => continue,
                    }
                }
                let written = tokio::select! {
                    w = to.write_all(&buf[start..start + n]) => w,
                    _ = killed.changed() => continue,
                };
                if written.is_err() {
                    break Kill::Reset;
                }
                start += n;
                if let Some(fault) = fired {
                    match fault {
                        Fault::Reset => {
                            kill.send_replace(Kill::Reset);
                        }
                        Fault::Close => {
                            kill.send_replace(Kill::Close);
                        }
                        _ => {}
                    }
                }
                shared.bump();
            }
        }
    };
    // Make sure the other direction ends the same way.
    kill.send_if_modified(|k| {
        if *k == Kill::Alive {
            *k = outcome;
            true
        } else {
            false
        }
    });
    match outcome {
        Kill::Reset => {
            // SO_LINGER 0 on both sockets: closing them sends RST, not FIN.
            // `forget` skips the write half's shutdown (a FIN) on drop.
            let _ = from.as_ref().set_zero_linger();
            let _ = to.as_ref().set_zero_linger();
            to.forget();
        }
        Kill::Close | Kill::Alive => {
            let _ = to.shutdown().await;
        }
    }
}

/// Decides, under the lock, what the direction does next with `held`, and
/// counts what it forwards (bytes, frames, armed triggers).
fn decide(dir: Direction, parser: &mut FrameParser, held: &[u8], shared: &Shared) -> Step {
    let mut state = shared.lock();
    let d = dir.index();
    let link = state.links[d];
    if link.stalled {
        return Step::Wait;
    }
    if link.drop_left > 0 {
        let n = usize::try_from(link.drop_left).unwrap_or(usize::MAX).min(held.len());
        state.links[d].drop_left -= n as u64;
        state.stats.dropped[d] += n as u64;
        // The parser keeps its place: dropped bytes never reach the other
        // end, so frames there are counted as the receiver would see them.
        return Step::Drop(n);
    }
    // A throttled link forwards in slices of about 1/50 s.
    let limit = link
        .rate
        .map_or(held.len(), |rate| usize::try_from(rate / 50).unwrap_or(usize::MAX).clamp(1, held.len()));
    let (n, fired_at) = advance(dir, parser, &mut state, held, limit);
    let mut fired = None;
    if let Some(index) = fired_at {
        let armed = state.armed.remove(index);
        fired = Some(armed.fault);
        state.stats.fired.push(armed.fault);
        if !matches!(armed.fault, Fault::Reset | Fault::Close) {
            let links = &mut state.links;
            match armed.fault {
                Fault::Stall => {
                    for link in links.iter_mut() {
                        apply_link(link, armed.fault);
                    }
                }
                _ => apply_link(&mut links[d], armed.fault),
            }
        }
    }
    Step::Forward { n, fired, delay: link.delay, rate: link.rate }
}

/// Walks the frame parser and this direction's armed triggers over `held`,
/// at most `limit` bytes, stopping exactly where a trigger fires. Returns the
/// bytes taken and the index of the armed fault that fired there.
fn advance(
    dir: Direction,
    parser: &mut FrameParser,
    state: &mut State,
    held: &[u8],
    limit: usize,
) -> (usize, Option<usize>) {
    let d = dir.index();
    let mine = |a: &Armed| a.trigger.direction() == Some(dir);
    let mut i = 0;
    loop {
        if let Some(index) = state.armed.iter().position(|a| mine(a) && a.satisfied()) {
            return (i, Some(index));
        }
        if i == limit {
            return (i, None);
        }
        let mut step = parser.step(limit - i).min(limit - i);
        for armed in state.armed.iter().filter(|a| mine(a)) {
            step = step.min(usize::try_from(armed.bytes_needed()).unwrap_or(usize::MAX));
        }
        let ended = parser.consume(&held[i..i + step]);
        i += step;
        state.stats.bytes[d] += step as u64;
        if ended {
            state.stats.frames[d] += 1;
        }
        for armed in state.armed.iter_mut().filter(|a| a.trigger.direction() == Some(dir)) {
            armed.bytes += step as u64;
            if let Trigger::InsideFrame(_, k, _) = armed.trigger {
                if armed.frames >= k {
                    armed.after += step as u64;
                }
            }
            if ended {
                armed.frames += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Vec<u8> {
        let mut bytes = u32::try_from(len).unwrap().to_be_bytes().to_vec();
        bytes.resize(4 + len, 0x03);
        bytes
    }

    fn state_with(trigger: Trigger) -> State {
        State {
            upstream: "127.0.0.1:1".parse().unwrap(),
            refusing: false,
            armed: vec![Armed { fault: Fault::Reset, trigger, bytes: 0, frames: 0, after: 0 }],
            links: [Link::default(); 2],
            stats: ProxyStats::default(),
            conns: Vec::new(),
            next_conn: 0,
        }
    }

    /// Where in `stream`, fed in `chunk`-byte reads, the trigger fires.
    fn fire_offset(trigger: Trigger, stream: &[u8], chunk: usize) -> Option<usize> {
        let mut state = state_with(trigger);
        let mut parser = FrameParser::default();
        let mut offset = 0;
        for piece in stream.chunks(chunk) {
            let (n, fired) = advance(Direction::Up, &mut parser, &mut state, piece, piece.len());
            if fired.is_some() {
                return Some(offset + n);
            }
            offset += n;
        }
        None
    }

    #[test]
    fn triggers_fire_at_the_exact_byte_whatever_the_reads() {
        let stream: Vec<u8> = [frame(1), frame(30), frame(0), frame(100)].concat();
        for chunk in [1, 3, 7, 64, 1000] {
            assert_eq!(fire_offset(Trigger::AfterBytes(Direction::Up, 10), &stream, chunk), Some(10));
            assert_eq!(fire_offset(Trigger::AfterFrames(Direction::Up, 1), &stream, chunk), Some(5));
            assert_eq!(fire_offset(Trigger::AfterFrames(Direction::Up, 3), &stream, chunk), Some(43));
            assert_eq!(fire_offset(Trigger::InsideFrame(Direction::Up, 1, 6), &stream, chunk), Some(11));
            assert_eq!(fire_offset(Trigger::InsideFrame(Direction::Up, 3, 50), &stream, chunk), Some(93));
            assert_eq!(fire_offset(Trigger::AfterFrames(Direction::Up, 5), &stream, chunk), None);
            // The other direction's bytes never fire it.
            assert_eq!(fire_offset(Trigger::AfterBytes(Direction::Down, 1), &stream, chunk), None);
        }
    }
}
