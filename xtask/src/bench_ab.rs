//! `cargo xtask bench-ab`: the working tree against an earlier revision or
//! another build (or against itself, with other settings), in pairs.
//!
//! A change's effect is often smaller than the machine's drift between two
//! runs of `cargo xtask bench`, so each repetition runs a case with both
//! builds back to back, in alternating order (base first, then new first),
//! and the verdict is the median of the per-repetition ratios, with how many
//! repetitions favour the new build. The ratio is a speed-up: above 1, the
//! new build is better (more messages a second; a lower latency or peak
//! memory).
//!
//! ```text
//! cargo xtask bench-ab [--base REV | --base-bin PATH] [--only WORD] [--reps N] [--secs S]
//!                      [--threads N] [--env-base K=V]... [--env-new K=V]...
//! ```
//!
//! `--base REV` builds `smartsock-bench` at that git revision in a worktree
//! under `target/bench-ab` (with a target folder of its own, which keeps the
//! dependencies built from one run to the next). `--env-base` and
//! `--env-new` set environment variables for the processes of one side;
//! with neither `--base` nor `--base-bin`, both sides run the working tree's
//! build, and differ only in those: two settings that one build reads from
//! the environment.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use std::{fs, iter};

use crate::bench::{self, Case, CpuPerMessage, Sample, Scenario, Settings};
use crate::{Result, root, run_in};

const USAGE: &str = "usage: cargo xtask bench-ab [--base REV | --base-bin PATH] [--only WORD] [--reps N] \
[--secs S] [--threads N] [--env-base K=V]... [--env-new K=V]...

  --base REV       the build to compare against: smartsock-bench at this git revision
  --base-bin PATH  or a smartsock-bench binary built earlier (copied before the
                   working tree is built)
                   (neither: the working tree's build on both sides, with the
                   --env settings as the only difference)
  --only WORD      only the smartsock cases whose label contains WORD (as in
                   `cargo xtask bench`; default: every smartsock case)
  --reps N         pairs of runs per case (default 6)
  --secs S         length of each throughput and latency run (default 2)
  --threads N      tokio worker threads, as in `cargo xtask bench`
  --env-base K=V   an environment variable for the base's processes (repeatable)
  --env-new K=V    an environment variable for the new build's processes (repeatable)";

/// What to compare, from the command line.
struct AbSettings {
    run: Settings,
    base: Base,
    env_base: Vec<(String, String)>,
    env_new: Vec<(String, String)>,
}

enum Base {
    Revision(String),
    Binary(PathBuf),
    /// The working tree's build, with other environment variables.
    SameBuild,
}

impl AbSettings {
    fn parse(args: &[String]) -> Result<Self> {
        let mut run = Settings::new();
        run.reps = 6;
        let mut base = None;
        let (mut env_base, mut env_new) = (Vec::new(), Vec::new());
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value\n\n{USAGE}"));
            match arg.as_str() {
                "--base" | "--base-bin" if base.is_some() => {
                    return Err("give --base or --base-bin once".into());
                }
                "--base" => base = Some(Base::Revision(value()?.clone())),
                "--base-bin" => base = Some(Base::Binary(PathBuf::from(value()?))),
                "--only" => run.only = Some(value()?.clone()),
                "--reps" => run.reps = value()?.parse::<usize>().map_err(|e| format!("--reps: {e}"))?.max(1),
                "--secs" => run.secs = value()?.parse().map_err(|e| format!("--secs: {e}"))?,
                "--threads" => run.threads = Some(value()?.parse().map_err(|e| format!("--threads: {e}"))?),
                "--env-base" => env_base.push(key_value(value()?)?),
                "--env-new" => env_new.push(key_value(value()?)?),
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
            }
        }
        if !(0.05..=60.0).contains(&run.secs) {
            return Err("--secs must be between 0.05 and 60".into());
        }
        let base = match base {
            Some(base) => base,
            None if !(env_base.is_empty() && env_new.is_empty()) => Base::SameBuild,
            None => return Err(format!("--base, --base-bin or an --env setting is needed\n\n{USAGE}")),
        };
        Ok(Self { run, base, env_base, env_new })
    }
}

