//! `smartsock agent`: the aiomsg conformance-agent contract, so that a test
//! runner can pair smartsock with any other aiomsg implementation.
//!
//! - source: sends `prefix + i` for i in 0..count, stays `linger` seconds, exits 0;
//! - sink: prints each payload as one UTF-8 line on stdout, exits 0 after `count`;
//! - echo: sends every payload back to its sender (`count` of them; 0 = forever).
//!
//! Diagnostics go to stderr only.

use std::io;

use smartsock::Socket;

use crate::cli::{AgentArgs, Behavior, Role, join_host_port};
use crate::tls::TlsFiles;
use crate::{Failure, note, write_line};

/// Runs the agent until its behavior is done.
pub(crate) async fn run(args: AgentArgs) -> Result<(), Failure> {
    let mut builder =
        Socket::builder().send_mode(args.send_mode.into()).delivery(args.delivery.into()).linger(args.linger);
    if args.tls {
        builder = tls_files(&args)?.apply(builder)?;
    }
    if let Some(identity) = args.identity.0 {
        builder = builder.identity(identity);
    }
    let socket = builder.build()?;
    let addr = join_host_port(&args.host, args.port);
    let addr = if args.tls { format!("tls://{addr}") } else { addr };
    match args.role {
        Role::Bind => {
            let local = socket.bind(&addr).await?;
            note(format_args!("agent {} bound {local}", socket.identity()));
        }
        Role::Connect => socket.connect(&addr)?,
    }

    let outcome = match args.behavior {
        Behavior::Source => source(&socket, &args).await,
        Behavior::Sink => sink(&socket, args.count).await,
        Behavior::Echo => echo(&socket, args.count).await,
    };
    socket.close().await;
    outcome
}

/// The agent's TLS flags, per the contract: the bind end is the server
/// (`--tls-cert`, `--tls-key`; with `--tls-ca`, clients must present a
/// certificate from it), the connect end the client (`--tls-ca`, and
/// `--tls-cert`, `--tls-key` if it has a certificate of its own).
fn tls_files(args: &AgentArgs) -> Result<TlsFiles<'_>, Failure> {
    let mut files = TlsFiles { server_name: &args.tls_server_name, ..TlsFiles::default() };
    (files.cert, files.key) = (&args.tls_cert, &args.tls_key);
    match args.role {
        Role::Bind => {
            if args.tls_cert.is_empty() || args.tls_key.is_empty() {
                return Err(Failure::usage("--tls true on the bind end needs --tls-cert and --tls-key"));
            }
            files.client_ca = &args.tls_ca;
        }
        Role::Connect => {
            if args.tls_ca.is_empty() {
                // This build carries no system trust store: name the CA.
                return Err(Failure::usage("--tls true on the connect end needs --tls-ca"));
            }
            files.ca = &args.tls_ca;
        }
    }
    Ok(files)
}

async fn source(socket: &Socket, args: &AgentArgs) -> Result<(), Failure> {
    for i in 0..args.count {
        socket.send(format!("{}{i}", args.prefix)).await?;
    }
    tokio::time::sleep(args.linger).await;
    Ok(())
}

async fn sink(socket: &Socket, count: u64) -> Result<(), Failure> {
    for _ in 0..count {
        let Some((_, payload)) = socket.recv_from().await else {
            return Err(Failure::runtime("the socket closed before every message came"));
        };
        match write_line(&String::from_utf8_lossy(&payload)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(error) => return Err(Failure::runtime(format!("cannot write to stdout: {error}"))),
        }
    }
    Ok(())
}

async fn echo(socket: &Socket, count: u64) -> Result<(), Failure> {
    let mut echoed = 0;
    while count == 0 || echoed < count {
        let Some((from, payload)) = socket.recv_from().await else { break };
        // The sender may have gone already: say so and carry on.
        if let Err(error) = socket.send_to(from, payload).await {
            note(format_args!("cannot echo to {from}: {error}"));
        }
        echoed += 1;
    }
    Ok(())
}
