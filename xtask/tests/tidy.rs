//! Repository hygiene, checked by plain `cargo test`.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<_> = fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("Cargo.toml").exists())
        .collect();
    dirs.sort();
    dirs
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Library sources: `src/` of every crate that is published, without the
/// binaries under `src/bin`. The dev-only crates (`publish = false`: the
/// test kit, the fault battery) are test code: they print figures and skips.
fn library_sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let published = |dir: &PathBuf| {
        !fs::read_to_string(dir.join("Cargo.toml"))
            .unwrap()
            .lines()
            .any(|line| line.trim() == "publish = false")
    };
    for dir in crate_dirs().into_iter().filter(published) {
        rust_files(&dir.join("src"), &mut files);
    }
    files
        .into_iter()
        .filter(|path| !path.components().any(|c| c.as_os_str() == "bin"))
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect()
}

#[test]
fn every_crate_has_a_readme_and_crate_docs() {
    for dir in crate_dirs() {
        assert!(dir.join("README.md").exists(), "{} has no README.md", dir.display());
        let lib = dir.join("src/lib.rs");
        if lib.exists() {
            let text = fs::read_to_string(&lib).unwrap();
            assert!(text.starts_with("//!"), "{} does not open with //! crate docs", lib.display());
            assert!(
                text.contains("#![forbid(unsafe_code)]"),
                "{} does not forbid unsafe code",
                lib.display()
            );
        }
    }
}

#[test]
fn every_crate_uses_the_workspace_lints() {
    for dir in crate_dirs().into_iter().chain([root().join("xtask")]) {
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("[lints]\nworkspace = true"),
            "{} does not use the workspace lints",
            dir.display()
        );
    }
}

#[test]
fn library_code_has_no_unbounded_queue_and_no_debug_leftovers() {
    let forbidden = [
        "unbounded_channel",
        "UnboundedSender",
        "UnboundedReceiver",
        "async_channel::unbounded",
        "todo!(",
        "unimplemented!(",
        "dbg!(",
        "println!(",
        "eprintln!(",
        "std::thread::sleep",
    ];
    let mut found = Vec::new();
    for (path, text) in library_sources() {
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in forbidden {
                if code.contains(word) {
                    found.push(format!("{}:{}: {word}", path.display(), number + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "library code breaks a house rule:\n{}", found.join("\n"));
}

#[test]
fn readme_names_the_test_command_that_ci_runs() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let ci = fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(ci.contains("cargo xtask ci"), ".ci/run does not run cargo xtask ci");
    assert!(readme.contains("cargo xtask ci"), "README.md does not name cargo xtask ci as the test command");
}
