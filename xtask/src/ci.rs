//! `cargo xtask ci`: everything CI checks, cheapest failures first.

use std::time::Instant;

use crate::{Result, USAGE, cargo, has_nextest};

pub(crate) fn run(args: &[String]) -> Result {
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
    crate::examples::run(&[])?;
    crate::interop::run(&[])?;
    println!("\nxtask ci: all steps passed in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}
