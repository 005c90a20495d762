//! Kernel modules by name: finding them in a modules tree and ordering them
//! after their dependencies (read with `modinfo`, as no `modules.dep` is
//! needed), for the guest to `insmod` one by one.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

/// `virtio_blk` for `…/virtio_blk.ko.xz`.
pub fn module_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .unwrap_or("")
        .replace('-', "_")
}

/// The module files under `dir` for `names` and everything they depend on,
/// dependencies first. A name with no file under `dir` is taken to be built
/// into the kernel.
pub fn with_dependencies(dir: &Path, names: &[&str]) -> Result<Vec<PathBuf>> {
    let files = module_files(dir);
    let mut ordered = Vec::new();
    for name in names {
        visit(name, &files, &mut Vec::new(), &mut ordered)?;
    }
    Ok(ordered)
}

fn visit(
    name: &str,
    files: &BTreeMap<String, PathBuf>,
    path: &mut Vec<String>,
    ordered: &mut Vec<PathBuf>,
) -> Result<()> {
    let name = name.replace('-', "_");
    let Some(file) = files.get(&name) else {
        return Ok(()); // built in
    };
    if ordered.contains(file) {
        return Ok(());
    }
    if path.contains(&name) {
        return Err(format!("module dependency cycle through {name}").into());
    }
    path.push(name);
    for dep in depends(file)? {
        visit(&dep, files, path, ordered)?;
    }
    path.pop();
    ordered.push(file.clone());
    Ok(())
}

/// The `depends` field of a module file.
fn depends(file: &Path) -> Result<Vec<String>> {
    let out = Command::new("/sbin/modinfo")
        .args(["-F", "depends"])
        .arg(file)
        .output()
        .map_err(|e| format!("starting modinfo: {e}"))?;
    if !out.status.success() {
        return Err(format!("modinfo {} failed", file.display()).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(',')
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Every `*.ko`, `*.ko.xz` and `*.ko.zst` under `dir`, by module name.
fn module_files(dir: &Path) -> BTreeMap<String, PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|path| {
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            [".ko", ".ko.xz", ".ko.zst"]
                .iter()
                .any(|e| file.ends_with(e))
        })
        .map(|path| (module_name(&path), path))
        .collect()
}

/// Every file (not directory) under `dir`, at any depth; unreadable
/// directories are skipped.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(_) => out.push(entry.path()),
                Err(_) => {}
            }
        }
    }
    out
}