/// One repetition of a case: each build's number, and the speed-up.
struct Pair {
    base: f64,
    new: f64,
    speed_up: f64,
    /// One-way runs: each build's CPU per message, base then new.
    cpu: [Option<CpuPerMessage>; 2],
}

fn key_value(arg: &str) -> Result<(String, String)> {
    let (key, value) = arg.split_once('=').ok_or_else(|| format!("{arg:?} is not KEY=VALUE"))?;
    Ok((key.to_owned(), value.to_owned()))
}

pub(crate) fn run(args: &[String]) -> Result {
    let settings = AbSettings::parse(args)?;
    let cases: Vec<Case> = bench::cases()
        .into_iter()
        .filter(|case| case.system == "smartsock")
        .filter(|case| settings.run.only.as_ref().is_none_or(|word| case.label().contains(word.as_str())))
        .collect();
    if cases.is_empty() {
        return Err("--only matches no smartsock case".into());
    }
    // The base first: a binary given may be the one the build below replaces.
    let base_bin = match &settings.base {
        Base::Revision(revision) => Some(build_revision(revision)?),
        Base::Binary(path) => Some(copy_binary(path)?),
        Base::SameBuild => None,
    };
    let new_bin = bench::build(&root(), None)?;
    let base_bin = base_bin.unwrap_or_else(|| new_bin.clone());
    let sides = [(&base_bin, &settings.env_base), (&new_bin, &settings.env_new)];
    let reps = settings.run.reps;
    println!("\nxtask bench-ab: {} cases x {reps} pairs, {} s runs", cases.len(), settings.run.secs);
    let started = Instant::now();
    let mut rows = Vec::new();
    for case in &cases {
        let label = case.label();
        let mut pairs = Vec::new();
        for rep in 0..reps {
            // Alternating order, so that a drift within a pair favours
            // neither side.
            let order = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
            let (mut values, mut cpu) = ([None, None], [None, None]);
            for side in order {
                let (bin, envs) = sides[side];
                match bench::run_case(bin, case, &settings.run, envs) {
                    Ok(sample) => {
                        values[side] = metric(case, &sample);
                        cpu[side] = bench::cpu_per_message(case, &sample);
                    }
                    Err(message) => {
                        println!("[{}/{reps}] {label}: {} FAILED: {message}", rep + 1, ["base", "new"][side])
                    }
                }
            }
            if let [Some(base), Some(new)] = values {
                let speed_up = speed_up(case.scenario, base, new);
                let (base_text, new_text) = (text(case.scenario, base), text(case.scenario, new));
                println!(
                    "[{}/{reps}] {label:<32} base {base_text:>12}  new {new_text:>12}  {speed_up:.3}{}",
                    rep + 1,
                    match cpu {
                        [Some(base), Some(new)] =>
                            format!("  CPU/msg (send, receive) {} ns", cpu_change(base, new)),
                        _ => String::new(),
                    }
                );
                pairs.push(Pair { base, new, speed_up, cpu });
            }
        }
        rows.push((case, pairs));
    }
    println!("\n{}", table(&rows, &settings, started.elapsed().as_secs_f64()));
    Ok(())
}

/// The case's headline number: messages a second, or microseconds, or MiB.
fn metric(case: &Case, sample: &Sample) -> Option<f64> {
    bench::metric(case, sample).filter(|value| value.is_finite() && *value > 0.0)
}

/// How much better `new` is than `base`: above 1 is better, whichever way
/// the scenario's number goes.
fn speed_up(scenario: Scenario, base: f64, new: f64) -> f64 {
    match scenario {
        Scenario::OneWay | Scenario::FanOut => new / base,
        Scenario::Latency | Scenario::Memory => base / new,
    }
}

/// A case's number with its unit.
fn text(scenario: Scenario, value: f64) -> String {
    match scenario {
        Scenario::OneWay | Scenario::FanOut => format!("{} msg/s", bench::si(value)),
        Scenario::Latency => format!("{value:.1} us"),
        Scenario::Memory => format!("{value:.1} MiB"),
    }
}

