//! The two pools on the attached disks: created by `suite build`, imported
//! by `suite run` (whose writes the VM discards).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::sh;
use crate::recipe::{DST_DEVICE, DST_POOL, SRC_DEVICE, SRC_POOL};

const POOLS: [(&str, &str); 2] = [(SRC_POOL, SRC_DEVICE), (DST_POOL, DST_DEVICE)];

pub fn create() {
    for (pool, device) in POOLS {
        wait_for(device);
        sh(&format!(
            "zpool create -f -o cachefile=none -O mountpoint=none {pool} {device}"
        ));
    }
}

/// Imports both pools without mounting anything.
pub fn import() {
    for (pool, device) in POOLS {
        wait_for(device);
        sh(&format!(
            "zpool import -f -N -o cachefile=none -d {device} {pool}"
        ));
    }
}

pub fn export() {
    sh(&format!("zpool export {SRC_POOL} {DST_POOL}"));
}

/// Waits for the kernel to create a partition's device node.
fn wait_for(device: &str) {
    let started = Instant::now();
    while !Path::new(device).exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{device} did not appear: are the disks attached (`cargo xtask bench`)?"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
