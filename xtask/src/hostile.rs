//! `cargo xtask hostile`: issue 12's hostile-peer attacks against the
//! `smartsock` CLI on loopback (`scripts/hostile.py`), with the figures of
//! each (time, messages delivered, exit codes, peak RSS, WARN lines).
//!
//! Builds the CLI in release mode and runs the script with it; every
//! argument goes to the script (`--only WORD`, `--out FILE`, `--label L`).
//! With `--bin PATH` it runs against that binary instead (an older build,
//! for figures before and after), and builds nothing.

use std::env;
use std::process::{Command, Stdio};

use crate::{Result, root, run_in};

pub(crate) fn run(args: &[String]) -> Result {
    let mut script_args = args.to_vec();
    if !args.iter().any(|arg| arg == "--bin") {
        script_args.extend(["--bin".to_owned(), build()?]);
    }
    let script = root().join("scripts/hostile.py");
    run_in(Command::new("python3").arg(script).args(&script_args), &root())
}

/// Builds the CLI in release mode; its path as cargo reports it (so
/// `CARGO_TARGET_DIR` is respected).
fn build() -> Result<String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(&cargo)
        .args(["build", "--release", "-p", "smartsock-cli", "--bin", "smartsock"])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not start cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!("building the smartsock CLI failed ({})", output.status));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains("\"kind\":[\"bin\"]") && line.contains("\"name\":\"smartsock\""))
        .find_map(|line| {
            let start = line.find("\"executable\":\"")? + "\"executable\":\"".len();
            let len = line[start..].find('"')?;
            Some(line[start..start + len].replace("\\\\", "\\"))
        })
        .ok_or_else(|| "cargo did not report the smartsock executable".to_owned())
}
