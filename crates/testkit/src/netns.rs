//! [`NetLab`]: network namespaces joined by veth pairs, for silent partitions.
//!
//! A lab is a star: one hub namespace joined to each leaf namespace by its
//! own veth pair, leaf `i` on `10.200.i.0/24` (hub side `.1`, leaf side
//! `.2`). Each namespace is a private network stack, so addresses and
//! interface names never collide with the machine's or another test's; only
//! the namespace names are global, and they carry the process id and a
//! counter.
//!
//! [`NetLab::cut`] sets the hub's end of a link down: from then on packets
//! on it vanish, and neither side gets a FIN or a RST, only silence (and
//! "no route" for new connections), as when a cable is pulled or a switch
//! dies. [`NetLab::mend`] sets it up again; the addresses stay, so the
//! routes come back.
//!
//! A socket belongs to the namespace of the thread that created it: run each
//! party on a thread that [`enter`](NetLab::enter)ed its namespace first (a
//! `current_thread` runtime keeps every later socket on that thread), e.g.
//! with [`NetLab::spawn_in`]. Dropping the lab deletes its namespaces (and
//! so their links), during a panic too.
//!
//! Making namespaces needs root and the `ip` tool; where that fails,
//! [`NetLab::star`] prints why and returns `None`, and the test returns
//! early saying it was skipped.

#![allow(clippy::print_stderr)]

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{CloneFlags, setns};

/// Prefix of every namespace a lab makes (`ip netns list | grep ssk`).
const PREFIX: &str = "ssk";

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// A hub namespace and leaf namespaces, each leaf joined to the hub by a
/// veth pair. See the [module docs](self).
#[derive(Debug)]
pub struct NetLab {
    hub: String,
    leaves: Vec<String>,
}

impl NetLab {
    /// A hub and `leaves` leaf namespaces, linked and up; `Err(why)` where
    /// namespaces cannot be made here (the test then says it is skipped).
    pub fn star(leaves: usize) -> Result<Self, String> {
        assert!(leaves <= 250, "leaf subnets are 10.200.0-249.0/24");
        remove_stale();
        let base = format!("{PREFIX}{}x{}", std::process::id(), NEXT_LAB.fetch_add(1, Ordering::Relaxed));
        let mut lab = Self { hub: format!("{base}h"), leaves: Vec::new() };
        if let Err(why) = ip(&["netns", "add", &lab.hub]) {
            return Err(format!(
                "cannot make network namespaces here ({why}); this test needs root and `ip`"
            ));
        }
        let made = (|| {
            ip(&["-n", &lab.hub, "link", "set", "lo", "up"])?;
            for i in 0..leaves {
                let leaf = format!("{base}l{i}");
                ip(&["netns", "add", &leaf])?;
                lab.leaves.push(leaf.clone());
                ip(&["-n", &leaf, "link", "set", "lo", "up"])?;
                let hub_if = format!("v{i}");
                ip(&[
                    "-n", &lab.hub, "link", "add", &hub_if, "type", "veth", "peer", "name", "v0", "netns",
                    &leaf,
                ])?;
                ip(&["-n", &lab.hub, "addr", "add", &format!("{}/24", lab.hub_addr(i)), "dev", &hub_if])?;
                ip(&["-n", &leaf, "addr", "add", &format!("{}/24", lab.leaf_addr(i)), "dev", "v0"])?;
                ip(&["-n", &lab.hub, "link", "set", &hub_if, "up"])?;
                ip(&["-n", &leaf, "link", "set", "v0", "up"])?;
            }
            Ok::<(), String>(())
        })();
        // On failure `lab` is dropped, which removes what was made.
        made.map(|()| lab).map_err(|why| format!("cannot link network namespaces here ({why})"))
    }

    /// The hub namespace's name.
    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// Leaf `i`'s namespace name.
    pub fn leaf(&self, i: usize) -> &str {
        &self.leaves[i]
    }

    /// How many leaves the lab has.
    pub fn leaf_count(&self) -> usize {
        self.leaves.len()
    }

    /// The hub's address on leaf `i`'s link.
    pub fn hub_addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, u8::try_from(i).expect("leaf index"), 1)
    }

    /// Leaf `i`'s address (reachable from the hub).
    pub fn leaf_addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, u8::try_from(i).expect("leaf index"), 2)
    }

    /// Pulls leaf `i`'s link: silence both ways, no FIN, no RST.
    pub fn cut(&self, i: usize) {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "down"]).expect("set the link down");
    }

    /// Puts leaf `i`'s link back.
    pub fn mend(&self, i: usize) {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "up"]).expect("set the link up");
    }

    /// Moves the calling thread into namespace `name`: sockets it creates
    /// from now on live there. Only for a thread of the test's own (one
    /// [`spawn_in`](Self::spawn_in) made, or a test's `current_thread`
    /// runtime thread).
    pub fn enter(name: &str) {
        let file = std::fs::File::open(format!("/run/netns/{name}")).expect("the namespace's file");
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns into the namespace");
    }

    /// Runs `body` on a new thread inside namespace `name`, on a
    /// `current_thread` runtime of its own (so every socket it makes, now or
    /// on reconnecting, is made in that namespace).
    pub fn spawn_in<F, Fut, T>(name: &str, body: F) -> std::thread::JoinHandle<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let name = name.to_owned();
        std::thread::Builder::new()
            .name(format!("netns {name}"))
            .spawn(move || {
                Self::enter(&name);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime in the namespace");
                runtime.block_on(body())
            })
            .expect("spawn a thread")
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its ends of the veth pairs, and so the pairs.
        for name in self.leaves.iter().chain(std::iter::once(&self.hub)) {
            if let Err(why) = ip(&["netns", "del", name]) {
                // The next lab removes leftovers of dead processes too.
                tracing::warn!(namespace = %name, %why, "could not delete a network namespace");
            }
        }
    }
}

/// Runs `ip args`, returning its error output on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Deletes namespaces left by test processes that died without dropping
/// their lab (killed by a timeout): their names carry the dead pid.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('x').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
