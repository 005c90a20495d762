//! `backup`: a small backup tool on top of zfs-replicate.
//!
//! ```text
//! backup sync SOURCE TARGET [-r|--recursive] [--raw] [--rollback] [--keep N] [--prefix P]
//! backup plan SOURCE TARGET [-r|--recursive] [--raw] [--rollback]
//! backup send SNAPSHOT [--from BASE] [--raw] -o FILE
//! backup receive TARGET -i FILE
//! backup verify FILE
//! ```
//!
//! - `sync` takes `<prefix>_<UTC time>` on SOURCE (and its descendants with
//!   `-r`), replicates everything the target lacks (full, or incremental
//!   from the newest common snapshot or bookmark, matched by GUID), leaves a
//!   bookmark on the source and, with `--keep N`, prunes our snapshots on
//!   both sides to the newest N (never the new common base). A diverged
//!   target is refused, unchanged, unless `--rollback`; a target with no
//!   common snapshot is always refused. The prefix defaults to `backup`.
//! - `plan` prints what `sync` would send (with the same `-r`, `--raw` and
//!   `--rollback`), changes nothing, and exits 3 if the plan is blocked.
//! - `send` writes one stream of SNAPSHOT to a new FILE, incremental with
//!   `--from`. BASE is a full name (`pool/fs@snap`, `pool/fs#mark`), or a
//!   short one resolved in SNAPSHOT's dataset: `@snap` or a bare `snap`
//!   means the snapshot `dataset@snap`, `#mark` the bookmark `dataset#mark`.
//! - `receive` verifies FILE, then receives it into TARGET (never mounted:
//!   `canmount=off`); a bad stream leaves no TARGET behind.
//! - `verify` checks every record checksum of FILE without any pool.
//!
//! Names are taken whole from their argument, spaces included. Options may
//! come anywhere after the command, also as `--keep=N`; `--` ends options.
//!
//! Errors are one line on stderr, `backup: <message>`, with the exit code:
//! 2 usage (including an invalid name), 3 divergence or no common snapshot
//! (also a stream whose base the target lacks), 4 a bad or damaged stream,
//! 5 not found (dataset, snapshot, bookmark or file), 1 anything else.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use zfs_replicate::core::{BookmarkName, DatasetName, SnapshotName, SnapshotOrBookmark, Zfs};
use zfs_replicate::{
    file, Action, Error, ErrorKind, ExecuteOptions, Observer, Progress, Replication,
};

const USAGE: &str = "usage:
  backup sync SOURCE TARGET [-r|--recursive] [--raw] [--rollback] [--keep N] [--prefix P]
      snapshot SOURCE as <P>_<UTC time> (P defaults to \"backup\"), replicate it into
      TARGET, and with --keep prune our snapshots on both sides to the newest N
  backup plan SOURCE TARGET [-r|--recursive] [--raw] [--rollback]
      print what sync would send; changes nothing
  backup send SNAPSHOT [--from BASE] [--raw] -o FILE
      write a stream of SNAPSHOT to a new FILE; BASE is pool/fs@snap, pool/fs#mark,
      or @snap, snap, #mark in SNAPSHOT's dataset
  backup receive TARGET -i FILE
      verify FILE, then receive it into TARGET
  backup verify FILE
      check every record of FILE; exit 0 only for an intact stream

exit codes: 0 ok, 1 other error, 2 usage, 3 divergence or no common snapshot,
            4 bad or damaged stream, 5 not found";

/// Writes a line to stdout, ignoring a closed stdout (no panic on `| head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, $($arg)*);
        let _ = o.flush();
    }};
}

/// Why the command failed, and so its exit code.
enum Fail {
    /// Bad command line: exit 2.
    Usage(String),
    /// A library error, classified by [`lib_code`].
    Lib(Error),
    /// Anything else, with its code.
    Other(u8, String),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Lib(e)
    }
}

fn usage(msg: impl Display) -> Fail {
    Fail::Usage(msg.to_string())
}

