//! Benchmark programs that `cargo xtask bench` runs, one process per side.
//!
//! ```text
//! smartsock-bench <system> <role> <scenario> [--size B] [--secs S] [--count N]
//!                 [--addr HOST:PORT] [--subs N] [--variant V] [--threads N]
//!                 [--task main|spawned] [--sched default|batch|other]
//! ```
//!
//! | scenario | binds, prints `READY addr` | connects to `--addr` |
//! |---|---|---|
//! | `oneway`  | `recv`: counts until the end marker | `send`: sends for `--secs`, then the marker |
//! | `latency` | `server`: echoes | `client`: one request outstanding for `--secs` |
//! | `fanout`  | `pub`: waits for `--subs`, publishes `--count`, repeats the marker until stdin closes | `sub`: `--subs` subscribers in one process |
//! | `memory`  | `recv`: stalls 1 s, then reads slowly | `send`: pushes `--count`, reports its peak memory |
//!
//! Systems: `smartsock`, `libzmq` (the `zmq` crate), `zeromq` (the pure-Rust
//! crate) and `tcp` (raw TCP with pre-framed batched writes: the ceiling).
//! Every message carries `--size` bytes; the end marker is a 1-byte message.
//! The side that measures prints one `RESULT key=value ...` line on stdout.
//! A watchdog ends the process if a run takes far longer than it should.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

mod common;
mod libzmq;
mod sys_blocking;
mod sys_smartsock;
mod sys_zeromq;
mod tcp;
mod tcp_tokio;

use common::{Args, Res};

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("smartsock-bench: {message}\n\n{}", common::USAGE);
            return ExitCode::from(2);
        }
    };
    common::watchdog(args.time_limit());
    let outcome: Res = match args.system.as_str() {
        "smartsock" => sys_smartsock::run(&args),
        "libzmq" => libzmq::run(&args),
        "zeromq" => sys_zeromq::run(&args),
        "tcp" => tcp::run(&args),
        other => Err(format!("unknown system {other:?}")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("smartsock-bench {} {} {}: {message}", args.system, args.role, args.scenario);
            ExitCode::FAILURE
        }
    }
}
