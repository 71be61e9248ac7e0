//! `cargo xtask idle [--connections N] [--hold SECS]`: N idle connections
//! to one bind end, kept alive by heartbeats, and the bind end's memory per
//! connection (RSS). Runs smartsock's `idle_connections` example, built
//! with optimisations: the bind end in one process, the connect ends in a
//! second (each process stays under its file descriptor limit).

use crate::{Result, USAGE, cargo};

pub(crate) fn run(args: &[String]) -> Result {
    let mut connections = "10000".to_owned();
    let mut hold = "20".to_owned();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{arg} needs a value\n\n{USAGE}"))?;
        match arg.as_str() {
            "--connections" => connections.clone_from(value),
            "--hold" => hold.clone_from(value),
            other => return Err(format!("idle: unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    // The default heartbeat (5 s): a hold of 20 s sees every connection
    // send and receive heartbeats, and pass one heartbeat timeout.
    cargo(
        &[
            "run",
            "--release",
            "-p",
            "smartsock",
            "--example",
            "idle_connections",
            "--",
            "--connections",
            &connections,
            "--hold",
            &hold,
            "--heartbeat",
            "5",
        ],
        &[],
    )
}
