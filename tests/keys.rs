//! Encryption keys against real OpenZFS (run by `cargo xtask test` in the
//! VM): a raw backup arrives without its key; `load_key` with the key in
//! each `keyformat` (raw, hex, a passphrase made by the `zfs` CLI) makes
//! it readable, with the source's files; a wrong key is `WrongKey` and
//! loads nothing; `backup load-key` does the same from stdin. Keys change
//! (`change_key`, `inherit_key`); a raw recursive replication keeps the
//! source's encryption roots; a non-raw one goes into an encrypted parent,
//! full and incremental.

use std::io::Write;
use std::process::{Command, Stdio};

use zfs_core::{DatasetName, ErrorKind, KeyFormat, KeyStatus, NvList, SendFlags};
use zfs_replicate::{execute, Divergence, ExecuteOptions, Replication};
use zfs_replicate_tests::{contents, fill, mount, summary, unmount, write_file, Pair};

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
    p.replicate(&Replication::new(src.clone(), dst.clone()).raw(true));
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

const HEX_KEY: &[u8] = b"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// An encryption root with a hex key, made by the library.
fn create_with_hex_key(p: &Pair, fs: &DatasetName) {
    let props = NvList::new()
        .with("encryption", 8u64)
        .with("keyformat", 2u64)
        .with("keylocation", "prompt");
    let hex = std::str::from_utf8(HEX_KEY).unwrap();
    let wrapping: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    p.zfs
        .create_encrypted_filesystem(fs, &props, &wrapping)
        .unwrap();
}

fn encryption_root(p: &Pair, d: &DatasetName) -> Option<String> {
    p.zfs.properties(d).unwrap().encryption_root
}

#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn change_key_rewraps_and_inherit_key_joins_the_parent() {
    let p = pair();
    let fs = p.src("vault");
    create_with_passphrase(&fs, "the first passphrase");
    unmount(fs.as_str());
    fill(&fs, 1, 2, 50_000);
    let before = {
        let s = p.snap(&fs, "s1");
        contents(&s)
    };

    // A new passphrase: the old one no longer loads, the new one does.
    p.zfs
        .change_key(&fs, KeyFormat::Passphrase, b"the second passphrase\n")
        .unwrap();
    p.zfs.unload_key(&fs).unwrap();
    let e = p.zfs.load_key(&fs, b"the first passphrase").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey, "{e}");
    p.zfs.load_key(&fs, b"the second passphrase").unwrap();
    assert_eq!(p.zfs.key_format(&fs).unwrap(), Some(KeyFormat::Passphrase));

    // To a hex key; the data is the same.
    p.zfs.change_key(&fs, KeyFormat::Hex, HEX_KEY).unwrap();
    p.zfs.unload_key(&fs).unwrap();
    p.zfs.load_key(&fs, HEX_KEY).unwrap();
    assert_eq!(p.zfs.key_format(&fs).unwrap(), Some(KeyFormat::Hex));
    assert_eq!(contents(&fs.snapshot("s1").unwrap()), before);

    // A key that does not fit its format changes nothing.
    let e = p.zfs.change_key(&fs, KeyFormat::Raw, &[1; 31]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey, "{e}");
    let e = p
        .zfs
        .change_key(&fs, KeyFormat::Passphrase, b"short")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongKey, "{e}");
    assert_eq!(p.zfs.key_format(&fs).unwrap(), Some(KeyFormat::Hex));

    // Without the current key loaded: typed, nothing changed.
    p.zfs.unload_key(&fs).unwrap();
    let e = p.zfs.change_key(&fs, KeyFormat::Raw, &[7; 32]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::KeyNotLoaded, "{e}");
    p.zfs.load_key(&fs, HEX_KEY).unwrap();

    // A child with a key of its own joins its parent's key...
    let child = p.src("vault/child");
    let props = NvList::new()
        .with("encryption", 8u64)
        .with("keyformat", 1u64)
        .with("keylocation", "prompt");
    p.zfs
        .create_encrypted_filesystem(&child, &props, &[9; 32])
        .unwrap();
    assert_eq!(encryption_root(&p, &child).as_deref(), Some(child.as_str()));
    // Forcing it to use the parent's key without rewrapping is refused
    // while its key is loaded (the kernel would free a key in use), and
    // when its key is not wrapped as the parent's (raw, not hex): nothing
    // changes.
    let e = p.zfs.force_inherit_key(&child).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    p.zfs.unload_key(&child).unwrap();
    let e = p.zfs.force_inherit_key(&child).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(encryption_root(&p, &child).as_deref(), Some(child.as_str()));
    p.zfs.load_key(&child, &[9; 32]).unwrap();
    p.zfs.inherit_key(&child).unwrap();
    assert_eq!(encryption_root(&p, &child).as_deref(), Some(fs.as_str()));
    // ... and loads with it.
    p.zfs.unload_key(&fs).unwrap();
    assert_eq!(key_status(&p, &child), Some(KeyStatus::Unavailable));
    p.zfs.load_key(&fs, HEX_KEY).unwrap();
    assert_eq!(key_status(&p, &child), Some(KeyStatus::Available));
    // And back to a root of its own, without rewrapping: its key is now
    // wrapped with the parent's, so the parent's key loads it.
    let e = p.zfs.force_new_key(&child).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Busy, "{e}");
    p.zfs.unload_key(&fs).unwrap();
    p.zfs.force_new_key(&child).unwrap();
    assert_eq!(encryption_root(&p, &child).as_deref(), Some(child.as_str()));
    p.zfs.load_key(&child, HEX_KEY).unwrap();
    p.zfs.unload_key(&child).unwrap();
    p.zfs.load_key(&fs, HEX_KEY).unwrap();
    p.zfs.force_inherit_key(&child).unwrap();
    assert_eq!(encryption_root(&p, &child).as_deref(), Some(fs.as_str()));
    // It is no longer an encryption root; the parent of an unencrypted
    // dataset has no key to give.
    let e = p.zfs.inherit_key(&child).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = p.zfs.inherit_key(&fs).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let plain = p.src("plain");
    p.create(&plain);
    let e = p
        .zfs
        .change_key(&plain, KeyFormat::Raw, &[7; 32])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    summary("keys: change_key to a passphrase and to hex, inherit_key; refusals typed");
}

