//! Smart sockets for threaded programs: the [`smartsock`] socket behind a
//! blocking API, with no async code and no tokio to know about.
//!
//! A [`Socket`] here is the async socket (same send modes, buffering,
//! reconnection, heartbeats, at-least-once, every transport) run on a small
//! runtime that the socket owns, or on one you hand in. Calls block the
//! calling thread without spinning; the connections live on the runtime's
//! worker threads, so heartbeats and reconnection go on while your threads
//! do something else. A `Socket` is `Send + Sync` and cheap to clone: share
//! it between threads.
//!
//! ```
//! use std::thread;
//! use smartsock_blocking::Socket;
//!
//! # fn main() -> Result<(), smartsock_blocking::Error> {
//! let server = Socket::new()?;
//! let addr = server.bind("127.0.0.1:0")?.to_string();
//!
//! let producer = thread::spawn(move || -> Result<(), smartsock_blocking::Error> {
//!     let client = Socket::new()?;
//!     client.connect(&addr)?;
//!     for i in 0..3 {
//!         client.send(format!("job {i}"))?;
//!     }
//!     client.close();
//!     Ok(())
//! });
//!
//! for (i, message) in server.messages().take(3).enumerate() {
//!     assert_eq!(message, format!("job {i}"));
//! }
//! producer.join().expect("producer")?;
//! server.close();
//! # Ok(())
//! # }
//! ```
//!
//! # Runtime
//!
//! | setting | default | |
//! |---|---|---|
//! | [`SocketBuilder::worker_threads`] | 1 | threads of the socket's own runtime (1 to 64) |
//! | [`SocketBuilder::batch_scheduling`] | on | Linux: its worker threads do not preempt yours when a send wakes them, so they write bigger batches |
//! | [`SocketBuilder::runtime`] | none | run on this tokio runtime instead (it needs time and I/O enabled) |
//!
//! Every other setting is the async builder's: [`SocketBuilder`] forwards
//! them, and [`SocketBuilder::configure`] reaches any of them (tower layers
//! included).
//!
//! # How calls block
//!
//! A send that can go at once, and a receive that finds a message queued,
//! run on the calling thread and enter no runtime. A receive that must wait
//! parks the thread until the message (or the close) wakes it, still
//! without entering the runtime; the other waits (a send with full queues,
//! `bind`, `close`, `wait_for_peers`) block on the runtime.
//!
//! # Panics
//!
//! Do not call the blocking methods from async code running on a tokio
//! runtime: there, use [`smartsock::Socket`] (reachable with
//! [`Socket::as_async`]). Those that wait on the runtime panic there, as
//! every blocking call into tokio does; a receive would block a runtime thread.

#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod builder;
mod error;
mod park;
mod socket;

pub use builder::{MAX_WORKER_THREADS, SocketBuilder};
pub use error::{Error, RecvTimeoutError};
pub use socket::{Messages, Socket};

pub use smartsock::{Bytes, Delivery, Endpoint, Event, PeerId, SendMode, Side, WhenFull};