fn lib_code(e: &Error) -> u8 {
    match e.kind() {
        ErrorKind::NotFound => 5,
        ErrorKind::BadStream => 4,
        // No common base, or the target moved on from (or lacks) the base.
        ErrorKind::Diverged => 3,
        _ => 1,
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(fail) => {
            let (code, msg) = match fail {
                Fail::Usage(m) => (2, format!("{m} (see backup --help)")),
                Fail::Lib(e) => (lib_code(&e), e.to_string()),
                Fail::Other(code, m) => (code, m),
            };
            // One line, whatever the message holds.
            let msg: String = msg
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let _ = writeln!(std::io::stderr().lock(), "backup: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run(args: &[OsString]) -> Result<u8, Fail> {
    let Some(command) = args.first() else {
        return Err(usage("missing command"));
    };
    let rest = &args[1..];
    let command = command.to_str().unwrap_or("");
    match command {
        "-h" | "--help" | "help" => {
            out!("{USAGE}");
            Ok(0)
        }
        "sync" => sync(rest),
        "plan" => plan(rest),
        "send" => send(rest),
        "receive" | "recv" => receive(rest),
        "verify" => verify(rest),
        _ => Err(usage(format!(
            "unknown command {:?}",
            args[0].to_string_lossy()
        ))),
    }
}

// ---------------------------------------------------------------- arguments

/// One option a command accepts.
struct Opt {
    names: &'static [&'static str],
    /// The key it is stored under.
    key: &'static str,
    takes_value: bool,
}

const RECURSIVE: Opt = Opt {
    names: &["-r", "--recursive"],
    key: "recursive",
    takes_value: false,
};
const RAW: Opt = Opt {
    names: &["--raw"],
    key: "raw",
    takes_value: false,
};
const ROLLBACK: Opt = Opt {
    names: &["--rollback"],
    key: "rollback",
    takes_value: false,
};
const KEEP: Opt = Opt {
    names: &["--keep"],
    key: "keep",
    takes_value: true,
};
const PREFIX: Opt = Opt {
    names: &["--prefix"],
    key: "prefix",
    takes_value: true,
};
const FROM: Opt = Opt {
    names: &["--from"],
    key: "from",
    takes_value: true,
};
const OUTPUT: Opt = Opt {
    names: &["-o", "--output"],
    key: "output",
    takes_value: true,
};
const INPUT: Opt = Opt {
    names: &["-i", "--input"],
    key: "input",
    takes_value: true,
};

/// A parsed command line: positionals, switches given, option values.
struct Parsed {
    positional: Vec<OsString>,
    switches: Vec<&'static str>,
    values: HashMap<&'static str, OsString>,
}

impl Parsed {
    fn has(&self, key: &str) -> bool {
        self.switches.contains(&key)
    }
    fn value(&self, key: &str) -> Option<&OsString> {
        self.values.get(key)
    }
}

/// Parses `args` for `command`, which takes exactly the positionals named
/// in `positional` and the options `opts`. `Ok(None)` means help was asked.
fn parse(
    command: &str,
    args: &[OsString],
    positional: &[&str],
    opts: &[Opt],
) -> Result<Option<Parsed>, Fail> {
    let mut p = Parsed {
        positional: Vec::new(),
        switches: Vec::new(),
        values: HashMap::new(),
    };
    let mut i = 0;
    let mut only_positional = false;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let text = arg.to_str();
        let is_option = !only_positional
            && arg.as_encoded_bytes().starts_with(b"-")
            && arg.as_encoded_bytes().len() > 1;
        if !is_option {
            p.positional.push(arg.clone());
            continue;
        }
        let Some(text) = text else {
            return Err(usage(format!(
                "unknown option {:?} for {command}",
                arg.to_string_lossy()
            )));
        };
        if text == "--" {
            only_positional = true;
            continue;
        }
        if text == "-h" || text == "--help" {
            return Ok(None);
        }
        // `--name=value`
        let (name, inline) = match text.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (text, None),
        };
        let Some(opt) = opts.iter().find(|o| o.names.contains(&name)) else {
            return Err(usage(format!("unknown option {text:?} for {command}")));
        };
        if !opt.takes_value {
            if inline.is_some() {
                return Err(usage(format!("option {name} takes no value")));
            }
            if !p.switches.contains(&opt.key) {
                p.switches.push(opt.key);
            }
            continue;
        }
        let value = match inline {
            Some(v) => OsString::from(v),
            None => {
                let Some(v) = args.get(i) else {
                    return Err(usage(format!("option {name} needs a value")));
                };
                i += 1;
                v.clone()
            }
        };
        if p.values.insert(opt.key, value).is_some() {
            return Err(usage(format!("option {name} given twice")));
        }
    }
    if p.positional.len() != positional.len() {
        let want = positional.join(" ");
        return Err(usage(if p.positional.len() < positional.len() {
            format!(
                "{command} needs {want}; missing {}",
                positional[p.positional.len()..].join(" ")
            )
        } else {
            format!(
                "{command} takes {want}; unexpected argument {:?}",
                p.positional[positional.len()].to_string_lossy()
            )
        }));
    }
    Ok(Some(p))
}

