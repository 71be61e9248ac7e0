//! Project automation, run as `cargo xtask <command>`.
//!
//! - `ci`: everything CI checks, in the order a failure is cheapest to find.
//! - `idle [--connections N] [--hold SECS]`: N idle connections to one
//!   bind end, and its memory per connection.
//! - `soak [--minutes N | --seconds N]`: every pattern under seeded faults.
//! - `fuzz [--time SECS]`: runs the framing decoder's fuzz target (needs
//!   `cargo install cargo-fuzz`; works on stable through `RUSTC_BOOTSTRAP`).
//!
//! Kept free of dependencies so that it builds in seconds.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod bench;
mod bench_ab;
mod ci;
mod examples;
mod fuzz;
mod hostile;
mod idle;
mod interop;
mod loom;
mod soak;

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("examples") => examples::run(&args[1..]),
        Some("interop") => interop::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("bench-ab") => bench_ab::run(&args[1..]),
        Some("loom") => loom::run(&args[1..]),
        Some("idle") => idle::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
        Some("hostile") => hostile::run(&args[1..]),
        _ => Err(USAGE.to_owned()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) const USAGE: &str = "usage: cargo xtask <command>

commands:
  ci                 fmt, clippy, tests, doctests, docs, benches compiled,
                     examples run, interop with aiomsg (Python)
  examples           build and run every example of smartsock and smartsock-blocking
  interop            run the interop scenarios against aiomsg from PyPI
  bench              side-by-side benchmarks against libzmq and the zeromq crate
  bench-ab (--base REV | --base-bin PATH) [--only WORD] [--reps N]
                     smartsock against an earlier revision of itself, in
                     pairs of runs: the median speed-up per case
  loom               the loom model of the send core (every interleaving)
  idle [--connections N] [--hold SECS]
                     N idle connections (default 10000) to one bind end:
                     its memory (RSS) per connection
  soak [--minutes N | --seconds N] [--seed S]
                     every send pattern at once under seeded network faults
                     (no loss, fds, tasks and memory back; default 1 minute)
  hostile            issue 12's hostile-peer attacks against the CLI, with their figures
                     (scripts/hostile.py; --only WORD, --out FILE, --bin PATH)
  fuzz [--time SECS] fuzz the frame decoder (default 60 s)";

/// The workspace root: xtask lives one folder below it.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits inside the workspace").to_owned()
}

/// Runs `cargo` with `args` in the workspace root, timing it, failing on a non-zero exit.
pub(crate) fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result {
    run_in(
        Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(args)
            .envs(envs.iter().copied()),
        &root(),
    )
}

pub(crate) fn run_in(command: &mut Command, dir: &Path) -> Result {
    let shown = format!("{command:?}").replace('"', "");
    println!("\n==> {shown}");
    let started = Instant::now();
    let status = command.current_dir(dir).status().map_err(|e| format!("could not start {shown}: {e}"))?;
    println!("<== {:.1}s", started.elapsed().as_secs_f64());
    if status.success() { Ok(()) } else { Err(format!("{shown} failed ({status})")) }
}

pub(crate) fn has_nextest() -> bool {
    Command::new("cargo").args(["nextest", "--version"]).output().is_ok_and(|out| out.status.success())
}
