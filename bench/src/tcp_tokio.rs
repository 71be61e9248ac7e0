//! Raw tokio, request/reply only: the same frames as aiomsg over a tokio
//! `TcpStream`, on the runtime the case asks for (`--threads`: 1 is a
//! current-thread runtime, more a multi-thread one; `--task`: in `block_on`
//! or a spawned task), one task per end and no other. The ceiling for an async socket's round trip on each runtime:
//! what smartsock's request/reply is measured against, runtime for runtime.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{self, Args, END, Res, RoundTrips};
use crate::tcp::frame;

pub(crate) fn run(args: &Args) -> Res {
    crate::sys_smartsock::block_on(args, |args| async move {
        match (args.scenario.as_str(), args.role.as_str()) {
            ("latency", "server") => server(&args).await,
            ("latency", "client") => client(&args).await,
            _ => return Err(args.unknown()),
        }
        .map_err(|e| format!("tokio tcp: {e}"))
    })
}

/// Reads one frame into `buf`; returns its payload's length.
async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut prefix = [0; 4];
    stream.read_exact(&mut prefix).await?;
    let envelope = u32::from_be_bytes(prefix) as usize;
    if envelope == 0 || envelope > 1 << 24 {
        return Err(io::Error::other("bad frame length"));
    }
    buf.resize(envelope, 0);
    stream.read_exact(buf).await?;
    Ok(envelope - 1)
}

async fn server(args: &Args) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    common::ready(listener.local_addr()?);
    let (mut stream, _) = listener.accept().await?;
    stream.set_nodelay(true)?;
    let reply = frame(&args.payload());
    let mut buf = Vec::new();
    while read_frame(&mut stream, &mut buf).await? == args.size {
        stream.write_all(&reply).await?;
    }
    Ok(())
}

async fn client(args: &Args) -> io::Result<()> {
    let mut stream = TcpStream::connect(&args.addr).await?;
    stream.set_nodelay(true)?;
    let request = frame(&args.payload());
    let mut buf = Vec::new();
    let mut trips = RoundTrips::new(args);
    while let Some(started) = trips.start() {
        stream.write_all(&request).await?;
        read_frame(&mut stream, &mut buf).await?;
        trips.done(started);
    }
    stream.write_all(&frame(END)).await?;
    trips.report();
    Ok(())
}
