//! Round trips through postcard of every type with the `serde` feature, and
//! refusals of invalid or hostile input. (Errors: `error/wire.rs`.)

use std::fmt::Debug;

use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};

use crate::name::NameKind;
use crate::nvlist::{NvValue, MAX_SERIALIZED_LEN};
use crate::{
    BatchFailure, Bookmark, BookmarkName, DatasetName, Encryption, Errno, ErrorKind, KeyStatus,
    NvList, PoolName, Properties, SendFlags, SendOptions, Snapshot, SnapshotName,
    SnapshotOrBookmark,
};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) -> T {
    let bytes = postcard::to_stdvec(value).unwrap();
    let back: T = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(&back, value);
    back
}

/// Decodes `value` (of another type, such as a bare string) as `T`.
fn decode<T: DeserializeOwned>(value: &impl Serialize) -> Result<T, postcard::Error> {
    postcard::from_bytes(&postcard::to_stdvec(value).unwrap())
}

/// The message of decoding `s` as `T` (postcard's errors carry none, so
/// through serde's own string deserializer).
fn decode_message<T: DeserializeOwned>(s: &str) -> String {
    use serde::de::value::{Error, StrDeserializer};
    use serde::de::IntoDeserializer;
    let d: StrDeserializer<'_, Error> = s.into_deserializer();
    match T::deserialize(d) {
        Ok(_) => panic!("{s:?} decoded"),
        Err(e) => e.to_string(),
    }
}

fn snap(s: &str) -> SnapshotName {
    SnapshotName::new(s).unwrap()
}

#[test]
fn names_round_trip_as_their_string() {
    round_trip(&PoolName::new("tank").unwrap());
    round_trip(&DatasetName::new("tank/my docs").unwrap());
    round_trip(&snap("tank/a@s 1"));
    round_trip(&BookmarkName::new("tank/a#m").unwrap());
    round_trip(&SnapshotOrBookmark::from(snap("tank/a@s")));
    round_trip(&SnapshotOrBookmark::from(
        BookmarkName::new("tank/a#m").unwrap(),
    ));
    round_trip(&NameKind::Bookmark);
    // The encoding is the string's: a postcard string is length + bytes.
    let bytes = postcard::to_stdvec(&DatasetName::new("tank/a").unwrap()).unwrap();
    assert_eq!(bytes, postcard::to_stdvec("tank/a").unwrap());
}

#[test]
fn invalid_names_are_refused_with_the_validation_message() {
    assert!(decode::<DatasetName>(&"tank//a").is_err());
    assert!(decode::<PoolName>(&"tank/a").is_err());
    assert!(decode::<SnapshotName>(&"tank/a").is_err());
    assert!(decode::<BookmarkName>(&"tank/a@s").is_err());
    assert!(decode::<SnapshotOrBookmark>(&"tank/a").is_err());
    assert!(decode::<SnapshotOrBookmark>(&"tank/a@s#m").is_err());
    assert!(decode::<DatasetName>(&"x".repeat(300)).is_err());
    assert_eq!(
        decode_message::<DatasetName>("tank//a"),
        DatasetName::new("tank//a").unwrap_err().to_string()
    );
    assert_eq!(
        decode_message::<SnapshotOrBookmark>("tank/a"),
        SnapshotName::new("tank/a").unwrap_err().to_string()
    );
    assert_eq!(
        decode_message::<SnapshotOrBookmark>("tank/a#"),
        BookmarkName::new("tank/a#").unwrap_err().to_string()
    );
    // Not a string at all.
    assert!(decode::<DatasetName>(&7u32).is_err());
}

#[test]
fn snapshots_bookmarks_and_send_options_round_trip() {
    round_trip(&Snapshot::new(snap("tank/a@s"), u64::MAX, 42));
    round_trip(&Bookmark::new(
        BookmarkName::new("tank/a#m").unwrap(),
        7,
        u64::MAX,
    ));
    round_trip(&SendOptions::new());
    let opts = SendOptions::new()
        .from(BookmarkName::new("tank/a#m").unwrap())
        .flags(SendFlags::RAW | SendFlags::LARGE_BLOCK)
        .resume_at(12, 1 << 40);
    round_trip(&opts);
    // Compact: a few bytes besides the name.
    let bytes = postcard::to_stdvec(&opts).unwrap();
    assert!(bytes.len() < "tank/a#m".len() + 16, "{}", bytes.len());
}

