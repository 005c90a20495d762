//! What `cargo add` users get, checked on the host (no ZFS needed):
//!
//! 1. **docs.rs**: the published crates document with `DOCS_RS=1` and
//!    pkg-config finding nothing (docs.rs has no OpenZFS), with the features
//!    their `[package.metadata.docs.rs]` names, and rustdoc warnings denied.
//!    Stable has no `doc_cfg`, so `--cfg docsrs` (docs.rs runs nightly) is
//!    not passed.
//! 2. **MSRV**: every crate the published ones build with (normal and build
//!    dependencies, as locked, for this host) declares a `rust-version` (or an
//!    edition) no newer than ours, and clippy's `incompatible_msrv` finds no
//!    standard-library item newer than ours in the published libraries. No
//!    build with the MSRV toolchain happens: language features newer than
//!    it, and dependencies that declare nothing, are not caught.
//! 3. **Packages**: `cargo package` packs the published crates and verifies
//!    each by building it from its package (warnings denied), the later ones
//!    against the earlier ones' packages (cargo's local registry overlay), as
//!    `cargo publish` would.
//!
//! They share one target directory, `target/package-check`, so the main
//! build cache stays valid (`DOCS_RS` changes zfs-sys's build script output).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::Value;

use crate::{cargo, workspace_root, Result, TestCounts};

/// The checks' own target directory, under the workspace root.
const TARGET_DIR: &str = "target/package-check";

/// Runs the checks as one host check of `cargo xtask test`: prints what
/// it did and adds one passed or failed test to `counts`.
pub fn host_check(ok: bool, mut counts: TestCounts) -> (bool, TestCounts) {
    let passed = match check() {
        Ok(passed) => passed,
        Err(e) => {
            eprintln!("xtask: package: error: {e}");
            false
        }
    };
    if passed {
        counts.passed += 1;
    } else {
        counts.failed += 1;
    }
    (ok && passed, counts)
}

/// Runs the three checks (all of them, even after a failure); true when all pass.
pub fn check() -> Result<bool> {
    let started = Instant::now();
    let meta = metadata()?;
    let crates = published(&meta)?;
    let names: Vec<&str> = crates.iter().map(|p| p.name.as_str()).collect();
    eprintln!(
        "xtask: package: checking the published crates {}",
        names.join(", ")
    );
    let mut ok = true;
    ok &= step("docs without libzfs_core", || docs(&crates));
    ok &= step("MSRV of the locked dependencies", || {
        locked_msrv(&meta, &crates)
    });
    ok &= step("MSRV of the standard library items used", || {
        std_msrv(&crates)
    });
    ok &= step("cargo package (packed and verified)", || package(&crates));
    eprintln!(
        "xtask: package: {} in {:.1} s",
        if ok { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    Ok(ok)
}

/// Runs one check, printing its outcome, time and a one-line summary.
fn step(what: &str, f: impl FnOnce() -> Result<String>) -> bool {
    let started = Instant::now();
    let result = f();
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(summary) => {
            eprintln!("xtask: package: {what}: ok in {secs:.1} s: {summary}");
            true
        }
        Err(e) => {
            eprintln!("xtask: package: {what}: FAILED in {secs:.1} s: {e}");
            false
        }
    }
}

/// A workspace member that `cargo publish` would publish.
struct Published {
    name: String,
    id: String,
    rust_version: Option<Version>,
    /// `--features` arguments (`crate/feature`) for docs.rs.
    docs_features: Vec<String>,
}

fn metadata() -> Result<Value> {
    let host = host_triple()?;
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--filter-platform"])
        .arg(&host)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn host_triple() -> Result<String> {
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| "rustc -vV printed no host".into())
}

/// Workspace members whose `publish` is unrestricted, with their docs.rs
/// features; each must have the fields a crates.io page needs.
fn published(meta: &Value) -> Result<Vec<Published>> {
    let members: BTreeSet<&str> = strings(&meta["workspace_members"]).collect();
    let mut crates = Vec::new();
    let mut problems = Vec::new();
    for p in meta["packages"].as_array().ok_or("metadata: no packages")? {
        let id = p["id"].as_str().unwrap_or_default();
        if !members.contains(id) || !p["publish"].is_null() {
            continue;
        }
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        for field in ["description", "license", "readme", "documentation"] {
            if p[field].is_null() {
                problems.push(format!("{name} has no `{field}`"));
            }
        }
        let docs_rs = &p["metadata"]["docs"]["rs"];
        if docs_rs["no-default-features"] == true {
            problems.push(format!(
                "{name}: docs.rs no-default-features is not checked here"
            ));
        }
        let features: Vec<String> = if docs_rs["all-features"] == true {
            p["features"]
                .as_object()
                .map(|f| f.keys().cloned().collect())
                .unwrap_or_default()
        } else {
            strings(&docs_rs["features"]).map(str::to_owned).collect()
        };
        crates.push(Published {
            docs_features: features.iter().map(|f| format!("{name}/{f}")).collect(),
            rust_version: p["rust_version"].as_str().and_then(Version::parse),
            id: id.to_owned(),
            name,
        });
    }
    if crates.is_empty() {
        problems.push("no workspace member is published".into());
    }
    if problems.is_empty() {
        Ok(crates)
    } else {
        Err(problems.join("; ").into())
    }
}

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

/// Fails with the command's stderr when it does not succeed.
fn run_quiet(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output()?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        for line in tail.iter().rev() {
            eprintln!("    {line}");
        }
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        return Err(format!("cargo {} failed with {}", args.join(" "), out.status).into());
    }
    Ok(out)
}

