//! Bounded, deterministic mutation tests on stable Rust, one per fuzz target:
//! the same properties as the cargo-fuzz targets (`fuzz/checks.rs`), over
//! the committed seeds (`fuzz/seeds/`) mutated by a fixed-seed xorshift
//! mutator. A few seconds in all; a failure prints the seed, iteration and
//! input (hex) so that it can be replayed and added as a regression seed.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};

use zfs_replicate_tests::Rng;

// Bounds single allocations within `checks::bounded_allocations` (the
// sidecar parser's property); elsewhere it only passes calls through.
#[global_allocator]
static ALLOC: checks::BoundedAlloc = checks::BoundedAlloc;

/// libFuzzer-like mutations: bit flips, random and "interesting" bytes and
/// words, insertions, deletions, truncation, copies within the input and
/// splices with another seed.
fn mutate(data: &mut Vec<u8>, other: &[u8], rng: &mut Rng, max_len: usize) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let at = rng.below(len);
                data[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                data[at] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let at = rng.below(len);
                data[at] = [0, 0xff, 0x7f, 0x80, b'/', b'@', b'#', b'%', b'-', b' '][rng.below(10)];
            }
            3 if len >= 8 => {
                let at = rng.below(len - 7);
                let v = [0, u64::MAX, 1 << 24, 1 << 31, 1 << 32, rng.next_u64()][rng.below(6)];
                data[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            4 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(8);
                for _ in 0..n {
                    data.insert(at, rng.next_u64() as u8);
                }
            }
            5 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                data.drain(at..at + n);
            }
            6 => data.truncate(rng.below(len + 1)),
            7 if len > 1 => {
                let from = rng.below(len);
                let to = rng.below(len);
                let n = rng.below((len - from).min(len - to).min(64));
                data.copy_within(from..from + n, to);
            }
            _ if !other.is_empty() => {
                let at = rng.below(len + 1);
                let from = rng.below(other.len());
                let n = rng.below(other.len() - from + 1).min(256);
                data.splice(at..at, other[from..from + n].iter().copied());
            }
            _ => {}
        }
    }
    data.truncate(max_len);
}

/// Runs `check` on every seed and on `iterations` mutants; a panic is
/// re-raised with the seed, iteration and input.
/// The inputs must reach both outcomes (accepted and refused), or the test
/// exercises too little.
fn run(
    name: &str,
    seed: u64,
    seeds: &[&[u8]],
    iterations: usize,
    max_len: usize,
    check: fn(&[u8]) -> bool,
) {
    let mut rng = Rng(seed);
    let replay = |i: usize, input: &[u8]| match catch_unwind(AssertUnwindSafe(|| check(input))) {
        Ok(accepted) => accepted,
        Err(_) => {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            panic!("{name}: property failed (seed {seed:#x}, iteration {i}); input: {hex}");
        }
    };
    let mut accepted = 0;
    for (i, s) in seeds.iter().enumerate() {
        accepted += usize::from(replay(i, s));
    }
    for i in 0..iterations {
        let mut data = seeds[rng.below(seeds.len())].to_vec();
        let other = seeds[rng.below(seeds.len())];
        for _ in 0..1 + rng.below(3) {
            mutate(&mut data, other, &mut rng, max_len);
        }
        accepted += usize::from(replay(i, &data));
    }
    let total = seeds.len() + iterations;
    println!("{name}: {total} inputs (seed {seed:#x}), {accepted} accepted");
    assert!(
        accepted > 0 && accepted < total,
        "{name}: {accepted} of {total} accepted"
    );
}

macro_rules! seeds {
    ($($path:literal),* $(,)?) => {
        &[$(include_bytes!(concat!("../fuzz/seeds/", $path)) as &[u8]),*]
    };
}

