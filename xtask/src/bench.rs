//! `cargo xtask bench`: smartsock side by side with raw TCP, libzmq and the
//! zeromq crate, each sender and receiver in its own process over loopback.
//!
//! Builds `smartsock-bench` (the `bench/` crate) in release mode, then runs
//! every case once per repetition, interleaved (`for rep { for case { run } }`)
//! so that drift on a busy machine hits every system alike. Reports medians
//! with min–max and the ratio smartsock/peer, prints the table, and writes it
//! to `bench/results/latest.md` with a chart, `bench/results/throughput.svg`.
//!
//! ```text
//! cargo xtask bench [--quick] [--reps N] [--secs S] [--only WORD] [--threads N] [--out DIR]
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{env, fs, thread};

use crate::{Result, root};

const BENCH_USAGE: &str = "usage: cargo xtask bench [--quick] [--reps N] [--secs S] [--only WORD] \
[--threads N] [--out DIR]

  --quick      2 repetitions of 0.5 s runs, smaller counts: for trying things out
  --reps N     repetitions of every case (default 5)
  --secs S     length of each throughput and latency run (default 2)
  --only WORD  only the cases whose label contains WORD (oneway, latency, fanout,
               alo, unix, blocking, memory, mt2, spawned, sched-batch, sched-other,
               or a system: smartsock, libzmq, zeromq, tcp)
  --threads N  tokio worker threads of every smartsock and zeromq process; 1 is a
               current-thread runtime (default: 1 for the 1-to-1 scenarios, where a
               process drives one socket, 2 for fan-out, whose subscriber process
               holds 10; smartsock also runs one-way 64 B and latency on 2)
  --out DIR    where latest.md and throughput.svg go (default bench/results)";

/// The systems, in column order: smartsock first, then its peers.
const SYSTEMS: [&str; 4] = ["smartsock", "libzmq", "zeromq", "tcp"];
const SIZES: [usize; 4] = [16, 64, 1024, 64 * 1024];
const SUBSCRIBERS: usize = 10;
/// After the measuring side has reported, the other side gets this long to exit by itself.
const GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) reps: usize,
    pub(crate) secs: f64,
    fanout_count: u64,
    memory_count: u64,
    pub(crate) threads: Option<usize>,
    pub(crate) only: Option<String>,
    out: PathBuf,
    out_given: bool,
    quick: bool,
}

impl Settings {
    /// The defaults, before the command line.
    pub(crate) fn new() -> Self {
        Self {
            reps: 5,
            secs: 2.0,
            fanout_count: 200_000,
            memory_count: 2_000_000,
            threads: None,
            only: None,
            out: root().join("bench/results"),
            out_given: false,
            quick: false,
        }
    }

    fn parse(args: &[String]) -> Result<Self> {
        let mut settings = Self::new();
        let (mut reps, mut secs) = (None, None);
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value\n\n{BENCH_USAGE}"));
            match arg.as_str() {
                "--quick" => settings.quick = true,
                "--reps" => reps = Some(value()?.parse().map_err(|e| format!("--reps: {e}"))?),
                "--secs" => secs = Some(value()?.parse().map_err(|e| format!("--secs: {e}"))?),
                "--threads" => {
                    settings.threads = Some(value()?.parse().map_err(|e| format!("--threads: {e}"))?);
                }
                "--only" => settings.only = Some(value()?.clone()),
                "--out" => {
                    settings.out = PathBuf::from(value()?);
                    settings.out_given = true;
                }
                "-h" | "--help" => return Err(BENCH_USAGE.to_owned()),
                other => return Err(format!("unknown option {other:?}\n\n{BENCH_USAGE}")),
            }
        }
        if settings.quick {
            settings.reps = 2;
            settings.secs = 0.5;
            settings.fanout_count = 50_000;
            settings.memory_count = 200_000;
        }
        settings.reps = reps.unwrap_or(settings.reps).max(1);
        settings.secs = secs.unwrap_or(settings.secs);
        if !(0.05..=60.0).contains(&settings.secs) {
            return Err("--secs must be between 0.05 and 60".into());
        }
        Ok(settings)
    }
}

/// What a case measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    OneWay,
    Latency,
    FanOut,
    Memory,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::OneWay => "oneway",
            Self::Latency => "latency",
            Self::FanOut => "fanout",
            Self::Memory => "memory",
        }
    }

    /// The roles: the side that binds (started first), the side that connects.
    fn roles(self) -> (&'static str, &'static str) {
        match self {
            Self::OneWay | Self::Memory => ("recv", "send"),
            Self::Latency => ("server", "client"),
            Self::FanOut => ("pub", "sub"),
        }
    }

    /// Whether the binding side prints the numbers that matter.
    fn binder_measures(self) -> bool {
        matches!(self, Self::OneWay)
    }
}

/// One thing to run once per repetition.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) scenario: Scenario,
    pub(crate) system: &'static str,
    variant: &'static str,
    size: usize,
    /// Tokio worker threads, when not the scenario's default.
    threads: Option<usize>,
    /// Both processes on one CPU (through `taskset`).
    pinned: bool,
    /// Each process runs its side in a spawned task (`--task spawned`),
    /// not in `block_on` on its main thread.
    spawned: bool,
    /// How the runtime's threads are scheduled (`--sched`): `default`,
    /// `batch` (a multi-thread runtime under `SCHED_BATCH`) or `other` (the
    /// blocking API without its `SCHED_BATCH`).
    sched: &'static str,
}

impl Case {
    fn new(scenario: Scenario, system: &'static str, variant: &'static str, size: usize) -> Self {
        Self {
            scenario,
            system,
            variant,
            size,
            threads: None,
            pinned: false,
            spawned: false,
            sched: "default",
        }
    }

    pub(crate) fn label(&self) -> String {
        let variant = if self.variant == "default" { String::new() } else { format!(" {}", self.variant) };
        let threads = self.threads.map_or(String::new(), |n| format!(" mt{n}"));
        let pinned = if self.pinned { " pinned" } else { "" };
        let spawned = if self.spawned { " spawned" } else { "" };
        let sched = if self.sched == "default" { String::new() } else { format!(" sched-{}", self.sched) };
        format!(
            "{} {} {}{variant}{threads}{pinned}{spawned}{sched}",
            self.scenario.name(),
            size_label(self.size),
            self.system
        )
    }

