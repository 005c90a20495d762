//! The shared token of plain-TCP connections: reading it, comparing it.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::handshake::MAX_TOKEN;

/// The shortest token accepted: shorter ones can be guessed.
pub const MIN_TOKEN: usize = 16;

/// Whether `given` equals `expected`, in a time that depends only on
/// `expected.len()`, so that timing does not tell an attacker how many
/// leading bytes of a guess were right. The length difference is folded
/// into the result instead of returning early.
// For the server (`super::auth::ct_eq`); drop the allow once it calls it.
pub fn ct_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = (expected.len() ^ given.len()) as u64;
    for (i, e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(0);
        // black_box: keep the optimizer from turning this into an early exit.
        diff |= u64::from(std::hint::black_box(e ^ g));
    }
    diff == 0
}

/// Why a token file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("token file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "token file {} is accessible by group or others (mode {mode:04o}): \
         chmod 600 it (as ssh requires for private keys)",
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("token file {}: {len} bytes, at least {MIN_TOKEN} needed", path.display())]
    TooShort { path: PathBuf, len: usize },
    #[error("token file {}: longer than {MAX_TOKEN} bytes", path.display())]
    TooLong { path: PathBuf },
}

/// Reads a token file (`--token-file`): its bytes less ONE trailing `\n` or
/// `\r\n` (what `echo` or an editor adds). Refused: a file that group or
/// others may read or write, fewer than [`MIN_TOKEN`] bytes, more than
/// [`MAX_TOKEN`](super::handshake::MAX_TOKEN) (what HELLO carries).
pub fn read_token_file(path: &Path) -> Result<Vec<u8>, TokenError> {
    let io_err = |source| TokenError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    // The mode of the file opened, not of the path checked before.
    let mode = file.metadata().map_err(io_err)?.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(TokenError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let mut token = Vec::new();
    // Two more bytes than a token: room for "\r\n".
    file.take(MAX_TOKEN as u64 + 3)
        .read_to_end(&mut token)
        .map_err(io_err)?;
    if token.ends_with(b"\r\n") {
        token.truncate(token.len() - 2);
    } else if token.ends_with(b"\n") {
        token.pop();
    }
    if token.len() > MAX_TOKEN {
        return Err(TokenError::TooLong {
            path: path.to_owned(),
        });
    }
    if token.len() < MIN_TOKEN {
        return Err(TokenError::TooShort {
            path: path.to_owned(),
            len: token.len(),
        });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, OpenOptions};
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn ct_eq_is_equality() {
        let cases: [(&[u8], &[u8], bool); 9] = [
            (b"", b"", true),
            (b"a", b"a", true),
            (b"secret token 123", b"secret token 123", true),
            (b"secret token 123", b"secret token 124", false),
            (b"secret token 123", b"Secret token 123", false),
            (b"secret", b"secret token 123", false),
            (b"secret token 123", b"secret", false),
            (b"", b"x", false),
            (b"\0", b"", false),
        ];
        for (a, b, eq) in cases {
            assert_eq!(ct_eq(a, b), eq, "{a:?} {b:?}");
            assert_eq!(ct_eq(b, a), eq, "{b:?} {a:?}");
        }
        // A prefix padded with what the loop uses for missing bytes.
        assert!(!ct_eq(b"ab\0", b"ab"));
        // Every single-bit difference is seen.
        let t = b"0123456789abcdef".to_vec();
        for i in 0..t.len() * 8 {
            let mut u = t.clone();
            u[i / 8] ^= 1 << (i % 8);
            assert!(!ct_eq(&t, &u));
        }
    }

    /// A fresh file in the temporary directory with `content` and `mode`,
    /// removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(content: &[u8], mode: u32) -> TempFile {
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "zfs-replicate-token-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .unwrap();
            f.write_all(content).unwrap();
            // Explicitly: the umask does not apply to set_permissions.
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }

    #[test]
    fn one_trailing_newline_is_trimmed() {
        let token = b"0123456789abcdef";
        for (content, want) in [
            (&b"0123456789abcdef"[..], &token[..]),
            (b"0123456789abcdef\n", token),
            (b"0123456789abcdef\r\n", token),
            (b"0123456789abcdef\n\n", b"0123456789abcdef\n"),
            (b"0123456789abcdef \n", b"0123456789abcdef "),
            (b"0123456789abcdef\r", b"0123456789abcdef\r"),
        ] {
            let f = TempFile::new(content, 0o600);
            assert_eq!(read_token_file(&f.0).unwrap(), want, "{content:?}");
        }
        let f = TempFile::new(token, 0o400);
        assert_eq!(read_token_file(&f.0).unwrap(), token);
    }

    #[test]
    fn short_and_long_tokens_are_refused() {
        for content in [
            &b""[..],
            b"\n",
            b"0123456789abcde",
            b"0123456789abcde\n",
            b"0123456789abcde\r\n",
        ] {
            let f = TempFile::new(content, 0o600);
            let e = read_token_file(&f.0).unwrap_err();
            assert!(matches!(e, TokenError::TooShort { .. }), "{content:?}: {e}");
            assert!(e.to_string().contains(&*f.0.to_string_lossy()), "{e}");
        }
        let max = vec![b'x'; MAX_TOKEN];
        let f = TempFile::new(&max, 0o600);
        assert_eq!(read_token_file(&f.0).unwrap(), max);
        let f = TempFile::new(&[&max[..], b"\r\n"].concat(), 0o600);
        assert_eq!(read_token_file(&f.0).unwrap(), max);
        for len in [MAX_TOKEN + 1, MAX_TOKEN + 3, 10_000] {
            let f = TempFile::new(&vec![b'x'; len], 0o600);
            let e = read_token_file(&f.0).unwrap_err();
            assert!(matches!(e, TokenError::TooLong { .. }), "{len}: {e}");
        }
    }

    #[test]
    fn files_open_to_group_or_others_are_refused() {
        for mode in [0o640, 0o604, 0o620, 0o602, 0o644, 0o666, 0o610, 0o601] {
            let f = TempFile::new(b"0123456789abcdef", mode);
            let e = read_token_file(&f.0).unwrap_err();
            assert!(
                matches!(e, TokenError::Permissions { mode: m, .. } if m == mode),
                "{mode:o}: {e}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("{mode:04o}")) && msg.contains(&*f.0.to_string_lossy()),
                "{msg}"
            );
        }
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let path = std::env::temp_dir().join("zfs-replicate-token-test-does-not-exist");
        let e = read_token_file(&path).unwrap_err();
        assert!(
            matches!(&e, TokenError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert!(e.to_string().contains("does-not-exist"), "{e}");
    }
}