fn utf8<'a>(what: &str, arg: &'a OsStr) -> Result<&'a str, Fail> {
    arg.to_str().ok_or_else(|| {
        usage(format!(
            "{what} {:?} is not valid UTF-8",
            arg.to_string_lossy()
        ))
    })
}

fn dataset_arg(what: &str, arg: &OsStr) -> Result<DatasetName, Fail> {
    DatasetName::new(utf8(what, arg)?).map_err(|e| usage(format!("{what}: {e}")))
}

fn snapshot_arg(what: &str, arg: &OsStr) -> Result<SnapshotName, Fail> {
    SnapshotName::new(utf8(what, arg)?).map_err(|e| usage(format!("{what}: {e}")))
}

/// `--from`: a full snapshot or bookmark name, or a short one in
/// `snapshot`'s dataset (`@snap`, `snap`, `#mark`).
fn base_arg(snapshot: &SnapshotName, arg: &OsStr) -> Result<SnapshotOrBookmark, Fail> {
    let text = utf8("--from", arg)?;
    let dataset = snapshot.dataset();
    let bad = |e: zfs_replicate::core::NameError| usage(format!("--from: {e}"));
    Ok(if let Some(mark) = text.strip_prefix('#') {
        BookmarkName::from_parts(&dataset, mark)
            .map_err(bad)?
            .into()
    } else if let Some(snap) = text.strip_prefix('@') {
        SnapshotName::from_parts(&dataset, snap)
            .map_err(bad)?
            .into()
    } else if text.contains('#') {
        BookmarkName::new(text).map_err(bad)?.into()
    } else if text.contains('@') {
        SnapshotName::new(text).map_err(bad)?.into()
    } else {
        SnapshotName::from_parts(&dataset, text)
            .map_err(bad)?
            .into()
    })
}

fn keep_arg(arg: Option<&OsString>) -> Result<Option<usize>, Fail> {
    let Some(arg) = arg else { return Ok(None) };
    match arg.to_str().and_then(|s| s.parse::<usize>().ok()) {
        Some(n) if n >= 1 => Ok(Some(n)),
        _ => Err(usage(format!(
            "--keep needs a whole number of at least 1, not {:?}",
            arg.to_string_lossy()
        ))),
    }
}

fn prefix_arg(arg: Option<&OsString>) -> Result<String, Fail> {
    let Some(arg) = arg else {
        return Ok("backup".to_owned());
    };
    let prefix = utf8("--prefix", arg)?;
    // It becomes part of snapshot, bookmark and hold names.
    let ok = !prefix.is_empty()
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if !ok {
        return Err(usage(format!(
            "--prefix {prefix:?}: use ASCII letters, digits and _ - . : only"
        )));
    }
    Ok(prefix.to_owned())
}

fn open() -> Result<Zfs, Fail> {
    Zfs::open().map_err(|e| {
        Fail::Other(
            1,
            format!("cannot use ZFS (is the module loaded, and are you root?): {e}"),
        )
    })
}

// ---------------------------------------------------------------- commands

fn replication(p: &Parsed) -> Result<Replication, Fail> {
    let source = dataset_arg("SOURCE", &p.positional[0])?;
    let target = dataset_arg("TARGET", &p.positional[1])?;
    Ok(Replication::new(source, target)
        .recursive(p.has("recursive"))
        .raw(p.has("raw"))
        .rollback(p.has("rollback")))
}