    /// Tokio worker threads for this run: the case's, the command line's, or
    /// the scenario's default.
    fn threads(&self, settings: &Settings) -> usize {
        let default = if self.scenario == Scenario::FanOut { 2 } else { 1 };
        self.threads.or(settings.threads).unwrap_or(default)
    }
}

/// The extra runs of smartsock on a 2-worker runtime.
const MULTI_THREAD: Option<usize> = Some(2);

pub(crate) fn cases() -> Vec<Case> {
    let case = Case::new;
    let mut cases = Vec::new();
    for size in SIZES {
        for system in SYSTEMS {
            cases.push(case(Scenario::OneWay, system, "default", size));
        }
        cases.push(case(Scenario::OneWay, "tcp", "batch64k", size));
    }
    cases.push(case(Scenario::OneWay, "smartsock", "alo", 64));
    cases.push(case(Scenario::OneWay, "smartsock", "unix", 64));
    cases.push(case(Scenario::OneWay, "smartsock", "blocking", 64));
    // Both runtimes for every size: a user who writes `#[tokio::main]` gets
    // the multi-thread one. The zeromq crate too, to compare with its best.
    for size in SIZES {
        for system in ["smartsock", "zeromq"] {
            cases.push(Case { threads: MULTI_THREAD, ..case(Scenario::OneWay, system, "default", size) });
        }
    }
    cases.push(Case { threads: MULTI_THREAD, ..case(Scenario::OneWay, "smartsock", "alo", 64) });
    for system in SYSTEMS {
        cases.push(case(Scenario::Latency, system, "default", 64));
    }
    cases.push(Case { threads: MULTI_THREAD, ..case(Scenario::Latency, "smartsock", "default", 64) });
    cases.push(case(Scenario::Latency, "smartsock", "blocking", 64));
    // Raw tokio's round trip on each runtime: smartsock's, runtime for runtime.
    for threads in [None, MULTI_THREAD] {
        cases.push(Case { threads, ..case(Scenario::Latency, "tcp", "tokio", 64) });
    }
    // On the 2-worker runtime, the application in a spawned task (as a
    // service's handlers are) rather than in `block_on` on the main thread:
    // its hand-offs to the socket's tasks then stay on one worker.
    let spawned = |case: Case| Case { threads: MULTI_THREAD, spawned: true, ..case };
    for size in [16, 64] {
        cases.push(spawned(case(Scenario::OneWay, "smartsock", "default", size)));
    }
    for (system, variant) in [("smartsock", "default"), ("tcp", "tokio")] {
        cases.push(spawned(case(Scenario::Latency, system, variant, 64)));
    }
    // The same runtime from `main`, its workers under `SCHED_BATCH`
    // (`smartsock::prefer_batch_scheduling`): woken, they stop preempting
    // the main thread that sends.
    let batch = |case: Case| Case { threads: MULTI_THREAD, sched: "batch", ..case };
    for size in [16, 64] {
        cases.push(batch(case(Scenario::OneWay, "smartsock", "default", size)));
    }
    cases.push(batch(case(Scenario::Latency, "smartsock", "default", 64)));
    // The blocking API without its own `SCHED_BATCH`: what it gives then.
    for scenario in [Scenario::OneWay, Scenario::Latency] {
        cases.push(Case { sched: "other", ..case(scenario, "smartsock", "blocking", 64) });
    }
    if has_taskset() {
        for system in SYSTEMS {
            cases.push(Case { pinned: true, ..case(Scenario::Latency, system, "default", 64) });
        }
    }
    for (system, variant) in [
        ("smartsock", "default"),
        ("smartsock", "wait"),
        ("libzmq", "default"),
        ("libzmq", "nohwm"),
        ("zeromq", "default"),
        ("zeromq", "xpub"),
        ("tcp", "default"),
    ] {
        cases.push(case(Scenario::FanOut, system, variant, 64));
    }
    for system in SYSTEMS {
        cases.push(case(Scenario::Memory, system, "default", 64));
    }
    cases
}

/// The numbers one run reported: the measuring side's `key=value` pairs, and
/// the other side's as `other.key`.
pub(crate) type Sample = BTreeMap<String, f64>;

