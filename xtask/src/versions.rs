//! The OpenZFS versions the harness boots (`--zfs VERSION`).
//!
//! - **2.3.2**, the default: the host's apt-installed `zfs-dkms` on Debian
//!   12's 6.12 backports kernel, with the host's own userland (`install.rs`).
//! - **2.1.11**: Debian 12's own version, on Debian 12's 6.1 kernel, both from
//!   bookworm, with bookworm's 2.1.11 userland beside the host's glibc.
//! - **2.4.4**: from trixie-backports, built for the host's 6.12 kernel, with a
//!   trixie userland in a sysroot that has its own glibc (the 2.4 libraries
//!   need GLIBC_2.38; host and trixie glibc never mix).
//!
//! Only one `zfs-dkms` can be installed, so nothing of the other versions is
//! installed on the host: their packages are downloaded (`apt-get download`;
//! trixie's through a private apt configuration, so the host's sources never
//! see trixie), unpacked with `dpkg-deb -x` into a per-version root under the
//! cache, and the modules are built out of tree from the unpacked
//! `zfs-dkms` source (`./configure --with-config=kernel && make -C module`).
//! A finished build is kept under [`cache_dir`] and reused.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::install::{self, Guest, Userland};
use crate::Result;

/// An OpenZFS version the harness can boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZfsVersion {
    V2_1_11,
    V2_3_2,
    V2_4_4,
}

impl ZfsVersion {
    pub const ALL: [ZfsVersion; 3] = [Self::V2_1_11, Self::V2_3_2, Self::V2_4_4];
    pub const DEFAULT: ZfsVersion = Self::V2_3_2;

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V2_1_11 => "2.1.11",
            Self::V2_3_2 => "2.3.2",
            Self::V2_4_4 => "2.4.4",
        }
    }

    /// Parses `all` or a comma-separated list such as `2.3.2,2.1.11`.
    pub fn parse_list(s: &str) -> Result<Vec<ZfsVersion>> {
        if s == "all" {
            return Ok(Self::ALL.to_vec());
        }
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let v = Self::ALL
                .into_iter()
                .find(|v| v.as_str() == part)
                .ok_or_else(|| {
                    format!(
                        "unsupported OpenZFS version {part:?}: choose from {} or `all`",
                        Self::ALL.map(Self::as_str).join(", ")
                    )
                })?;
            if !out.contains(&v) {
                out.push(v);
            }
        }
        if out.is_empty() {
            return Err("--zfs needs a version".into());
        }
        Ok(out)
    }
}

/// Where out-of-tree builds are kept across runs and checkouts:
/// `$XTASK_CACHE_DIR`, else `$XDG_CACHE_HOME/zfs-replicate-xtask`, else
/// `~/.cache/zfs-replicate-xtask`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XTASK_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    base.join("zfs-replicate-xtask")
}

/// The guest for `version`: installs the host packages (QEMU, the default
/// kernel and ZFS, the headers the test binaries build against) and, for a
/// non-default version, builds or reuses its cached kernel modules and
/// userland.
pub fn guest(version: ZfsVersion) -> Result<Guest> {
    let host = install::ensure()?;
    match version {
        ZfsVersion::V2_3_2 => Ok(host),
        ZfsVersion::V2_1_11 => cached_or_build(version, build_2_1_11),
        ZfsVersion::V2_4_4 => cached_or_build(version, |dir| build_2_4_4(dir, &host)),
    }
}

/// The file a finished build leaves; its lines are `key=value`.
const READY: &str = "ready";

