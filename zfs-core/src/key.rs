//! Encryption keys: loading, checking, unloading and changing the key of
//! an encryption root, as `zfs load-key`, `zfs unload-key` and `zfs
//! change-key` do (`lzc_load_key`, `lzc_unload_key`, `lzc_change_key`).
//!
//! The key is given as the dataset's `keyformat` says: 32 raw bytes, 64
//! hex digits, or a passphrase (8 to 512 bytes), which is turned into the
//! wrapping key with PBKDF2-HMAC-SHA1 over the dataset's `pbkdf2salt` and
//! `pbkdf2iters`, as libzfs does (feature `passphrase`, on by default).
//!
//! ```no_run
//! use zfs_core::Zfs;
//!
//! let zfs = Zfs::open()?;
//! let backup = "pipe/backups/vault".parse()?;
//! // A raw replication arrives without its key; load it to read the files.
//! zfs.load_key(&backup, b"correct horse battery staple")?;
//! zfs.unload_key(&backup)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::dataset::{KeyStatus, Properties};
use crate::error::{Error, ErrorKind, Result};
use crate::ffi;
use crate::name::{AnyName, DatasetName};
use crate::nvlist::NvList;
use crate::Zfs;

/// Bytes in a wrapping key (`WRAPPING_KEY_LEN`).
pub const WRAPPING_KEY_LEN: usize = 32;

/// A dataset's `keyformat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFormat {
    /// 32 raw bytes.
    Raw,
    /// 64 hexadecimal digits.
    Hex,
    /// A passphrase of 8 to 512 bytes.
    Passphrase,
}

impl KeyFormat {
    /// The kernel's number for it (`zfs_keyformat_t`).
    fn index(self) -> u64 {
        match self {
            KeyFormat::Raw => 1,
            KeyFormat::Hex => 2,
            KeyFormat::Passphrase => 3,
        }
    }
}

const LOAD: &str = "lzc_load_key";
const CHANGE: &str = "lzc_change_key";

/// PBKDF2 iterations for a new passphrase (libzfs's
/// `DEFAULT_PBKDF2_ITERATIONS`).
pub const DEFAULT_PBKDF2_ITERATIONS: u64 = 350_000;

/// `dcp_cmd_t`: rewrap with a new key, as an encryption root.
const DCP_CMD_NEW_KEY: u64 = 2;
/// `dcp_cmd_t`: rewrap with the parent's key.
const DCP_CMD_INHERIT: u64 = 3;
/// `dcp_cmd_t`: become an encryption root without rewrapping.
const DCP_CMD_FORCE_NEW_KEY: u64 = 4;
/// `dcp_cmd_t`: use the parent's key without rewrapping.
const DCP_CMD_FORCE_INHERIT: u64 = 5;

impl Zfs {
    /// Loads the key of the encryption root `dataset` (`zfs load-key`):
    /// its encrypted datasets become readable and mountable. `key` is
    /// what the dataset's `keyformat` asks for; a trailing newline is
    /// ignored (as when a key is read from a terminal or a file).
    ///
    /// A wrong key is [`ErrorKind::WrongKey`] and changes nothing; a key
    /// already loaded is [`ErrorKind::AlreadyExists`].
    pub fn load_key(&self, dataset: &DatasetName, key: &[u8]) -> Result<()> {
        self.load_key_impl(dataset, key, false)
    }

    /// Checks `key` against the encryption root `dataset` without loading
    /// it (`zfs load-key -n`): Ok, or [`ErrorKind::WrongKey`].
    pub fn check_key(&self, dataset: &DatasetName, key: &[u8]) -> Result<()> {
        self.load_key_impl(dataset, key, true)
    }

    /// Unloads the key of the encryption root `dataset` (`zfs
    /// unload-key`); its datasets must be unmounted
    /// ([`ErrorKind::Busy`] otherwise).
    pub fn unload_key(&self, dataset: &DatasetName) -> Result<()> {
        ffi::lzc_unload_key(&dataset.to_c_name())
            .map_err(|e| Error::from_errno("lzc_unload_key", dataset.as_str(), e))
    }