fn sync(args: &[OsString]) -> Result<u8, Fail> {
    let Some(p) = parse(
        "sync",
        args,
        &["SOURCE", "TARGET"],
        &[RECURSIVE, RAW, ROLLBACK, KEEP, PREFIX],
    )?
    else {
        out!("{USAGE}");
        return Ok(0);
    };
    let keep = keep_arg(p.value("keep"))?;
    let prefix = prefix_arg(p.value("prefix"))?;
    let repl = replication(&p)?.prefix(prefix.clone());
    let zfs = open()?;
    out!(
        "sync {} -> {}{}",
        repl.source(),
        repl.target(),
        if p.has("recursive") {
            " (recursive)"
        } else {
            ""
        }
    );
    let opts = ExecuteOptions {
        observer: Some(progress_printer()),
        ..ExecuteOptions::default()
    };
    let r = repl.sync(&zfs, &opts, keep)?;

    out!(
        "snapshot: took @{} on {} dataset(s)",
        r.snapshot,
        r.plan.steps.len()
    );
    let mut count = 0;
    for step in &r.plan.steps {
        if let Some(rb) = &step.rollback {
            out!(
                "  {}: rolled back to {}{}",
                step.target,
                rb.to,
                if rb.destroy.is_empty() {
                    String::new()
                } else {
                    let names: Vec<&str> = rb.destroy.iter().map(|s| s.short_name()).collect();
                    format!(", destroying {}", names.join(", "))
                }
            );
        }
        let what = match &step.action {
            Action::Full { then, .. } => format!("full, {} snapshot(s)", 1 + then.len()),
            Action::Incremental {
                base, snapshots, ..
            } => format!(
                "incremental from {}, {} snapshot(s)",
                base.name(),
                snapshots.len()
            ),
            Action::Resume { then, .. } => {
                format!("resumed, then {} snapshot(s)", then.len())
            }
            Action::UpToDate => "up to date".to_owned(),
            _ => "other".to_owned(),
        };
        let transfers = r
            .report
            .transfers
            .iter()
            .find(|(t, _)| t == &step.target)
            .map(|(_, t)| t.as_slice())
            .unwrap_or(&[]);
        let bytes: u64 = transfers.iter().map(|t| t.bytes).sum();
        out!(
            "  {} -> {}: {what}: {bytes} bytes",
            step.source,
            step.target
        );
        for t in transfers {
            out!("      @{}: {} bytes", t.snapshot.short_name(), t.bytes);
            count += 1;
        }
    }
    for removed in &r.plan.removed_on_source {
        out!("  {removed}: its source is gone; kept");
    }
    for b in &r.report.bookmarks {
        out!("bookmark: {b}");
    }
    if keep.is_some() {
        for (side, pruned) in [("source", &r.pruned_source), ("target", &r.pruned_target)] {
            for s in &pruned.destroyed {
                out!("pruned: {s}");
            }
            for s in &pruned.kept_held {
                out!("kept (held): {s}");
            }
            if pruned.destroyed.is_empty() {
                out!("pruned: nothing on the {side}");
            }
        }
    }
    out!("done: {} bytes in {count} transfer(s)", r.report.bytes());
    Ok(0)
}

/// Prints a line per 64 MiB moved into each dataset.
fn progress_printer() -> Observer {
    const STEP: u64 = 64 << 20;
    let reported: Mutex<HashMap<String, u64>> = Mutex::new(HashMap::new());
    Arc::new(move |p: &Progress<'_>| {
        let mut seen = reported.lock().unwrap_or_else(|e| e.into_inner());
        let last = seen.entry(p.target.to_string()).or_insert(0);
        if p.bytes / STEP > *last / STEP {
            *last = p.bytes;
            out!(
                "  progress: {} @{}: {} MiB of about {} MiB",
                p.target,
                p.snapshot.short_name(),
                p.bytes >> 20,
                p.estimated_bytes >> 20
            );
        }
    })
}

fn plan(args: &[OsString]) -> Result<u8, Fail> {
    let Some(p) = parse(
        "plan",
        args,
        &["SOURCE", "TARGET"],
        &[RECURSIVE, RAW, ROLLBACK],
    )?
    else {
        out!("{USAGE}");
        return Ok(0);
    };
    let repl = replication(&p)?;
    let zfs = open()?;
    let plan = repl.plan(&zfs)?;
    out!("{}", plan.to_string().trim_end());
    let divergences = plan.divergences();
    if !divergences.is_empty() {
        return Err(Error::Diverged(divergences).into());
    }
    if plan.is_up_to_date() {
        out!("up to date: nothing to send");
    } else {
        out!("to send: about {} bytes", plan.estimated_bytes());
    }
    Ok(0)
}