fn cached_or_build(version: ZfsVersion, build: impl FnOnce(&Path) -> Result<()>) -> Result<Guest> {
    let dir = cache_dir().join(format!("zfs-{}", version.as_str()));
    // One build per version at a time, whatever runs concurrently.
    fs::create_dir_all(cache_dir())?;
    let lock = fs::File::create(cache_dir().join(format!("zfs-{}.lock", version.as_str())))?;
    lock.lock()?;
    if let Some(guest) = load(version, &dir)? {
        eprintln!(
            "xtask: reusing the cached OpenZFS {} build in {}",
            version.as_str(),
            dir.display()
        );
        return Ok(guest);
    }
    eprintln!(
        "xtask: building OpenZFS {} in {} (first run only; a few minutes)",
        version.as_str(),
        dir.display()
    );
    let started = Instant::now();
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(&dir)?;
    build(&dir)?;
    eprintln!(
        "xtask: built OpenZFS {} in {:.0} s",
        version.as_str(),
        started.elapsed().as_secs_f64()
    );
    load(version, &dir)?
        .ok_or_else(|| format!("the build in {} is incomplete", dir.display()).into())
}

/// Reads a finished build, or None when there is none.
fn load(version: ZfsVersion, dir: &Path) -> Result<Option<Guest>> {
    let Ok(ready) = fs::read_to_string(dir.join(READY)) else {
        return Ok(None);
    };
    let get = |key: &str| {
        ready
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .map(str::to_owned)
    };
    let (Some(release), Some(vmlinuz), Some(loader)) =
        (get("release"), get("vmlinuz"), get("loader"))
    else {
        return Ok(None);
    };
    let mut modules: Vec<PathBuf> = fs::read_dir(dir.join("modules"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    modules.sort();
    let root = dir.join("root");
    // Relative entries are inside the root; absolute ones are the host's.
    let resolve = |p: &str| {
        if p.starts_with('/') {
            PathBuf::from(p)
        } else {
            root.join(p)
        }
    };
    let library_path = ready
        .lines()
        .filter_map(|l| l.strip_prefix("library_path="))
        .map(resolve)
        .collect();
    let vmlinuz = resolve(&vmlinuz);
    let loader = resolve(&loader);
    if modules.is_empty() || !vmlinuz.exists() || !loader.exists() {
        return Ok(None);
    }
    // The kept disk driver (2.1.11), else the host's tree for this kernel.
    let kernel_modules = [
        dir.join(DISK_DRIVER_DIR),
        Path::new("/lib/modules").join(&release).join("kernel"),
    ]
    .into_iter()
    .find(|p| p.is_dir());
    Ok(Some(Guest {
        zfs_version: version.as_str().to_owned(),
        release,
        vmlinuz,
        modules,
        userland: Userland {
            root,
            loader,
            library_path,
        },
        kernel_modules,
    }))
}

/// Where a build keeps the kernel's virtio disk driver when the kernel's
/// own modules are not kept (2.1.11).
const DISK_DRIVER_DIR: &str = "disk-driver";

/// The modules a guest needs to see virtio disks.
const DISK_DRIVER: &[&str] = &["virtio_pci", "virtio_blk"];

/// `guest`, able to attach disks: for a 2.1.11 build made before the disk
/// driver was kept, downloads that kernel's image package once and keeps the
/// driver from it.
pub fn with_disk_driver(version: ZfsVersion, guest: Guest) -> Result<Guest> {
    if guest.kernel_modules.is_some() || version != ZfsVersion::V2_1_11 {
        return Ok(guest);
    }
    let dir = cache_dir().join(format!("zfs-{}", version.as_str()));
    let lock = fs::File::create(cache_dir().join(format!("zfs-{}.lock", version.as_str())))?;
    lock.lock()?;
    let ready = fs::read_to_string(dir.join(READY))?;
    let kernel = ready
        .lines()
        .find_map(|l| l.strip_prefix("kernel="))
        .ok_or("the 2.1.11 build names no kernel package version")?;
    eprintln!(
        "xtask: keeping the virtio disk driver of linux-image-{} (once)",
        guest.release
    );
    let work = dir.join("disk-driver-work");
    let _ = fs::remove_dir_all(&work);
    let debs = work.join("debs");
    Apt::host()
        .download(&debs, &[format!("linux-image-{}={kernel}", guest.release)])
        .map_err(|e| {
            format!(
                "{e}; if the mirror dropped this kernel, remove {} to rebuild 2.1.11",
                dir.display()
            )
        })?;
    let root = work.join("root");
    unpack_all(&debs, &root, false)?;
    keep_disk_driver(&root.join("lib/modules").join(&guest.release), &dir)?;
    let _ = fs::remove_dir_all(&work);
    load(version, &dir)?
        .ok_or_else(|| format!("the build in {} is incomplete", dir.display()).into())
}

/// Copies the virtio disk driver (with its dependencies) out of a kernel's
/// modules tree into the build's [`DISK_DRIVER_DIR`].
fn keep_disk_driver(kernel_modules: &Path, dir: &Path) -> Result<()> {
    let modules = crate::kmod::with_dependencies(kernel_modules, DISK_DRIVER)?;
    if modules.is_empty() {
        return Err(format!("no virtio disk driver under {}", kernel_modules.display()).into());
    }
    let tmp = dir.join(format!("{DISK_DRIVER_DIR}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    for m in &modules {
        let name = m.file_name().ok_or("module without a file name")?;
        fs::copy(m, tmp.join(name))?;
    }
    fs::rename(&tmp, dir.join(DISK_DRIVER_DIR))?;
    Ok(())
}

/// 2.1.11: bookworm's packages, the newest bookworm 6.1 kernel.
fn build_2_1_11(dir: &Path) -> Result<()> {
    match download_2_1_11(dir) {
        Ok(versions) => finish_2_1_11(dir, versions),
        Err(e) => {
            // Stale package lists name kernel packages the mirror has
            // replaced: refresh them once and try again.
            eprintln!("xtask: {e}; refreshing the host's package lists");
            crate::run(install::privileged("apt-get").args(["update", "-q"]))?;
            let versions = download_2_1_11(dir)?;
            finish_2_1_11(dir, versions)
        }
    }
}

/// What `download_2_1_11` chose: the zfs and kernel package versions and
/// the kernel release.
struct Chosen21 {
    zfs: String,
    kernel: String,
    release: String,
    abi: String,
}

fn download_2_1_11(dir: &Path) -> Result<Chosen21> {
    let apt = Apt::host();
    let zfs = apt.newest_version_with_prefix("zfs-dkms", "2.1.11-")?;
    let kernel = apt.newest_version_with_prefix("linux-image-amd64", "6.1.")?;
    // linux-image-amd64 (6.1.x) depends on linux-image-6.1.0-N-amd64.
    let image = apt
        .depends("linux-image-amd64", &kernel)?
        .into_iter()
        .find(|d| d.starts_with("linux-image-6.1."))
        .ok_or("linux-image-amd64 for 6.1 names no linux-image-6.1.* package")?;
    let release = image
        .strip_prefix("linux-image-")
        .ok_or("unexpected kernel package name")?
        .to_owned();
    let abi = release
        .strip_suffix("-amd64")
        .ok_or("unexpected kernel release")?;
    let debs = dir.join("debs");
    let packages = vec![
        format!("{image}={kernel}"),
        format!("linux-headers-{release}={kernel}"),
        format!("linux-headers-{abi}-common={kernel}"),
        format!("linux-kbuild-6.1={kernel}"),
        format!("zfs-dkms={zfs}"),
        format!("zfsutils-linux={zfs}"),
        format!("libzfs4linux={zfs}"),
        format!("libnvpair3linux={zfs}"),
        format!("libuutil3linux={zfs}"),
        format!("libzpool5linux={zfs}"),
    ];
    apt.download(&debs, &packages)?;
    Ok(Chosen21 {
        zfs,
        kernel,
        abi: abi.to_owned(),
        release,
    })
}

fn finish_2_1_11(dir: &Path, chosen: Chosen21) -> Result<()> {
    let Chosen21 {
        zfs,
        kernel,
        release,
        abi,
    } = chosen;
    let debs = dir.join("debs");
    let root = dir.join("root");
    unpack_all(&debs, &root, false)?;

    // The arch headers' Makefile includes the common headers by absolute path.
    let headers = root.join(format!("usr/src/linux-headers-{release}"));
    let common = root.join(format!("usr/src/linux-headers-{abi}-common"));
    let makefile = headers.join("Makefile");
    let text = fs::read_to_string(&makefile)?;
    fs::write(
        &makefile,
        text.replace("/usr/src/", &format!("{}/usr/src/", root.display())),
    )?;

    let src = root.join("usr/src/zfs-2.1.11");
    build_modules(&src, &common, &headers, dir)?;
    collect_modules(
        &src.join("module"),
        &[
            "spl", "zavl", "zlua", "znvpair", "zunicode", "zzstd", "zcommon", "icp", "zfs",
        ],
        &dir.join("modules"),
    )?;
    // The build trees are large and no longer needed.
    for d in [&src, &headers, &common] {
        let _ = fs::remove_dir_all(d);
    }
    let _ = fs::remove_dir_all(root.join("usr/lib/linux-kbuild-6.1"));
    // The guest loads only the ZFS modules and, with disks, the virtio disk
    // driver: the kernel's other modules (≈ 400 MB) go.
    keep_disk_driver(&root.join("lib/modules").join(&release), dir)?;
    let _ = fs::remove_dir_all(root.join("lib/modules"));
    let _ = fs::remove_dir_all(&debs);
    // The userland's libraries first, then the host's (same glibc: bookworm).
    let ready = format!(
        "zfs={zfs}\nkernel={kernel}\nrelease={release}\nvmlinuz=boot/vmlinuz-{release}\n\
         loader=/lib64/ld-linux-x86-64.so.2\nlibrary_path=lib/x86_64-linux-gnu\n\
         library_path=usr/lib/x86_64-linux-gnu\nlibrary_path=/lib/x86_64-linux-gnu\n\
         library_path=/usr/lib/x86_64-linux-gnu\n"
    );
    fs::write(dir.join(READY), ready)?;
    Ok(())
}

/// 2.4.4: trixie-backports' packages through a private apt configuration,
/// modules for the host's 6.12 kernel.
fn build_2_4_4(dir: &Path, host: &Guest) -> Result<()> {
    let apt = Apt::private(&dir.join("apt"), TRIXIE_SOURCES)?;
    apt.update()?;
    let zfs = apt.newest_version_with_prefix("zfs-dkms", "2.4.4-")?;
    // The userland and its whole library closure, as apt resolves it for an
    // empty system: everything trixie's zfsutils-linux needs to run.
    let closure = apt.install_closure("trixie-backports", &format!("zfsutils-linux={zfs}"))?;
    let debs = dir.join("debs");
    let mut packages = closure;
    packages.push(format!("zfs-dkms={zfs}"));
    apt.download(&debs, &packages)?;
    let root = dir.join("root");
    unpack_all(&debs, &root, true)?;

    let src = root.join("usr/src/zfs-2.4.4");
    let headers = PathBuf::from(format!("/usr/src/linux-headers-{}", host.release));
    let common = PathBuf::from(format!(
        "/usr/src/linux-headers-{}",
        host.release.replace("-amd64", "-common")
    ));
    build_modules(&src, &common, &headers, dir)?;
    collect_modules(&src.join("module"), &["spl", "zfs"], &dir.join("modules"))?;
    let _ = fs::remove_dir_all(&src);
    let _ = fs::remove_dir_all(&debs);
    let _ = fs::remove_dir_all(dir.join("apt"));
    // Only the sysroot's own libraries and loader: trixie's glibc.
    let ready = format!(
        "zfs={zfs}\nrelease={}\nvmlinuz={}\nloader=usr/lib64/ld-linux-x86-64.so.2\n\
         library_path=usr/lib/x86_64-linux-gnu\n",
        host.release,
        host.vmlinuz.display()
    );
    fs::write(dir.join(READY), ready)?;
    Ok(())
}

const TRIXIE_SOURCES: &str = "\
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main contrib
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-backports main contrib
";

/// apt, either the host's (read only: `apt-cache`, `apt-get download`) or a
/// private configuration with its own sources, lists, cache and an empty
/// dpkg status, which never touches the host's.
struct Apt {
    options: Vec<String>,
}

impl Apt {
    fn host() -> Apt {
        Apt {
            options: Vec::new(),
        }
    }

    fn private(dir: &Path, sources: &str) -> Result<Apt> {
        for d in ["lists/partial", "cache/archives/partial", "etc/parts"] {
            fs::create_dir_all(dir.join(d))?;
        }
        fs::write(dir.join("etc/sources.list"), sources)?;
        fs::write(dir.join("status"), "")?;
        let d = dir.display();
        Ok(Apt {
            options: vec![
                format!("Dir::Etc::SourceList={d}/etc/sources.list"),
                format!("Dir::Etc::SourceParts={d}/etc/parts"),
                format!("Dir::Etc::Preferences={d}/etc/preferences"),
                format!("Dir::Etc::PreferencesParts={d}/etc/parts"),
                format!("Dir::State::Lists={d}/lists"),
                format!("Dir::State::status={d}/status"),
                format!("Dir::Cache={d}/cache"),
                "APT::Architecture=amd64".into(),
                "APT::Architectures=amd64".into(),
            ],
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        if crate::install::is_root() {
            // apt's `_apt` user cannot write into the cache directory.
            cmd.args(["-o", "APT::Sandbox::User=root"]);
        }
        for o in &self.options {
            cmd.arg("-o").arg(o);
        }
        cmd
    }

    fn output(&self, mut cmd: Command) -> Result<String> {
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("starting {:?}: {e}", cmd.get_program()))?;
        if !out.status.success() {
            return Err(format!("{cmd:?} failed with {}", out.status).into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn update(&self) -> Result<()> {
        let mut cmd = self.command("apt-get");
        cmd.args(["update", "-q"]);
        self.output(cmd).map(drop)
    }

    /// Every version of `package` apt knows, from `apt-cache madison`.
    fn versions(&self, package: &str) -> Result<Vec<String>> {
        let mut cmd = self.command("apt-cache");
        cmd.args(["madison", package]);
        let text = self.output(cmd)?;
        let mut out: Vec<String> = text
            .lines()
            .filter_map(|l| l.split('|').nth(1).map(|v| v.trim().to_owned()))
            .collect();
        out.dedup();
        Ok(out)
    }

    fn newest_version_with_prefix(&self, package: &str, prefix: &str) -> Result<String> {
        let mut versions: Vec<String> = self
            .versions(package)?
            .into_iter()
            .filter(|v| v.starts_with(prefix))
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(install::version_key(v)));
        versions.into_iter().next().ok_or_else(|| {
            format!("apt knows no {package} version {prefix}*; run `apt-get update`?").into()
        })
    }

    /// The package names in `package=version`'s Depends.
    fn depends(&self, package: &str, version: &str) -> Result<Vec<String>> {
        let mut cmd = self.command("apt-cache");
        cmd.args(["show", &format!("{package}={version}")]);
        let text = self.output(cmd)?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("Depends:"))
            .unwrap_or("")
            .split(',')
            .filter_map(|d| d.split_whitespace().next().map(str::to_owned))
            .collect())
    }

    /// `name=version` of every package `apt-get install -t release` would
    /// install for `spec` on an empty system (only meaningful with a private
    /// status).
    fn install_closure(&self, release: &str, spec: &str) -> Result<Vec<String>> {
        let mut cmd = self.command("apt-get");
        cmd.args([
            "install",
            "-s",
            "-q",
            "--no-install-recommends",
            "-t",
            release,
            spec,
        ]);
        let text = self.output(cmd)?;
        let out: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Inst "))
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let name = w.next()?;
                let version = w.next()?.trim_start_matches('(');
                Some(format!("{name}={version}"))
            })
            .collect();
        if out.is_empty() {
            return Err(format!("apt resolved nothing to install for {spec}").into());
        }
        Ok(out)
    }

    fn download(&self, dir: &Path, packages: &[String]) -> Result<()> {
        fs::create_dir_all(dir)?;
        let mut cmd = self.command("apt-get");
        cmd.current_dir(dir).args(["download", "-q"]).args(packages);
        self.output(cmd).map(drop)
    }
}

/// Unpacks every `.deb` in `debs` into `root` (with merged-/usr symlinks
/// first when `merged_usr`, as trixie's packages expect).
fn unpack_all(debs: &Path, root: &Path, merged_usr: bool) -> Result<()> {
    fs::create_dir_all(root)?;
    if merged_usr {
        for d in ["bin", "sbin", "lib", "lib64"] {
            fs::create_dir_all(root.join("usr").join(d))?;
            std::os::unix::fs::symlink(format!("usr/{d}"), root.join(d))?;
        }
    }
    let mut files: Vec<PathBuf> = fs::read_dir(debs)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    files.sort();
    for deb in files {
        crate::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root))?;
    }
    Ok(())
}