    /// Wraps the key of `dataset` with a new one (`zfs change-key -o
    /// keyformat=…`): `dataset` becomes (or stays) an encryption root (a new
    /// one gets `keylocation=prompt`; an existing one keeps its
    /// `keylocation`); its data is not rewritten. Its current key must be loaded
    /// ([`ErrorKind::KeyNotLoaded`] otherwise); it stays loaded.
    ///
    /// `key` is given as for [`load_key`](Zfs::load_key) in the new
    /// `format`; a passphrase gets a fresh random salt and
    /// [`DEFAULT_PBKDF2_ITERATIONS`]. A key that does not fit its format is
    /// [`ErrorKind::WrongKey`] and changes nothing. A clone cannot change
    /// its key (its origin's).
    ///
    /// ```no_run
    /// use zfs_core::{KeyFormat, Zfs};
    ///
    /// let zfs = Zfs::open()?;
    /// let vault = "tank/vault".parse()?;
    /// zfs.change_key(&vault, KeyFormat::Passphrase, b"a new and longer passphrase")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn change_key(&self, dataset: &DatasetName, format: KeyFormat, key: &[u8]) -> Result<()> {
        let bad = |kind, reason: String| Error::invalid(CHANGE, dataset.as_str(), kind, reason);
        let props = self.properties(dataset)?;
        self.check_key_change(dataset, &props)?;
        let key = key.strip_suffix(b"\n").unwrap_or(key);
        let mut list = NvList::new().with("keyformat", format.index());
        if props.encryption_root.as_deref() != Some(dataset.as_str()) {
            list.insert("keylocation", "prompt");
        }
        let wrapping = match format {
            KeyFormat::Raw => raw_key(key).map_err(|r| bad(ErrorKind::WrongKey, r))?,
            KeyFormat::Hex => hex_key(key).map_err(|r| bad(ErrorKind::WrongKey, r))?,
            KeyFormat::Passphrase => {
                if key.contains(&0) {
                    return Err(bad(
                        ErrorKind::WrongKey,
                        "a passphrase cannot hold a NUL byte".into(),
                    ));
                }
                // The kernel takes 0 as "no salt".
                let mut salt = 0;
                while salt == 0 {
                    salt = ffi::random_u64()
                        .map_err(|e| Error::from_errno(CHANGE, dataset.as_str(), e))?;
                }
                let iters = DEFAULT_PBKDF2_ITERATIONS;
                list.insert("pbkdf2salt", salt);
                list.insert("pbkdf2iters", iters);
                passphrase_key(key, salt, iters).map_err(|(kind, r)| bad(kind, r))?
            }
        };
        ffi::lzc_change_key(
            &dataset.to_c_name(),
            DCP_CMD_NEW_KEY,
            Some(&list),
            Some(&wrapping),
        )
        .map_err(|e| change_error(dataset, e))
    }

    /// Makes the encryption root `dataset` use its parent's key (`zfs
    /// change-key -i`): its key is rewrapped with the parent's, so both
    /// keys must be loaded ([`ErrorKind::KeyNotLoaded`] otherwise).
    pub fn inherit_key(&self, dataset: &DatasetName) -> Result<()> {
        let props = self.properties(dataset)?;
        self.check_key_change(dataset, &props)?;
        self.check_parent_key(dataset, true)?;
        ffi::lzc_change_key(&dataset.to_c_name(), DCP_CMD_INHERIT, None, None)
            .map_err(|e| change_error(dataset, e))
    }

    /// Makes the encryption root `dataset` use its parent's key *without*
    /// rewrapping it: what `zfs receive -R` does to a raw-received dataset
    /// whose source inherits its key, so that its wrapping key is the
    /// parent's already.
    ///
    /// Checked first, as far as it can be without the keys: `dataset` is
    /// an encryption root whose key is *not* loaded (the kernel would free
    /// a wrapping key still in use), its parent is encrypted, and its
    /// wrapping parameters (`keyformat`, `pbkdf2salt`, `pbkdf2iters`) are
    /// those of its parent's encryption root; else
    /// [`ErrorKind::InvalidArgument`] (or [`ErrorKind::Busy`] for a loaded
    /// key) and nothing changes. A passphrase gets a new salt at every key
    /// change, so a parent whose key was changed since is told apart; raw
    /// and hex keys have no salt: with one of those, a dataset whose key
    /// differs from its parent's cannot be loaded afterwards, until
    /// [`force_new_key`](Zfs::force_new_key) makes it an encryption root
    /// again (its data is untouched).
    pub fn force_inherit_key(&self, dataset: &DatasetName) -> Result<()> {
        let bad = |kind, reason: String| Error::invalid(CHANGE, dataset.as_str(), kind, reason);
        let props = self.properties(dataset)?;
        if !props.encryption.is_encrypted() {
            return Err(bad(ErrorKind::InvalidArgument, "not encrypted".into()));
        }
        if props.key_status == Some(KeyStatus::Available) {
            return Err(bad(
                ErrorKind::Busy,
                "its key is loaded: unload it first".into(),
            ));
        }
        self.check_parent_key(dataset, false)?;
        let parent = dataset.parent().unwrap_or_else(|| dataset.clone());
        let root = self.properties(&parent)?.encryption_root.ok_or_else(|| {
            bad(
                ErrorKind::InvalidArgument,
                "its parent has no encryption root".into(),
            )
        })?;
        let root_props = self.properties(&DatasetName::new(root.as_str())?)?;
        if wrapping_parameters(&props) != wrapping_parameters(&root_props) {
            return Err(bad(
                ErrorKind::InvalidArgument,
                format!(
                    "its key is not wrapped as {root}'s is (keyformat, pbkdf2salt or pbkdf2iters differ)"
                ),
            ));
        }
        ffi::lzc_change_key(&dataset.to_c_name(), DCP_CMD_FORCE_INHERIT, None, None)
            .map_err(|e| change_error(dataset, e))
    }

    /// Makes `dataset`, which uses an ancestor's key, an encryption root of
    /// its own *without* rewrapping its key (`keylocation=prompt`): it then
    /// loads with the key its data was wrapped with. What `zfs receive -R`
    /// does for a raw-received dataset whose source is an encryption root;
    /// also the way back from a [`force_inherit_key`](Zfs::force_inherit_key)
    /// under the wrong parent. The key it uses must not be loaded
    /// ([`ErrorKind::Busy`] otherwise).
    pub fn force_new_key(&self, dataset: &DatasetName) -> Result<()> {
        let bad = |kind, reason: &str| Error::invalid(CHANGE, dataset.as_str(), kind, reason);
        let props = self.properties(dataset)?;
        if !props.encryption.is_encrypted() {
            return Err(bad(ErrorKind::InvalidArgument, "not encrypted"));
        }
        if props.encryption_root.as_deref() == Some(dataset.as_str()) {
            return Err(bad(
                ErrorKind::InvalidArgument,
                "already an encryption root",
            ));
        }
        if props.key_status == Some(KeyStatus::Available) {
            return Err(bad(
                ErrorKind::Busy,
                "the key it uses is loaded: unload it first",
            ));
        }
        ffi::lzc_change_key(&dataset.to_c_name(), DCP_CMD_FORCE_NEW_KEY, None, None)
            .map_err(|e| change_error(dataset, e))
    }

    /// What every key change needs: an encrypted dataset, not a clone,
    /// with its key loaded.
    fn check_key_change(&self, dataset: &DatasetName, props: &Properties) -> Result<()> {
        let bad = |kind, reason: &str| Error::invalid(CHANGE, dataset.as_str(), kind, reason);
        if !props.encryption.is_encrypted() {
            return Err(bad(ErrorKind::InvalidArgument, "not encrypted"));
        }
        let origin = props
            .raw
            .get_nvlist("origin")
            .ok()
            .and_then(|v| v.get_str("value").ok());
        if origin.is_some_and(|o| !o.is_empty()) {
            return Err(bad(
                ErrorKind::InvalidArgument,
                "a clone uses its origin's key and cannot change it",
            ));
        }
        if props.key_status == Some(KeyStatus::Unavailable) {
            return Err(bad(ErrorKind::KeyNotLoaded, "load its key first"));
        }
        Ok(())
    }

    /// Checks that `dataset` is an encryption root whose parent is
    /// encrypted (and has its key loaded, when `loaded`).
    fn check_parent_key(&self, dataset: &DatasetName, loaded: bool) -> Result<()> {
        let bad = |kind, reason: String| Error::invalid(CHANGE, dataset.as_str(), kind, reason);
        let props = self.properties(dataset)?;
        if props.encryption_root.as_deref() != Some(dataset.as_str()) {
            return Err(bad(
                ErrorKind::InvalidArgument,
                "not an encryption root: it inherits its key already".into(),
            ));
        }
        let Some(parent) = dataset.parent() else {
            return Err(bad(
                ErrorKind::InvalidArgument,
                "a pool's root dataset has no parent to inherit from".into(),
            ));
        };
        let parent_props = self.properties(&parent)?;
        if !parent_props.encryption.is_encrypted() {
            return Err(bad(
                ErrorKind::InvalidArgument,
                format!("its parent {parent} is not encrypted"),
            ));
        }
        if loaded && parent_props.key_status == Some(KeyStatus::Unavailable) {
            return Err(bad(
                ErrorKind::KeyNotLoaded,
                format!("load the key of its parent {parent} first"),
            ));
        }
        Ok(())
    }

    /// The `keyformat` of `dataset` (None: not encrypted).
    pub fn key_format(&self, dataset: &DatasetName) -> Result<Option<KeyFormat>> {
        Ok(key_format_of(&self.properties(dataset)?))
    }

    fn load_key_impl(&self, dataset: &DatasetName, key: &[u8], noop: bool) -> Result<()> {
        let bad = |kind, reason: String| Error::invalid(LOAD, dataset.as_str(), kind, reason);
        let props = self.properties(dataset)?;
        let num = |name: &str| number(&props, name);
        if !props.encryption.is_encrypted() {
            return Err(bad(ErrorKind::InvalidArgument, "not encrypted".into()));
        }
        if props.encryption_root.as_deref() != Some(dataset.as_str()) {
            return Err(bad(
                ErrorKind::InvalidArgument,
                format!(
                    "not an encryption root: its key is {}'s",
                    props.encryption_root.as_deref().unwrap_or("?")
                ),
            ));
        }
        let key = key.strip_suffix(b"\n").unwrap_or(key);
        let wrapping = match key_format_of(&props) {
            Some(KeyFormat::Raw) => raw_key(key).map_err(|r| bad(ErrorKind::WrongKey, r))?,
            Some(KeyFormat::Hex) => hex_key(key).map_err(|r| bad(ErrorKind::WrongKey, r))?,
            Some(KeyFormat::Passphrase) => {
                let (Some(salt), Some(iters)) = (num("pbkdf2salt"), num("pbkdf2iters")) else {
                    return Err(bad(
                        ErrorKind::UnexpectedShape,
                        "a passphrase key without pbkdf2salt or pbkdf2iters".into(),
                    ));
                };
                passphrase_key(key, salt, iters).map_err(|(kind, r)| bad(kind, r))?
            }
            None => {
                return Err(bad(
                    ErrorKind::NotSupported,
                    format!(
                        "keyformat {:?} is not raw, hex or passphrase",
                        num("keyformat")
                    ),
                ))
            }
        };
        ffi::lzc_load_key(&dataset.to_c_name(), noop, &wrapping)
            .map_err(|e| key_error(LOAD, dataset, e, ErrorKind::WrongKey))
    }
}