#[test]
fn send_flags_are_bits_and_unknown_bits_are_refused() {
    round_trip(&SendFlags::empty());
    round_trip(&SendFlags::all());
    assert_eq!(
        postcard::to_stdvec(&SendFlags::COMPRESS).unwrap(),
        postcard::to_stdvec(&4u32).unwrap()
    );
    assert!(decode::<SendFlags>(&32u32).is_err());
    assert!(decode::<SendFlags>(&(SendFlags::RAW.bits() | 1 << 31)).is_err());
    // Inside SendOptions too: flags follow the (absent) base.
    let mut bytes = postcard::to_stdvec(&SendOptions::new()).unwrap();
    assert_eq!(bytes, [0, 0, 0]); // from: None, flags: 0, resume: None
    bytes[1] = 0x40;
    assert!(postcard::from_bytes::<SendOptions>(&bytes).is_err());
}

#[test]
fn small_enums_and_batch_failures_round_trip() {
    for e in [
        Encryption::Off,
        Encryption::Aes256Gcm,
        Encryption::Other(99),
    ] {
        round_trip(&e);
    }
    for k in [KeyStatus::None, KeyStatus::Available, KeyStatus::Other(9)] {
        round_trip(&k);
    }
    // The kernel's numbers; a known number is never `Other`.
    assert_eq!(postcard::to_stdvec(&Encryption::Off).unwrap(), [2]);
    assert_eq!(
        decode::<Encryption>(&Encryption::Other(8)).unwrap(),
        Encryption::Aes256Gcm
    );
    assert_eq!(
        decode::<KeyStatus>(&KeyStatus::Other(1)).unwrap(),
        KeyStatus::Unavailable
    );
    for k in [ErrorKind::NotFound, ErrorKind::Busy, ErrorKind::Other] {
        round_trip(&k);
    }
    round_trip(&Errno(libc::EBUSY));
    round_trip(&Errno::RESUME_EXISTS);
    round_trip(&BatchFailure {
        name: "tank/a@s".into(),
        errno: Errno(libc::EEXIST),
        kind: ErrorKind::AlreadyExists,
    });
}

fn sample_list() -> NvList {
    let mut inner = NvList::new();
    inner.insert("value", 7u64).insert("source", "local");
    let mut l = NvList::new();
    l.insert("nested", inner)
        .insert("s", "a name with spaces")
        .insert_flag("flag")
        .insert("u64s", vec![1u64, 2]);
    l
}

#[test]
fn nvlists_round_trip_as_packed_bytes() {
    for l in [NvList::new(), sample_list()] {
        round_trip(&l);
        let bytes = postcard::to_stdvec(&l).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&l.pack().unwrap()).unwrap());
    }
}

#[test]
fn hostile_nvlist_bytes_are_refused_without_panic() {
    let packed = sample_list().pack().unwrap();
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 64],
        packed[..packed.len() / 2].to_vec(),
        [&packed[..], &[0u8; 8]].concat(),
    ];
    for i in 0..packed.len() {
        for bit in [0x01u8, 0x80] {
            let mut m = packed.clone();
            m[i] ^= bit;
            cases.push(m);
        }
    }
    for bytes in &cases {
        let wire = postcard::to_stdvec(&serde_bytes_like(bytes)).unwrap();
        if let Ok(l) = postcard::from_bytes::<NvList>(&wire) {
            // Whatever is accepted is a real list.
            assert_eq!(NvList::unpack(&l.pack().unwrap()).unwrap(), l);
        }
    }
    // A length prefix larger than the input: refused, nothing allocated.
    let mut wire = Vec::new();
    let mut n = u64::MAX >> 1;
    while n >= 0x80 {
        wire.push((n as u8) | 0x80);
        n >>= 7;
    }
    wire.push(n as u8);
    assert!(postcard::from_bytes::<NvList>(&wire).is_err());
}

/// Bytes encoded as serde bytes (postcard: varint length, then the bytes).
fn serde_bytes_like(bytes: &[u8]) -> impl Serialize + '_ {
    struct B<'a>(&'a [u8]);
    impl Serialize for B<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    B(bytes)
}

#[test]
fn nvlists_over_the_cap_are_refused() {
    let over = vec![0u8; MAX_SERIALIZED_LEN + 1];
    let wire = postcard::to_stdvec(&serde_bytes_like(&over)).unwrap();
    assert!(postcard::from_bytes::<NvList>(&wire).is_err());
    // Through a sequence (self-describing formats): refused at the cap too.
    use serde::de::value::{Error, SeqDeserializer};
    let seq: SeqDeserializer<_, Error> =
        SeqDeserializer::new(std::iter::repeat_n(0u8, MAX_SERIALIZED_LEN + 1));
    let err = <NvList as serde::Deserialize>::deserialize(seq).unwrap_err();
    assert!(err.to_string().contains("invalid length"), "{err}");
    let packed = sample_list().pack().unwrap();
    let seq: SeqDeserializer<_, Error> = SeqDeserializer::new(packed.into_iter());
    assert_eq!(
        <NvList as serde::Deserialize>::deserialize(seq).unwrap(),
        sample_list()
    );
}

