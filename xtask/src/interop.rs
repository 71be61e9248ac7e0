//! `cargo xtask interop`: interop scenarios against the aiomsg Python package.

use crate::Result;

pub(crate) fn run(_args: &[String]) -> Result {
    println!("xtask interop: nothing to run yet");
    Ok(())
}
