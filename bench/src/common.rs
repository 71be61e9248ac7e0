//! What every system shares: arguments, the stdout protocol, the watchdog,
//! pacing of the slow reader, and the statistics reported.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub(crate) type Res<T = ()> = Result<T, String>;

pub(crate) const USAGE: &str = "usage: smartsock-bench <smartsock|libzmq|zeromq|tcp> <role> \
<oneway|latency|fanout|memory> [--size B] [--secs S] [--count N] [--addr HOST:PORT] [--subs N] \
[--variant V] [--threads N] [--task main|spawned] [--sched default|batch|other]";

/// The end marker: a message whose length differs from every payload size used.
pub(crate) const END: &[u8] = b"E";

/// Messages a sender sends between two looks at the clock.
pub(crate) const CLOCK_EVERY: u64 = 256;

/// The slow reader of the memory scenario first reads nothing for this long...
pub(crate) const STALL: Duration = Duration::from_secs(1);
/// ...then sleeps `PACE_SLEEP` after every `PACE_EVERY` messages (at most
/// about 500 000 messages a second).
pub(crate) const PACE_EVERY: u64 = 1000;
pub(crate) const PACE_SLEEP: Duration = Duration::from_millis(2);

/// A libzmq or TCP receiver (through its socket's receive timeout) that has
/// seen nothing for this long reports what it has; the tokio systems arm no
/// timer per message and rely on the end marker and the watchdog.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

/// Round trips made before latency is recorded.
pub(crate) const WARMUP_ROUND_TRIPS: usize = 1000;

#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub(crate) system: String,
    pub(crate) role: String,
    pub(crate) scenario: String,
    pub(crate) size: usize,
    pub(crate) secs: f64,
    pub(crate) count: u64,
    pub(crate) addr: String,
    pub(crate) subs: usize,
    pub(crate) variant: String,
    pub(crate) threads: usize,
    /// Where the application's code runs: `main`, in `block_on` on the
    /// main thread, as the body of `#[tokio::main]` does; `spawned`, in a
    /// task of its own (`tokio::spawn`), on a worker of a multi-thread runtime.
    pub(crate) task: String,
    /// How the runtime's threads are scheduled. `default`: as each system
    /// has them (tokio's threads as started; the blocking API's own runtime
    /// under `SCHED_BATCH`). `batch`: smartsock's and the zeromq crate's
    /// multi-thread runtime under `SCHED_BATCH`
    /// (`smartsock::prefer_batch_scheduling`; refused with `--threads 1`).
    /// `other`: the blocking API's runtime left under the default policy
    /// (`batch_scheduling(false)`).
    pub(crate) sched: String,
}

impl Args {
    pub(crate) fn parse(mut args: impl Iterator<Item = String>) -> Res<Self> {
        let mut positional = Vec::new();
        let mut parsed = Self {
            system: String::new(),
            role: String::new(),
            scenario: String::new(),
            size: 64,
            secs: 2.0,
            count: 100_000,
            addr: String::new(),
            subs: 10,
            variant: "default".into(),
            threads: 1,
            task: "main".into(),
            sched: "default".into(),
        };
        while let Some(arg) = args.next() {
            if !arg.starts_with("--") {
                positional.push(arg);
                continue;
            }
            let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
            let number = |value: &str| value.parse::<u64>().map_err(|e| format!("{arg} {value:?}: {e}"));
            match arg.as_str() {
                "--size" => parsed.size = usize::try_from(number(&value)?).map_err(|e| e.to_string())?,
                "--secs" => parsed.secs = value.parse().map_err(|e| format!("--secs {value:?}: {e}"))?,
                "--count" => parsed.count = number(&value)?,
                "--addr" => parsed.addr = value,
                "--subs" => parsed.subs = usize::try_from(number(&value)?).map_err(|e| e.to_string())?,
                "--variant" => parsed.variant = value,
                "--threads" => {
                    parsed.threads = usize::try_from(number(&value)?).map_err(|e| e.to_string())?
                }
                "--task" if ["main", "spawned"].contains(&value.as_str()) => parsed.task = value,
                "--task" => return Err(format!("--task {value:?}: main or spawned")),
                "--sched" if ["default", "batch", "other"].contains(&value.as_str()) => parsed.sched = value,
                "--sched" => return Err(format!("--sched {value:?}: default, batch or other")),
                other => return Err(format!("unknown option {other}")),
            }
        }
        let [system, role, scenario] = <[String; 3]>::try_from(positional)
            .map_err(|got| format!("expected <system> <role> <scenario>, got {got:?}"))?;
        if parsed.size == END.len() {
            return Err(format!("--size {} is the end marker's length", parsed.size));
        }
        Ok(Self { system, role, scenario, ..parsed })
    }

