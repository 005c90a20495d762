//! `cargo xtask demo`: the `backup` example's story on real OpenZFS in the
//! QEMU guest. Two file-backed pools, `tank` (live data) and `pipe`
//! (backups, on a "removable drive": a file in `/tmp/drives`); the script
//! fills `tank/home`, finds the drive's pool (`backup drives`), syncs with
//! the drive imported for the run and exported after it, changes, syncs
//! incrementally, prunes, refuses diverged targets, writes, verifies and
//! damages a stream file, shows the plan up to date, and ends with the GUID
//! proof: the newest snapshot of every dataset has the same GUID on both
//! sides, and the drive exported, safe to disconnect. Any failed step or GUID mismatch fails the demo.

use std::path::PathBuf;
use std::time::Instant;

use crate::vm::{self, GuestPayload};
use crate::{versions, workspace_root, Result};

pub fn demo(args: &[String]) -> Result<bool> {
    let (zfs, rest) = crate::zfs_versions(args)?;
    if let Some(bad) = rest.first() {
        return Err(format!("unknown argument {bad}\n{}", crate::USAGE).into());
    }
    let [version] = zfs[..] else {
        return Err("the demo runs on one OpenZFS version at a time".into());
    };
    let started = Instant::now();
    // Install first: the host build links against libzfs_core from libzfslinux-dev.
    let guest = versions::guest(version)?;
    let backup = build_backup()?;
    let payload = GuestPayload {
        binaries: vec![("/usr/bin/backup".into(), backup)],
        files: vec![("/demo.sh".into(), 0o755, SCRIPT.as_bytes().to_vec())],
        script: "/demo.sh\necho \"ZFS-HARNESS-EXIT demo $?\"".into(),
        disks: Vec::new(),
    };
    let vm_opts = vm::VmOptions::from_env(600, Vec::new());
    let work_dir = workspace_root().join("target/xtask-vm");
    let outcome = vm::run_payload(&guest, &payload, &work_dir, &vm_opts)?;
    let mut ok = true;
    if !outcome.completed {
        eprintln!(
            "xtask: the guest did not report completion (crash, module load failure or timeout)"
        );
        ok = false;
    }
    if outcome.version_error.is_some() {
        ok = false;
    }
    for (name, code) in &outcome.failed_binaries {
        eprintln!("xtask: the {name} script exited with {code}");
        ok = false;
    }
    eprintln!(
        "xtask: demo {} in {:.0} s",
        if ok { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    Ok(ok)
}

/// Builds the `backup` example and returns its path.
fn build_backup() -> Result<PathBuf> {
    crate::built_executable(
        &["build", "-p", "zfs-replicate", "--example", "backup"],
        "backup",
    )
}

/// The guest script (busybox sh). `backup` is the example binary.
const SCRIPT: &str = r##"#!/usr/bin/busybox sh
export PATH=/usr/sbin:/usr/bin
cd /tmp
n=0
say() { n=$((n + 1)); echo; echo "==== $n. $*"; }
note() { echo "# $*"; }
fail() { echo "DEMO FAILED: $*"; exit 1; }
# Echo a command, quoting arguments with spaces as a shell would need.
show() {
    s='$'
    for a in "$@"; do
        case "$a" in *" "* | "") s="$s '$a'" ;; *) s="$s $a" ;; esac
    done
    echo "$s"
}
# run CMD...: must succeed.
run() { show "$@"; "$@"; rc=$?; [ $rc -eq 0 ] || fail "exit $rc from: $*"; }
# log FILE CMD...: must succeed; its output is kept in FILE too.
log() {
    f=$1; shift; show "$@"; "$@" >"$f" 2>&1; rc=$?; cat "$f"
    [ $rc -eq 0 ] || fail "exit $rc from: $*"
}
# expect CODE CMD...: must fail with CODE.
expect() {
    want=$1; shift; show "$@"; "$@"; rc=$?
    [ $rc -eq "$want" ] || fail "expected exit $want, got $rc from: $*"
    note "exit $rc, as expected"
}
# fill FILE KIB: random data.
fill() {
    dd if=/dev/urandom of="$1" bs=1024 count="$2" 2>/dev/null || fail "writing $1"
    note "wrote $2 KiB of random data to $1"
}
newest() { zfs list -H -t snapshot -o name -s createtxg -d 1 "$1" | tail -n 1; }
count_snaps() { zfs list -H -t snapshot -o name -d 1 "$1" | wc -l; }
done_bytes() { awk '/^done:/ { print $2 }' "$1"; }

