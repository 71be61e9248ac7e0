//! `cargo xtask fuzz`: runs the frame decoder's fuzz target.

use std::process::Command;

use crate::{Result, USAGE, cargo, root, run_in};

pub(crate) fn run(args: &[String]) -> Result {
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
    run_in(
        Command::new("cargo")
            .args(["fuzz", "run", "-s", "none", "decode", "--"])
            .arg(format!("-max_total_time={seconds}"))
            .args(["-rss_limit_mb=512", "-malloc_limit_mb=64", "-print_final_stats=1"])
            .env("RUSTC_BOOTSTRAP", "1"),
        &fuzz_dir,
    )
}
