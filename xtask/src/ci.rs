//! `cargo xtask ci`: everything CI checks, cheapest failures first.

use std::time::Instant;

use crate::{Result, USAGE, cargo, has_nextest, root};

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
    spin_guard_lint_fires()?;
    // Each feature of the facade alone, as a user who turns on only that one
    // builds it: all-features runs would hide a feature that leans on another.
    for feature in facade_features()? {
        cargo(&["check", "-p", "smartsock", "--no-default-features", "--features", &feature], &[])?;
    }
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
    crate::loom::run(&[])?;
    // A short soak: two 20-second rounds of every pattern under the seeded
    // fault mix (the long one is `cargo xtask soak --minutes N`).
    crate::soak::run(&["--seconds".into(), "40".into()])?;
    crate::examples::run(&[])?;
    crate::interop::run(&[])?;
    println!("\nxtask ci: all steps passed in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Checks that clippy refuses a spin lock's guard held across an await
/// (`crates/transport/src/lint_fixture.rs`): the one check that stands
/// between the send core's spin locks and a task that sleeps holding one.
fn spin_guard_lint_fires() -> Result {
    let args = [
        "clippy",
        "-p",
        "smartsock-transport",
        "--lib",
        "--",
        "--cfg",
        "smartsock_lint_fixture",
        "-A",
        "dead_code",
        "-D",
        "clippy::await_holding_invalid_type",
    ];
    println!("\n==> cargo {} (must fail)", args.join(" "));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(args)
        .current_dir(root())
        .output()
        .map_err(|e| format!("could not start clippy: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() || !stderr.contains("await_holding_invalid_type") {
        return Err(format!(
            "clippy no longer refuses a ShortLock guard held across an await: check clippy.toml's \
             await-holding-invalid-types against the spin crate's guard type\n{stderr}"
        ));
    }
    println!("<== refused, as it should be");
    Ok(())
}

/// The feature names in the `[features]` table of the smartsock crate's
/// manifest (`name = [...]` lines), but `default`.
fn facade_features() -> Result<Vec<String>> {
    let path = root().join("crates/smartsock/Cargo.toml");
    let manifest =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let table = manifest.lines().skip_while(|line| line.trim() != "[features]").skip(1);
    Ok(table
        .take_while(|line| !line.trim_start().starts_with('['))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
        .filter(|name| !name.is_empty() && !name.starts_with('#') && *name != "default")
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_facade_features_are_found() {
        let features = super::facade_features().expect("the manifest reads");
        for expected in ["json", "msgpack", "postcard"] {
            assert!(features.iter().any(|f| f == expected), "{expected} in {features:?}");
        }
        assert!(!features.iter().any(|f| f == "default"), "{features:?}");
    }
}
