//! [`Error`] through serde, for a server that sends its errors to a client.
//!
//! Every variant crosses with its kind and errno, so retry logic works on
//! the far side. How each is rebuilt:
//!
//! - `operation` crosses as a string and comes back as the same
//!   `&'static str` from [`OPERATIONS`](super::OPERATIONS); an unknown name becomes
//!   `"remote operation"`, and the name is appended to `target` (a batch
//!   error, which has none, gets an extra failure of that name instead).
//! - [`Error::Name`] crosses as the kind of name, the name and the reason
//!   (as text), and is rebuilt by validating the name again, which gives the
//!   same [`NameError`]. Should the name be valid here (the peer's rules
//!   differ), it becomes [`Error::Invalid`] with [`ErrorKind::InvalidName`]
//!   and the peer's reason.
//! - [`Error::Shape`] keeps its [`NvListError`] when it is `MissingKey`, or
//!   `WrongType` with type names this crate knows; anything else (such as
//!   `Malformed`) becomes [`Error::Invalid`] with
//!   [`ErrorKind::UnexpectedShape`] and the error's text as the reason.
//! - [`Error::Io`] crosses as the OS error code, a stable mirror of
//!   [`io::ErrorKind`] and the message: rebuilt with
//!   [`io::Error::from_raw_os_error`] when there is a code (the message is
//!   then the local system's), else [`io::Error::new`].

use std::io;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{known_operation, BatchFailure, Errno, Error, ErrorKind};
use crate::name::{NameError, NameKind};
use crate::nvlist::{static_type_name, NvListError};

/// What an operation name missing from [`OPERATIONS`](super::OPERATIONS) decodes to.
const REMOTE_OPERATION: &str = "remote operation";

/// The wire form of [`Error`]: `S` is `&str` to encode, `String` to
/// decode; `F` the batch failures likewise. One definition keeps both in step.
#[derive(Serialize, Deserialize)]
enum Repr<S, F> {
    Name {
        kind_of_name: NameKind,
        name: S,
        reason: String,
    },
    Zfs {
        operation: S,
        target: S,
        kind: ErrorKind,
        errno: Errno,
    },
    Batch {
        operation: S,
        kind: ErrorKind,
        errno: Errno,
        failures: F,
        more: u32,
    },
    Shape {
        operation: S,
        target: S,
        source: ShapeRepr<S>,
    },
    Invalid {
        operation: S,
        target: S,
        kind: ErrorKind,
        reason: S,
    },
    Io {
        operation: S,
        target: S,
        os_error: Option<i32>,
        kind: IoKind,
        message: String,
    },
}

/// The wire form of [`NvListError`].
#[derive(Serialize, Deserialize)]
enum ShapeRepr<S> {
    MissingKey {
        key: S,
    },
    WrongType {
        key: S,
        expected: S,
        found: S,
    },
    /// Any other shape error, as text.
    Other {
        message: String,
    },
}

macro_rules! io_kinds {
    ($($k:ident),* $(,)?) => {
        /// [`io::ErrorKind`]s stable since Rust 1.54 (this crate's MSRV is
        /// 1.82); newer kinds cross as `Other`.
        #[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
        enum IoKind {
            $($k,)*
            Other,
        }

        impl From<io::ErrorKind> for IoKind {
            fn from(k: io::ErrorKind) -> Self {
                match k {
                    $(io::ErrorKind::$k => IoKind::$k,)*
                    _ => IoKind::Other,
                }
            }
        }

        impl From<IoKind> for io::ErrorKind {
            fn from(k: IoKind) -> Self {
                match k {
                    $(IoKind::$k => io::ErrorKind::$k,)*
                    IoKind::Other => io::ErrorKind::Other,
                }
            }
        }
    };
}

io_kinds!(
    NotFound,
    PermissionDenied,
    ConnectionRefused,
    ConnectionReset,
    ConnectionAborted,
    NotConnected,
    AddrInUse,
    AddrNotAvailable,
    BrokenPipe,
    AlreadyExists,
    WouldBlock,
    InvalidInput,
    InvalidData,
    TimedOut,
    WriteZero,
    Interrupted,
    Unsupported,
    UnexpectedEof,
    OutOfMemory,
);

