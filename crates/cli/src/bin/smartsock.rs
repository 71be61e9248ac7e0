//! `smartsock`: send and receive messages from the command line, and the
//! aiomsg conformance agent. See the crate's README.md for examples.
//!
//! Messages go to standard output, one line each; everything else
//! (addresses bound, peers coming and going, errors) goes to standard error.
//! Exit codes: 0 done, 1 failed while running, 2 bad command line or settings.

// The one place this binary prints: messages to stdout, diagnostics to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

mod agent;
mod cli;
mod commands;
mod format;
mod progress;
mod rates;
mod tls;

use std::fmt::Display;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;
use smartsock::transport::TransportError;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            // One line, not clap's usage block: scripts read the first line.
            let rendered = error.to_string();
            let message: Vec<&str> =
                rendered.lines().take_while(|line| !line.trim().is_empty()).map(str::trim).collect();
            note(format_args!("{} (see --help)", message.join(" ").trim_start_matches("error: ")));
            return ExitCode::from(2);
        }
    };
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            note(format_args!("cannot start the async runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Recv(args) => commands::recv(args).await,
            Command::Send(args) => commands::send(args).await,
            Command::Agent(args) => agent::run(args).await,
        }
    });
    // A read of stdin may still be blocked in a worker thread: do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            note(&failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// `RUST_LOG=debug smartsock ...` shows the library's tracing on stderr.
fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_writer(io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
    }
}

/// Says something on stderr, prefixed with the program's name.
pub(crate) fn note(message: impl Display) {
    eprintln!("smartsock: {message}");
}

/// Writes one line to stdout and flushes it, so that a reader at the other
/// end of a pipe sees each message as it arrives.
pub(crate) fn write_line(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// Why a command failed: the one-line message and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl Failure {
    /// A bad flag, address or combination of settings: exit code 2.
    pub(crate) fn usage(message: impl Display) -> Self {
        Self { message: message.to_string(), code: 2 }
    }

    /// Something failed while running: exit code 1.
    pub(crate) fn runtime(message: impl Display) -> Self {
        Self { message: message.to_string(), code: 1 }
    }
}

impl From<smartsock::Error> for Failure {
    fn from(error: smartsock::Error) -> Self {
        match error.kind() {
            smartsock::ErrorKind::Config(_)
            | smartsock::ErrorKind::Transport(
                TransportError::BadAddress { .. } | TransportError::TlsNotConfigured { .. },
            ) => Self::usage(error),
            _ => Self::runtime(error),
        }
    }
}