say "two pools on sparse files: tank (live data) and pipe (backups, on a removable drive)"
run mkdir -p /tmp/drives
run truncate -s 256M /tmp/tank.img
run truncate -s 256M /tmp/drives/pipe.img
run zpool create -o cachefile=none tank /tmp/tank.img
run zpool create -o cachefile=none pipe /tmp/drives/pipe.img
run zpool export pipe
note "pipe is exported, as a drive is after the last backup: /tmp/drives stands for /dev/disk/by-id"

say "fill: datasets and files on tank, names with spaces included"
run zfs create tank/home
run zfs create tank/home/docs
run zfs create "tank/home/my docs"
fill /tank/home/photo.raw 2048
fill /tank/home/docs/notes.txt 256
fill "/tank/home/my docs/tax return 2024.pdf" 512
sync
run zfs list -r -o name,used,mountpoint tank/home

say "drive connected: which pools can be imported from it?"
log /tmp/drives.out backup drives -d /tmp/drives
grep -q "^pipe [0-9]* ONLINE$" /tmp/drives.out || fail "backup drives did not list pipe ONLINE"

say "sync: import the drive (nothing mounted), send everything, export it"
log /tmp/sync1.out backup sync tank/home pipe/home -r --keep 3 --import /tmp/drives --export-after
grep -q ": full" /tmp/sync1.out || fail "the first sync was not a full send"
grep -q "^drive: exported pipe: safe to disconnect$" /tmp/sync1.out || fail "the drive was not exported"
zpool list pipe >/dev/null 2>&1 && fail "pipe is still imported"
note "zpool list no longer shows pipe: the drive could be unplugged now"

say "change: new and modified files on the source"
fill /tank/home/docs/todo.txt 64
dd if=/dev/urandom of=/tank/home/photo.raw bs=1024 count=128 seek=512 conv=notrunc 2>/dev/null
note "overwrote 128 KiB in the middle of /tank/home/photo.raw"
echo "call the accountant" >>"/tank/home/my docs/tax return 2024.pdf"
note "appended a line to /tank/home/my docs/tax return 2024.pdf"

say "sync again (the drive stays imported this time): only the changes move"
log /tmp/sync2.out backup sync tank/home pipe/home -r --keep 3 --import /tmp/drives
grep -q ": full" /tmp/sync2.out && fail "the second sync sent a full stream"
grep -q "incremental from" /tmp/sync2.out || fail "the second sync was not incremental"
note "incremental: $(done_bytes /tmp/sync2.out) bytes this time, $(done_bytes /tmp/sync1.out) the first time"

say "browse: the backup is read-only and mounts only on purpose; reading it changes nothing"
run zfs get -H -o name,property,value,source readonly,canmount pipe/home
run zfs mount pipe/home
run wc -c /pipe/home/photo.raw
touch /pipe/home/new-file 2>/dev/null && fail "the mounted backup was writable"
note "writing into the mounted backup failed: it is read-only"
run zfs umount pipe/home
[ "$(zfs get -H -p -o value written pipe/home)" = 0 ] || fail "reading the backup changed it"
note "written=0: the next sync applies without --rollback"

say "prune: three more syncs; --keep 3 keeps the newest three on both sides"
for i in 3 4 5; do
    fill "/tank/home/docs/day $i.txt" 16
    log /tmp/sync$i.out backup sync tank/home pipe/home -r --keep 3
done
grep -q "^pruned: .*@" /tmp/sync5.out || fail "nothing was pruned"
run zfs list -t snapshot -o name,guid -r tank/home
run zfs list -t snapshot -o name,guid -r pipe/home
run zfs list -t bookmark -o name,guid -r tank/home
for ds in tank/home tank/home/docs "tank/home/my docs" pipe/home pipe/home/docs "pipe/home/my docs"; do
    [ "$(count_snaps "$ds")" -eq 3 ] || fail "$ds has $(count_snaps "$ds") snapshots, not 3"
done
note "3 snapshots on each of the 6 datasets"