impl Serialize for Error {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        let repr: Repr<&str, &[BatchFailure]> = match self {
            Error::Name(e) => Repr::Name {
                kind_of_name: e.kind_of_name(),
                name: e.name(),
                reason: e.reason().to_string(),
            },
            Error::Zfs {
                operation,
                target,
                kind,
                errno,
            } => Repr::Zfs {
                operation,
                target,
                kind: *kind,
                errno: *errno,
            },
            Error::Batch {
                operation,
                kind,
                errno,
                failures,
                more,
            } => Repr::Batch {
                operation,
                kind: *kind,
                errno: *errno,
                failures,
                more: *more,
            },
            Error::Shape {
                operation,
                target,
                source,
            } => Repr::Shape {
                operation,
                target,
                source: match source {
                    NvListError::MissingKey { key } => ShapeRepr::MissingKey { key },
                    NvListError::WrongType {
                        key,
                        expected,
                        found,
                    } => ShapeRepr::WrongType {
                        key,
                        expected,
                        found,
                    },
                    other => ShapeRepr::Other {
                        message: other.to_string(),
                    },
                },
            },
            Error::Invalid {
                operation,
                target,
                kind,
                reason,
            } => Repr::Invalid {
                operation,
                target,
                kind: *kind,
                reason,
            },
            Error::Io {
                operation,
                target,
                source,
            } => Repr::Io {
                operation,
                target,
                os_error: source.raw_os_error(),
                kind: source.kind().into(),
                message: source.to_string(),
            },
        };
        repr.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Error {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Repr::<String, Vec<BatchFailure>>::deserialize(deserializer).map(Repr::into_error)
    }
}

/// The `&'static str` for a decoded operation name; an unknown one gives
/// `"remote operation"` and is appended to `target`.
fn operation(name: String, target: &mut String) -> &'static str {
    if let Some(op) = known_operation(&name) {
        return op;
    }
    if !target.is_empty() {
        target.push(' ');
    }
    target.push_str(&format!("(operation {name:?})"));
    REMOTE_OPERATION
}

