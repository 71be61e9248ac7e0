//! `cargo xtask examples [--verbose] [--timeout SECS] [NAME...]`: builds every
//! example of the crates in [`PACKAGES`] once, then runs each binary, which
//! must exit by itself with code 0 within the timeout.
//!
//! An example's output is shown when it fails (or always with `--verbose`),
//! so that a passing run prints one line per example.

use std::env;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Result, cargo, root};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The packages whose examples run, and where they are. Example names must be
/// unique across them: cargo puts every example binary in one directory.
const PACKAGES: [(&str, &str); 2] =
    [("smartsock", "crates/smartsock/examples"), ("smartsock-blocking", "crates/blocking/examples")];

struct Options {
    verbose: bool,
    timeout: Duration,
    only: Vec<String>,
}

pub(crate) fn run(args: &[String]) -> Result {
    let options = parse(args)?;
    let mut available = Vec::new();
    for (_, dir) in PACKAGES {
        available.extend(example_names(&root().join(dir))?);
    }
    let names = if options.only.is_empty() {
        available
    } else {
        if let Some(unknown) = options.only.iter().find(|name| !available.contains(name)) {
            return Err(format!("no example named {unknown:?}; there are: {}", available.join(", ")));
        }
        options.only.clone()
    };

    for (package, _) in PACKAGES {
        cargo(&["build", "--package", package, "--examples", "--all-features"], &[])?;
    }
    let dir = target_dir().join("debug").join("examples");

    let plural = if names.len() == 1 { "" } else { "s" };
    println!("\n==> running {} example{plural} (each must exit 0 within {:?})", names.len(), options.timeout);
    let started = Instant::now();
    let mut failed = Vec::new();
    for name in &names {
        let binary = dir.join(format!("{name}{}", env::consts::EXE_SUFFIX));
        let outcome = run_one(&binary, options.timeout)?;
        let (passed, verdict) = match outcome.status {
            Some(status) if status.success() => (true, "ok".to_owned()),
            Some(status) => (false, format!("FAILED ({status})")),
            None => (false, "TIMED OUT (killed)".to_owned()),
        };
        println!("  {name:<20} {:>6.1}s  {verdict}", outcome.elapsed.as_secs_f64());
        if !passed || options.verbose {
            show(&outcome.output);
        }
        if !passed {
            failed.push(name.as_str());
        }
    }
    let total = started.elapsed().as_secs_f64();
    if failed.is_empty() {
        println!("<== {} example{plural} passed in {total:.1}s", names.len());
        Ok(())
    } else {
        Err(format!("{} of {} examples failed: {}", failed.len(), names.len(), failed.join(", ")))
    }
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options { verbose: false, timeout: DEFAULT_TIMEOUT, only: Vec::new() };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-v" | "--verbose" => options.verbose = true,
            "--timeout" => {
                let secs = args.next().and_then(|secs| secs.parse().ok()).ok_or("--timeout takes seconds")?;
                options.timeout = Duration::from_secs(secs);
            }
            flag if flag.starts_with('-') => {
                return Err(format!(
                    "unknown option {flag:?}: examples [--verbose] [--timeout SECS] [NAME...]"
                ));
            }
            name => options.only.push(name.to_owned()),
        }
    }
    Ok(options)
}

/// The examples cargo finds by itself: `examples/NAME.rs` and `examples/NAME/main.rs`.
fn example_names(dir: &Path) -> Result<Vec<String>> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?.path();
        let is_example = if path.is_dir() {
            path.join("main.rs").is_file()
        } else {
            path.extension().is_some_and(|ext| ext == "rs")
        };
        if let (true, Some(stem)) = (is_example, path.file_stem().and_then(|s| s.to_str())) {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Where cargo puts its builds: the same setting cargo reads, relative to the
/// workspace root when relative.
fn target_dir() -> PathBuf {
    let dir = env::var_os("CARGO_TARGET_DIR")
        .or_else(|| env::var_os("CARGO_BUILD_TARGET_DIR"))
        .map_or_else(|| PathBuf::from("target"), PathBuf::from);
    if dir.is_absolute() { dir } else { root().join(dir) }
}

struct Outcome {
    /// `None` when the example was killed for running past the timeout.
    status: Option<ExitStatus>,
    elapsed: Duration,
    /// stdout, then stderr.
    output: Vec<u8>,
}

fn run_one(binary: &Path, timeout: Duration) -> Result<Outcome> {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    // Read both pipes while waiting: a child that fills a pipe nobody reads
    // would block, and look like a hang.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status =
        wait_at_most(&mut child, timeout).map_err(|e| format!("waiting for {}: {e}", binary.display()))?;
    let elapsed = started.elapsed();
    let mut output = stdout.join().unwrap_or_default();
    output.extend(stderr.join().unwrap_or_default());
    Ok(Outcome { status, elapsed, output })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            // A read error just ends the capture; the exit status decides.
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// The exit status, or `None` after killing a child still running at `timeout`.
fn wait_at_most(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn show(output: &[u8]) {
    for line in String::from_utf8_lossy(output).lines() {
        println!("      | {line}");
    }
}