    /// How long this process may live at most, whatever happens.
    pub(crate) fn time_limit(&self) -> Duration {
        Duration::from_secs_f64(60.0 + 3.0 * self.secs)
    }

    pub(crate) fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }

    pub(crate) fn payload(&self) -> Vec<u8> {
        vec![0x5a; self.size]
    }

    pub(crate) fn unknown(&self) -> String {
        format!("{} has no {} {} (variant {})", self.system, self.role, self.scenario, self.variant)
    }
}

/// Ends the process if it is still running after `limit`.
pub(crate) fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("smartsock-bench: watchdog: still running after {limit:?}, exiting");
        std::process::exit(3);
    });
}

/// A fresh Unix socket address in the temp dir (the receiver removes its
/// file when it closes).
pub(crate) fn unix_addr() -> String {
    format!(
        "unix://{}",
        std::env::temp_dir().join(format!("smartsock-bench-{}.sock", std::process::id())).display()
    )
}

/// Tells the harness where to connect.
pub(crate) fn ready(addr: impl std::fmt::Display) {
    println!("READY {addr}");
    let _ = std::io::stdout().flush();
}

/// The one result line.
pub(crate) fn result(pairs: &[(&str, String)]) {
    let mut line: Vec<String> = pairs.iter().map(|(key, value)| format!("{key}={value}")).collect();
    if let Some(cpu) = cpu_ns() {
        line.push(format!("cpu_ns={cpu}"));
    }
    println!("RESULT {}", line.join(" "));
    let _ = std::io::stdout().flush();
}

/// The CPU time this process has used so far, in nanoseconds: the sum
/// over its threads of their time on a CPU (`/proc/self/task/*/schedstat`;
/// `None` where that is missing). A thread that ends while they are read
/// is skipped, and threads that ended before are not counted: no
/// benchmark's thread ends before it reports.
pub(crate) fn cpu_ns() -> Option<u64> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut total = 0;
    let mut read = 0;
    for task in tasks.flatten() {
        let Ok(schedstat) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
        read += 1;
    }
    (read > 0).then_some(total)
}

/// A field of `/proc/self/status` in KiB (`VmHWM`, `VmRSS`).
pub(crate) fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Set once stdin reaches EOF: the harness closes it to stop a publisher.
pub(crate) fn stdin_closed() -> Arc<AtomicBool> {
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        flag.store(true, Ordering::Release);
    });
    closed
}

/// How long a publisher keeps repeating the end marker at most.
pub(crate) const END_REPEAT_FOR: Duration = Duration::from_secs(20);
pub(crate) const END_REPEAT_EVERY: Duration = Duration::from_millis(10);

/// The slow reader's pacing: call after every message received.
pub(crate) struct Pacer {
    received: u64,
}

impl Pacer {
    pub(crate) fn new() -> Self {
        Self { received: 0 }
    }

    /// The pause owed after this message, if any.
    pub(crate) fn tick(&mut self) -> Option<Duration> {
        self.received += 1;
        self.received.is_multiple_of(PACE_EVERY).then_some(PACE_SLEEP)
    }
}

/// Reports a one-way receiver's tally.
pub(crate) fn report_oneway(tally: &Tally, size: usize) {
    result(&[
        ("msgs", tally.msgs.to_string()),
        ("bytes", (tally.msgs * size as u64).to_string()),
        ("secs", format!("{:.6}", tally.secs())),
        ("ended", u8::from(tally.saw_end).to_string()),
    ]);
}

