//! The `serde` feature's output shape: [`Plan`] (by hand, since its
//! [`Replication`](crate::Replication) is not data), and the field helpers
//! the derives in `plan.rs`, `execute.rs` and `lib.rs` name.
//!
//! Shaped for a JSON reader: names are strings, flags are lists of words,
//! property lists are objects, enums carry a `"kind"` tag.

use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};
use zfs_core::{DatasetName, NvList, NvValue, ResumeToken, SendFlags, SnapshotName};

use crate::execute::Transfer;
use crate::plan::Plan;

/// The request's switches, the steps, and what a reader would otherwise
/// compute: the total estimate and whether there is nothing to send.
impl Serialize for Plan {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = &self.replication;
        let mut s = serializer.serialize_struct("Plan", 10)?;
        s.serialize_field("source", &r.source)?;
        s.serialize_field("target", &r.target)?;
        s.serialize_field("recursive", &r.recursive)?;
        s.serialize_field("raw", &r.raw)?;
        s.serialize_field("rollback", &r.rollback)?;
        s.serialize_field("destroy_removed", &r.destroy_removed)?;
        s.serialize_field("steps", &self.steps)?;
        s.serialize_field("removed_on_source", &self.removed_on_source)?;
        s.serialize_field("estimated_bytes", &self.estimated_bytes())?;
        s.serialize_field("up_to_date", &self.is_up_to_date())?;
        s.end()
    }
}

/// [`SendFlags`] as the lowercase names of the flags set
/// (`["embed_data", "large_block", "compress"]`).
pub(crate) fn flag_names<S: Serializer>(flags: &SendFlags, s: S) -> Result<S::Ok, S::Error> {
    let names: Vec<String> = flags
        .iter_names()
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect();
    names.serialize(s)
}

/// An nvlist as an object: each value as its JSON counterpart, a bare name
/// (`DATA_TYPE_BOOLEAN`) as `true`.
pub(crate) fn nvlist_map<S: Serializer>(list: &NvList, s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(None)?;
    for (name, value) in list.iter() {
        map.serialize_entry(name, &Value(value))?;
    }
    map.end()
}

/// `-o`/`-x` entries as `{"set": {name: value}, "exclude": [name]}`, the
/// values as the kernel takes them (`readonly` 1 is on, `canmount` 2 is
/// noauto, user properties are text).
pub(crate) fn overrides<S: Serializer>(list: &NvList, s: S) -> Result<S::Ok, S::Error> {
    struct Set<'a>(&'a NvList);
    impl Serialize for Set<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(None)?;
            for (name, value) in self.0.iter() {
                if *value != NvValue::Boolean {
                    map.serialize_entry(name, &Value(value))?;
                }
            }
            map.end()
        }
    }
    let exclude: Vec<&str> = list
        .iter()
        .filter(|(_, v)| **v == NvValue::Boolean)
        .map(|(name, _)| name)
        .collect();
    let mut out = s.serialize_struct("Overrides", 2)?;
    out.serialize_field("set", &Set(list))?;
    out.serialize_field("exclude", &exclude)?;
    out.end()
}

/// A decoded resume token by its fields (its nvlist is left out; the
/// token's text is [`PendingResume::raw`](crate::plan::PendingResume::raw)).
pub(crate) fn resume_token<S: Serializer>(
    token: &Option<ResumeToken>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let Some(t) = token else {
        return s.serialize_none();
    };
    struct Flags(SendFlags);
    impl Serialize for Flags {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            flag_names(&self.0, s)
        }
    }
    let mut out = s.serialize_struct("ResumeToken", 8)?;
    out.serialize_field("to_guid", &t.to_guid)?;
    out.serialize_field("to_name", &t.to_name)?;
    out.serialize_field("from_guid", &t.from_guid)?;
    out.serialize_field("object", &t.object)?;
    out.serialize_field("offset", &t.offset)?;
    out.serialize_field("bytes", &t.bytes)?;
    out.serialize_field("flags", &Flags(t.flags))?;
    out.serialize_field("redacted", &t.redacted)?;
    out.end()
}

/// A report's transfers as one flat list, in order:
/// `[{"target": …, "snapshot": …, "bytes": …}]` (the snapshot is the
/// source's).
pub(crate) fn transfers<S: Serializer>(
    per_target: &[(DatasetName, Vec<Transfer>)],
    s: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Flat<'a> {
        target: &'a DatasetName,
        snapshot: &'a SnapshotName,
        bytes: u64,
    }
    let count = per_target.iter().map(|(_, t)| t.len()).sum();
    let mut seq = s.serialize_seq(Some(count))?;
    for (target, list) in per_target {
        for t in list {
            seq.serialize_element(&Flat {
                target,
                snapshot: &t.snapshot,
                bytes: t.bytes,
            })?;
        }
    }
    seq.end()
}

/// One nvlist value, as JSON has it.
struct Value<'a>(&'a NvValue);

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            NvValue::Boolean => s.serialize_bool(true),
            NvValue::BoolValue(v) => s.serialize_bool(*v),
            NvValue::Byte(v) | NvValue::U8(v) => s.serialize_u8(*v),
            NvValue::I8(v) => s.serialize_i8(*v),
            NvValue::I16(v) => s.serialize_i16(*v),
            NvValue::U16(v) => s.serialize_u16(*v),
            NvValue::I32(v) => s.serialize_i32(*v),
            NvValue::U32(v) => s.serialize_u32(*v),
            NvValue::I64(v) | NvValue::HrTime(v) => s.serialize_i64(*v),
            NvValue::U64(v) => s.serialize_u64(*v),
            NvValue::Double(v) => s.serialize_f64(*v),
            NvValue::String(v) => s.serialize_str(v),
            NvValue::NvList(l) => nvlist_map(l, s),
            NvValue::BoolArray(v) => v.serialize(s),
            NvValue::ByteArray(v) => v.serialize(s),
            NvValue::I32Array(v) => v.serialize(s),
            NvValue::U32Array(v) => v.serialize(s),
            NvValue::I64Array(v) => v.serialize(s),
            NvValue::U64Array(v) => v.serialize(s),
            NvValue::StringArray(v) => v.serialize(s),
            NvValue::NvListArray(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for l in v {
                    seq.serialize_element(&Map(l))?;
                }
                seq.end()
            }
            // A type a later zfs-core adds: no JSON form chosen yet.
            _ => s.serialize_none(),
        }
    }
}

/// An nvlist as an object (see [`nvlist_map`]).
struct Map<'a>(&'a NvList);

impl Serialize for Map<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        nvlist_map(self.0, s)
    }
}