/// A key call's errno, with EACCES read as `eacces` says: a wrong key for
/// a load, a key not loaded for a change.
fn key_error(
    operation: &'static str,
    dataset: &DatasetName,
    errno: crate::Errno,
    eacces: ErrorKind,
) -> Error {
    match Error::from_errno(operation, dataset.as_str(), errno) {
        Error::Zfs {
            operation,
            target,
            errno,
            ..
        } if errno.0 == libc::EACCES => Error::Zfs {
            operation,
            target,
            kind: eacces,
            errno,
        },
        e => e,
    }
}

/// A key change's errno: a key that is not loaded (EACCES) is said so.
fn change_error(dataset: &DatasetName, errno: crate::Errno) -> Error {
    key_error(CHANGE, dataset, errno, ErrorKind::KeyNotLoaded)
}

/// The `keyformat` the kernel lists (none, 0, for an unencrypted dataset).
fn key_format_of(props: &Properties) -> Option<KeyFormat> {
    let n = number(props, "keyformat")?;
    [KeyFormat::Raw, KeyFormat::Hex, KeyFormat::Passphrase]
        .into_iter()
        .find(|f| f.index() == n)
}

/// What a dataset's wrapping key is derived with, from its properties:
/// `keyformat`, `pbkdf2salt`, `pbkdf2iters` (salt and iterations are 0 for
/// raw and hex keys). Two keys with different parameters differ.
pub fn wrapping_parameters(props: &Properties) -> [Option<u64>; 3] {
    ["keyformat", "pbkdf2salt", "pbkdf2iters"].map(|name| number(props, name))
}

