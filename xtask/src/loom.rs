//! `cargo xtask loom`: the loom model of the send core (outbox, room
//! signal, writer, close), every interleaving explored.

use crate::{Result, USAGE, cargo, root};

pub(crate) fn run(args: &[String]) -> Result {
    if let Some(extra) = args.first() {
        return Err(format!("loom takes no arguments (got {extra:?})\n\n{USAGE}"));
    }
    // A target directory of its own: the cfg changes every crate's build,
    // and sharing would throw the ordinary build away each time.
    let target = root().join("target/loom");
    let target = target.to_string_lossy();
    cargo(
        &["test", "-p", "smartsock-transport", "--lib", "--release", "--", "loom_model"],
        &[
            ("RUSTFLAGS", "--cfg smartsock_loom"),
            ("CARGO_TARGET_DIR", &target),
            ("LOOM_MAX_PREEMPTIONS", "3"),
        ],
    )
}
