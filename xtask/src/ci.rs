//! `cargo xtask ci`: everything CI checks, cheapest failures first.

use std::time::Instant;

use crate::{Result, USAGE, cargo, has_nextest};

pub(crate) fn run(args: &[String]) -> Result {
    if let Some(extra) = args.first() {
        return Err(format!("ci takes no arguments (got {extra:?})\n\n{USAGE}"));
    }
    let started = Instant::now();
    // Every feature is on, so feature-gated code (the `json` feature) is
    // linted and tested too. The bench crate builds libzmq from source: it is
    // only checked to compile, once, at the end of the build steps.
    let all = ["--workspace", "--exclude", "smartsock-bench", "--all-features"];
    let with = |args: &[&'static str]| [args, &all[..]].concat();
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cargo(
        &with(&["clippy", "--all-targets"])
            .iter()
            .chain(&["--", "-D", "warnings"])
            .copied()
            .collect::<Vec<_>>(),
        &[],
    )?;
    if has_nextest() {
        cargo(&with(&["nextest", "run", "--no-fail-fast"]), &[])?;
    } else {
        println!("cargo-nextest not found: running the tests with cargo test");
        cargo(&with(&["test", "--lib", "--bins", "--tests"]), &[])?;
    }
    // nextest does not run doctests.
    cargo(&with(&["test", "--doc"]), &[])?;
    cargo(&with(&["doc", "--no-deps"]), &[("RUSTDOCFLAGS", "-D warnings")])?;
    cargo(&with(&["build", "--benches"]), &[])?;
    cargo(&["check", "-p", "smartsock-bench", "--all-targets"], &[])?;
    crate::examples::run(&[])?;
    crate::interop::run(&[])?;
    println!("\nxtask ci: all steps passed in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}
