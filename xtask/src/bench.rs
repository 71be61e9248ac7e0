//! `cargo xtask bench`: side-by-side benchmarks.

use crate::Result;

pub(crate) fn run(_args: &[String]) -> Result {
    println!("xtask bench: nothing to run yet");
    Ok(())
}
