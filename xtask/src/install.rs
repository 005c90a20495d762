//! Installs, idempotently, what the VM harness needs on a Debian bookworm host:
//! QEMU, a static busybox, Debian's 6.12 kernel from bookworm-backports with
//! its headers, and OpenZFS 2.3.2 (dkms module, tools, development files).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{run, Result};

/// Packages installed from bookworm-backports (which also pulls the kernel).
const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "linux-image-amd64",
    "linux-headers-amd64",
    "zfs-dkms",
    "zfsutils-linux",
    "libzfslinux-dev",
    "pkgconf",
];

const SOURCES_PATH: &str = "/etc/apt/sources.list.d/zfs-replicate.sources";
const SOURCES: &str = "# Added by zfs-replicate's `cargo xtask`: OpenZFS lives in `contrib`,
# and OpenZFS 2.3 with a 6.12 kernel in bookworm-backports.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

/// Host files whose presence means the packages are installed.
const REQUIRED_FILES: &[&str] = &[
    "/usr/bin/qemu-system-x86_64",
    "/bin/busybox",
    "/sbin/zfs",
    "/sbin/zpool",
    "/usr/include/libzfs/libzfs_core.h",
    "/usr/bin/pkg-config",
];

/// What a guest boots: a kernel, its ZFS modules and a ZFS userland.
#[derive(Debug, Clone)]
pub struct Guest {
    /// The OpenZFS version, such as `2.3.2`.
    pub zfs_version: String,
    pub release: String,
    pub vmlinuz: PathBuf,
    /// The modules in load order (`spl` … `zfs`), possibly compressed (`.ko.xz`).
    pub modules: Vec<PathBuf>,
    pub userland: Userland,
    /// A tree holding the kernel's own modules (the virtio disk driver for
    /// guests with disks), when there is one.
    pub kernel_modules: Option<PathBuf>,
}

/// Where the guest's ZFS tools and every shared library come from.
#[derive(Debug, Clone)]
pub struct Userland {
    /// The tools are `ROOT/usr/sbin/NAME` or `ROOT/sbin/NAME`; `/` is the host.
    pub root: PathBuf,
    /// The dynamic loader that resolves libraries (`--list`): the userland's
    /// own, so that its glibc is the one copied into the guest.
    pub loader: PathBuf,
    /// The loader's library path, searched with its cache inhibited; empty
    /// means the loader's defaults (the host's ld.so.cache).
    pub library_path: Vec<PathBuf>,
}

impl Userland {
    fn host() -> Userland {
        Userland {
            root: PathBuf::from("/"),
            loader: PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            library_path: Vec::new(),
        }
    }

    /// The host path of ZFS tool `name` (`zfs`, `zpool`, `zstream`).
    pub fn tool(&self, name: &str) -> Result<PathBuf> {
        ["usr/sbin", "sbin"]
            .iter()
            .map(|d| self.root.join(d).join(name))
            .find(|p| p.exists())
            .ok_or_else(|| format!("no {name} under {}", self.root.display()).into())
    }

    /// The guest path of a host file of this userland: relative to the root,
    /// with /lib and /lib64 under /usr (the guest has a merged /usr).
    pub fn guest_path(&self, host: &Path) -> String {
        let rel = host.strip_prefix(&self.root).unwrap_or(host);
        let path = format!("/{}", rel.to_string_lossy().trim_start_matches('/'));
        for (from, to) in [("/lib64/", "/usr/lib64/"), ("/lib/", "/usr/lib/")] {
            if let Some(rest) = path.strip_prefix(from) {
                return format!("{to}{rest}");
            }
        }
        path
    }
}