#[test]
fn mutated_streams_keep_the_verifier_properties() {
    // The synthetic seeds, and the real lzc_send stream of tests/fixtures.
    let mut streams: Vec<&[u8]> = seeds!(
        "stream_verify/synthetic-le",
        "stream_verify/synthetic-be",
        "stream_verify/compound-le",
        "stream_verify/compound-be",
    )
    .to_vec();
    streams.push(include_bytes!("fixtures/small.zstream"));
    run(
        "stream_verify",
        0x5eed_0001,
        &streams,
        2000,
        65536,
        checks::stream_verify,
    );
}

#[test]
fn mutated_resume_tokens_keep_the_parser_properties() {
    run(
        "resume_token",
        0x5eed_0002,
        seeds!(
            "resume_token/token-0",
            "resume_token/token-1",
            "resume_token/token-2",
            "resume_token/token-3",
            "resume_token/zlib-wrapped-1",
            "resume_token/zlib-wrapped-2",
            "resume_token/zlib-wrapped-3",
        ),
        3000,
        4096,
        checks::resume_token,
    );
}

#[test]
fn mutated_nvlists_keep_the_unpack_properties() {
    run(
        "nvlist_unpack",
        0x5eed_0003,
        seeds!(
            "nvlist_unpack/packed-0",
            "nvlist_unpack/packed-1",
            "nvlist_unpack/packed-2",
            "nvlist_unpack/packed-3",
            // Made libnvpair read past the heap under ASAN (fuzz/README.md);
            // now refused by the Rust check, see the test below.
            "../regressions/nvlist_unpack/crash-8995944de57cd0d8c6924b088358ffcad1c09cfb",
        ),
        5000,
        4096,
        checks::nvlist_unpack,
    );
}

/// The fuzzer's libnvpair heap over-read (fuzz/README.md): `NvList::unpack`
/// refuses it in Rust with EINVAL before libnvpair sees it (libnvpair, after
/// reading past its buffer, returned EFAULT).
#[test]
fn libnvpair_over_read_input_is_refused_before_libnvpair() {
    let crash = include_bytes!(
        "../fuzz/regressions/nvlist_unpack/crash-8995944de57cd0d8c6924b088358ffcad1c09cfb"
    );
    let err = zfs_core::NvList::unpack(crash).unwrap_err();
    assert_eq!(err.operation(), Some("nvlist_unpack"));
    assert_eq!(err.errno(), Some(zfs_core::Errno(libc::EINVAL)), "{err}");
    assert_eq!(err.kind(), zfs_core::ErrorKind::InvalidArgument);
    assert!(matches!(
        zfs_core::nvlist::check_packed(crash),
        Err(zfs_core::nvlist::NvListError::Malformed {
            reason: "string not NUL-terminated inside its pair",
            ..
        })
    ));
}

#[test]
fn mutated_names_keep_the_parser_properties() {
    run(
        "names",
        0x5eed_0004,
        seeds!(
            "names/name-0",
            "names/name-1",
            "names/name-2",
            "names/name-3",
            "names/name-4",
            "names/name-5",
            "names/name-6",
            "names/name-7",
            "names/name-8",
            "names/name-9",
            "names/name-10",
        ),
        20000,
        512,
        checks::names,
    );
}

#[test]
fn mutated_wire_frames_keep_the_reader_properties() {
    run(
        "wire_frame",
        0x5eed_0005,
        seeds!(
            "wire_frame/session",
            "wire_frame/small-data",
            "wire_frame/refuse-truncated",
            "wire_frame/hello",
            "wire_frame/welcome",
        ),
        20000,
        4096,
        checks::wire_frame,
    );
}

#[test]
fn mutated_sidecars_keep_the_parser_properties() {
    run(
        "zpar_parse",
        0x5eed_0006,
        seeds!(
            "zpar_parse/small-512",
            "zpar_parse/two-spans",
            "zpar_parse/header-only",
        ),
        5000,
        65536,
        checks::zpar_parse,
    );
}