fn props_list() -> NvList {
    let prop = |v: NvValue| {
        let mut p = NvList::new();
        p.insert("value", v).insert("source", "tank/a");
        p
    };
    let mut raw = NvList::new();
    raw.insert("written", prop(NvValue::U64(4096)))
        .insert("encryption", prop(NvValue::U64(8)))
        .insert("keystatus", prop(NvValue::U64(2)))
        .insert("readonly", prop(NvValue::U64(1)))
        .insert("mountpoint", prop(NvValue::String("/mnt/a b".into())))
        .insert("receive_resume_token", prop(NvValue::String("1-ab".into())));
    raw
}

#[test]
fn properties_cross_as_raw_and_are_rebuilt() {
    let props = Properties::from_nvlist("tank/a", props_list()).unwrap();
    assert_eq!(props.encryption, Encryption::Aes256Gcm);
    assert_eq!(props.key_status, Some(KeyStatus::Available));
    let back = round_trip(&props);
    assert_eq!(back.written, Some(4096));
    assert_eq!(back.mountpoint.as_deref(), Some("/mnt/a b"));
    assert_eq!(back.source("written"), Some("tank/a"));
    // Only raw crosses: the same bytes as the list alone.
    assert_eq!(
        postcard::to_stdvec(&props).unwrap(),
        postcard::to_stdvec(&props.raw).unwrap()
    );
    // A raw list whose typed fields are wrong is refused.
    let mut bad = props_list();
    let mut p = NvList::new();
    p.insert("value", "lots");
    bad.insert("used", p);
    assert!(Properties::from_nvlist("tank/a", bad.clone()).is_err());
    assert!(decode::<Properties>(&bad).is_err());
}

proptest! {
    #[test]
    fn any_string_decodes_as_a_name_exactly_when_it_parses(s in ".{0,64}|[a-z/@#]{0,12}") {
        prop_assert_eq!(decode::<DatasetName>(&s).ok(), DatasetName::new(s.as_str()).ok());
        prop_assert_eq!(decode::<SnapshotName>(&s).ok(), SnapshotName::new(s.as_str()).ok());
        prop_assert_eq!(decode::<BookmarkName>(&s).ok(), BookmarkName::new(s.as_str()).ok());
        prop_assert_eq!(decode::<PoolName>(&s).ok(), PoolName::new(s.as_str()).ok());
    }

    #[test]
    fn any_bytes_never_panic_as_any_type(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        let _ = postcard::from_bytes::<SendOptions>(&bytes);
        let _ = postcard::from_bytes::<Snapshot>(&bytes);
        let _ = postcard::from_bytes::<Bookmark>(&bytes);
        let _ = postcard::from_bytes::<NvList>(&bytes);
        let _ = postcard::from_bytes::<Properties>(&bytes);
        let _ = postcard::from_bytes::<crate::Error>(&bytes);
        let _ = postcard::from_bytes::<Vec<BatchFailure>>(&bytes);
    }

    #[test]
    fn send_options_round_trip(
        snap_name in "t[a-z]{0,7}(/[a-z]{1,8}){0,2}[@#][a-z]{1,8}",
        bits in any::<u32>(),
        resume in proptest::option::of((any::<u64>(), any::<u64>())),
    ) {
        let mut opts = SendOptions::new().flags(SendFlags::from_bits_truncate(bits));
        if let Some((object, offset)) = resume {
            opts = opts.resume_at(object, offset);
        }
        let base: SnapshotOrBookmark = match snap_name.contains('#') {
            true => BookmarkName::new(snap_name).unwrap().into(),
            false => SnapshotName::new(snap_name).unwrap().into(),
        };
        round_trip(&opts.from(base));
    }
}

#[test]
fn every_nvlist_type_name_is_known_for_decoding() {
    let values = [
        NvValue::Boolean,
        NvValue::BoolValue(true),
        NvValue::Byte(1),
        NvValue::I8(1),
        NvValue::U8(1),
        NvValue::I16(1),
        NvValue::U16(1),
        NvValue::I32(1),
        NvValue::U32(1),
        NvValue::I64(1),
        NvValue::U64(1),
        NvValue::Double(1.0),
        NvValue::HrTime(1),
        NvValue::String(String::new()),
        NvValue::NvList(NvList::new()),
        NvValue::BoolArray(vec![]),
        NvValue::ByteArray(vec![]),
        NvValue::I32Array(vec![]),
        NvValue::U32Array(vec![]),
        NvValue::I64Array(vec![]),
        NvValue::U64Array(vec![]),
        NvValue::StringArray(vec![]),
        NvValue::NvListArray(vec![]),
    ];
    for v in &values {
        let name = v.type_name();
        assert_eq!(crate::nvlist::static_type_name(name), Some(name));
    }
    assert_eq!(crate::nvlist::static_type_name("quaternion"), None);
}
