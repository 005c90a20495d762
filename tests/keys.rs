//! Encryption keys against real OpenZFS (run by `cargo xtask test` in the
//! VM): a raw backup arrives without its key; `load_key` with the key in
//! each `keyformat` (raw, hex, a passphrase made by the `zfs` CLI) makes
//! it readable, with the source's files; a wrong key is `WrongKey` and
//! loads nothing; `backup load-key` does the same from stdin.

use std::io::Write;
use std::process::{Command, Stdio};

use zfs_core::{DatasetName, ErrorKind, KeyStatus, NvList};
use zfs_replicate::{execute, ExecuteOptions, Replication};
use zfs_replicate_tests::{contents, fill, summary, Pair};

fn pair() -> Pair {
    Pair::new("ktank", "kpipe", 256 << 20, 256 << 20)
}

fn key_status(p: &Pair, d: &DatasetName) -> Option<KeyStatus> {
    p.zfs.properties(d).unwrap().key_status
}

/// An encrypted filesystem made by the `zfs` CLI with a passphrase.
fn create_with_passphrase(fs: &DatasetName, passphrase: &str) {
    let mut child = Command::new("zfs")
        .args([
            "create",
            "-o",
            "encryption=on",
            "-o",
            "keyformat=passphrase",
            "-o",
            "keylocation=prompt",
            fs.as_str(),
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{passphrase}").unwrap();
    assert!(child.wait().unwrap().success(), "zfs create {fs}");
}

/// Raw-replicates `src` (snapshot `s1`) to `dst` and checks it arrived
/// without its key.
fn raw_backup(p: &Pair, src: &DatasetName, dst: &DatasetName) {
    fill(src, 5, 2, 200_000);
    p.snap(src, "s1");
    let repl = Replication::new(src.clone(), dst.clone()).raw(true);
    execute(
        &p.zfs,
        &repl.plan(&p.zfs).unwrap(),
        &ExecuteOptions::default(),
    )
    .unwrap();
    assert_eq!(key_status(p, dst), Some(KeyStatus::Unavailable));
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn keys_load_in_each_format_and_a_wrong_one_loads_nothing() {
    let p = pair();
    let cases: [(&str, &[u8], &[u8]); 3] = [
        ("raw", &[0x42; 32], &[0x24; 32]),
        (
            "hex",
            b"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
            &[b'0'; 64],
        ),
        (
            "passphrase",
            b"correct horse battery\n",
            b"wrong horse battery",
        ),
    ];
    for (format, key, wrong) in cases {
        let src = p.src(format);
        match format {
            "passphrase" => create_with_passphrase(&src, "correct horse battery"),
            _ => {
                let (keyformat, wrapping): (u64, Vec<u8>) = if format == "raw" {
                    (1, key.to_vec())
                } else {
                    let hex = std::str::from_utf8(key).unwrap().trim_end();
                    let bytes = (0..32)
                        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                        .collect();
                    (2, bytes)
                };
                let props = NvList::new()
                    .with("encryption", 8u64)
                    .with("keyformat", keyformat)
                    .with("keylocation", "prompt");
                p.zfs
                    .create_encrypted_filesystem(&src, &props, &wrapping)
                    .unwrap();
            }
        }
        let dst = p.dst(format);
        raw_backup(&p, &src, &dst);

        // Wrong key: typed, nothing loaded.
        let e = p.zfs.load_key(&dst, wrong).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongKey, "{format}: {e}");
        assert_eq!(key_status(&p, &dst), Some(KeyStatus::Unavailable));
        // Checking the right one loads nothing either.
        p.zfs.check_key(&dst, key).unwrap();
        assert_eq!(key_status(&p, &dst), Some(KeyStatus::Unavailable));
        // Loading it makes the backup readable: the source's files.
        p.zfs.load_key(&dst, key).unwrap();
        assert_eq!(key_status(&p, &dst), Some(KeyStatus::Available));
        let e = p.zfs.load_key(&dst, key).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        assert_eq!(
            contents(&src.snapshot("s1").unwrap()),
            contents(&dst.snapshot("s1").unwrap()),
            "{format}"
        );
        p.zfs.unload_key(&dst).unwrap();
        assert_eq!(key_status(&p, &dst), Some(KeyStatus::Unavailable));
    }
    // Not an encryption root, and not encrypted: refused before the kernel.
    let plain = p.src("plain");
    p.create(&plain);
    let e = p.zfs.load_key(&plain, &[0; 32]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let child = p.src("raw/child");
    p.create(&child);
    let e = p.zfs.load_key(&child, &[0x42; 32]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("encryption root"), "{e}");
    summary("keys: raw, hex and passphrase keys load on raw backups; wrong keys load nothing");
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn backup_load_key_reads_the_key_from_stdin() {
    let p = pair();
    let src = p.src("vault");
    create_with_passphrase(&src, "a long enough passphrase");
    let dst = p.dst("vault");
    raw_backup(&p, &src, &dst);
    let backup = |stdin: &str| {
        let mut child = Command::new("backup")
            .args(["load-key", dst.as_str()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let o = backup("not the passphrase\n");
    assert_eq!(o.status.code(), Some(6), "{o:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("wrong key"), "{stderr}");
    assert_eq!(key_status(&p, &dst), Some(KeyStatus::Unavailable));
    let o = backup("a long enough passphrase\n");
    assert!(o.status.success(), "{o:?}");
    assert_eq!(key_status(&p, &dst), Some(KeyStatus::Available));
    assert_eq!(
        contents(&src.snapshot("s1").unwrap()),
        contents(&dst.snapshot("s1").unwrap())
    );
}