/// The sidecar seeds parse as made (every copy good), the counting
/// allocator is in place, and a header whose geometry asks for the largest
/// tables allocates nothing of their size.
#[test]
fn sidecar_seeds_parse_whole_and_a_huge_geometry_allocates_little() {
    use zfs_replicate::parity::fuzzing::{parse_sidecar, seal};

    let (_, largest) = checks::bounded_allocations(10, || vec![0u8; 1000]);
    assert!(checks::bounded_alloc_installed() && largest >= 1000);

    let small = include_bytes!("../fuzz/seeds/zpar_parse/small-512");
    let p = parse_sidecar(small);
    let g = p.geometry.unwrap();
    assert_eq!((g.block, g.level_bp, g.words, g.len), (512, 500, 1, 52752));
    assert_eq!((g.spans, g.sidecar_len), (1, small.len() as u64));
    assert_eq!(p.header_from, Some(0));
    assert!(p
        .header_copies
        .iter()
        .all(|c| c.as_ref().unwrap().encoded.is_some()));
    assert_eq!(p.spans.len(), 1);
    assert_eq!(p.next_record_end, None);
    assert!(p.spans[0].tables.iter().all(|t| t.encoded.is_some()));

    let two = include_bytes!("../fuzz/seeds/zpar_parse/two-spans");
    let p = parse_sidecar(two);
    let g = p.geometry.unwrap();
    assert_eq!((g.level_bp, g.words, g.spans), (100, 1, 2));
    assert_eq!(p.spans.len(), 2);
    assert!(!p.spans[0].tail_reserve && p.spans[1].tail_reserve);
    assert!(p
        .spans
        .iter()
        .all(|s| s.tables.iter().all(|t| t.encoded.is_some())));

    // The first header alone: the second copy and the records lie beyond.
    let header = include_bytes!("../fuzz/seeds/zpar_parse/header-only");
    let p = parse_sidecar(header);
    assert_eq!(p.header_from, Some(0));
    assert!(p.header_copies[1].is_none() && p.spans.is_empty());
    assert_eq!(p.next_record_end, Some(small.len() as u64 - 4096));

    // 4096 words of 1008 blocks at 1% and 512-byte blocks over 1 PiB (the
    // most a header may name within the 1 GiB memory cap): a table of
    // about 4.2 million digests (66 MiB) per span, in 64 KiB of input.
    let mut huge = header.to_vec();
    huge[12..16].copy_from_slice(&512u32.to_le_bytes());
    huge[16..24].copy_from_slice(&(1u64 << 50).to_le_bytes());
    huge[24..26].copy_from_slice(&100u16.to_le_bytes());
    huge[26..28].copy_from_slice(&4096u16.to_le_bytes());
    huge.resize(64 << 10, 0x5a);
    seal(&mut huge, true);
    let (p, largest) = checks::bounded_allocations(huge.len() + 4096, || parse_sidecar(&huge));
    let g = p.geometry.expect("the sealed header parses");
    assert_eq!((g.words, g.span_blocks), (4096, 4096 * 1008));
    assert!(p.spans.is_empty() && p.next_record_end.unwrap() > 1 << 26);
    assert!(largest <= huge.len(), "{largest}");
    assert!(checks::zpar_parse(&huge));
}

#[test]
fn mutated_labels_keep_the_parser_properties() {
    run(
        "vdev_label",
        0x5eed_0007,
        seeds!(
            "vdev_label/pool-le",
            "vdev_label/pool-be",
            "vdev_label/spare-le",
            "vdev_label/every-type-be",
        ),
        5000,
        16384,
        checks::vdev_label,
    );
}