/// A numeric property's value from the kernel's list.
fn number(props: &Properties, name: &str) -> Option<u64> {
    props
        .raw
        .get_nvlist(name)
        .ok()
        .and_then(|v| v.get_u64("value").ok())
}

fn raw_key(key: &[u8]) -> std::result::Result<[u8; WRAPPING_KEY_LEN], String> {
    key.try_into()
        .map_err(|_| format!("a raw key is {WRAPPING_KEY_LEN} bytes, not {}", key.len()))
}

fn hex_key(key: &[u8]) -> std::result::Result<[u8; WRAPPING_KEY_LEN], String> {
    if key.len() != 2 * WRAPPING_KEY_LEN {
        return Err(format!(
            "a hex key is {} digits, not {}",
            2 * WRAPPING_KEY_LEN,
            key.len()
        ));
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; WRAPPING_KEY_LEN];
    for (o, pair) in out.iter_mut().zip(key.chunks_exact(2)) {
        let (Some(h), Some(l)) = (digit(pair[0]), digit(pair[1])) else {
            return Err("a hex key has only the digits 0-9, a-f".into());
        };
        *o = h << 4 | l;
    }
    Ok(out)
}

/// PBKDF2-HMAC-SHA1 over the passphrase, with the dataset's salt (as its
/// little-endian bytes) and iterations: libzfs's `derive_key`.
#[cfg(feature = "passphrase")]
fn passphrase_key(
    key: &[u8],
    salt: u64,
    iters: u64,
) -> std::result::Result<[u8; WRAPPING_KEY_LEN], (ErrorKind, String)> {
    if !(8..=512).contains(&key.len()) {
        return Err((
            ErrorKind::WrongKey,
            format!("a passphrase is 8 to 512 bytes, not {}", key.len()),
        ));
    }
    // libzfs stops at the first NUL (strlen).
    let key = key.split(|b| *b == 0).next().unwrap_or(key);
    let iters = u32::try_from(iters).map_err(|_| {
        (
            ErrorKind::UnexpectedShape,
            format!("pbkdf2iters {iters} is out of range"),
        )
    })?;
    let mut out = [0u8; WRAPPING_KEY_LEN];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(key, &salt.to_le_bytes(), iters, &mut out);
    Ok(out)
}

