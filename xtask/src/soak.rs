//! `cargo xtask soak --minutes N | --seconds N [--seed S]`: every send
//! pattern at once under the seeded fault mix (the `soak` binary of
//! `smartsock-faults`), then checks that nothing at-least-once was lost and
//! that fds, tasks and memory came back. `cargo xtask ci` runs a short one.

use crate::{Result, USAGE, cargo};

/// Runs the soak with `args` passed on (`--minutes N`, `--seconds N`,
/// `--round-seconds N`, `--seed S`); one minute if none is given.
pub(crate) fn run(args: &[String]) -> Result {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        return Err(USAGE.to_owned());
    }
    let mut command: Vec<&str> = vec!["run", "-p", "smartsock-faults", "--bin", "soak", "--"];
    command.extend(args.iter().map(String::as_str));
    cargo(&command, &[])
}
