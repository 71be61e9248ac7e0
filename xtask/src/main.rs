//! Project automation, run as `cargo xtask <command>`.
//!
//! - `ci`: everything CI checks, in the order a failure is cheapest to find.
//! - `fuzz [--time SECS]`: runs the framing decoder's fuzz target (needs
//!   `cargo install cargo-fuzz`; works on stable through `RUSTC_BOOTSTRAP`).
//!
//! Kept free of dependencies so that it builds in seconds.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("ci") => ci(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
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

const USAGE: &str = "usage: cargo xtask <command>

commands:
  ci                 fmt, clippy, tests, doctests, docs, benches compiled
  fuzz [--time SECS] fuzz the frame decoder (default 60 s)";

/// The workspace root: xtask lives one folder below it.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits inside the workspace").to_owned()
}

/// Runs `cargo` with `args` in the workspace root, timing it, failing on a non-zero exit.
fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result {
    run(
        Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(args)
            .envs(envs.iter().copied()),
        &root(),
    )
}

fn run(command: &mut Command, dir: &Path) -> Result {
    let shown = format!("{command:?}").replace('"', "");
    println!("\n==> {shown}");
    let started = Instant::now();
    let status = command.current_dir(dir).status().map_err(|e| format!("could not start {shown}: {e}"))?;
    println!("<== {:.1}s", started.elapsed().as_secs_f64());
    if status.success() { Ok(()) } else { Err(format!("{shown} failed ({status})")) }
}

fn has_nextest() -> bool {
    Command::new("cargo").args(["nextest", "--version"]).output().is_ok_and(|out| out.status.success())
}

fn ci(args: &[String]) -> Result {
    if let Some(extra) = args.first() {
        return Err(format!("ci takes no arguments (got {extra:?})\n\n{USAGE}"));
    }
    let started = Instant::now();
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])?;
    if has_nextest() {
        cargo(&["nextest", "run", "--workspace", "--no-fail-fast"], &[])?;
    } else {
        println!("cargo-nextest not found: running the tests with cargo test");
        cargo(&["test", "--workspace", "--lib", "--bins", "--tests"], &[])?;
    }
    // nextest does not run doctests.
    cargo(&["test", "--workspace", "--doc"], &[])?;
    cargo(&["doc", "--workspace", "--no-deps"], &[("RUSTDOCFLAGS", "-D warnings")])?;
    cargo(&["build", "--workspace", "--benches"], &[])?;
    println!("\nxtask ci: all steps passed in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn fuzz(args: &[String]) -> Result {
    let seconds = match args {
        [] => 60,
        [flag, value] if flag == "--time" => {
            value.parse::<u64>().map_err(|_| format!("--time takes whole seconds, got {value:?}"))?
        }
        _ => return Err(format!("fuzz takes [--time SECS]\n\n{USAGE}")),
    };
    let has_cargo_fuzz =
        Command::new("cargo").args(["fuzz", "--version"]).output().is_ok_and(|out| out.status.success());
    if !has_cargo_fuzz {
        cargo(&["install", "cargo-fuzz", "--locked"], &[])?;
    }
    let fuzz_dir = root().join("crates/framing");
    let corpus = fuzz_dir.join("fuzz/corpus/decode");
    std::fs::create_dir_all(&corpus).map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
    // cargo-fuzz needs nightly flags (-Zsanitizer); RUSTC_BOOTSTRAP lets the
    // stable toolchain accept them. The address sanitizer stays off (-s none)
    // because the crate forbids unsafe code; libFuzzer's -rss_limit_mb and
    // -malloc_limit_mb make any oversized allocation a crash.
    run(
        Command::new("cargo")
            .args(["fuzz", "run", "-s", "none", "decode", "--"])
            .arg(format!("-max_total_time={seconds}"))
            .args(["-rss_limit_mb=512", "-malloc_limit_mb=64", "-print_final_stats=1"])
            .env("RUSTC_BOOTSTRAP", "1"),
        &fuzz_dir,
    )
}