say "safety: a target that changed or does not share history is refused"
run zfs snapshot "pipe/home/my docs@oops"
before=$(newest tank/home)
expect 3 backup sync tank/home pipe/home -r --keep 3
[ "$(newest tank/home)" = "$before" ] || fail "a refused sync took a snapshot"
[ "$(newest "pipe/home/my docs")" = "pipe/home/my docs@oops" ] || fail "a refused sync changed the target"
note "nothing changed: no new snapshot on tank, @oops still on pipe"
expect 3 backup plan tank/home pipe/home -r
fill /tank/home/photo-2.raw 384
log /tmp/sync6.out backup sync tank/home pipe/home -r --keep 3 --rollback
grep -q "rolled back" /tmp/sync6.out || fail "--rollback did not roll back"
run zfs create pipe/stranger
run zfs umount pipe/stranger
run zfs snapshot pipe/stranger@mine
expect 3 backup sync tank/home/docs pipe/stranger

say "stream to a file: the newest increment of tank/home, verified"
latest=$(newest tank/home)
previous=$(zfs list -H -t snapshot -o name -s createtxg -d 1 tank/home | tail -n 2 | head -n 1)
run backup send "$latest" --from "${previous#*@}" -o /tmp/home.zstream
run backup verify /tmp/home.zstream
run cp /tmp/home.zstream /tmp/damaged.zstream
size=$(wc -c </tmp/damaged.zstream)
off=$((size / 2))
old=$(dd if=/tmp/damaged.zstream bs=1 skip=$off count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
new=$((old ^ 255))
[ $new -eq 0 ] && new=1
printf "$(printf '\\%03o' $new)" | dd of=/tmp/damaged.zstream bs=1 seek=$off count=1 conv=notrunc 2>/dev/null
cmp -s /tmp/home.zstream /tmp/damaged.zstream && fail "the byte did not change"
note "damaged a copy: byte $off of $size changed from $old to $new"
expect 4 backup verify /tmp/damaged.zstream
expect 4 backup receive pipe/restored -i /tmp/damaged.zstream
zfs list pipe/restored >/dev/null 2>&1 && fail "a refused receive left pipe/restored behind"
note "no pipe/restored was left behind"
docs=$(newest "tank/home/my docs")
run backup send "$docs" -o "/tmp/my docs.zstream"
run backup verify "/tmp/my docs.zstream"
run backup receive "pipe/restored docs" -i "/tmp/my docs.zstream"
run zfs list -t snapshot -o name,guid "$docs" "pipe/restored docs@${docs#*@}"

say "plan: the backup is up to date"
log /tmp/plan.out backup plan tank/home pipe/home -r
grep -q "up to date: nothing to send" /tmp/plan.out || fail "the plan is not up to date"

say "proof: the newest snapshot of each dataset, by GUID, on both sides"
bad=0
printf '  %-14s %-30s %-21s %-21s\n' DATASET "NEWEST SNAPSHOT" "GUID ON tank" "GUID ON pipe"
zfs list -H -o name -r tank/home >/tmp/datasets
while IFS= read -r ds; do
    tgt="pipe/home${ds#tank/home}"
    snap=$(newest "$ds")
    tsnap=$(newest "$tgt")
    sg=$(zfs get -H -o value guid "$snap")
    tg=$(zfs get -H -o value guid "$tsnap")
    if [ -n "$sg" ] && [ "$sg" = "$tg" ] && [ "${snap#*@}" = "${tsnap#*@}" ]; then
        verdict=MATCH
    else
        verdict="MISMATCH (pipe: $tsnap)"
        bad=1
    fi
    printf '  %-14s %-30s %-21s %-21s %s\n' "${ds#tank/}" "@${snap#*@}" "$sg" "$tg" "$verdict"
done </tmp/datasets
[ $bad -eq 0 ] || fail "GUID mismatch"

say "last sync of the day: the drive is imported already; export it when done"
log /tmp/sync7.out backup sync tank/home pipe/home -r --keep 3 --import /tmp/drives --export-after
grep -q "^drive: pipe is imported already$" /tmp/sync7.out || fail "--import did not see pipe imported"
grep -q "^drive: exported pipe: safe to disconnect$" /tmp/sync7.out || fail "the drive was not exported"
zpool list pipe >/dev/null 2>&1 && fail "pipe is still imported"
log /tmp/drives2.out backup drives -d /tmp/drives
grep -q "^pipe [0-9]* ONLINE$" /tmp/drives2.out || fail "the exported drive is not importable"
note "pipe is exported and importable anywhere: the drive is safe to disconnect"
echo
echo "demo: every step passed; source and backup match; the drive is safely exported"
"##;