fn p_args(crates: &[Published]) -> Vec<String> {
    crates
        .iter()
        .flat_map(|c| ["-p".to_owned(), c.name.clone()])
        .collect()
}

fn docs(crates: &[Published]) -> Result<String> {
    let features: Vec<&str> = crates
        .iter()
        .flat_map(|c| c.docs_features.iter().map(String::as_str))
        .collect();
    let mut cmd = cargo();
    cmd.args(["doc", "--no-deps"])
        .args(p_args(crates))
        .env("CARGO_TARGET_DIR", workspace_root().join(TARGET_DIR))
        .env("DOCS_RS", "1")
        .env("PKG_CONFIG_PATH", "/nonexistent")
        .env("PKG_CONFIG_LIBDIR", "/nonexistent")
        .env_remove("ZFS_SYS_LIB_DIR")
        .env("RUSTDOCFLAGS", "-D warnings");
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    run_quiet(&mut cmd)?;
    Ok(format!(
        "DOCS_RS=1, pkg-config finds nothing, features [{}], rustdoc -D warnings",
        features.join(", ")
    ))
}

/// A `major.minor.patch` Rust version (a missing part is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Version(u32, u32, u32);

impl Version {
    fn parse(s: &str) -> Option<Version> {
        let mut parts = s.split('.').map(|p| p.parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next().unwrap_or(Ok(0)).ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        parts
            .next()
            .is_none()
            .then_some(Version(major, minor, patch))
    }

    /// The first Rust release that knows an edition.
    fn of_edition(edition: &str) -> Option<Version> {
        match edition {
            "2015" => Some(Version(1, 0, 0)),
            "2018" => Some(Version(1, 31, 0)),
            "2021" => Some(Version(1, 56, 0)),
            "2024" => Some(Version(1, 85, 0)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The published crates' common rust-version.
fn msrv(crates: &[Published]) -> Result<Version> {
    let versions: BTreeSet<Option<Version>> = crates.iter().map(|c| c.rust_version).collect();
    match versions.into_iter().collect::<Vec<_>>()[..] {
        [Some(v)] => Ok(v),
        _ => Err("the published crates must all declare the same rust-version".into()),
    }
}

/// A package's declared needs: its rust-version, else its edition's release.
struct Needs {
    version: Option<Version>,
    declared: bool,
}

fn needs(p: &Value) -> Needs {
    let rust_version = p["rust_version"].as_str().and_then(Version::parse);
    let edition = p["edition"].as_str().and_then(Version::of_edition);
    Needs {
        version: rust_version.max(edition),
        declared: rust_version.is_some(),
    }
}

fn locked_msrv(meta: &Value, crates: &[Published]) -> Result<String> {
    let msrv = msrv(crates)?;
    let packages: BTreeMap<&str, &Value> = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .ok_or("metadata: no resolve graph")?
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    // Walk normal and build dependencies from the published crates; note
    // their own dev-dependencies (tests only) apart.
    let roots: BTreeSet<&str> = crates.iter().map(|c| c.id.as_str()).collect();
    let mut seen = BTreeSet::new();
    let mut dev = BTreeSet::new();
    let mut stack: Vec<&str> = roots.iter().copied().collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let deps = nodes.get(id).map(|n| &n["deps"]);
        for d in deps.and_then(Value::as_array).into_iter().flatten() {
            let Some(dep) = d["pkg"].as_str() else {
                continue;
            };
            let kinds: Vec<&Value> = d["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| &k["kind"])
                .collect();
            if kinds.iter().any(|k| k.is_null() || *k == "build") {
                stack.push(dep);
            } else if roots.contains(id) {
                dev.insert(dep);
            }
        }
    }
    let describe = |id: &str| {
        let p = packages[id];
        format!(
            "{} {} ({})",
            p["name"].as_str().unwrap_or("?"),
            p["version"].as_str().unwrap_or("?"),
            needs(p).version.map_or("?".into(), |v| v.to_string())
        )
    };
    let too_new = |id: &str| needs(packages[id]).version.is_some_and(|v| v > msrv);
    let deps: Vec<&str> = seen
        .iter()
        .copied()
        .filter(|id| !roots.contains(id))
        .collect();
    let bad: Vec<String> = deps
        .iter()
        .filter(|id| too_new(id))
        .map(|id| describe(id))
        .collect();
    if !bad.is_empty() {
        return Err(format!("newer than {msrv}: {}", bad.join(", ")).into());
    }
    let undeclared: Vec<&str> = deps
        .iter()
        .filter(|id| !needs(packages[*id]).declared)
        .filter_map(|id| packages[id]["name"].as_str())
        .collect();
    let dev_new: Vec<String> = dev
        .iter()
        .filter(|id| !seen.contains(*id) && too_new(id))
        .map(|id| describe(id))
        .collect();
    Ok(format!(
        "rust-version {msrv}; {} locked dependencies need at most that ({} declare no \
         rust-version, their edition counted: {}); dev-dependencies newer (tests only): {}",
        deps.len(),
        undeclared.len(),
        undeclared.join(", "),
        if dev_new.is_empty() {
            "none".into()
        } else {
            dev_new.join(", ")
        }
    ))
}

/// clippy's `incompatible_msrv` on the published libraries: a standard
/// library item stabilised after the crate's rust-version is an error.
fn std_msrv(crates: &[Published]) -> Result<String> {
    let features: Vec<&str> = crates
        .iter()
        .flat_map(|c| c.docs_features.iter().map(String::as_str))
        .collect();
    let mut cmd = cargo();
    cmd.args(["clippy", "--lib"])
        .args(p_args(crates))
        // As the docs check (whose dependency metadata it reuses): checking
        // links nothing, so this needs no libzfs_core either.
        .env("CARGO_TARGET_DIR", workspace_root().join(TARGET_DIR))
        .env("DOCS_RS", "1")
        .env("PKG_CONFIG_PATH", "/nonexistent")
        .env("PKG_CONFIG_LIBDIR", "/nonexistent")
        .env_remove("ZFS_SYS_LIB_DIR");
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    cmd.args(["--", "-A", "clippy::all", "-D", "clippy::incompatible_msrv"]);
    run_quiet(&mut cmd)?;
    Ok(format!(
        "clippy::incompatible_msrv denied, against rust-version {}",
        msrv(crates)?
    ))
}

fn package(crates: &[Published]) -> Result<String> {
    forget_packed_sources(crates);
    // The verify builds treat our crates as registry crates, whose builds
    // cargo never redoes for the same version: they get a target directory
    // of their own, started afresh each time.
    let target = workspace_root().join(TARGET_DIR).join("verify");
    let _ = std::fs::remove_dir_all(&target);
    let out = run_quiet(
        cargo()
            .args(["package", "--allow-dirty"])
            .args(p_args(crates))
            .env("CARGO_TARGET_DIR", &target)
            // A warning in a crate built alone (without the workspace's
            // unified features) fails too; dependencies' lints are capped.
            .env("RUSTFLAGS", "-D warnings"),
    )?;
    // "Packaging zfs-sys v0.1.0 (…)" then "Packaged 14 files, 88.6KiB (…)".
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut packed = Vec::new();
    let mut name = "?";
    for line in stderr.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Packaging ") {
            name = rest.split(' ').next().unwrap_or("?");
        } else if let Some(size) = line.strip_prefix("Packaged ") {
            packed.push(format!("{name}: {size}"));
        }
    }
    Ok(packed.join("; "))
}

/// Verifying a crate builds it against its siblings as packed now, from a
/// local registry that cargo unpacks under `$CARGO_HOME/registry/src/`
/// keyed by name and version only: an unpacking left by an earlier run of
/// the same version would be reused, stale. Removes our crates' unpackings
/// (cargo unpacks again from the `.crate` files).
fn forget_packed_sources(crates: &[Published]) {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        return;
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return;
    };
    for registry in registries.flatten() {
        let Ok(unpacked) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for dir in unpacked.flatten() {
            let name = dir.file_name().to_string_lossy().into_owned();
            let ours = crates.iter().any(|c| {
                name.strip_prefix(&c.name)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|v| v.starts_with(|ch: char| ch.is_ascii_digit()))
            });
            if ours {
                let _ = std::fs::remove_dir_all(dir.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn rust_versions_parse_and_order() {
        assert_eq!(Version::parse("1.82"), Some(Version(1, 82, 0)));
        assert_eq!(Version::parse("1.56.1"), Some(Version(1, 56, 1)));
        assert_eq!(Version::parse("1.x"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
        assert!(Version::parse("1.85.0") > Version::parse("1.82"));
        assert_eq!(Version::of_edition("2024"), Some(Version(1, 85, 0)));
    }
}