/// The label seeds parse as they are, and the XDR lists that take the most
/// memory per input byte (empty strings in a `string_array`, empty lists in
/// an `nvlist_array`, many short names) allocate within the fuzz bound:
/// [`checks::LABEL_FACTOR`] times the input plus [`checks::LABEL_SLACK`].
#[test]
fn label_seeds_parse_and_dense_lists_allocate_within_the_bound() {
    use zfs_core::pool::{parse_label, PoolState};
    use zfs_core::{NvList, NvValue};

    let (_, largest) = checks::bounded_allocations(10, || vec![0u8; 1000]);
    assert!(checks::bounded_alloc_installed() && largest >= 1000);

    let seed = include_bytes!("../fuzz/seeds/vdev_label/pool-be");
    let l = parse_label(seed, checks::LABEL_OFFSET).unwrap();
    assert_eq!(
        (l.pool_name(), l.txg(), l.big_endian()),
        (Some("backup"), 42, true)
    );
    let seed = include_bytes!("../fuzz/seeds/vdev_label/spare-le");
    let l = parse_label(seed, checks::LABEL_OFFSET).unwrap();
    assert_eq!(
        (l.state(), l.txg(), l.pool_name()),
        (PoolState::Spare, 0, None)
    );

    let n = 30_000;
    let strings = NvList::new().with("s", NvValue::StringArray(vec![String::new(); n]));
    let lists = NvList::new().with("l", NvValue::NvListArray(vec![NvList::new(); n]));
    let mut names = NvList::new();
    for i in 0..n {
        names.insert_flag(format!("{i:x}"));
    }
    for (what, list) in [("strings", strings), ("lists", lists), ("names", names)] {
        let packed = list.pack_xdr().unwrap();
        let len = packed.len();
        let bound = checks::LABEL_FACTOR * len + checks::LABEL_SLACK;
        let (r, largest) = checks::bounded_allocations(bound, || NvList::unpack_xdr(&packed));
        assert_eq!(r.unwrap().0, list);
        println!(
            "{what}: {len} bytes, largest allocation {largest} ({:.1}x)",
            largest as f64 / len as f64
        );
        assert!(largest <= bound, "{what}: {largest} > {bound}");
        // As a label: no guid or state, so refused, but the properties hold.
        let mut b = packed;
        b.resize(len + 40, 0);
        assert!(!checks::vdev_label(&b));
    }
}

/// What a `vdev_label` corpus reaches (printed): inputs that parse as
/// labels as they are and once sealed, and that decode as XDR lists; each
/// input also passes the target's properties. The committed seeds (each a
/// sealed label) by default, a grown corpus with `VDEV_LABEL_CORPUS=dir`.
#[test]
fn vdev_label_corpus_summary() {
    use zfs_core::pool::label_fuzzing::seal;
    use zfs_core::pool::parse_label;

    let seeds = std::env::var_os("VDEV_LABEL_CORPUS").is_none();
    let dir = std::env::var_os("VDEV_LABEL_CORPUS").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/vdev_label"),
        std::path::PathBuf::from,
    );
    let (mut n, mut as_is, mut sealed, mut xdr) = (0, 0, 0, 0);
    let mut errors = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        checks::vdev_label(&data);
        n += 1;
        as_is += usize::from(parse_label(&data, checks::LABEL_OFFSET).is_ok());
        xdr += usize::from(zfs_core::NvList::unpack_xdr(&data).is_ok());
        let mut s = data.clone();
        seal(&mut s, checks::LABEL_OFFSET, false);
        match parse_label(&s, checks::LABEL_OFFSET) {
            Ok(_) => sealed += 1,
            Err(e) => {
                let e = e.to_string();
                let kind = e.split(": ").skip(1).collect::<Vec<_>>().join(": ");
                let kind = kind.split(" at byte").next().unwrap_or("").to_owned();
                *errors.entry(kind).or_insert(0) += 1;
            }
        }
    }
    println!(
        "{n} inputs: {as_is} labels as they are, {sealed} sealed (little-endian), {xdr} XDR lists"
    );
    if seeds {
        assert!(n >= 4, "the seeds are there");
        assert_eq!(as_is, n, "every seed is a valid sealed label");
    }
    for (e, count) in errors {
        println!("{count:6} {e}");
    }
}
