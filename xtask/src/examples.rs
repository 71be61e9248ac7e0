//! `cargo xtask examples`: builds and runs every example, each of which exits by itself.

use crate::Result;

pub(crate) fn run(_args: &[String]) -> Result {
    println!("xtask examples: nothing to run yet");
    Ok(())
}