/// A raw recursive backup of a tree with two encryption roots: the target
/// has the same two (children that inherit their key on the source inherit
/// it on the target), so one load-key per root opens it, after the full
/// and after an incremental.
#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn raw_recursive_replication_keeps_the_encryption_roots() {
    let p = pair();
    let tree = p.src("tree");
    create_with_passphrase(&tree, "the tree passphrase");
    unmount(tree.as_str());
    let (a, c, b) = (p.src("tree/a"), p.src("tree/a/c"), p.src("tree/b"));
    p.create(&a);
    p.create(&c);
    create_with_hex_key(&p, &b);
    let all = [&tree, &a, &c, &b];
    for (i, d) in all.iter().enumerate() {
        fill(d, i as u64 + 1, 2, 100_000);
        p.snap(d, "s1");
    }
    let dst = p.dst("tree");
    let repl = Replication::new(tree.clone(), dst.clone())
        .recursive(true)
        .raw(true);
    p.replicate(&repl);
    let (da, dc, db) = (p.dst("tree/a"), p.dst("tree/a/c"), p.dst("tree/b"));
    let roots = |p: &Pair| [&dst, &da, &dc, &db].map(|d| encryption_root(p, d).unwrap_or_default());
    let want = [dst.as_str(), dst.as_str(), dst.as_str(), db.as_str()].map(String::from);
    assert_eq!(roots(&p), want);
    p.zfs.load_key(&dst, b"the tree passphrase").unwrap();
    assert_eq!(key_status(&p, &dc), Some(KeyStatus::Available));
    assert_eq!(key_status(&p, &db), Some(KeyStatus::Unavailable));
    p.zfs.load_key(&db, HEX_KEY).unwrap();
    for (s, d) in [(&tree, &dst), (&a, &da), (&c, &dc), (&b, &db)] {
        assert_eq!(
            contents(&s.snapshot("s1").unwrap()),
            contents(&d.snapshot("s1").unwrap()),
            "{d}"
        );
    }
    p.zfs.unload_key(&db).unwrap();
    p.zfs.unload_key(&dst).unwrap();

    // An incremental keeps them; the keys open the new snapshots.
    for (i, d) in all.iter().enumerate() {
        fill(d, i as u64 + 10, 1, 100_000);
        p.snap(d, "s2");
    }
    let plan = repl.plan(&p.zfs).unwrap();
    assert!(plan.divergences().is_empty(), "{plan}");
    execute(&p.zfs, &plan, &ExecuteOptions::default()).unwrap();
    assert_eq!(roots(&p), want);
    p.zfs.load_key(&dst, b"the tree passphrase").unwrap();
    p.zfs.load_key(&db, HEX_KEY).unwrap();
    for (s, d) in [(&tree, &dst), (&c, &dc), (&b, &db)] {
        assert_eq!(
            contents(&s.snapshot("s2").unwrap()),
            contents(&d.snapshot("s2").unwrap()),
            "{d}"
        );
    }
    summary("keys: a raw recursive backup keeps the source's two encryption roots, full and incremental");
}

/// Writes a file small enough to be stored in its block pointer (an
/// embedded block, which a non-raw stream may carry but an encrypted
/// dataset refuses).
fn write_tiny_file(fs: &DatasetName, name: &str) {
    let dir = mount(fs.as_str());
    std::fs::write(dir.join(name), b"tiny\n").unwrap();
    write_file(&dir.join(format!("{name}.big")), 3, 300_000);
    unmount(fs.as_str());
}