impl Repr<String, Vec<BatchFailure>> {
    fn into_error(self) -> Error {
        match self {
            Repr::Name {
                kind_of_name,
                name,
                reason,
            } => match NameError::revalidate(kind_of_name, name.clone()) {
                Some(e) => Error::Name(e),
                None => Error::Invalid {
                    operation: REMOTE_OPERATION,
                    target: name,
                    kind: ErrorKind::InvalidName,
                    reason: format!("the peer refused it as a {kind_of_name} name: {reason}"),
                },
            },
            Repr::Zfs {
                operation: op,
                mut target,
                kind,
                errno,
            } => Error::Zfs {
                operation: operation(op, &mut target),
                target,
                kind,
                errno,
            },
            Repr::Batch {
                operation: op,
                kind,
                errno,
                failures,
                more,
            } => {
                // A batch error has no target: an unknown name is kept in
                // the failures, under an empty name with the batch's errno.
                let mut target = String::new();
                let operation = operation(op, &mut target);
                let mut failures = failures;
                if !target.is_empty() {
                    failures.push(BatchFailure {
                        name: target,
                        errno,
                        kind,
                    });
                }
                Error::Batch {
                    operation,
                    kind,
                    errno,
                    failures,
                    more,
                }
            }
            Repr::Shape {
                operation: op,
                mut target,
                source,
            } => {
                let operation = operation(op, &mut target);
                let source = match source {
                    ShapeRepr::MissingKey { key } => Ok(NvListError::MissingKey { key }),
                    ShapeRepr::WrongType {
                        key,
                        expected,
                        found,
                    } => match (static_type_name(&expected), static_type_name(&found)) {
                        (Some(expected), Some(found)) => Ok(NvListError::WrongType {
                            key,
                            expected,
                            found,
                        }),
                        _ => Err(format!(
                            "nvlist key {key:?} holds a {found}, expected a {expected}"
                        )),
                    },
                    ShapeRepr::Other { message } => Err(message),
                };
                match source {
                    Ok(source) => Error::Shape {
                        operation,
                        target,
                        source,
                    },
                    Err(reason) => Error::Invalid {
                        operation,
                        target,
                        kind: ErrorKind::UnexpectedShape,
                        reason,
                    },
                }
            }
            Repr::Invalid {
                operation: op,
                mut target,
                kind,
                reason,
            } => Error::Invalid {
                operation: operation(op, &mut target),
                target,
                kind,
                reason,
            },
            Repr::Io {
                operation: op,
                mut target,
                os_error,
                kind,
                message,
            } => Error::Io {
                operation: operation(op, &mut target),
                target,
                source: match os_error {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(kind.into(), message),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::OPERATIONS;

    /// The non-test source of zfs-core, file by file.
    fn sources() -> Vec<(String, String)> {
        fn walk(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let code = match text.find("#[cfg(test)]\nmod tests") {
                        Some(i) => &text[..i],
                        None => &text[..],
                    };
                    // Comments (doc examples use their own names) are skipped.
                    let code: Vec<&str> = code
                        .lines()
                        .filter(|l| !l.trim_start().starts_with("//"))
                        .collect();
                    out.push((path.display().to_string(), code.join("\n")));
                }
            }
        }
        let mut out = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut out,
        );
        assert!(out.len() > 10, "sources not found");
        out
    }

    /// The string literal right after `at` (after whitespace), if any.
    fn literal_after(code: &str, at: usize) -> Option<&str> {
        let rest = code[at..].trim_start().strip_prefix('"')?;
        rest.split('"').next()
    }

    /// Every operation name the sources pass to an error constructor, name
    /// in an `OP` constant or spell as an `lzc_`/`ZFS_IOC_` literal is in
    /// [`OPERATIONS`]. (Names passed through variables come from these.)
    #[test]
    fn operations_table_covers_the_sources() {
        const CALLS: [&str; 10] = [
            "Error::from_errno(",
            "Error::from_receive_errno(",
            "Error::from_batch(",
            "Error::from_batch_as(",
            "Error::shape(",
            "Error::invalid(",
            "Error::io(",
            "nv_error(",
            "operation: ",
            "OP: &str = ",
        ];
        let mut found = std::collections::BTreeSet::new();
        for (path, code) in sources() {
            for call in CALLS {
                for (at, _) in code.match_indices(call) {
                    if let Some(name) = literal_after(&code, at + call.len()) {
                        found.insert((name.to_owned(), path.clone()));
                    }
                }
            }
            for (i, _) in code.match_indices('"') {
                let rest = &code[i + 1..];
                if rest.starts_with("lzc_") || rest.starts_with("ZFS_IOC_") {
                    let name = rest.split('"').next().unwrap_or("");
                    found.insert((name.to_owned(), path.clone()));
                }
            }
        }
        // The scan does see the names (guards against a broken scan).
        for expected in ["lzc_snapshot", "lzc_send_resume", "read ZFS sysfs", "dup"] {
            assert!(found.iter().any(|(n, _)| n == expected), "{expected}");
        }
        for (name, path) in &found {
            assert!(
                known_operation(name).is_some(),
                "{path}: operation {name:?} is missing from error::OPERATIONS"
            );
        }
    }

    #[test]
    fn operations_are_unique() {
        let set: std::collections::BTreeSet<_> = OPERATIONS.iter().collect();
        assert_eq!(set.len(), OPERATIONS.len());
        assert!(known_operation(REMOTE_OPERATION).is_some());
    }

    fn round_trip(e: &Error) -> Error {
        let bytes = postcard::to_stdvec(e).unwrap();
        postcard::from_bytes(&bytes).unwrap()
    }

    #[test]
    fn ebusy_keeps_kind_errno_and_the_static_operation() {
        let e = Error::from_errno("lzc_destroy_snaps", "tank/a@s", Errno(libc::EBUSY));
        let back = round_trip(&e);
        assert_eq!(back.kind(), ErrorKind::Busy);
        assert_eq!(back.errno(), Some(Errno(libc::EBUSY)));
        let op = back.operation().unwrap();
        assert_eq!(op, "lzc_destroy_snaps");
        assert!(OPERATIONS.iter().any(|o| std::ptr::eq(*o, op)));
        assert!(matches!(back, Error::Zfs { ref target, .. } if target == "tank/a@s"));
        assert_eq!(back.to_string(), e.to_string());
    }

    #[test]
    fn unknown_operation_is_kept_in_the_target() {
        let e = Error::io("make tea", "kettle", io::Error::other("no water"));
        let back = round_trip(&e);
        assert_eq!(back.operation(), Some(REMOTE_OPERATION));
        assert!(
            matches!(&back, Error::Io { target, .. } if target == r#"kettle (operation "make tea")"#),
            "{back:?}"
        );
        let e = Error::io("make tea", "", io::Error::other("no water"));
        assert!(matches!(
            round_trip(&e),
            Error::Io { target, .. } if target == r#"(operation "make tea")"#
        ));
        // A batch keeps it as an extra failure.
        let e = Error::Batch {
            operation: "make tea",
            kind: ErrorKind::Busy,
            errno: Errno(libc::EBUSY),
            failures: vec![],
            more: 0,
        };
        let back = round_trip(&e);
        assert_eq!(back.operation(), Some(REMOTE_OPERATION));
        assert_eq!(back.batch_failures().len(), 1);
        assert_eq!(back.kind(), ErrorKind::Busy);
    }

    #[test]
    fn io_errors_keep_code_or_kind_and_message() {
        let e = Error::io("write", "f", io::Error::from_raw_os_error(libc::EPIPE));
        let back = round_trip(&e);
        assert_eq!(back.errno(), Some(Errno(libc::EPIPE)));
        assert_eq!(back.kind(), ErrorKind::BrokenPipe);
        assert_eq!(back.to_string(), e.to_string());
        let e = Error::io(
            "write",
            "f",
            io::Error::new(io::ErrorKind::UnexpectedEof, "short"),
        );
        let back = round_trip(&e);
        let Error::Io { source, .. } = &back else {
            panic!("{back:?}")
        };
        assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(source.raw_os_error(), None);
        assert_eq!(back.to_string(), e.to_string());
        // Kinds outside the mirror cross as Other, message kept.
        assert_eq!(IoKind::from(io::ErrorKind::Other), IoKind::Other);
        for k in [IoKind::NotFound, IoKind::OutOfMemory, IoKind::Unsupported] {
            assert_eq!(IoKind::from(io::ErrorKind::from(k)), k);
        }
    }

    #[test]
    fn name_errors_are_rebuilt_by_validation() {
        let e = Error::from(crate::DatasetName::new("tank//a").unwrap_err());
        let back = round_trip(&e);
        let (Error::Name(a), Error::Name(b)) = (&e, &back) else {
            panic!("{back:?}")
        };
        assert_eq!(a, b);
        // A name valid here (the peer's rules differ): Invalid, InvalidName.
        let repr: Repr<&str, &[BatchFailure]> = Repr::Name {
            kind_of_name: NameKind::Dataset,
            name: "tank/a",
            reason: "too new".into(),
        };
        let bytes = postcard::to_stdvec(&repr).unwrap();
        let back: Error = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.kind(), ErrorKind::InvalidName);
        assert!(back.to_string().contains("too new"), "{back}");
    }

    #[test]
    fn shape_errors_keep_known_shapes() {
        let missing = Error::shape(
            "lzc_get_holds",
            "tank@s",
            NvListError::MissingKey { key: "k".into() },
        );
        let wrong = Error::shape(
            "ZFS_IOC_OBJSET_STATS",
            "tank",
            NvListError::WrongType {
                key: "used".into(),
                expected: "uint64",
                found: "string",
            },
        );
        for e in [missing, wrong] {
            let back = round_trip(&e);
            match (&e, &back) {
                (Error::Shape { source: a, .. }, Error::Shape { source: b, .. }) => {
                    assert_eq!(a, b)
                }
                _ => panic!("{back:?}"),
            }
            assert_eq!(back.to_string(), e.to_string());
        }
        let malformed = Error::shape(
            "read nvlist",
            "",
            NvListError::Malformed {
                offset: 3,
                reason: "bad",
            },
        );
        let back = round_trip(&malformed);
        assert!(matches!(back, Error::Invalid { .. }), "{back:?}");
        assert_eq!(back.kind(), ErrorKind::UnexpectedShape);
        assert_eq!(back.to_string(), malformed.to_string());
        // Unknown type names: Invalid too.
        let repr: Repr<&str, &[BatchFailure]> = Repr::Shape {
            operation: "lzc_get_holds",
            target: "t",
            source: ShapeRepr::WrongType {
                key: "k",
                expected: "quaternion",
                found: "string",
            },
        };
        let back: Error = postcard::from_bytes(&postcard::to_stdvec(&repr).unwrap()).unwrap();
        assert_eq!(back.kind(), ErrorKind::UnexpectedShape);
        assert!(back.to_string().contains("quaternion"), "{back}");
    }

    #[test]
    fn every_variant_round_trips_its_text_kind_and_errno() {
        let mut errlist = crate::NvList::new();
        errlist
            .insert("tank/a@s", libc::EEXIST)
            .insert("N_MORE_ERRORS", 2i32);
        let errors = [
            Error::from_receive_errno("lzc_receive", "pipe/a", Errno(libc::ETXTBSY)),
            Error::from_batch("lzc_snapshot", Errno(libc::EEXIST), Some(errlist)),
            Error::invalid(
                "lzc_bookmark",
                "tank#m",
                ErrorKind::CrossPool,
                "another pool",
            ),
            Error::from_errno("lzc_send", "tank@s", Errno::RESUME_EXISTS),
        ];
        for e in &errors {
            let back = round_trip(e);
            assert_eq!(back.to_string(), e.to_string());
            assert_eq!(back.kind(), e.kind());
            assert_eq!(back.errno(), e.errno());
            assert_eq!(back.operation(), e.operation());
            assert_eq!(back.batch_failures(), e.batch_failures());
        }
    }
}