/// Makes sure everything is installed and returns the kernel to boot.
pub fn ensure() -> Result<Guest> {
    let missing: Vec<&str> = REQUIRED_FILES
        .iter()
        .copied()
        .filter(|f| !Path::new(f).exists())
        .collect();
    if missing.is_empty() {
        if let Some(k) = find_guest_kernel() {
            return Ok(k);
        }
    }
    install_packages(&missing)?;
    if let Some(k) = find_guest_kernel() {
        return Ok(k);
    }
    // The kernel is there but dkms has not built ZFS for it (for example, the
    // headers arrived after zfs-dkms): build it now.
    for release in kernels_6_12() {
        eprintln!("xtask: building the ZFS module for {release} with dkms (about 5 minutes)");
        let mut cmd = privileged("dkms");
        cmd.args(["autoinstall", "-k", &release]);
        run(&mut cmd)?;
    }
    find_guest_kernel().ok_or_else(|| {
        "no 6.12 kernel with a dkms-built zfs module under /lib/modules/<release>/updates/dkms \
         after installing zfs-dkms; see `dkms status`"
            .into()
    })
}

fn install_packages(missing: &[&str]) -> Result<()> {
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    if !os_release.contains("VERSION_CODENAME=bookworm") {
        return Err(format!(
            "the harness installs its packages on Debian 12 (bookworm) only; this host lacks {missing:?}. \
             Install QEMU, busybox-static, a 6.12 kernel with a zfs module, zfsutils and the libzfs_core \
             headers by hand, or run `cargo xtask test --host` on a ZFS host"
        )
        .into());
    }
    eprintln!("xtask: installing the VM harness packages (first run only; the dkms build takes about 5 minutes)");
    if fs::read_to_string(SOURCES_PATH).ok().as_deref() != Some(SOURCES) {
        write_root_file(SOURCES_PATH, SOURCES)?;
    }
    run(privileged("apt-get").args(["update", "-q"]))?;
    let mut install = privileged("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-t",
            "bookworm-backports",
        ])
        .args(PACKAGES);
    run(&mut install)
}

pub fn is_root() -> bool {
    // Reading our effective uid without libc: /proc/self/status has "Uid: r e s f".
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A command run as root: directly when we are root, otherwise through sudo.
pub fn privileged(program: &str) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg("--preserve-env=DEBIAN_FRONTEND").arg(program);
        c
    }
}

fn write_root_file(path: &str, contents: &str) -> Result<()> {
    if is_root() {
        fs::write(path, contents).map_err(|e| format!("writing {path}: {e}"))?;
        return Ok(());
    }
    let tmp = std::env::temp_dir().join("zfs-replicate.sources");
    fs::write(&tmp, contents)?;
    run(privileged("install")
        .args(["-m", "0644"])
        .arg(&tmp)
        .arg(path))
}

/// Installed Debian 6.12 kernel releases, newest first.
fn kernels_6_12() -> Vec<String> {
    let mut releases: Vec<String> = fs::read_dir("/boot")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .filter(|r| r.starts_with("6.12."))
                .map(str::to_owned)
        })
        .collect();
    releases.sort_by_key(|r| std::cmp::Reverse(version_key(r)));
    releases
}

pub fn version_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn find_module(release: &str, name: &str) -> Option<PathBuf> {
    let dir = Path::new("/lib/modules").join(release).join("updates/dkms");
    ["ko", "ko.xz", "ko.zst"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .find(|p| p.exists())
}

fn find_guest_kernel() -> Option<Guest> {
    kernels_6_12().into_iter().find_map(|release| {
        let spl = find_module(&release, "spl")?;
        let zfs = find_module(&release, "zfs")?;
        Some(Guest {
            zfs_version: module_version(&zfs).unwrap_or_else(|| "unknown".into()),
            vmlinuz: PathBuf::from(format!("/boot/vmlinuz-{release}")),
            modules: vec![spl, zfs],
            userland: Userland::host(),
            kernel_modules: Some(Path::new("/lib/modules").join(&release).join("kernel")),
            release,
        })
    })
}

/// `2.3.2` from a module's `version` field (`2.3.2-2~bpo12+2`).
fn module_version(module: &Path) -> Option<String> {
    let out = Command::new("/sbin/modinfo")
        .args(["-F", "version"])
        .arg(module)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().split('-').next()?.to_owned();
    (!version.is_empty()).then_some(version)
}