/// A non-raw backup of an unencrypted source under an encrypted parent:
/// the backup is encrypted with the parent's key, full and incremental;
/// without that key loaded the plan says so and nothing moves.
#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn non_raw_replication_into_an_encrypted_parent() {
    let p = pair();
    let vault = p.dst("vault");
    create_with_passphrase(&vault, "the vault passphrase");
    unmount(vault.as_str());
    let src = p.src("plain");
    p.create(&src);
    write_tiny_file(&src, "one");
    p.snap(&src, "s1");
    let dst = p.dst("vault/plain");
    let repl = Replication::new(src.clone(), dst.clone());
    let plan = repl.plan(&p.zfs).unwrap();
    assert!(
        !plan.steps[0].flags.contains(SendFlags::EMBED_DATA),
        "{:?}",
        plan.steps[0].flags
    );
    execute(&p.zfs, &plan, &ExecuteOptions::default()).unwrap();
    assert_eq!(encryption_root(&p, &dst).as_deref(), Some(vault.as_str()));
    assert_eq!(
        contents(&src.snapshot("s1").unwrap()),
        contents(&dst.snapshot("s1").unwrap())
    );

    write_tiny_file(&src, "two");
    p.snap(&src, "s2");
    p.replicate(&repl);
    assert_eq!(p.guids(&src), p.guids(&dst));
    assert_eq!(
        contents(&src.snapshot("s2").unwrap()),
        contents(&dst.snapshot("s2").unwrap())
    );

    // Without the key: a divergence naming the encryption root, and a
    // typed refusal from execute; nothing received.
    p.zfs.unload_key(&vault).unwrap();
    // Up to date, nothing to send: no key needed, nothing to say.
    let plan = repl.plan(&p.zfs).unwrap();
    assert!(plan.divergences().is_empty(), "{plan}");
    // A placeholder would be created in the locked vault (a raw stream
    // needs no key, the placeholder does): said in the plan.
    let deeper = p.dst("vault/deeper/raw");
    let plan = Replication::new(src.clone(), deeper)
        .raw(true)
        .create_parents(true)
        .plan(&p.zfs)
        .unwrap();
    assert_eq!(
        plan.divergences()[0].1,
        Divergence::KeyNotLoaded {
            encryption_root: vault.to_string()
        },
        "{plan}"
    );
    p.snap(&src, "s3");
    let plan = repl.plan(&p.zfs).unwrap();
    assert_eq!(
        plan.divergences(),
        vec![(
            dst.clone(),
            Divergence::KeyNotLoaded {
                encryption_root: vault.to_string()
            }
        )]
    );
    assert!(execute(&p.zfs, &plan, &ExecuteOptions::default()).is_err());
    assert_eq!(p.names(&dst), ["s1", "s2"]);
    // A new dataset under the vault: the same.
    let other = p.dst("vault/other");
    let plan = Replication::new(src.clone(), other).plan(&p.zfs).unwrap();
    assert_eq!(plan.divergences().len(), 1, "{plan}");
    p.zfs.load_key(&vault, b"the vault passphrase").unwrap();
    p.replicate(&repl);
    assert_eq!(p.guids(&src), p.guids(&dst));
    summary("keys: non-raw backups go into an encrypted parent, full and incremental; a missing key is a divergence");
}

/// A raw recursive backup that selects a child but not the encryption root
/// it inherits its key from: the child's target stays its own encryption
/// root (its parent on the target is a placeholder, not that root's copy)
/// and loads with the source root's key.
#[test]
#[ignore = "needs ZFS: run cargo xtask test"]
fn a_selected_child_without_its_encryption_root_keeps_its_own() {
    use zfs_replicate::DatasetFilter;
    let p = pair();
    let tree = p.src("sel");
    create_with_passphrase(&tree, "the sel passphrase");
    unmount(tree.as_str());
    let (x, y) = (p.src("sel/x"), p.src("sel/x/y"));
    p.create(&x);
    p.create(&y);
    fill(&y, 4, 1, 100_000);
    zfs_replicate_tests::set(y.as_str(), &[("backup:job", "off-site")]);
    for d in [&tree, &x, &y] {
        p.snap(d, "s1");
    }
    let dst = p.dst("sel");
    let repl = Replication::new(tree.clone(), dst.clone())
        .recursive(true)
        .raw(true)
        .create_parents(true)
        .filter(
            DatasetFilter::new()
                .only_property("backup:job", "off-site")
                .unwrap(),
        );
    let plan = repl.plan(&p.zfs).unwrap();
    assert_eq!(plan.steps.len(), 1, "{plan}");
    assert_eq!(plan.steps[0].inherit_key, None);
    execute(&p.zfs, &plan, &ExecuteOptions::default()).unwrap();
    let dy = p.dst("sel/x/y");
    assert_eq!(encryption_root(&p, &dy).as_deref(), Some(dy.as_str()));
    p.zfs.load_key(&dy, b"the sel passphrase").unwrap();
    assert_eq!(
        contents(&y.snapshot("s1").unwrap()),
        contents(&dy.snapshot("s1").unwrap())
    );
}