fn send(args: &[OsString]) -> Result<u8, Fail> {
    let Some(p) = parse("send", args, &["SNAPSHOT"], &[FROM, RAW, OUTPUT])? else {
        out!("{USAGE}");
        return Ok(0);
    };
    let snapshot = snapshot_arg("SNAPSHOT", &p.positional[0])?;
    let from = p
        .value("from")
        .map(|f| base_arg(&snapshot, f))
        .transpose()?;
    let Some(output) = p.value("output") else {
        return Err(usage("send needs -o FILE"));
    };
    let path = PathBuf::from(output);
    let zfs = open()?;
    let bytes = file::send_to_file(&zfs, &snapshot, from.clone(), p.has("raw"), &path)?;
    out!(
        "wrote {snapshot}{}{} to {}: {bytes} bytes",
        match &from {
            Some(f) => format!(" (incremental from {})", f.as_str()),
            None => " (full)".to_owned(),
        },
        if p.has("raw") { " raw" } else { "" },
        path.display()
    );
    Ok(0)
}

fn receive(args: &[OsString]) -> Result<u8, Fail> {
    let Some(p) = parse("receive", args, &["TARGET"], &[INPUT])? else {
        out!("{USAGE}");
        return Ok(0);
    };
    let target = dataset_arg("TARGET", &p.positional[0])?;
    let Some(input) = p.value("input") else {
        return Err(usage("receive needs -i FILE"));
    };
    let path = Path::new(input);
    let zfs = open()?;
    let received = file::receive_file(&zfs, &target, path)?;
    out!(
        "received {} from {}: {} bytes, guid {:#x}{}",
        received.snapshot,
        path.display(),
        received.bytes,
        received.begin.to_guid,
        if received.begin.from_guid == 0 {
            " (full)".to_owned()
        } else {
            format!(" (incremental from guid {:#x})", received.begin.from_guid)
        }
    );
    if let Some(errors) = &received.property_errors {
        for (name, _) in errors.iter() {
            out!("  property {name} was not set");
        }
    }
    Ok(0)
}

fn verify(args: &[OsString]) -> Result<u8, Fail> {
    let Some(p) = parse("verify", args, &["FILE"], &[])? else {
        out!("{USAGE}");
        return Ok(0);
    };
    let path = Path::new(&p.positional[0]);
    if path.is_dir() {
        return Err(Fail::Other(
            1,
            format!("{}: is a directory", path.display()),
        ));
    }
    let summary = file::verify_file(path)?;
    out!(
        "{}: intact {}stream, {} bytes, {} substream(s)",
        path.display(),
        if summary.compound { "compound " } else { "" },
        summary.total_bytes,
        summary.substreams.len()
    );
    for (i, s) in summary.substreams.iter().enumerate() {
        out!("  substream {}: {}", i + 1, s.to_name);
        if s.from_guid == 0 {
            out!("    full, to guid {:#x}", s.to_guid);
        } else {
            out!(
                "    incremental from guid {:#x} to guid {:#x}",
                s.from_guid,
                s.to_guid
            );
        }
        let counts: Vec<String> = s
            .record_counts
            .iter()
            .zip(zfs_replicate::stream::RECORD_NAMES)
            .filter(|(n, _)| **n > 0)
            .map(|(n, t)| format!("{t} {n}"))
            .collect();
        out!("    {} records ({})", s.records, counts.join(", "));
        out!("    {} bytes, {} of them payload", s.bytes, s.payload_bytes);
        let mut features = s.features.names().join(" ");
        if s.features.unknown_bits() != 0 {
            features.push_str(&format!(" unknown {:#x}", s.features.unknown_bits()));
        }
        out!(
            "    features: {}",
            if features.is_empty() {
                "none"
            } else {
                features.trim()
            }
        );
        let [a, b, c, d] = s.checksum;
        out!("    checksum {a:x}/{b:x}/{c:x}/{d:x}");
    }
    Ok(0)
}