/// Each build's CPU per message, sending and receiving, base -> new.
fn cpu_change(base: CpuPerMessage, new: CpuPerMessage) -> String {
    format!("{:.0}, {:.0} -> {:.0}, {:.0}", base.sending, base.receiving, new.sending, new.receiving)
}

fn table(rows: &[(&Case, Vec<Pair>)], settings: &AbSettings, secs: f64) -> String {
    let base = match &settings.base {
        Base::Revision(revision) => format!("revision {revision}"),
        Base::Binary(path) => path.display().to_string(),
        Base::SameBuild => "the working tree".to_owned(),
    };
    let envs = |envs: &[(String, String)]| {
        iter::once(String::new())
            .chain(envs.iter().map(|(k, v)| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Base: {base}{}; new: the working tree{}.",
        envs(&settings.env_base),
        envs(&settings.env_new)
    );
    let _ =
        writeln!(out, "Speed-up above 1: the new build is better (higher rate, lower latency or memory).\n");
    let _ = writeln!(
        out,
        "| case | base (median) | new (median) | speed-up (median of pairs) | pairs above 1 | \
         CPU/msg, send and receive, base -> new (ns, medians) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|");
    for (case, pairs) in rows {
        let label = case.label();
        let median_of = |pick: fn(&Pair) -> f64| bench::median_of(pairs.iter().map(pick));
        let cell = |value: Option<f64>| value.map_or("?".into(), |v| text(case.scenario, v));
        let above = pairs.iter().filter(|pair| pair.speed_up > 1.0).count();
        let cpu_of = |side: usize| CpuPerMessage::median(pairs.iter().filter_map(move |pair| pair.cpu[side]));
        let cpu = match (cpu_of(0), cpu_of(1)) {
            (Some(base), Some(new)) => cpu_change(base, new),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {above} of {} | {cpu} |",
            cell(median_of(|pair| pair.base)),
            cell(median_of(|pair| pair.new)),
            median_of(|pair| pair.speed_up).map_or("?".into(), |v| format!("{v:.3}")),
            pairs.len()
        );
    }
    let _ =
        write!(out, "\n{} pairs of {} s runs a case, in {secs:.0} s.", settings.run.reps, settings.run.secs);
    out
}

/// Where bench-ab keeps its builds.
fn work_dir() -> Result<PathBuf> {
    let dir = root().join("target/bench-ab");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// A copy of the binary at `path`, which the working tree's build cannot
/// replace.
fn copy_binary(path: &Path) -> Result<PathBuf> {
    let path = fs::canonicalize(path).map_err(|e| format!("--base-bin {}: {e}", path.display()))?;
    let copy = work_dir()?.join("smartsock-bench-base");
    fs::copy(&path, &copy).map_err(|e| format!("{} -> {}: {e}", path.display(), copy.display()))?;
    Ok(copy)
}

/// Builds `smartsock-bench` at `revision` in a worktree of its own and
/// returns a copy of the binary that outlives the worktree, named by the
/// commit (printed, as a branch name moves).
fn build_revision(revision: &str) -> Result<PathBuf> {
    let output = Command::new("git")
        .args(["rev-parse", "--verify", "--end-of-options", &format!("{revision}^{{commit}}")])
        .current_dir(root())
        .output()
        .map_err(|e| format!("could not start git: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "--base {revision}: not a commit ({})",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let commit = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    println!("xtask bench-ab: base {revision} is commit {commit}");
    let dir = work_dir()?;
    let worktree = dir.join("worktree");
    remove_worktree(&worktree);
    let git = |args: &[&str]| run_in(Command::new("git").args(args), &root());
    git(&["worktree", "add", "--detach", &worktree.to_string_lossy(), &commit])?;
    let built = bench::build(&worktree, Some(&dir.join("target")));
    remove_worktree(&worktree);
    let copy = dir.join(format!("smartsock-bench-{}", &commit[..commit.len().min(12)]));
    fs::copy(built?, &copy).map_err(|e| format!("{}: {e}", copy.display()))?;
    Ok(copy)
}

/// Removes the worktree at `path`, if there is one (left by an earlier run
/// that was stopped), and forgets worktrees whose folder is gone (a
/// `cargo clean` after such a run), which would refuse the next `add`.
fn remove_worktree(path: &Path) {
    if path.exists() {
        let _ = Command::new("git")
            .args(["worktree", "remove", "--force"])
            .arg(path)
            .current_dir(root())
            .status();
        let _ = fs::remove_dir_all(path);
    }
    let _ = Command::new("git").args(["worktree", "prune"]).current_dir(root()).status();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn a_speed_up_above_one_means_the_new_build_is_better() {
        assert_eq!(speed_up(Scenario::OneWay, 2.0, 3.0), 1.5, "more messages a second");
        assert_eq!(speed_up(Scenario::FanOut, 4.0, 2.0), 0.5);
        assert_eq!(speed_up(Scenario::Latency, 30.0, 20.0), 1.5, "a lower latency");
        assert_eq!(speed_up(Scenario::Memory, 5.0, 10.0), 0.5, "more memory");
    }

    #[test]
    fn the_command_line_needs_a_base_and_reads_environment_pairs() {
        assert!(AbSettings::parse(&args("--only alo")).is_err_and(|e| e.contains("--base, --base-bin or")));
        let same = AbSettings::parse(&args("--env-new SS_X=1")).unwrap();
        assert!(matches!(same.base, Base::SameBuild), "settings of one build");
        assert!(AbSettings::parse(&args("--base a --base-bin b")).is_err_and(|e| e.contains("once")));
        let settings =
            AbSettings::parse(&args("--base HEAD~1 --env-new SS_X=1=2 --reps 0 --only alo")).unwrap();
        assert!(matches!(&settings.base, Base::Revision(revision) if revision == "HEAD~1"));
        assert_eq!(settings.env_new, [("SS_X".to_owned(), "1=2".to_owned())], "split at the first '='");
        assert!(settings.env_base.is_empty());
        assert_eq!(settings.run.reps, 1, "at least one pair");
        assert_eq!(settings.run.only.as_deref(), Some("alo"));
        assert!(
            AbSettings::parse(&args("--base-bin x --env-base NOVALUE"))
                .is_err_and(|e| e.contains("KEY=VALUE"))
        );
        assert!(AbSettings::parse(&args("--base-bin x --secs 0")).is_err());
        assert!(
            AbSettings::parse(&args("--base-bin x --frobnicate"))
                .is_err_and(|e| e.contains("unknown option"))
        );
    }

    #[test]
    fn a_one_way_runs_cpu_is_the_senders_over_what_it_sent_and_the_receivers_over_what_it_got() {
        let case = bench::cases().into_iter().find(|case| case.label() == "oneway 64 B smartsock").unwrap();
        let sample: Sample =
            [("msgs", 1000.0), ("cpu_ns", 50_000.0), ("other.sent", 2000.0), ("other.cpu_ns", 300_000.0)]
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect();
        let cpu = bench::cpu_per_message(&case, &sample).unwrap();
        assert_eq!((cpu.sending, cpu.receiving), (150.0, 50.0));
        let mut no_sender = sample.clone();
        no_sender.remove("other.cpu_ns");
        assert_eq!(bench::cpu_per_message(&case, &no_sender), None, "only when both sides reported it");
    }

    #[test]
    fn each_side_of_the_cpu_per_message_is_its_own_median() {
        let runs = [(100.0, 9.0), (300.0, 7.0), (200.0, 8.0)]
            .map(|(sending, receiving)| CpuPerMessage { sending, receiving });
        let median = CpuPerMessage::median(runs.into_iter()).unwrap();
        assert_eq!(median, CpuPerMessage { sending: 200.0, receiving: 8.0 });
        assert_eq!(CpuPerMessage::median(std::iter::empty()), None);
    }
}
