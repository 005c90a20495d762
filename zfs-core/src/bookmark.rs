//! Bookmarks: the typed handle, batch creation (from a snapshot or another
//! bookmark), listing with GUID and createtxg, and batch destruction.
//!
//! A bookmark keeps a snapshot's position in history without its data, so an
//! incremental send can start from it after the snapshot is gone.
//!
//! ```no_run
//! use zfs_core::{SnapshotName, Zfs};
//!
//! let zfs = Zfs::open()?;
//! let snap: SnapshotName = "tank/home@monday".parse()?;
//! let mark = snap.bookmark("monday")?;
//! zfs.bookmark(&[(mark.clone(), snap.clone().into())])?;
//! for b in zfs.bookmarks(&snap.dataset())? {
//!     println!("{} guid={:#x}", b.name(), b.guid());
//! }
//! zfs.destroy_bookmarks(&[mark])?;
//! # Ok::<(), zfs_core::Error>(())
//! ```

use crate::error::{Error, ErrorKind, Result};
use crate::ffi;
use crate::name::AnyName;
use crate::name::{BookmarkName, DatasetName, SnapshotName};
use crate::nvlist::NvList;
use crate::Zfs;

/// A bookmark: its name, and the GUID and createtxg of the snapshot it marks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Bookmark {
    name: BookmarkName,
    guid: u64,
    createtxg: u64,
}

impl Bookmark {
    /// A bookmark with these facts (for test doubles and remote sides).
    pub fn new(name: BookmarkName, guid: u64, createtxg: u64) -> Self {
        Bookmark {
            name,
            guid,
            createtxg,
        }
    }

    pub fn name(&self) -> &BookmarkName {
        &self.name
    }
    /// The GUID of the snapshot this bookmark was made from.
    pub fn guid(&self) -> u64 {
        self.guid
    }
    /// The createtxg of the snapshot this bookmark was made from.
    pub fn createtxg(&self) -> u64 {
        self.createtxg
    }
}

/// A snapshot or a bookmark: the source of a bookmark, or the base of an
/// incremental send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SnapshotOrBookmark {
    Snapshot(SnapshotName),
    Bookmark(BookmarkName),
}

impl SnapshotOrBookmark {
    pub fn as_str(&self) -> &str {
        match self {
            SnapshotOrBookmark::Snapshot(s) => s.as_str(),
            SnapshotOrBookmark::Bookmark(b) => b.as_str(),
        }
    }

    /// The filesystem or volume it belongs to.
    pub fn dataset(&self) -> DatasetName {
        match self {
            SnapshotOrBookmark::Snapshot(s) => s.dataset(),
            SnapshotOrBookmark::Bookmark(b) => b.dataset(),
        }
    }
}

impl From<SnapshotName> for SnapshotOrBookmark {
    fn from(s: SnapshotName) -> Self {
        SnapshotOrBookmark::Snapshot(s)
    }
}

impl From<BookmarkName> for SnapshotOrBookmark {
    fn from(b: BookmarkName) -> Self {
        SnapshotOrBookmark::Bookmark(b)
    }
}

/// The name as a string.
#[cfg(feature = "serde")]
impl serde::Serialize for SnapshotOrBookmark {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A string with `#`: a bookmark name; otherwise a snapshot name. Validated.
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for SnapshotOrBookmark {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        fn parse(name: String) -> Result<SnapshotOrBookmark, crate::NameError> {
            if name.contains('#') {
                BookmarkName::new(name).map(SnapshotOrBookmark::Bookmark)
            } else {
                SnapshotName::new(name).map(SnapshotOrBookmark::Snapshot)
            }
        }
        deserializer.deserialize_str(crate::name::NameVisitor(
            "a valid snapshot or bookmark name",
            parse,
        ))
    }
}

fn guid_and_txg(op: &'static str, target: &str, props: &NvList) -> Result<(u64, u64)> {
    let get = |key: &str| {
        props
            .get_nvlist(key)
            .and_then(|v| v.get_u64("value"))
            .map_err(|e| Error::shape(op, target, e))
    };
    Ok((get("guid")?, get("createtxg")?))
}

impl Zfs {
    /// Creates bookmarks, each from a snapshot or an existing bookmark of the
    /// same filesystem; the batch is atomic. Names (and sources) in more than
    /// one pool are [`ErrorKind::CrossPool`], a source that is not an earlier
    /// snapshot or bookmark of the bookmark's filesystem
    /// [`ErrorKind::NotAncestor`]; nothing is created then.
    pub fn bookmark(&self, bookmarks: &[(BookmarkName, SnapshotOrBookmark)]) -> Result<()> {
        const OP: &str = "lzc_bookmark";
        let Some((first, _)) = bookmarks.first() else {
            return Ok(());
        };
        let pool = first.dataset().pool();
        for (mark, source) in bookmarks {
            let other = if mark.dataset().pool() != pool {
                Some(mark.as_str())
            } else if source.dataset().pool() != pool {
                Some(source.as_str())
            } else {
                None
            };
            if let Some(other) = other {
                return Err(Error::invalid(
                    OP,
                    other,
                    ErrorKind::CrossPool,
                    format!("is not in pool {pool} like {first}: a batch covers one pool"),
                ));
            }
        }
        let mut l = NvList::new();
        for (mark, source) in bookmarks {
            l.insert(mark.as_str(), source.as_str());
        }
        ffi::lzc_bookmark(&l).map_err(|(errno, list)| Error::from_batch(OP, errno, list))
    }

    /// The bookmarks of a filesystem or volume, oldest first (by createtxg).
    pub fn bookmarks(&self, dataset: &DatasetName) -> Result<Vec<Bookmark>> {
        const OP: &str = "lzc_get_bookmarks";
        let mut want = NvList::new();
        want.insert_flag("guid").insert_flag("createtxg");
        let list = ffi::lzc_get_bookmarks(&dataset.to_c_name(), &want)
            .map_err(|e| Error::from_errno(OP, dataset.as_str(), e))?;
        let mut out = Vec::with_capacity(list.len());
        for (short, props) in list.iter() {
            let crate::NvValue::NvList(props) = props else {
                return Err(Error::invalid(
                    OP,
                    dataset.as_str(),
                    ErrorKind::UnexpectedShape,
                    format!("entry {short:?} is not an nvlist"),
                ));
            };
            let name = dataset.bookmark(short)?;
            let (guid, createtxg) = guid_and_txg(OP, name.as_str(), props)?;
            out.push(Bookmark::new(name, guid, createtxg));
        }
        out.sort_by_key(|b| b.createtxg);
        Ok(out)
    }

    /// Looks up one bookmark.
    pub fn bookmark_info(&self, name: &BookmarkName) -> Result<Bookmark> {
        self.bookmarks(&name.dataset())?
            .into_iter()
            .find(|b| b.name == *name)
            .ok_or_else(|| {
                Error::from_errno(
                    "lzc_get_bookmarks",
                    name.as_str(),
                    crate::Errno(libc::ENOENT),
                )
            })
    }

    /// Destroys bookmarks (all in one pool). Missing bookmarks are not an error.
    pub fn destroy_bookmarks(&self, bookmarks: &[BookmarkName]) -> Result<()> {
        if bookmarks.is_empty() {
            return Ok(());
        }
        let mut l = NvList::new();
        for b in bookmarks {
            l.insert_flag(b.as_str());
        }
        ffi::lzc_destroy_bookmarks(&l)
            .map_err(|(errno, list)| Error::from_batch("lzc_destroy_bookmarks", errno, list))
    }
}
