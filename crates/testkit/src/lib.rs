//! Test support shared by smartsock's test suites. Dev-only: never a
//! dependency of a library crate.
//!
//! - [`wait`]: the one bound on every wait ([`WAIT`], [`within`]), so a test
//!   that hangs fails saying what it waited for.
//! - [`wire`]: the protocol's bytes written out by hand (not through the
//!   codec), numbered payloads, free ports.
//! - [`raw`]: peers played by the test over raw TCP: [`RawPeer`] (connect
//!   end, byte for byte), [`RawListener`] (a bind end that handshakes and
//!   then stops reading), [`RawReader`] (DATA frames off a stream).
//! - [`proxy`]: [`FaultProxy`], a deterministic fault-injection TCP proxy
//!   on loopback: reset, close, stall, throttle, delay or drop bytes at an
//!   exact moment (after K bytes, K frames, or inside frame K+1).
//! - [`netns`]: [`NetLab`], network namespaces joined by veth pairs, whose
//!   links a test pulls to make a silent partition (no FIN, no RST).
//! - [`write_sink`]: [`WriteSink`], a write half that takes every write
//!   whole at once and runs a hook first.
//! - `sched` (Linux): the calling thread's scheduling policy and nice
//!   value, for the scheduling tests.
//!
//! ```
//! use smartsock_testkit::{Fault, FaultProxy, Trigger, Direction, within};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let proxy = FaultProxy::start(server.local_addr()?).await?;
//! // Forward one whole frame towards the server, then reset the connection.
//! proxy.arm(Fault::Reset, Trigger::AfterFrames(Direction::Up, 1));
//!
//! let mut client = tokio::net::TcpStream::connect(proxy.addr()).await?;
//! let (mut accepted, _) = server.accept().await?;
//! client.write_all(&[0, 0, 0, 1, 0x02, 0, 0, 0, 1, 0x02]).await?; // two HEARTBEATs
//! let mut got = Vec::new();
//! let end = within("the reset", accepted.read_to_end(&mut got)).await;
//! assert!(end.is_err(), "a reset, not a clean end");
//! assert_eq!(got, [0, 0, 0, 1, 0x02], "exactly one frame got through");
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

pub mod netns;
pub mod proxy;
pub mod raw;
#[cfg(target_os = "linux")]
pub mod sched;
pub mod wait;
pub mod wire;
pub mod write_sink;

pub use netns::NetLab;
pub use proxy::{Direction, Fault, FaultProxy, ProxyStats, Trigger};
pub use raw::{RawListener, RawPeer, RawReader};
pub use wait::{WAIT, eventually, within, within_for};
pub use write_sink::WriteSink;