pub(crate) fn run(args: &[String]) -> Result {
    let settings = Settings::parse(args)?;
    let started = Instant::now();
    let bin = build(&root(), None)?;
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|case| settings.only.as_ref().is_none_or(|word| case.label().contains(word.as_str())))
        .collect();
    if cases.is_empty() {
        return Err("--only matches no case".into());
    }
    println!(
        "\nxtask bench: {} cases x {} repetitions, {} s runs",
        cases.len(),
        settings.reps,
        settings.secs
    );
    let mut samples: BTreeMap<String, Vec<(usize, Sample)>> = BTreeMap::new();
    let mut failures = Vec::new();
    for rep in 1..=settings.reps {
        for case in &cases {
            let run_started = Instant::now();
            let label = case.label();
            match run_case(&bin, case, &settings, &[]) {
                Ok(sample) => {
                    println!(
                        "[{rep}/{}] {label:<32} {} ({:.1} s)",
                        settings.reps,
                        describe(case, &sample, &settings),
                        run_started.elapsed().as_secs_f64()
                    );
                    samples.entry(label).or_default().push((rep, sample));
                }
                Err(message) => {
                    println!("[{rep}/{}] {label:<32} FAILED: {message}", settings.reps);
                    failures.push(format!("{label} (repetition {rep}): {message}"));
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let report = Report { settings: &settings, samples: &samples, failures: &failures, elapsed };
    let table = report.markdown();
    println!("\n{table}");
    if settings.only.is_some() && !settings.out_given {
        println!("xtask bench: a partial run (--only) writes no files unless --out is given");
        return Ok(());
    }
    fs::create_dir_all(&settings.out).map_err(|e| format!("{}: {e}", settings.out.display()))?;
    let md = settings.out.join("latest.md");
    fs::write(&md, &table).map_err(|e| format!("{}: {e}", md.display()))?;
    let svg = settings.out.join("throughput.svg");
    fs::write(&svg, report.chart()).map_err(|e| format!("{}: {e}", svg.display()))?;
    println!("xtask bench: wrote {} and {} in {:.0} s", md.display(), svg.display(), elapsed.as_secs_f64());
    Ok(())
}

/// Builds the benchmark binary of the workspace at `dir` in release mode
/// (into `target_dir`, if given) and returns its path, as cargo reports it
/// (so `CARGO_TARGET_DIR` and cargo config are respected).
pub(crate) fn build(dir: &Path, target_dir: Option<&Path>) -> Result<PathBuf> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args = ["build", "--release", "-p", "smartsock-bench", "--message-format=json-render-diagnostics"];
    println!("\n==> {cargo} {}", args.join(" "));
    let built = Instant::now();
    let mut command = Command::new(&cargo);
    if let Some(target_dir) = target_dir {
        command.env("CARGO_TARGET_DIR", target_dir);
    }
    let output = command
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not start cargo: {e}"))?;
    println!("<== {:.1}s", built.elapsed().as_secs_f64());
    if !output.status.success() {
        return Err(format!("building smartsock-bench failed ({})", output.status));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains("\"name\":\"smartsock-bench\"") && line.contains("\"kind\":[\"bin\"]"))
        .find_map(|line| {
            let start = line.find("\"executable\":\"")? + "\"executable\":\"".len();
            let len = line[start..].find('"')?;
            Some(PathBuf::from(line[start..start + len].replace("\\\\", "\\")))
        })
        .ok_or_else(|| "cargo did not report the smartsock-bench executable".to_owned())
}

/// A child process that is killed and reaped however the run ends.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Proc {
    fn spawn(
        bin: &Path,
        args: &[String],
        envs: &[(String, String)],
        pinned: bool,
        index: usize,
        lines: &mpsc::Sender<(usize, Option<String>)>,
    ) -> Result<Self> {
        let mut command = if pinned {
            let mut taskset = Command::new("taskset");
            taskset.args(["--cpu-list", &pinned_cpu().to_string()]).arg(bin);
            taskset
        } else {
            Command::new(bin)
        };
        let mut child = command
            .args(args)
            .envs(envs.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdin = child.stdin.take();
        let lines = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send((index, Some(line))).is_err() {
                    return;
                }
            }
            let _ = lines.send((index, None));
        });
        Ok(Self { child, stdin })
    }

    /// Closing stdin tells a publisher or a lingering sender that the run is over.
    fn close_stdin(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.close_stdin();
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs `case` once with `bin`, both processes with `envs` in their
/// environment.
pub(crate) fn run_case(
    bin: &Path,
    case: &Case,
    settings: &Settings,
    envs: &[(String, String)],
) -> Result<Sample> {
    let (bind_role, connect_role) = case.scenario.roles();
    let count = match case.scenario {
        Scenario::FanOut => settings.fanout_count,
        Scenario::Memory => settings.memory_count,
        Scenario::OneWay | Scenario::Latency => 0,
    };
    let common = [
        "--size".to_owned(),
        case.size.to_string(),
        "--secs".to_owned(),
        settings.secs.to_string(),
        "--count".to_owned(),
        count.to_string(),
        "--subs".to_owned(),
        SUBSCRIBERS.to_string(),
        "--variant".to_owned(),
        case.variant.to_owned(),
        "--threads".to_owned(),
        case.threads(settings).to_string(),
        "--task".to_owned(),
        if case.spawned { "spawned" } else { "main" }.to_owned(),
        "--sched".to_owned(),
        case.sched.to_owned(),
    ];
    let with_role = |role: &str| {
        let mut args = vec![case.system.to_owned(), role.to_owned(), case.scenario.name().to_owned()];
        args.extend(common.iter().cloned());
        args
    };
    // Sending 2 M messages through a reader paced at 500 000 a second takes
    // 4 s or more; a slow peer may take several times that.
    let limit = Duration::from_secs_f64(60.0 + 4.0 * settings.secs + count as f64 / 20_000.0);
    let deadline = Instant::now() + limit;
    let (tx, rx) = mpsc::channel();
    let mut procs = vec![Proc::spawn(bin, &with_role(bind_role), envs, case.pinned, 0, &tx)?];
    let measuring = usize::from(!case.scenario.binder_measures());
    let mut results: [Option<Sample>; 2] = [None, None];
    let mut finished = [false, false];
    let mut measured_at = None;
    loop {
        let now = Instant::now();
        if finished.iter().all(|&done| done) && procs.len() == 2 {
            break;
        }
        if let Some(at) = measured_at
            && now > at + GRACE
        {
            // The other side did not exit by itself: the run is over anyway.
            break;
        }
        if now > deadline {
            return Err(format!("no result within {:.0} s (processes killed)", limit.as_secs_f64()));
        }
        let wait = (deadline - now).min(Duration::from_millis(200));
        let (index, line) = match rx.recv_timeout(wait) {
            Ok(message) => message,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let Some(line) = line else {
            finished[index] = true;
            if index == 0 && procs.len() == 1 {
                return Err(format!("{bind_role} exited before it was ready"));
            }
            continue;
        };
        if let Some(addr) = line.strip_prefix("READY ") {
            if index == 0 && procs.len() == 1 {
                let mut args = with_role(connect_role);
                args.extend(["--addr".to_owned(), addr.trim().to_owned()]);
                procs.push(Proc::spawn(bin, &args, envs, case.pinned, 1, &tx)?);
            }
        } else if let Some(pairs) = line.strip_prefix("RESULT ") {
            results[index] = Some(parse_pairs(pairs));
            if index == measuring {
                measured_at = Some(Instant::now());
                procs[1 - measuring].close_stdin();
            }
        }
    }
    drop(procs);
    let mut sample = results[measuring].take().ok_or("the measuring side reported nothing")?;
    if let Some(other) = results[1 - measuring].take() {
        sample.extend(other.into_iter().map(|(key, value)| (format!("other.{key}"), value)));
    }
    Ok(sample)
}

fn has_taskset() -> bool {
    Command::new("taskset").arg("--version").output().is_ok_and(|out| out.status.success())
}

/// The CPU pinned runs share: the last one.
fn pinned_cpu() -> usize {
    thread::available_parallelism().map_or(1, usize::from) - 1
}

fn parse_pairs(pairs: &str) -> Sample {
    pairs
        .split_whitespace()
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The headline number of a sample: what the tables and the chart show.
pub(crate) fn metric(case: &Case, sample: &Sample) -> Option<f64> {
    let get = |key: &str| sample.get(key).copied();
    match case.scenario {
        Scenario::OneWay | Scenario::FanOut => {
            let secs = get("secs")?;
            (secs > 0.0).then(|| get("msgs").unwrap_or(0.0) / secs)
        }
        Scenario::Latency => get("p50_us"),
        Scenario::Memory => get("hwm_kib").map(|kib| kib / 1024.0),
    }
}

/// CPU per message of a one-way run, in nanoseconds: each process's
/// threads summed over its whole run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CpuPerMessage {
    pub(crate) sending: f64,
    pub(crate) receiving: f64,
}

impl CpuPerMessage {
    /// Each side's median over `runs` (`None` if there are none).
    pub(crate) fn median(runs: impl Iterator<Item = Self> + Clone) -> Option<Self> {
        let sending = median_of(runs.clone().map(|cpu| cpu.sending))?;
        let receiving = median_of(runs.map(|cpu| cpu.receiving))?;
        Some(Self { sending, receiving })
    }
}

/// The CPU per message of a one-way run, if both sides reported theirs.
pub(crate) fn cpu_per_message(case: &Case, sample: &Sample) -> Option<CpuPerMessage> {
    if case.scenario != Scenario::OneWay {
        return None;
    }
    // The receiver measures; the sender's numbers come as `other.`.
    let get = |key: &str| sample.get(key).copied().filter(|v| *v > 0.0);
    let sending = get("other.cpu_ns")? / get("other.sent")?;
    let receiving = get("cpu_ns")? / get("msgs")?;
    Some(CpuPerMessage { sending, receiving })
}

fn describe(case: &Case, sample: &Sample, settings: &Settings) -> String {
    let get = |key: &str| sample.get(key).copied().unwrap_or(f64::NAN);
    let value = metric(case, sample).unwrap_or(f64::NAN);
    match case.scenario {
        Scenario::OneWay => {
            let ended = if get("ended") == 1.0 { "" } else { " (no end marker)" };
            let cpu = cpu_per_message(case, sample).map_or(String::new(), |cpu| {
                format!(", CPU/msg {:.0} ns sending, {:.0} ns receiving", cpu.sending, cpu.receiving)
            });
            format!("{} msg/s, {:.0} MB/s{cpu}{ended}", si(value), get("bytes") / get("secs") / 1e6)
        }
        Scenario::Latency => format!("p50 {:.1} us, p99 {:.1} us", get("p50_us"), get("p99_us")),
        Scenario::FanOut => format!(
            "{} msg/s delivered, {:.2}% of {} x {} lost",
            si(value),
            lost_percent(sample, settings),
            SUBSCRIBERS,
            settings.fanout_count
        ),
        Scenario::Memory => {
            format!("sender peak {:.1} MiB (base {:.1} MiB)", value, get("base_kib") / 1024.0)
        }
    }
}

fn lost_percent(sample: &Sample, settings: &Settings) -> f64 {
    let expected = (SUBSCRIBERS as u64 * settings.fanout_count) as f64;
    100.0 * (expected - sample.get("msgs").copied().unwrap_or(0.0)).max(0.0) / expected
}

/// Median, min and max, and the values by repetition (for paired ratios).
#[derive(Debug, Clone)]
struct Stats {
    median: f64,
    min: f64,
    max: f64,
    by_rep: Vec<(usize, f64)>,
}

fn stats(by_rep: Vec<(usize, f64)>) -> Option<Stats> {
    let by_rep: Vec<(usize, f64)> = by_rep.into_iter().filter(|(_, v)| v.is_finite()).collect();
    let sorted = sorted(by_rep.iter().map(|&(_, v)| v));
    Some(Stats { median: median(&sorted)?, min: *sorted.first()?, max: *sorted.last()?, by_rep })
}

/// The median of `values` (`None` if there are none).
pub(crate) fn median_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    median(&sorted(values))
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values
}

fn median(sorted: &[f64]) -> Option<f64> {
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

/// The median over repetitions of ours / theirs within the same repetition:
/// runs of one repetition share the machine's mood, so the pairs cancel
/// most of the drift between repetitions.
fn paired_ratio(ours: &Stats, theirs: &Stats) -> Option<f64> {
    let ratios = ours.by_rep.iter().filter_map(|&(rep, ours)| {
        let theirs = theirs.by_rep.iter().find(|&&(r, _)| r == rep)?.1;
        (theirs > 0.0).then_some(ours / theirs)
    });
    median_of(ratios)
}

struct Report<'a> {
    settings: &'a Settings,
    samples: &'a BTreeMap<String, Vec<(usize, Sample)>>,
    failures: &'a [String],
    elapsed: Duration,
}

/// One row of the main table: a metric for each system.
struct Row {
    name: String,
    /// How to read it.
    unit: &'static str,
    cells: [Option<Stats>; 4],
    /// Footnote for a cell, by system.
    notes: [&'static str; 4],
}

impl Report<'_> {
    fn values(&self, case: &Case, pick: impl Fn(&Sample) -> Option<f64>) -> Option<Stats> {
        let samples = self.samples.get(&case.label())?;
        stats(samples.iter().filter_map(|(rep, sample)| Some((*rep, pick(sample)?))).collect())
    }

    fn metric_stats(&self, case: &Case) -> Option<Stats> {
        self.values(case, |sample| metric(case, sample))
    }

    fn case(scenario: Scenario, system: &'static str, variant: &'static str, size: usize) -> Case {
        Case::new(scenario, system, variant, size)
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let multi = |case: Case| Case { threads: MULTI_THREAD, ..case };
        for size in SIZES {
            let plain = |system| Self::case(Scenario::OneWay, system, "default", size);
            rows.push(Row {
                name: format!("one-way 1→1, {}", size_label(size)),
                unit: "msg/s",
                cells: SYSTEMS.map(|system| self.metric_stats(&plain(system))),
                notes: [""; 4],
            });
            // The 2-worker row: smartsock and the zeromq crate on that
            // runtime, libzmq and raw TCP as in the row above.
            let mut cells = SYSTEMS.map(|system| self.metric_stats(&plain(system)));
            cells[0] = self.metric_stats(&multi(plain("smartsock")));
            cells[2] = self.metric_stats(&multi(plain("zeromq")));
            rows.push(Row {
                name: format!("one-way 1→1, {}, 2-worker runtime (`#[tokio::main]`)", size_label(size)),
                unit: "msg/s",
                cells,
                notes: [""; 4],
            });
            let spawned = Case { spawned: true, ..multi(plain("smartsock")) };
            if let Some(ours) = self.metric_stats(&spawned) {
                let mut cells = SYSTEMS.map(|system| self.metric_stats(&plain(system)));
                cells[0] = Some(ours);
                cells[2] = None;
                rows.push(Row {
                    name: format!(
                        "one-way 1→1, {}, 2-worker runtime, each side in a spawned task",
                        size_label(size)
                    ),
                    unit: "msg/s",
                    cells,
                    notes: [""; 4],
                });
            }
            let batch = Case { sched: "batch", ..multi(plain("smartsock")) };
            if let Some(ours) = self.metric_stats(&batch) {
                let mut cells = SYSTEMS.map(|system| self.metric_stats(&plain(system)));
                cells[0] = Some(ours);
                cells[2] = None;
                rows.push(Row {
                    name: format!(
                        "one-way 1→1, {}, 2-worker runtime from `main`, workers under `SCHED_BATCH`",
                        size_label(size)
                    ),
                    unit: "msg/s",
                    cells,
                    notes: [""; 4],
                });
            }
        }
        let percentiles = [("p50_us", "req/rep 64 B, p50"), ("p99_us", "req/rep 64 B, p99")];
        let latency = |case: &Case, key: &str| self.values(case, |s| s.get(key).copied());
        let plain = |system| Self::case(Scenario::Latency, system, "default", 64);
        for (key, name) in percentiles {
            rows.push(Row {
                name: name.to_owned(),
                unit: "µs",
                cells: SYSTEMS.map(|system| latency(&plain(system), key)),
                notes: [""; 4],
            });
        }
        for (key, name) in percentiles {
            let mut cells = SYSTEMS.map(|system| latency(&plain(system), key));
            cells[0] = latency(&multi(plain("smartsock")), key);
            rows.push(Row {
                name: format!("{name}, smartsock on a 2-worker runtime"),
                unit: "µs",
                cells,
                notes: [""; 4],
            });
        }
        for (key, name) in percentiles {
            rows.push(Row {
                name: format!("{name}, both processes pinned to one CPU"),
                unit: "µs",
                cells: SYSTEMS.map(|system| latency(&Case { pinned: true, ..plain(system) }, key)),
                notes: [""; 4],
            });
        }
        let fanout = |variants: [&'static str; 4]| {
            let mut i = 0;
            SYSTEMS.map(|system| {
                let variant = variants[i];
                i += 1;
                (!variant.is_empty()).then(|| Self::case(Scenario::FanOut, system, variant, 64))
            })
        };
        let defaults = fanout(["default", "default", "default", ""]);
        let lossless = fanout(["wait", "nohwm", "xpub", "default"]);
        rows.push(Row {
            name: "fan-out 1→10, 64 B, default settings, delivered".into(),
            unit: "msg/s",
            cells: defaults.clone().map(|case| case.and_then(|case| self.metric_stats(&case))),
            notes: ["drop slow", "SNDHWM 1000", "PUB", ""],
        });
        rows.push(Row {
            name: "fan-out 1→10, default settings, lost".into(),
            unit: "%",
            cells: defaults.map(|case| {
                case.and_then(|case| self.values(&case, |s| Some(lost_percent(s, self.settings))))
            }),
            notes: [""; 4],
        });
        rows.push(Row {
            name: "fan-out 1→10, 64 B, lossless, delivered".into(),
            unit: "msg/s",
            cells: lossless.clone().map(|case| case.and_then(|case| self.metric_stats(&case))),
            notes: ["wait", "SNDHWM 0", "XPUB", "blocking"],
        });
        rows.push(Row {
            name: "fan-out 1→10, lossless, lost".into(),
            unit: "%",
            cells: lossless.map(|case| {
                case.and_then(|case| self.values(&case, |s| Some(lost_percent(s, self.settings))))
            }),
            notes: [""; 4],
        });
        rows.push(Row {
            name: format!(
                "sender peak RSS, {} × 64 B to a slow reader",
                si(self.settings.memory_count as f64)
            ),
            unit: "MiB",
            cells: SYSTEMS
                .map(|system| self.metric_stats(&Self::case(Scenario::Memory, system, "default", 64))),
            notes: [""; 4],
        });
        rows
    }

    /// CPU per message of the one-way runs at 16 and 64 B, each side's
    /// process with its threads summed (medians over repetitions): what a
    /// message costs, apart from how the runs were scheduled.
    fn cpu_table(&self) -> String {
        let mut out = String::new();
        let mut rows = Vec::new();
        for size in [16, 64] {
            for (system, variant, threads, what) in [
                ("smartsock", "default", None, "smartsock, current-thread"),
                ("smartsock", "default", MULTI_THREAD, "smartsock, 2-worker runtime"),
                ("smartsock", "alo", None, "smartsock at-least-once, current-thread"),
                ("smartsock", "alo", MULTI_THREAD, "smartsock at-least-once, 2-worker runtime"),
                ("libzmq", "default", None, "libzmq"),
            ] {
                let case = Case { threads, ..Self::case(Scenario::OneWay, system, variant, size) };
                let Some(samples) = self.samples.get(&case.label()) else { continue };
                let runs = samples.iter().filter_map(|(_, sample)| cpu_per_message(&case, sample));
                if let Some(cpu) = CpuPerMessage::median(runs) {
                    rows.push(format!(
                        "| {}, {what} | {:.0} | {:.0} |",
                        size_label(size),
                        cpu.sending,
                        cpu.receiving
                    ));
                }
            }
        }
        if !rows.is_empty() {
            let _ = writeln!(
                out,
                "\nCPU per message, one-way (ns; each process's threads summed over its run, medians):\n\n\
                 | run | sender | receiver |\n|---|---:|---:|"
            );
            for row in rows {
                let _ = writeln!(out, "{row}");
            }
        }
        out
    }

    fn markdown(&self) -> String {
        let s = self.settings;
        let mut out = String::new();
        let _ = writeln!(out, "# smartsock benchmarks\n");
        let _ = writeln!(out, "- date: {} (UTC)", utc_now());
        let _ = writeln!(out, "- machine: {}", machine());
        let _ = writeln!(out, "- smartsock: {}", git_revision());
        let _ = writeln!(
            out,
            "- runs: {} repetitions, interleaved; {} s per throughput and latency run; fan-out {} messages; \
             tokio runtimes: {}; {}; total {:.0} s",
            s.reps,
            s.secs,
            si(s.fanout_count as f64),
            s.threads.map_or("current-thread for 1→1 scenarios, 2 workers for fan-out".to_owned(), |n| {
                format!("{n} worker thread(s) everywhere")
            }),
            if s.quick { "quick mode" } else { "full mode" },
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "- each cell: median [min–max]; ratio: smartsock / the peer within each repetition, median over \
             repetitions (above 1 is better for msg/s, below 1 is better for µs and MiB)\n"
        );
        let _ = writeln!(
            out,
            "| scenario | unit | smartsock | libzmq | zeromq crate | raw TCP | ÷ libzmq | ÷ zeromq | ÷ TCP |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for row in self.rows() {
            let mut line = format!("| {} | {} |", row.name, row.unit);
            for (cell, note) in row.cells.iter().zip(row.notes) {
                let note = if note.is_empty() { String::new() } else { format!(" ({note})") };
                match cell {
                    Some(stats) => {
                        let _ = write!(line, " {}{note} |", cell_text(row.unit, stats));
                    }
                    None => line.push_str(" — |"),
                }
            }
            for peer in &row.cells[1..] {
                match (&row.cells[0], peer) {
                    (Some(ours), Some(theirs)) if row.unit != "%" => match paired_ratio(ours, theirs) {
                        Some(ratio) => {
                            let _ = write!(line, " {ratio:.2} |");
                        }
                        None => line.push_str(" — |"),
                    },
                    _ => line.push_str(" — |"),
                }
            }
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(
            out,
            "\nRaw TCP by write size (one-way, msg/s): the ceiling above writes about 1 MiB per call.\n\n\
             | payload | smartsock | raw TCP, 64 KiB writes | raw TCP, 1 MiB writes | smartsock ÷ 64 KiB writes |\n\
             |---|---:|---:|---:|---:|"
        );
        for size in SIZES {
            let get =
                |system, variant| self.metric_stats(&Self::case(Scenario::OneWay, system, variant, size));
            let (ours, small, big) =
                (get("smartsock", "default"), get("tcp", "batch64k"), get("tcp", "default"));
            let text =
                |stats: &Option<Stats>| stats.as_ref().map_or("—".to_owned(), |s| cell_text("msg/s", s));
            let ratio = match (&ours, &small) {
                (Some(ours), Some(small)) => {
                    paired_ratio(ours, small).map_or("—".to_owned(), |r| format!("{r:.2}"))
                }
                _ => "—".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {ratio} |",
                size_label(size),
                text(&ours),
                text(&small),
                text(&big)
            );
        }
        for (threads, runtime) in [(None, "current-thread runtime"), (MULTI_THREAD, "2-worker runtime")] {
            let on = |variant| Case { threads, ..Self::case(Scenario::OneWay, "smartsock", variant, 64) };
            if let (Some(alo), Some(amo)) = (self.metric_stats(&on("alo")), self.metric_stats(&on("default")))
            {
                let _ = writeln!(
                    out,
                    "\nAt-least-once, one-way 64 B, {runtime} (smartsock only): {} msg/s, {:.2} × smartsock's \
                     at-most-once ({} msg/s).",
                    cell_text("msg/s", &alo),
                    paired_ratio(&alo, &amo).unwrap_or(f64::NAN),
                    si(amo.median)
                );
            }
        }
        // Raw tokio always runs under the default policy: with `batch`,
        // the line compares smartsock's batch-scheduled workers with it.
        for (threads, spawned, sched, runtime) in [
            (None, false, "default", "current-thread runtime"),
            (MULTI_THREAD, false, "default", "2-worker runtime"),
            (MULTI_THREAD, true, "default", "2-worker runtime, each end in a spawned task"),
            (MULTI_THREAD, false, "batch", "2-worker runtime, smartsock's workers under `SCHED_BATCH`"),
        ] {
            let on = |system, variant| Case {
                threads,
                spawned,
                ..Self::case(Scenario::Latency, system, variant, 64)
            };
            let ours = Case { sched, ..on("smartsock", "default") };
            if let (Some(ours), Some(tokio)) =
                (self.metric_stats(&ours), self.metric_stats(&on("tcp", "tokio")))
            {
                let _ = writeln!(
                    out,
                    "\nRequest/reply 64 B, p50, {runtime}: smartsock {} µs, raw tokio TCP on the same runtime{} \
                     {} µs: {:.2} × raw tokio.",
                    cell_text("µs", &ours),
                    if sched == "batch" { " (default policy)" } else { "" },
                    cell_text("µs", &tokio),
                    paired_ratio(&ours, &tokio).unwrap_or(f64::NAN)
                );
            }
        }
        let _ = write!(out, "{}", self.cpu_table());
        // Other transports and the blocking API, each next to async TCP.
        let oneway =
            |variant, sched| Case { sched, ..Self::case(Scenario::OneWay, "smartsock", variant, 64) };
        let tcp = self.metric_stats(&oneway("default", "default"));
        let tcp_mt = self.metric_stats(&Case { threads: MULTI_THREAD, ..oneway("default", "default") });
        let async_p50 = self.metric_stats(&Self::case(Scenario::Latency, "smartsock", "default", 64));
        for (variant, sched, what) in [
            ("unix", "default", "Unix domain socket"),
            ("blocking", "default", "blocking API (smartsock-blocking)"),
            ("blocking", "other", "blocking API with `batch_scheduling(false)`"),
        ] {
            let (Some(other), Some(tcp)) = (self.metric_stats(&oneway(variant, sched)), tcp.as_ref()) else {
                continue;
            };
            let _ = write!(
                out,
                "\n{what}, one-way 64 B: {} msg/s, {:.2} × the async socket over TCP ({} msg/s)",
                cell_text("msg/s", &other),
                paired_ratio(&other, tcp).unwrap_or(f64::NAN),
                si(tcp.median)
            );
            // A threaded program's other choice is the async socket driven
            // from `main` on the multi-thread runtime.
            if let (true, Some(tcp_mt)) = (variant == "blocking", tcp_mt.as_ref()) {
                let _ = write!(
                    out,
                    "; {:.2} × it on the 2-worker runtime from `main` ({} msg/s)",
                    paired_ratio(&other, tcp_mt).unwrap_or(f64::NAN),
                    si(tcp_mt.median)
                );
            }
            let _ = writeln!(out, ".");
            let latency = Case { sched, ..Self::case(Scenario::Latency, "smartsock", variant, 64) };
            if let (true, Some(ours), Some(async_p50)) =
                (variant == "blocking", self.metric_stats(&latency), async_p50.as_ref())
            {
                let _ = writeln!(
                    out,
                    "\n{what}, request/reply 64 B, p50: {} µs, {:.2} × the async socket on the \
                     current-thread runtime ({:.1} µs).",
                    cell_text("µs", &ours),
                    paired_ratio(&ours, async_p50).unwrap_or(f64::NAN),
                    async_p50.median
                );
            }
        }
        let _ = writeln!(out, "\n{NOTES}");
        if !self.failures.is_empty() {
            let _ = writeln!(out, "\nFailed runs (left out of the medians):\n");
            for failure in self.failures {
                let _ = writeln!(out, "- {failure}");
            }
        }
        let missing_end: usize = self
            .samples
            .iter()
            .filter(|(label, _)| label.starts_with("oneway"))
            .map(|(_, samples)| samples.iter().filter(|(_, s)| s.get("ended") != Some(&1.0)).count())
            .sum();
        if missing_end > 0 {
            let _ = writeln!(
                out,
                "\n{missing_end} one-way run(s) never saw the end marker; their time runs to the last message."
            );
        }
        out
    }

    /// Throughput per payload size, one bar per system, log scale, with
    /// min–max whiskers. Plain SVG, no dependencies.
    fn chart(&self) -> String {
        const W: f64 = 760.0;
        const H: f64 = 420.0;
        const LEFT: f64 = 80.0;
        const RIGHT: f64 = 20.0;
        const TOP: f64 = 50.0;
        const BOTTOM: f64 = 70.0;
        const COLORS: [&str; 4] = ["#d9480f", "#1971c2", "#2f9e44", "#868e96"];
        const NAMES: [&str; 4] = ["smartsock", "libzmq", "zeromq crate", "raw TCP"];
        let data: Vec<[Option<Stats>; 4]> = SIZES
            .iter()
            .map(|&size| {
                SYSTEMS
                    .map(|system| self.metric_stats(&Self::case(Scenario::OneWay, system, "default", size)))
            })
            .collect();
        let all = data.iter().flatten().flatten();
        let low = all.clone().map(|s| s.min).fold(f64::INFINITY, f64::min);
        let high = all.map(|s| s.max).fold(0.0, f64::max);
        let (lo_exp, hi_exp) = if high > 0.0 {
            (low.max(1.0).log10().floor(), high.log10().ceil().max(low.max(1.0).log10().floor() + 1.0))
        } else {
            (3.0, 7.0)
        };
        let plot_h = H - TOP - BOTTOM;
        let y = |v: f64| TOP + plot_h * (1.0 - (v.max(1.0).log10() - lo_exp) / (hi_exp - lo_exp));
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"##
        );
        let _ = writeln!(svg, r##"<rect width="{W}" height="{H}" fill="#ffffff"/>"##);
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">One-way throughput over loopback, separate processes (messages/s, log scale)</text>"##,
            W / 2.0
        );
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="40" text-anchor="middle" fill="#555">median of {} runs, whiskers min–max; {}</text>"##,
            W / 2.0,
            self.settings.reps,
            utc_now()
        );
        let mut exp = lo_exp;
        while exp <= hi_exp {
            let yy = y(10f64.powf(exp));
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#dee2e6"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                yy + 4.0,
                power_label(exp)
            );
            exp += 1.0;
        }
        let group_w = (W - LEFT - RIGHT) / SIZES.len() as f64;
        let bar_w = group_w * 0.8 / SYSTEMS.len() as f64;
        for (g, (size, row)) in SIZES.iter().zip(&data).enumerate() {
            let gx = LEFT + g as f64 * group_w + group_w * 0.1;
            for (i, cell) in row.iter().enumerate() {
                let Some(stats) = cell else { continue };
                let x = gx + i as f64 * bar_w;
                let top = y(stats.median);
                let _ = writeln!(
                    svg,
                    r##"<rect x="{x:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {} msg/s</title></rect>"##,
                    bar_w - 2.0,
                    (TOP + plot_h - top).max(0.0),
                    COLORS[i],
                    NAMES[i],
                    size_label(*size),
                    si(stats.median)
                );
                let cx = x + (bar_w - 2.0) / 2.0;
                let _ = writeln!(
                    svg,
                    r##"<line x1="{cx:.1}" x2="{cx:.1}" y1="{:.1}" y2="{:.1}" stroke="#212529"/>"##,
                    y(stats.max),
                    y(stats.min)
                );
                let _ = writeln!(
                    svg,
                    r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"##,
                    y(stats.max) - 4.0,
                    si(stats.median)
                );
            }
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13">{}</text>"##,
                LEFT + g as f64 * group_w + group_w / 2.0,
                TOP + plot_h + 18.0,
                size_label(*size)
            );
        }
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{}" stroke="#212529"/><line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="#212529"/>"##,
            TOP + plot_h,
            W - RIGHT,
            TOP + plot_h,
            TOP + plot_h
        );
        let legend_y = H - 22.0;
        for (i, name) in NAMES.iter().enumerate() {
            let lx = LEFT + i as f64 * 160.0;
            let _ = writeln!(
                svg,
                r##"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{legend_y}">{name}</text>"##,
                legend_y - 10.0,
                COLORS[i],
                lx + 18.0
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

const NOTES: &str = "Notes:

- Every run is two processes over 127.0.0.1: the binding side (receiver, echo
  server, publisher) and the connecting side. One-way: the sender sends for
  the run's length, the receiver times first to last message. Latency: one
  request outstanding, 1000 warm-up round trips. Fan-out: one process holds
  the 10 subscribers; delivered msg/s is all their messages over the span
  from the first one's first message to the last one's end.
- Runtimes: smartsock and the zeromq crate run on tokio. In the 1→1
  scenarios each process drives one socket on a current-thread runtime; the
  fan-out processes get 2 workers (one process holds the 10 subscribers).
  The \"2-worker runtime\" rows run smartsock on a multi-thread runtime with
  2 workers, what `#[tokio::main]` gives on this machine, with each side's
  code where `#[tokio::main]` puts it: in `block_on`, on the main thread,
  which is not a worker, so every wake-up between it and the socket's tasks
  crosses threads (and on this 2-vCPU VM the woken worker often preempts
  the thread that woke it). The \"each side in a spawned task\" rows run the
  same code in `tokio::spawn`, as a service's handlers run: those wake-ups
  then stay on one worker. The \"workers under `SCHED_BATCH`\" rows run from
  `main` on a runtime built with `smartsock::prefer_batch_scheduling` on
  each worker: woken, a worker no longer preempts the thread that woke it.
  The blocking API does the same on its own runtime by default. libzmq runs
  the application thread plus its one I/O thread.
- Latency on this VM depends on CPU idle states: when client and server sit
  on different CPUs, each hop can wait tens of µs for an idle vCPU to wake,
  whatever the library. The pinned rows run both processes on one CPU
  (`taskset`), which leaves the software's own cost per round trip.
- smartsock and the zeromq crate allocate each payload (`Bytes::copy_from_slice`),
  libzmq copies it into a `zmq_msg_t`; raw TCP writes one pre-framed buffer
  of about 1 MiB per `write` and parses frames in place (no allocation): the
  ceiling.
- libzmq: PUSH/PULL, REQ/REP, XPUB/SUB (XPUB publishes like PUB and shows the
  publisher each subscription, so it waits for all 10). Lossless libzmq is
  SNDHWM 0, an unbounded queue: XPUB_NODROP has no safe setter in the `zmq`
  crate. zeromq crate: PUSH/PULL, REQ/REP, PUB/SUB by default (its PUB drops
  for a full subscriber; it cannot show subscriptions, so the publisher waits
  for 10 accepted connections and 0.5 s), and its XPUB for the lossless row
  (sends with backpressure).
- smartsock's default publish policy drops a full subscriber's copy
  (`WhenFull::Drop`, like PUB at its SNDHWM); the lossless row uses
  `when_subscriber_full(WhenFull::Wait)`. Each system keeps its own default
  queue: smartsock's holds 4096 frames or 1 MiB per subscriber, libzmq's
  SNDHWM is 1000 messages, so the default rows' losses are not
  like-for-like.
- Memory: the receiver reads one message, stalls 1 s, then reads at most
  about 500 000 messages a second; the sender's VmHWM is read from
  /proc/self/status after its last send.";

fn cell_text(unit: &str, stats: &Stats) -> String {
    let one = |v: f64| match unit {
        "msg/s" => si(v),
        "µs" | "MiB" => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    };
    if (stats.max - stats.min).abs() < f64::EPSILON * stats.max.abs().max(1.0) {
        one(stats.median)
    } else {
        format!("{} [{}–{}]", one(stats.median), one(stats.min), one(stats.max))
    }
}

fn size_label(size: usize) -> String {
    if size >= 1024 && size % 1024 == 0 { format!("{} KiB", size / 1024) } else { format!("{size} B") }
}

/// 1234567 -> "1.23M".
pub(crate) fn si(v: f64) -> String {
    if !v.is_finite() {
        return "?".into();
    }
    let (scaled, suffix) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if scaled >= 100.0 {
        0
    } else if scaled >= 10.0 {
        1
    } else {
        2
    };
    format!("{scaled:.digits$}{suffix}")
}

/// 10^exp as "1k", "10M".
fn power_label(exp: f64) -> String {
    let exp = exp as i32;
    let (base, suffix) = match exp {
        ..3 => (exp, ""),
        3..6 => (exp - 3, "k"),
        6..9 => (exp - 6, "M"),
        _ => (exp - 9, "G"),
    };
    format!("{}{suffix}", 10i64.pow(base.max(0) as u32))
}

fn machine() -> String {
    let cores = thread::available_parallelism().map_or(0, usize::from);
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let memory = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(String::new(), |kib| format!(", {:.0} GiB RAM", kib / 1024.0 / 1024.0));
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores (nproc), {model}{memory}, Linux {}, {rustc}", kernel.trim())
}

fn git_revision() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root())
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let rev = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown revision".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{rev} with uncommitted changes") } else { rev }
}

/// The current UTC time as `YYYY-MM-DD HH:MM`, without a date crate.
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}", rest / 3600, rest % 3600 / 60)
}