/// `./configure` and `make -C module` in an unpacked `zfs-dkms` source,
/// logging to `dir/build.log`.
fn build_modules(src: &Path, linux: &Path, linux_obj: &Path, dir: &Path) -> Result<()> {
    let log = dir.join("build.log");
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let steps: [(&str, Vec<String>); 2] = [
        (
            "./configure",
            vec![
                "--with-config=kernel".into(),
                format!("--with-linux={}", linux.display()),
                format!("--with-linux-obj={}", linux_obj.display()),
            ],
        ),
        (
            "make",
            vec![format!("-j{jobs}"), "-C".into(), "module".into()],
        ),
    ];
    for (program, args) in steps {
        let started = Instant::now();
        eprintln!(
            "xtask: {program} {} (log: {})",
            args.join(" "),
            log.display()
        );
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let status = Command::new(program)
            .args(&args)
            .current_dir(src)
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .map_err(|e| format!("starting {program} in {}: {e}", src.display()))?;
        if !status.success() {
            return Err(format!(
                "{program} failed in {} with {status}; see {}",
                src.display(),
                log.display()
            )
            .into());
        }
        eprintln!(
            "xtask: {program} took {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Copies the built modules, without debug info, to `out/NN-name.ko` in
/// load order.
fn collect_modules(module_dir: &Path, names: &[&str], out: &Path) -> Result<()> {
    fs::create_dir_all(out)?;
    for (i, name) in names.iter().enumerate() {
        let found = find_file(module_dir, &format!("{name}.ko"))
            .ok_or_else(|| format!("{name}.ko was not built under {}", module_dir.display()))?;
        crate::run(
            Command::new("strip")
                .arg("--strip-debug")
                .arg("-o")
                .arg(out.join(format!("{i:02}-{name}.ko")))
                .arg(&found),
        )?;
    }
    Ok(())
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    crate::kmod::files_under(dir)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|f| f == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version_lists() {
        assert_eq!(
            ZfsVersion::parse_list("2.3.2,2.1.11").unwrap(),
            [ZfsVersion::V2_3_2, ZfsVersion::V2_1_11]
        );
        assert_eq!(ZfsVersion::parse_list("all").unwrap(), ZfsVersion::ALL);
        assert!(ZfsVersion::parse_list("2.2.0").is_err());
        assert!(ZfsVersion::parse_list("").is_err());
    }
}