/// The timing of a latency client's round trips, the same for every
/// system: [`WARMUP_ROUND_TRIPS`] unrecorded, then recorded until the run's
/// length has passed.
pub(crate) struct RoundTrips {
    deadline: Instant,
    round: usize,
    /// Round-trip times in nanoseconds.
    samples: Vec<u64>,
}

impl RoundTrips {
    pub(crate) fn new(args: &Args) -> Self {
        Self { deadline: Instant::now() + args.duration(), round: 0, samples: Vec::with_capacity(1 << 20) }
    }

    /// When the next round trip starts, or `None` once the run is over.
    pub(crate) fn start(&self) -> Option<Instant> {
        let now = Instant::now();
        (self.round < WARMUP_ROUND_TRIPS || now < self.deadline).then_some(now)
    }

    /// The round trip that started at `started` is back.
    pub(crate) fn done(&mut self, started: Instant) {
        if self.round >= WARMUP_ROUND_TRIPS {
            self.samples.push(started.elapsed().as_nanos() as u64);
        }
        self.round += 1;
    }

    pub(crate) fn report(self) {
        report_latency(self.samples);
    }
}

/// Reports round-trip times in nanoseconds.
fn report_latency(mut samples: Vec<u64>) {
    samples.sort_unstable();
    let at = |q: f64| samples.get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)));
    let us = |ns: Option<&u64>| format!("{:.2}", ns.copied().unwrap_or(0) as f64 / 1000.0);
    let mean = samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64 / 1000.0;
    result(&[
        ("count", samples.len().to_string()),
        ("p50_us", us(at(0.50))),
        ("p99_us", us(at(0.99))),
        ("mean_us", format!("{mean:.2}")),
    ]);
}

/// One subscriber's tally in the fan-out scenario.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    pub(crate) msgs: u64,
    pub(crate) first: Option<Instant>,
    pub(crate) last: Option<Instant>,
    pub(crate) saw_end: bool,
}

impl Tally {
    /// Counts one message; returns true on the end marker.
    pub(crate) fn take(&mut self, len: usize, size: usize) -> bool {
        if len != size {
            self.last = Some(Instant::now());
            self.saw_end = true;
            return true;
        }
        if self.msgs == 0 {
            self.first = Some(Instant::now());
        }
        self.msgs += 1;
        false
    }

    /// Stopped without the end marker, after `IDLE` with nothing received
    /// (or an error): the last message came about `IDLE` ago.
    pub(crate) fn stop(&mut self) {
        if self.last.is_none() {
            let now = Instant::now();
            self.last = Some(now.checked_sub(IDLE).unwrap_or(now));
        }
    }

    /// From the first message to the end marker.
    pub(crate) fn secs(&self) -> f64 {
        match (self.first, self.last) {
            (Some(first), Some(last)) => last.saturating_duration_since(first).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// Reports the subscribers together: messages delivered over the span from
/// the first subscriber's first message to the last one's end.
pub(crate) fn report_fanout(tallies: &[Tally]) {
    let msgs: u64 = tallies.iter().map(|t| t.msgs).sum();
    let first = tallies.iter().filter_map(|t| t.first).min();
    let last = tallies.iter().filter_map(|t| t.last).max();
    let secs = match (first, last) {
        (Some(first), Some(last)) => last.saturating_duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    let min = tallies.iter().map(|t| t.msgs).min().unwrap_or(0);
    let max = tallies.iter().map(|t| t.msgs).max().unwrap_or(0);
    let ended = tallies.iter().filter(|t| t.saw_end).count();
    result(&[
        ("msgs", msgs.to_string()),
        ("secs", format!("{secs:.6}")),
        ("min_sub", min.to_string()),
        ("max_sub", max.to_string()),
        ("ended", ended.to_string()),
    ]);
}

/// Reports the memory sender's numbers.
pub(crate) fn report_memory(sent: u64, base_kib: u64, started: Instant) {
    result(&[
        ("sent", sent.to_string()),
        ("base_kib", base_kib.to_string()),
        ("hwm_kib", vm_kib("VmHWM").to_string()),
        ("secs", format!("{:.6}", started.elapsed().as_secs_f64())),
    ]);
}