#[cfg(not(feature = "passphrase"))]
fn passphrase_key(
    _key: &[u8],
    _salt: u64,
    _iters: u64,
) -> std::result::Result<[u8; WRAPPING_KEY_LEN], (ErrorKind, String)> {
    Err((
        ErrorKind::NotSupported,
        "a passphrase needs zfs-core's `passphrase` feature".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_as_their_format_says() {
        assert_eq!(raw_key(&[7u8; 32]).unwrap(), [7u8; 32]);
        assert!(raw_key(&[7u8; 31]).is_err());
        let hex = "00ff".repeat(16);
        let k = hex_key(hex.as_bytes()).unwrap();
        assert_eq!(&k[..2], &[0x00, 0xff]);
        assert!(hex_key(b"xyz").is_err());
        assert!(hex_key("0g".repeat(32).as_bytes()).is_err());
    }

    /// RFC 6070's PBKDF2-HMAC-SHA1 vector (`password`/`salt`, 2
    /// iterations), through the salt as libzfs passes it: 8 bytes, here
    /// `salt` and 4 NULs read as a little-endian u64.
    #[cfg(feature = "passphrase")]
    #[test]
    fn passphrases_are_derived_as_libzfs_derives_them() {
        let salt = u64::from_le_bytes(*b"salt\0\0\0\0");
        let k = passphrase_key(b"password", salt, 2).unwrap();
        let mut want = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha1::Sha1>(b"password", b"salt\0\0\0\0", 2, &mut want);
        assert_eq!(k, want);
        // RFC 6070 itself, with its 4-byte salt: the first 20 bytes.
        let mut rfc = [0u8; 20];
        pbkdf2::pbkdf2_hmac::<sha1::Sha1>(b"password", b"salt", 2, &mut rfc);
        assert_eq!(
            rfc,
            [
                0xea, 0x6c, 0x01, 0x4d, 0xc7, 0x2d, 0x6f, 0x8c, 0xcd, 0x1e, 0xd9, 0x2a, 0xce, 0x1d,
                0x41, 0xf0, 0xd8, 0xde, 0x89, 0x57
            ]
        );
        assert_eq!(
            passphrase_key(b"short", salt, 2).unwrap_err().0,
            ErrorKind::WrongKey
        );
    }
}
