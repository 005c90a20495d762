//! `backup`: a small backup tool on top of zfs-replicate.
//!
//! ```text
//! backup sync SOURCE TARGET [-r|--recursive] [--raw] [--rollback] [--prefix P]
//!             [--keep N] [--keep-source N] [--keep-target N] [--retain GRID]
//!             [SELECTION] [--set PROP=VALUE]… [--exclude-property PROP]… [--json] [REMOTE]
//!             [--import DIR_OR_DEVICE] [--export-after]
//! backup drives [-d DIR]…
//! backup plan SOURCE TARGET [-r|--recursive] [--raw] [--rollback] [--prefix P] [SELECTION]
//!             [--keep N] [--keep-source N] [--keep-target N] [--retain GRID]
//!             [--set PROP=VALUE]… [--exclude-property PROP]… [--json] [REMOTE]
//! backup serve (--listen HOST:PORT | --stdio) [--allow DATASET[:send|:receive|:all] …]
//!              [--token-file FILE]
//! backup prune DATASET (--keep N | --retain GRID) [-r|--recursive] [--prefix P]
//! backup load-key DATASET
//! backup send SNAPSHOT [--from BASE] [--raw] -o FILE
//! backup receive TARGET -i FILE
//! backup verify FILE
//!
//! SELECTION: [--exclude GLOB]… [--only-property PROP=VALUE]
//!            [--initial all|most-recent] [--create-parents]
//! REMOTE: SOURCE or TARGET written as tcp://HOST:PORT/DATASET [--token-file FILE],
//!         or --via-target 'COMMAND' | --via-source 'COMMAND' [--token-file FILE]
//! ```
//!
//! - `sync` takes `<prefix>_<UTC time>` on SOURCE (and its descendants with
//!   `-r`), replicates everything the target lacks (full, or incremental
//!   from the newest common snapshot or bookmark, matched by GUID), leaves a
//!   bookmark on the source and prunes our snapshots to the newest N:
//!   `--keep N` on both sides, `--keep-source N` / `--keep-target N` on one
//!   (a side's own option wins over `--keep`); never the new common base.
//!   `--retain GRID` (such as `1h:24,1d:30,1w:8,1m:12`: 24 hourly, 30
//!   daily, 8 weekly, 12 monthly; units `min h d w m y`, a month is 30 days)
//!   keeps one of ours per slot by the time in its name, and always the
//!   newest; it replaces `--keep N`, and `--keep-source`/`--keep-target`
//!   still win on their side. A
//!   diverged target is refused, unchanged, unless `--rollback`; a target
//!   with no common snapshot is always refused. The prefix defaults to
//!   `backup`.
//! - `--set PROP=VALUE` and `--exclude-property PROP` (repeatable) set or
//!   exclude properties of the datasets the run creates on the target, as
//!   `zfs receive -o`/`-x` (values as `zfs set` takes them); they replace the
//!   defaults (`readonly=on`, `canmount=noauto`). A `:receive` server takes
//!   only those defaults.
//! - Selection: `--exclude GLOB` (repeatable) skips the datasets whose name
//!   relative to SOURCE matches (`*` within a name, `**` across `/`, `?`)
//!   and everything below them; `--only-property PROP=VALUE` keeps only the
//!   datasets whose user property PROP, set there or inherited, is VALUE
//!   (skipped datasets are not snapshotted, sent, pruned or destroyed);
//!   `--initial most-recent` starts a new target from the newest snapshot
//!   only; `--create-parents` creates a new target's missing parents as
//!   empty `canmount=off` filesystems (without it a missing parent blocks
//!   the plan, exit 3).
//! - `--import DIR_OR_DEVICE` (`sync`, local TARGET): before anything
//!   else, find TARGET's pool on the devices in DIR (or on the one device
//!   or file given), and import it with nothing mounted and not recorded in
//!   the system's cache file; nothing to do when it is imported already
//!   (`drive:` lines say which). A pool that is not ONLINE (a DEGRADED
//!   mirror) gets a warning line on stderr, naming the vdevs, before
//!   anything is written; one that is FAULTED, UNAVAIL or whose I/O is
//!   suspended (a drive pulled while imported) is refused (exit 1), and so
//!   is a pool last used by another system and not exported there.
//!   `--export-after` exports TARGET's pool when the sync ends, even when
//!   it failed (the sync's error is the one reported, exit code and all),
//!   and prints `drive: exported POOL: safe to disconnect`; not a pool
//!   whose I/O is suspended (it says so). DIR may be relative.
//! - `drives` lists the pools that can be imported from the devices in
//!   each `-d DIR` (default `/dev/disk/by-id`; a device or file is taken as
//!   it is), one line each: `NAME GUID STATE` (STATE as `zpool import`
//!   shows it: ONLINE, DEGRADED, UNAVAIL…). Imported pools are not listed.
//!   None found: exit 5.
//! - `plan` prints what `sync` would send (with the same `-r`, `--raw`,
//!   `--rollback`, `--prefix` and selection), then the snapshot `sync`
//!   would take and send to every target, changes nothing, and exits 3 if
//!   the plan is blocked. It takes sync's retention options too, and
//!   checks them as sync does (exit 2), but prunes nothing.
//! - `--json` (`plan`, `sync`): one JSON document on stdout (the plan, or
//!   the sync report; the shape is zfs-replicate's `serde` feature) and
//!   nothing else there. `sync`'s progress lines go to stderr; its summary
//!   is the document. A blocked plan is printed, then exits 3; a failed
//!   sync prints nothing on stdout. Errors stay one line on stderr, with
//!   the same exit codes.
//! - `serve` answers one remote client (`--stdio`: on stdin and stdout, for
//!   `ssh`) or every client that connects (`--listen`, at most 8 at once;
//!   it prints `backup: listening on ADDR` to stderr, the bound address, so
//!   port 0 shows the port chosen). Each `--allow` grants a dataset and
//!   everything below it: `:send` (be a source), `:receive` (be an
//!   append-only target: no destroy, no rollback), `:all` (also the
//!   default, without a suffix). With no `--allow` every request is refused.
//!   `--listen` on an address other than loopback needs `--token-file`.
//!   Plain TCP is not encrypted: across networks you do not trust, use
//!   `--via-*` with ssh, or a VPN.
//! - A remote side: `tcp://HOST:PORT/DATASET` connects to a `serve
//!   --listen`; `--via-target 'COMMAND'` (`--via-source`) runs COMMAND with
//!   `sh -c` (such as `ssh -T backup@nas`, whose forced command is `backup
//!   serve --stdio …`) and speaks to it on its stdin and stdout; its stderr
//!   is ours. The TARGET (SOURCE) name stays as given and is the dataset on
//!   the far side. One side at most is remote. A sync that needs what the
//!   server does not grant is refused before anything changes: against a
//!   `:receive` server, prune with `--keep-source N`, not `--keep N`.
//!   `--token-file` gives the server's token (TCP).
//! - `prune` destroys our snapshots (`<prefix>_<UTC time>`) of DATASET (and
//!   its descendants with `-r`) beyond the newest N (or outside the grid),
//!   here, without a sync:
//!   never a held snapshot, nor another tool's. It is how a `:receive`
//!   server, whose clients cannot destroy anything, keeps its backups
//!   bounded (run it from the server's own cron). The newest of ours stays
//!   (N is at least 1): it is the base the next incremental needs.
//! - `load-key` loads the key of the encryption root DATASET (such as a raw
//!   backup) from stdin, in the dataset's `keyformat` (32 raw bytes, 64 hex
//!   digits, or a passphrase; a trailing newline is ignored). A wrong key
//!   exits 6 and loads nothing.
//! - `send` writes one stream of SNAPSHOT to a new FILE, incremental with
//!   `--from`. BASE is a full name (`pool/fs@snap`, `pool/fs#mark`), or a
//!   short one resolved in SNAPSHOT's dataset: `@snap` or a bare `snap`
//!   means the snapshot `dataset@snap`, `#mark` the bookmark `dataset#mark`.
//!   `--parity PERCENT` (1 to 50) also writes the parity sidecar FILE.zpar
//!   in the same pass; FILE stays a plain stream.
//! - `receive` checks FILE, then receives it into TARGET (a full stream
//!   creates it `readonly=on`, `canmount=noauto`: never mounted by itself);
//!   a bad stream leaves no TARGET behind. With FILE.zpar beside it, a
//!   damaged FILE is received through its repair (FILE itself is left as it
//!   is), with a warning line `backup: warning: repaired N bytes at RANGES`
//!   on stderr, and exit 0; beyond the parity, exit 4 and nothing received.
//! - `verify` checks every record checksum of FILE without any pool; with
//!   FILE.zpar beside it, every block against the sidecar too: exit 0
//!   intact, 7 damaged but repairable (the damaged byte ranges and the
//!   margin are listed), 4 unrecoverable (the ranges and why).
//! - `repair` rebuilds a damaged FILE from FILE.zpar, atomically (a
//!   temporary file, verified, then renamed over FILE), and a damaged
//!   sidecar from the stream: exit 0 repaired or already intact, 4
//!   unrecoverable (FILE left unchanged), 5 without a sidecar.
//!
//! Names are taken whole from their argument, spaces included. Options may
//! come anywhere after the command, also as `--keep=N`; `--` ends options.
//!
//! Errors are one line on stderr, `backup: <message>`, with the exit code:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | ok |
//! | 1 | anything else, including a connection that cannot be made or is lost, a protocol error, a wrong token, and a `--via-*` command that exits before the handshake |
//! | 2 | usage: a bad command line (an invalid name, two remote sides, a bad `--allow`), an unusable token file, `--listen` beyond loopback without a token |
//! | 3 | divergence or no common snapshot (also a stream whose base the target lacks) |
//! | 4 | a bad or damaged stream |
//! | 5 | not found (dataset, snapshot, bookmark or file; `drives`: no importable pool; `--import`: TARGET's pool is not on the devices) |
//! | 6 | permission denied: a request the server's policy refuses (the line names the dataset and the operation; `sync` refuses up front what the run would need), or one the kernel refuses (EPERM: not root, no `zfs allow`) |
//! | 7 | `verify`: damaged, but its sidecar can repair it |

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Display;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zfs_replicate::core::pool::{ImportOptions, SearchPaths, VdevState};
use zfs_replicate::core::{
    BookmarkName, DatasetName, PoolName, SnapshotName, SnapshotOrBookmark, Zfs,
};
use zfs_replicate::endpoint::{Endpoint, Local};
use zfs_replicate::parity::{self, Condition, Parity};
use zfs_replicate::prune::{PruneReport, Retention};
use zfs_replicate::remote::{self, Channel, Client, ClientOptions, Policy, ServeOptions};
use zfs_replicate::retention::{Grid, Rule};
use zfs_replicate::{
    file, Action, DatasetFilter, Error, ErrorKind, ExecuteOptions, Initial, Keep, Op, Progress,
    Replication,
};

const USAGE: &str = "usage:
  backup sync SOURCE TARGET [-r|--recursive] [--raw] [--rollback] [--prefix P]
              [--keep N] [--keep-source N] [--keep-target N] [--retain GRID]
              [SELECTION] [--set PROP=VALUE]... [--exclude-property PROP]... [--json] [REMOTE]
              [--import DIR_OR_DEVICE] [--export-after]
      snapshot SOURCE as <P>_<UTC time> (P defaults to \"backup\"), replicate it into
      TARGET, and prune our snapshots to the newest N: --keep on both sides,
      --keep-source or --keep-target on one (it wins over --keep); --retain GRID
      (e.g. 1h:24,1d:30,1w:8,1m:12) keeps one per time slot instead; datasets it
      creates are readonly=on, canmount=noauto unless --set/--exclude-property
      (zfs receive -o/-x) say otherwise; --import first imports TARGET's pool from
      the devices in DIR (or the one device) with nothing mounted (a pool that is
      not ONLINE is reported first), --export-after exports it at the end, even
      after a failure
  backup drives [-d DIR]...
      one line per pool importable from the devices in DIR (default
      /dev/disk/by-id): NAME GUID STATE; exit 5 when there is none
  backup plan SOURCE TARGET [-r|--recursive] [--raw] [--rollback] [--prefix P] [SELECTION]
              [--keep N] [--keep-source N] [--keep-target N] [--retain GRID]
              [--set PROP=VALUE]... [--exclude-property PROP]... [--json] [REMOTE]
      print what sync would send, and the snapshot it would take; changes nothing
    [--json]  one JSON document on stdout (the plan, or the sync report) and
              nothing else there; sync's progress goes to stderr
  backup serve (--listen HOST:PORT | --stdio) [--allow DATASET[:send|:receive|:all] ...]
               [--token-file FILE]
      serve remote clients: every client that connects to HOST:PORT (prints
      \"backup: listening on ADDR\"), or one on stdin/stdout (for ssh). Each --allow
      grants DATASET and below: send (be a source), receive (be a target,
      append-only: no destroy, no rollback), all (the default). No --allow:
      every request is refused. Beyond loopback, --listen needs --token-file.
  backup prune DATASET (--keep N | --retain GRID) [-r|--recursive] [--prefix P]
      destroy our snapshots of DATASET beyond the newest N, here (no sync): how a
      receive-only server keeps its backups bounded; never held ones, nor others'
  backup load-key DATASET
      load the key of the encryption root DATASET from stdin (its keyformat)
  backup send SNAPSHOT [--from BASE] [--raw] -o FILE [--parity PERCENT]
      write a stream of SNAPSHOT to a new FILE; BASE is pool/fs@snap, pool/fs#mark,
      or @snap, snap, #mark in SNAPSHOT's dataset; --parity (1 to 50) also writes
      the parity sidecar FILE.zpar
  backup receive TARGET -i FILE
      check FILE, then receive it into TARGET; with FILE.zpar, a damaged FILE is
      received through its repair (a warning names the ranges; FILE is unchanged)
  backup verify FILE
      check every record of FILE (and every block against FILE.zpar): exit 0
      intact, 7 damaged but repairable (ranges listed), 4 unrecoverable
  backup repair FILE
      rebuild a damaged FILE (and FILE.zpar) from FILE.zpar: exit 0 repaired or
      already intact, 4 unrecoverable (FILE left unchanged)

SELECTION (sync and plan):
  --exclude GLOB              skip datasets whose name relative to SOURCE matches
                              (* within a name, ** across /, ?), and below them
  --only-property PROP=VALUE  only datasets whose user property PROP (set there or
                              inherited) is VALUE
  --initial all|most-recent   what the first full send carries (default: all)
  --create-parents            create missing parents of new targets (canmount=off)

REMOTE (one side at most):
  SOURCE or TARGET as tcp://HOST:PORT/DATASET   a backup serve --listen (plain TCP,
                                                not encrypted: use ssh or a VPN)
  --via-target 'COMMAND'    run COMMAND with sh -c (such as 'ssh -T backup@nas'
  --via-source 'COMMAND'    running backup serve --stdio) and use it as the
                            TARGET's (SOURCE's) side; the name stays as given
  --token-file FILE         the server's token (mode 600, at least 16 bytes)
  A sync needing what the server does not allow is refused before anything
  changes: against a :receive server use --keep-source N, not --keep N.

exit codes: 0 ok, 1 other error (also a connection that cannot be made or is lost,
            a wrong token, a --via command that exits early), 2 usage (also a bad
            token file, --listen beyond loopback without a token), 3 divergence or
            no common snapshot, 4 bad or damaged stream, 5 not found (also: no
            importable pool),
            6 permission denied: refused by the server's policy, or by the kernel
            (EPERM: not root, no zfs allow), 7 (verify) damaged but repairable";

/// Writes a line to stdout, ignoring a closed stdout (no panic on `| head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, $($arg)*);
        let _ = o.flush();
    }};
}

/// `--json`: `value` as one JSON document on stdout.
fn print_json(value: &impl serde::Serialize) -> Result<(), Fail> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Fail::Other(1, format!("cannot write JSON: {e}")))?;
    out!("{text}");
    Ok(())
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
        // A server's policy, or the kernel (EPERM).
        ErrorKind::PermissionDenied => 6,
        // Disconnected, Protocol (a wrong token too), and the rest.
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
        "drives" => drives(rest),
        "plan" => plan(rest),
        "send" => send(rest),
        "receive" | "recv" => receive(rest),
        "verify" => verify(rest),
        "repair" => repair(rest),
        "serve" => serve(rest),
        "prune" => prune(rest),
        "load-key" => load_key(rest),
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
    /// May be given more than once (`--allow`); its values add up.
    repeatable: bool,
}

const RECURSIVE: Opt = Opt {
    names: &["-r", "--recursive"],
    key: "recursive",
    takes_value: false,
    repeatable: false,
};
const RAW: Opt = Opt {
    names: &["--raw"],
    key: "raw",
    takes_value: false,
    repeatable: false,
};
const ROLLBACK: Opt = Opt {
    names: &["--rollback"],
    key: "rollback",
    takes_value: false,
    repeatable: false,
};
const KEEP: Opt = Opt {
    names: &["--keep"],
    key: "keep",
    takes_value: true,
    repeatable: false,
};
const PREFIX: Opt = Opt {
    names: &["--prefix"],
    key: "prefix",
    takes_value: true,
    repeatable: false,
};
const FROM: Opt = Opt {
    names: &["--from"],
    key: "from",
    takes_value: true,
    repeatable: false,
};
const OUTPUT: Opt = Opt {
    names: &["-o", "--output"],
    key: "output",
    takes_value: true,
    repeatable: false,
};
const PARITY: Opt = Opt {
    names: &["--parity"],
    key: "parity",
    takes_value: true,
    repeatable: false,
};
const INPUT: Opt = Opt {
    names: &["-i", "--input"],
    key: "input",
    takes_value: true,
    repeatable: false,
};

const KEEP_SOURCE: Opt = Opt {
    names: &["--keep-source"],
    key: "keep-source",
    takes_value: true,
    repeatable: false,
};
const KEEP_TARGET: Opt = Opt {
    names: &["--keep-target"],
    key: "keep-target",
    takes_value: true,
    repeatable: false,
};
const VIA_SOURCE: Opt = Opt {
    names: &["--via-source"],
    key: "via-source",
    takes_value: true,
    repeatable: false,
};
const VIA_TARGET: Opt = Opt {
    names: &["--via-target"],
    key: "via-target",
    takes_value: true,
    repeatable: false,
};
const TOKEN_FILE: Opt = Opt {
    names: &["--token-file"],
    key: "token-file",
    takes_value: true,
    repeatable: false,
};
const LISTEN: Opt = Opt {
    names: &["--listen"],
    key: "listen",
    takes_value: true,
    repeatable: false,
};
const STDIO: Opt = Opt {
    names: &["--stdio"],
    key: "stdio",
    takes_value: false,
    repeatable: false,
};
const RETAIN: Opt = Opt {
    names: &["--retain"],
    key: "retain",
    takes_value: true,
    repeatable: false,
};
const SET: Opt = Opt {
    names: &["--set"],
    key: "set",
    takes_value: true,
    repeatable: true,
};
const EXCLUDE_PROPERTY: Opt = Opt {
    names: &["--exclude-property"],
    key: "exclude-property",
    takes_value: true,
    repeatable: true,
};
const EXCLUDE: Opt = Opt {
    names: &["--exclude"],
    key: "exclude",
    takes_value: true,
    repeatable: true,
};
const ONLY_PROPERTY: Opt = Opt {
    names: &["--only-property"],
    key: "only-property",
    takes_value: true,
    repeatable: false,
};
const INITIAL: Opt = Opt {
    names: &["--initial"],
    key: "initial",
    takes_value: true,
    repeatable: false,
};
const CREATE_PARENTS: Opt = Opt {
    names: &["--create-parents"],
    key: "create-parents",
    takes_value: false,
    repeatable: false,
};
const ALLOW: Opt = Opt {
    names: &["--allow"],
    key: "allow",
    takes_value: true,
    repeatable: true,
};
const IMPORT: Opt = Opt {
    names: &["--import"],
    key: "import",
    takes_value: true,
    repeatable: false,
};
const EXPORT_AFTER: Opt = Opt {
    names: &["--export-after"],
    key: "export-after",
    takes_value: false,
    repeatable: false,
};
const SEARCH_DIR: Opt = Opt {
    names: &["-d", "--dir"],
    key: "dir",
    takes_value: true,
    repeatable: true,
};
const JSON: Opt = Opt {
    names: &["--json"],
    key: "json",
    takes_value: false,
    repeatable: false,
};

/// A parsed command line: positionals, switches given, option values.
struct Parsed {
    positional: Vec<OsString>,
    switches: Vec<&'static str>,
    values: HashMap<&'static str, Vec<OsString>>,
}

impl Parsed {
    fn has(&self, key: &str) -> bool {
        self.switches.contains(&key)
    }
    fn value(&self, key: &str) -> Option<&OsString> {
        self.values.get(key).and_then(|v| v.last())
    }
    /// Every value of a repeatable option, in order.
    fn values(&self, key: &str) -> &[OsString] {
        self.values.get(key).map_or(&[], Vec::as_slice)
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
        let values = p.values.entry(opt.key).or_default();
        if !values.is_empty() && !opt.repeatable {
            return Err(usage(format!("option {name} given twice")));
        }
        values.push(value);
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
                "{command} takes {}; unexpected argument {:?}",
                if want.is_empty() {
                    "no arguments"
                } else {
                    &want
                },
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

fn keep_arg(p: &Parsed, key: &str) -> Result<Option<usize>, Fail> {
    let Some(arg) = p.value(key) else {
        return Ok(None);
    };
    match arg.to_str().and_then(|s| s.parse::<usize>().ok()) {
        Some(n) if n >= 1 => Ok(Some(n)),
        _ => Err(usage(format!(
            "--{key} needs a whole number of at least 1, not {:?}",
            arg.to_string_lossy()
        ))),
    }
}

/// `--retain GRID`, or else `--keep N` (both checked).
fn rule_arg(p: &Parsed) -> Result<Option<Rule>, Fail> {
    let keep = keep_arg(p, "keep")?.map(Rule::Newest);
    let Some(grid) = p.value("retain") else {
        return Ok(keep);
    };
    let grid: Grid = utf8("--retain", grid)?
        .parse()
        .map_err(|e: zfs_replicate::retention::GridError| usage(e))?;
    Ok(Some(Rule::Grid(grid)))
}

/// `--keep N` or `--retain GRID` (which wins) on both sides;
/// `--keep-source N`, `--keep-target N` win on their side.
fn keep_args(p: &Parsed) -> Result<Keep, Fail> {
    let both = rule_arg(p)?;
    Ok(Keep {
        source: keep_arg(p, "keep-source")?
            .map(Rule::Newest)
            .or(both.clone()),
        target: keep_arg(p, "keep-target")?.map(Rule::Newest).or(both),
    })
}

/// `--token-file FILE`: an unusable file is a usage error.
fn token_arg(p: &Parsed) -> Result<Option<Vec<u8>>, Fail> {
    p.value("token-file")
        .map(|f| remote::read_token_file(Path::new(f)).map_err(|e| Fail::Other(2, e.to_string())))
        .transpose()
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

// ---------------------------------------------------------------- remote sides

/// The side of a replication that is remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Target,
}

/// How the remote side is reached.
enum Reach {
    /// `tcp://HOST:PORT/DATASET`: HOST:PORT.
    Tcp(String),
    /// `--via-source` / `--via-target`: a command run with `sh -c`.
    Via(String),
}

/// SOURCE and TARGET as given: their datasets, and the remote side if any.
struct Sides {
    source: DatasetName,
    target: DatasetName,
    remote: Option<(Side, Reach)>,
    token: Option<Vec<u8>>,
}

/// SOURCE or TARGET: a dataset, or `tcp://HOST:PORT/DATASET` (its dataset
/// and HOST:PORT).
fn side_arg(what: &str, arg: &OsStr) -> Result<(DatasetName, Option<String>), Fail> {
    let text = utf8(what, arg)?;
    let Some(rest) = text.strip_prefix("tcp://") else {
        return Ok((dataset_arg(what, arg)?, None));
    };
    let bad = || usage(format!("{what} {text:?}: expected tcp://HOST:PORT/DATASET"));
    let (addr, dataset) = rest.split_once('/').ok_or_else(bad)?;
    let port_ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok || dataset.is_empty() {
        return Err(bad());
    }
    let dataset = DatasetName::new(dataset).map_err(|e| usage(format!("{what}: {e}")))?;
    Ok((dataset, Some(addr.to_owned())))
}

fn sides(p: &Parsed) -> Result<Sides, Fail> {
    let (source, source_tcp) = side_arg("SOURCE", &p.positional[0])?;
    let (target, target_tcp) = side_arg("TARGET", &p.positional[1])?;
    let via = |key: &str| {
        p.value(key)
            .map(|c| utf8(&format!("--{key}"), c))
            .transpose()
    };
    let (via_source, via_target) = (via("via-source")?, via("via-target")?);
    let mut remote = Vec::new();
    if let Some(addr) = source_tcp {
        remote.push((Side::Source, Reach::Tcp(addr), "a tcp:// SOURCE"));
    }
    if let Some(addr) = target_tcp {
        remote.push((Side::Target, Reach::Tcp(addr), "a tcp:// TARGET"));
    }
    if let Some(c) = via_source {
        remote.push((Side::Source, Reach::Via(c.to_owned()), "--via-source"));
    }
    if let Some(c) = via_target {
        remote.push((Side::Target, Reach::Via(c.to_owned()), "--via-target"));
    }
    if remote.len() > 1 {
        let given: Vec<&str> = remote.iter().map(|r| r.2).collect();
        return Err(usage(format!(
            "only one side may be remote, and only one way: {}",
            given.join(" and ")
        )));
    }
    let remote = remote.pop().map(|(side, reach, _)| (side, reach));
    if remote.is_none() && p.value("token-file").is_some() {
        return Err(usage(
            "--token-file needs a remote side (tcp://HOST:PORT/DATASET or --via-*)",
        ));
    }
    if let Some((_, Reach::Via(c))) = &remote {
        if c.trim().is_empty() {
            return Err(usage("--via-*: the command is empty"));
        }
    }
    Ok(Sides {
        source,
        target,
        remote,
        token: token_arg(p)?,
    })
}

/// A connected remote side. Dropping it closes the connection, then reaps
/// the `--via-*` command (fields drop in this order).
struct Connected {
    client: Client,
    _child: Option<Reaper>,
}

/// A `--via-*` command's process, waited for when dropped: it gets 20 s to
/// exit after its stdin closed, then it is killed.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        reap(&mut self.0, Duration::from_secs(20));
    }
}

/// Waits up to `patience` for `child` to exit, then kills it; its status
/// if it exited by itself.
fn reap(child: &mut Child, patience: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if start.elapsed() < patience => std::thread::sleep(Duration::from_millis(20)),
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("it exited with code {code}"),
        (None, Some(signal)) => format!("it was killed by signal {signal}"),
        _ => format!("it ended: {status}"),
    }
}

fn connect(reach: &Reach, token: Option<Vec<u8>>) -> Result<Connected, Fail> {
    let opts = ClientOptions {
        token,
        // A command (ssh) may ask for a password before the server starts.
        handshake_timeout: match reach {
            Reach::Tcp(_) => ClientOptions::default().handshake_timeout,
            Reach::Via(_) => Duration::from_secs(300),
        },
        ..ClientOptions::default()
    };
    match reach {
        Reach::Tcp(addr) => {
            let lost =
                |why: String| Fail::Other(1, format!("cannot connect to tcp://{addr}: {why}"));
            let addrs: Vec<SocketAddr> = addr
                .to_socket_addrs()
                .map_err(|e| lost(e.to_string()))?
                .collect();
            let mut last = "no address".to_owned();
            let mut stream = None;
            for a in addrs {
                match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            let stream = stream.ok_or_else(|| lost(last))?;
            let channel = Channel::tcp(stream)
                .map_err(|e| lost(e.to_string()))?
                .named(format!("tcp://{addr}"));
            Ok(Connected {
                client: Client::connect_with(channel, &opts)?,
                _child: None,
            })
        }
        Reach::Via(command) => {
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(command)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| Fail::Other(1, format!("cannot run {command:?} with sh -c: {e}")))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                reap(&mut child, Duration::ZERO);
                return Err(Fail::Other(1, format!("{command:?}: no pipes to it")));
            };
            let (read, write) = (OwnedFd::from(stdout), OwnedFd::from(stdin));
            // Named after the command, quoted: "'ssh -T backup@nas' refused: …".
            let channel = Channel::from_fds(read, write, format!("'{command}'"));
            match Client::connect_with(channel, &opts) {
                Ok(client) => Ok(Connected {
                    client,
                    _child: Some(Reaper(child)),
                }),
                Err(e) => {
                    // Our ends are closed: a command that is still running
                    // gets a moment to notice, then it is killed.
                    let how = reap(&mut child, Duration::from_secs(2))
                        .map_or_else(|| "it was killed".to_owned(), describe_exit);
                    Err(Fail::Other(lib_code(&e), format!("{e} ({how})")))
                }
            }
        }
    }
}

impl Sides {
    /// Connects the remote side, if any.
    fn connect(&self) -> Result<Option<(Side, Connected)>, Fail> {
        match &self.remote {
            None => Ok(None),
            Some((side, reach)) => Ok(Some((*side, connect(reach, self.token.clone())?))),
        }
    }
}

/// The source's and the target's endpoints: `local`, but the remote side.
fn endpoints<'a>(
    local: &'a Local<'a>,
    remote: &'a Option<(Side, Connected)>,
) -> (&'a dyn Endpoint, &'a dyn Endpoint) {
    match remote {
        Some((Side::Source, c)) => (&c.client, local),
        Some((Side::Target, c)) => (local, &c.client),
        None => (local, local),
    }
}

/// `dataset`, and where it is when that is not here.
fn shown(dataset: &DatasetName, endpoint: &dyn Endpoint) -> String {
    let at = endpoint.describe();
    if at == "local" {
        dataset.to_string()
    } else {
        format!("{dataset} on {at}")
    }
}

// ---------------------------------------------------------------- commands

fn replication(p: &Parsed, sides: &Sides) -> Result<Replication, Fail> {
    let mut repl = Replication::new(sides.source.clone(), sides.target.clone())
        .recursive(p.has("recursive"))
        .raw(p.has("raw"))
        .rollback(p.has("rollback"));
    // Filters and overrides: a bad one is a usage error, before anything
    // runs.
    let bad = |e: Error| usage(e.to_string());
    let mut filter = DatasetFilter::new();
    for arg in p.values("exclude") {
        filter = filter.exclude(utf8("--exclude", arg)?).map_err(bad)?;
    }
    if let Some(arg) = p.value("only-property") {
        let text = utf8("--only-property", arg)?;
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| usage(format!("--only-property {text:?}: expected PROPERTY=VALUE")))?;
        filter = filter.only_property(name, value).map_err(bad)?;
    }
    let initial = match p
        .value("initial")
        .map(|a| utf8("--initial", a))
        .transpose()?
    {
        None | Some("all") => Initial::All,
        Some("most-recent") => Initial::MostRecent,
        Some(other) => {
            return Err(usage(format!(
                "--initial {other:?}: expected all or most-recent"
            )))
        }
    };
    repl = repl
        .filter(filter)
        .initial(initial)
        .create_parents(p.has("create-parents"));
    for arg in p.values("set") {
        let text = utf8("--set", arg)?;
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| usage(format!("--set {text:?}: expected PROPERTY=VALUE")))?;
        repl = repl.receive_override(name, value).map_err(bad)?;
    }
    for arg in p.values("exclude-property") {
        repl = repl
            .receive_exclude(utf8("--exclude-property", arg)?)
            .map_err(bad)?;
    }
    Ok(repl)
}

/// A refusal to prune on a side whose server does not allow it, with the
/// option that prunes the other side only.
fn keep_refused(e: Error, keep: &Keep, repl: &Replication) -> Fail {
    if let Error::PermissionDenied {
        operation: Op::DestroySnapshot,
        dataset,
        ..
    } = &e
    {
        let hint = if dataset == repl.target() && keep.target.is_some() {
            Some("to prune the source only, use --keep-source N instead of --keep N")
        } else if dataset == repl.source() && keep.source.is_some() {
            Some("to prune the target only, use --keep-target N instead of --keep N")
        } else {
            None
        };
        if let Some(hint) = hint {
            return Fail::Other(lib_code(&e), format!("{e}; {hint}"));
        }
    }
    e.into()
}

fn sync(args: &[OsString]) -> Result<u8, Fail> {
    let Some(p) = parse(
        "sync",
        args,
        &["SOURCE", "TARGET"],
        &[
            RECURSIVE,
            RAW,
            ROLLBACK,
            KEEP,
            KEEP_SOURCE,
            KEEP_TARGET,
            PREFIX,
            VIA_SOURCE,
            VIA_TARGET,
            TOKEN_FILE,
            EXCLUDE,
            ONLY_PROPERTY,
            INITIAL,
            CREATE_PARENTS,
            SET,
            EXCLUDE_PROPERTY,
            RETAIN,
            JSON,
            IMPORT,
            EXPORT_AFTER,
        ],
    )?
    else {
        out!("{USAGE}");
        return Ok(0);
    };
    if !p.has("export-after") && p.value("import").is_none() {
        return sync_run(&p);
    }
    // The drive story: bring TARGET's pool online, sync, take it offline.
    let sides = sides(&p)?;
    if sides.remote.is_some_and(|(side, _)| side == Side::Target) {
        return Err(usage("--import and --export-after need a local TARGET"));
    }
    let pool = sides.target.pool();
    let json = p.has("json");
    let zfs = open()?;
    let result = match p.value("import") {
        Some(dir) => import_drive(&zfs, &pool, Path::new(dir), json).and_then(|()| sync_run(&p)),
        None => sync_run(&p),
    };
    // Exported even when the sync (or a check after the import) failed:
    // the drive can go either way. Not when it is not imported (it was
    // not found), nor when its I/O is suspended (an export would wait).
    let imported = zfs
        .pools()
        .map(|all| all.iter().any(|x| x.name() == &pool))
        .unwrap_or(true);
    let suspended = zfs
        .pool_status(&pool)
        .map(|s| s.is_suspended())
        .unwrap_or(false);
    if p.has("export-after") && imported && suspended {
        let _ = writeln!(
            std::io::stderr().lock(),
            "backup: {pool} is not exported: its I/O is suspended (zpool clear {pool} once the \
             drive is back, or zpool export -f {pool})"
        );
    } else if p.has("export-after") && imported {
        match zfs.export(&pool, false) {
            Ok(()) => drive_line(json, &format!("drive: exported {pool}: safe to disconnect")),
            Err(e) => {
                let e = Error::from(e);
                if result.is_ok() {
                    return Err(Fail::Other(
                        lib_code(&e),
                        format!("cannot export {pool}: {e}"),
                    ));
                }
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "backup: cannot export {pool}: {e}"
                );
            }
        }
    }
    result
}

/// `--import`: finds TARGET's pool under `dir` (a directory of devices, or
/// one device or file) and imports it with nothing mounted; nothing to do
/// when it is imported already. A pool that is not healthy is reported
/// (on stderr) before anything is written.
fn import_drive(zfs: &Zfs, pool: &PoolName, dir: &Path, json: bool) -> Result<(), Fail> {
    let imported = zfs.pools().map_err(Error::from)?;
    if imported.iter().any(|p| p.name() == pool) {
        drive_line(json, &format!("drive: {pool} is imported already"));
    } else {
        let search = SearchPaths::new([dir]);
        let found = zfs
            .find_importable_pool(pool, &search)
            .map_err(Error::from)?;
        let devices: Vec<String> = found
            .devices()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        drive_line(
            json,
            &format!(
                "drive: found {pool} ({}) on {}: {}",
                found.guid(),
                devices.join(", "),
                found.state()
            ),
        );
        zfs.import(&found, &ImportOptions::new())
            .map_err(Error::from)?;
        drive_line(json, &format!("drive: imported {pool}, nothing mounted"));
    }
    let status = zfs.pool_status(pool).map_err(Error::from)?;
    // A drive pulled while imported: writes would wait for it forever.
    if status.is_suspended()
        || matches!(status.state(), VdevState::Faulted | VdevState::Unavailable)
    {
        return Err(Fail::Other(
            1,
            format!(
                "pool {pool} is {}{}: not syncing to it (zpool status {pool}; zpool clear {pool} \
                 once the drive is back)",
                status.state(),
                if status.is_suspended() {
                    ", its I/O suspended"
                } else {
                    ""
                }
            ),
        ));
    }
    if !status.state().is_online() {
        let mut bad = Vec::new();
        for v in status.root().walk() {
            if !v.state().is_online() || v.errors().total() > 0 {
                let name = v
                    .path()
                    .map_or(v.kind().to_owned(), |p| p.display().to_string());
                bad.push(format!("{name} {}", v.state()));
            }
        }
        let _ = writeln!(
            std::io::stderr().lock(),
            "backup: warning: pool {pool} is {}: {}",
            status.state(),
            bad.join(", ")
        );
    }
    Ok(())
}

/// A line of the drive story: stdout, or stderr under `--json`.
fn drive_line(json: bool, line: &str) {
    if json {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    } else {
        out!("{line}");
    }
}

/// `drives`: one line per importable pool, `NAME GUID STATE`.
fn drives(args: &[OsString]) -> Result<u8, Fail> {
    let Some(p) = parse("drives", args, &[], &[SEARCH_DIR])? else {
        out!("{USAGE}");
        return Ok(0);
    };
    let search = if p.values("dir").is_empty() {
        SearchPaths::default()
    } else {
        SearchPaths::new(p.values("dir").iter().map(PathBuf::from))
    };
    let zfs = open()?;
    let found = zfs.find_importable_pools(&search).map_err(Error::from)?;
    if found.pools().is_empty() {
        let dirs: Vec<String> = search
            .paths()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        return Err(Fail::Other(
            5,
            format!(
                "no importable pool found in {} ({} devices read)",
                dirs.join(", "),
                found.devices_read()
            ),
        ));
    }
    for pool in found.pools() {
        out!("{} {} {}", pool.name(), pool.guid(), pool.state());
    }
    Ok(0)
}

/// `sync` itself, once the drive (if any) is online.
fn sync_run(p: &Parsed) -> Result<u8, Fail> {
    let json = p.has("json");
    let keep = keep_args(p)?;
    let prefix = prefix_arg(p.value("prefix"))?;
    let sides = sides(p)?;
    let repl = replication(p, &sides)?.prefix(prefix.clone());
    let zfs = open()?;
    let local = Local::new(&zfs);
    let remote = sides.connect()?;
    let (source, target) = endpoints(&local, &remote);
    if !json {
        out!(
            "sync {} -> {}{}",
            shown(repl.source(), source),
            shown(repl.target(), target),
            if p.has("recursive") {
                " (recursive)"
            } else {
                ""
            }
        );
    }
    let opts = ExecuteOptions::new().on_progress(progress_printer(json));
    let r = repl
        .sync_with(source, target, &opts, keep.clone())
        .map_err(|e| keep_refused(e, &keep, &repl))?;
    if json {
        print_json(&r)?;
        return Ok(0);
    }

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
    for (side, kept, pruned) in [
        ("source", &keep.source, &r.pruned_source),
        ("target", &keep.target, &r.pruned_target),
    ] {
        if kept.is_some() {
            print_pruned(pruned, &format!(" on the {side}"));
        }
    }
    out!("done: {} bytes in {count} transfer(s)", r.report.bytes());
    Ok(0)
}

fn load_key(args: &[OsString]) -> Result<u8, Fail> {
    let Some(p) = parse("load-key", args, &["DATASET"], &[])? else {
        out!("{USAGE}");
        return Ok(0);
    };
    let dataset = dataset_arg("DATASET", &p.positional[0])?;
    // A key is at most 512 bytes (a passphrase); read a little more to
    // tell a longer one apart.
    let mut key = Vec::new();
    std::io::stdin()
        .lock()
        .take(1024)
        .read_to_end(&mut key)
        .map_err(|e| Fail::Other(1, format!("reading the key from stdin: {e}")))?;
    let zfs = open()?;
    zfs.load_key(&dataset, &key).map_err(Error::from)?;
    key.fill(0);
    out!("key loaded for {dataset}");
    Ok(0)
}

fn prune(args: &[OsString]) -> Result<u8, Fail> {
    let Some(p) = parse(
        "prune",
        args,
        &["DATASET"],
        &[KEEP, RETAIN, RECURSIVE, PREFIX],
    )?
    else {
        out!("{USAGE}");
        return Ok(0);
    };
    let dataset = dataset_arg("DATASET", &p.positional[0])?;
    let rule = rule_arg(&p)?.ok_or_else(|| usage("prune needs --keep N or --retain GRID"))?;
    let prefix = prefix_arg(p.value("prefix"))?;
    let zfs = open()?;
    let opts = zfs_replicate::prune::PruneOptions::new(Retention::new(prefix, rule))
        .recursive(p.has("recursive"));
    let report = zfs_replicate::prune::prune(&zfs, &dataset, &opts)?;
    print_pruned(&report, "");
    Ok(0)
}

/// A line per snapshot destroyed or kept for a hold; `pruned: nothing`
/// (then `place`) when none was destroyed.
fn print_pruned(report: &PruneReport, place: &str) {
    for s in &report.destroyed {
        out!("pruned: {s}");
    }
    for s in &report.kept_held {
        out!("kept (held): {s}");
    }
    if report.destroyed.is_empty() {
        out!("pruned: nothing{place}");
    }
}

/// Prints a line per 64 MiB moved into each dataset (on stderr with
/// `--json`).
fn progress_printer(json: bool) -> impl Fn(&Progress<'_>) + Send + Sync + 'static {
    const STEP: u64 = 64 << 20;
    let reported: Mutex<HashMap<String, u64>> = Mutex::new(HashMap::new());
    move |p: &Progress<'_>| {
        let mut seen = reported.lock().unwrap_or_else(|e| e.into_inner());
        let last = seen.entry(p.target.to_string()).or_insert(0);
        if p.bytes / STEP > *last / STEP {
            *last = p.bytes;
            let line = format!(
                "  progress: {} @{}: {} MiB of about {} MiB",
                p.target,
                p.snapshot.short_name(),
                p.bytes >> 20,
                p.estimated_bytes >> 20
            );
            if json {
                // stdout holds only the document.
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            } else {
                out!("{line}");
            }
        }
    }
}

fn plan(args: &[OsString]) -> Result<u8, Fail> {
    let Some(p) = parse(
        "plan",
        args,
        &["SOURCE", "TARGET"],
        &[
            RECURSIVE,
            RAW,
            ROLLBACK,
            VIA_SOURCE,
            VIA_TARGET,
            TOKEN_FILE,
            EXCLUDE,
            ONLY_PROPERTY,
            INITIAL,
            CREATE_PARENTS,
            SET,
            EXCLUDE_PROPERTY,
            JSON,
            PREFIX,
            KEEP,
            KEEP_SOURCE,
            KEEP_TARGET,
            RETAIN,
        ],
    )?
    else {
        out!("{USAGE}");
        return Ok(0);
    };
    let json = p.has("json");
    // Sync's retention options, so that plan takes sync's command line:
    // checked as sync checks them; a plan prunes nothing.
    keep_args(&p)?;
    let prefix = prefix_arg(p.value("prefix"))?;
    let sides = sides(&p)?;
    let repl = replication(&p, &sides)?.prefix(prefix);
    let zfs = open()?;
    let local = Local::new(&zfs);
    let remote = sides.connect()?;
    let (source, target) = endpoints(&local, &remote);
    // What sync would do: the plan as things are, then its snapshot.
    let preview = repl.preview_sync(source, target)?;
    let plan = &preview.plan;
    if json {
        print_json(plan)?;
    } else {
        out!("{}", preview.to_string().trim_end());
    }
    let divergences = plan.divergences();
    if !divergences.is_empty() {
        return Err(Error::Diverged(divergences).into());
    }
    if json {
        return Ok(0);
    }
    if plan.is_up_to_date() {
        out!("up to date: nothing to send");
    } else {
        out!("to send: about {} bytes", plan.estimated_bytes());
    }
    Ok(0)
}

fn send(args: &[OsString]) -> Result<u8, Fail> {
    let Some(p) = parse("send", args, &["SNAPSHOT"], &[FROM, RAW, OUTPUT, PARITY])? else {
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
    let parity = p
        .value("parity")
        .map(|v| {
            let text = utf8("--parity", v)?.trim_end_matches('%');
            let percent: u32 = text
                .parse()
                .map_err(|_| usage(format!("--parity {text:?}: not a whole percent")))?;
            Parity::percent(percent).map_err(usage)
        })
        .transpose()?;
    let zfs = open()?;
    let mut opts = file::SendFileOptions::new().raw(p.has("raw"));
    if let Some(base) = &from {
        opts = opts.from(base.clone());
    }
    if let Some(parity) = parity {
        opts = opts.parity(parity);
    }
    let sent = file::send_to_file(&zfs, &snapshot, &opts, &path)?;
    let bytes = sent.bytes;
    out!(
        "wrote {snapshot}{}{} to {}: {bytes} bytes",
        match &from {
            Some(f) => format!(" (incremental from {})", f.as_str()),
            None => " (full)".to_owned(),
        },
        if p.has("raw") { " raw" } else { "" },
        path.display()
    );
    if let Some(sidecar) = &sent.sidecar {
        out!(
            "wrote {}: {} bytes of {}% parity; repairs a hole of up to {} bytes per {} bytes of stream",
            sidecar.path.display(),
            sidecar.bytes,
            sidecar.level_percent,
            sidecar.hole_bytes,
            sidecar.span_bytes.min(bytes)
        );
    }
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
    let got = file::receive_file(&zfs, &target, path)?;
    if !got.repaired.is_empty() {
        let _ = writeln!(
            std::io::stderr().lock(),
            "backup: warning: repaired {} bytes at {}",
            got.repaired.bytes,
            ranges_text(&got.repaired)
        );
    }
    let received = got.received;
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
    let summary = if parity::sidecar_path(path).symlink_metadata().is_ok() {
        match parity::check_file(path)? {
            Condition::Intact { summary, sidecar } => {
                report_sidecar_damage(path, &sidecar);
                summary
            }
            Condition::Repairable {
                damaged,
                margin,
                sidecar,
            } => {
                out!(
                    "{}: damaged but repairable: {} bytes at {}",
                    path.display(),
                    damaged.bytes,
                    ranges_text(&damaged)
                );
                out!(
                    "  {} damaged code word(s); the worst can lose {} more block(s)",
                    margin.damaged_words,
                    margin.least_spare
                );
                report_sidecar_damage(path, &sidecar);
                out!("  repair it with: backup repair {}", path.display());
                return Ok(7);
            }
            Condition::Unrecoverable {
                damaged,
                why,
                sidecar,
            } => {
                out!(
                    "{}: damaged beyond repair: {} bytes at {}",
                    path.display(),
                    damaged.bytes,
                    ranges_text(&damaged)
                );
                for w in &why {
                    out!("  {w}");
                }
                report_sidecar_damage(path, &sidecar);
                return Ok(4);
            }
        }
    } else {
        file::verify_file(path)?
    };
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

/// Damaged byte ranges as `START..END` (half-open), the first 20.
fn ranges_text(r: &parity::Ranges) -> String {
    let mut parts: Vec<String> = r
        .ranges
        .iter()
        .take(20)
        .map(|x| format!("{}..{}", x.start, x.end))
        .collect();
    let more = (r.ranges.len().saturating_sub(20)) as u64 + r.more;
    if more > 0 {
        parts.push(format!("and {more} more"));
    }
    parts.join(", ")
}

fn report_sidecar_damage(path: &Path, damage: &[parity::SidecarDamage]) {
    if !damage.is_empty() {
        out!(
            "  its sidecar is damaged ({damage:?}); backup repair {} rebuilds it",
            path.display()
        );
    }
}

fn repair(args: &[OsString]) -> Result<u8, Fail> {
    let Some(p) = parse("repair", args, &["FILE"], &[])? else {
        out!("{USAGE}");
        return Ok(0);
    };
    let path = Path::new(&p.positional[0]);
    // Unrecoverable: one line on stderr, exit 4, the file unchanged.
    let done = parity::repair_file(path)?;
    if done.repaired.is_empty() && done.sidecar.is_empty() {
        out!("{}: intact, nothing to repair", path.display());
    }
    if !done.repaired.is_empty() {
        out!(
            "{}: repaired {} bytes at {}",
            path.display(),
            done.repaired.bytes,
            ranges_text(&done.repaired)
        );
    }
    if !done.sidecar.is_empty() {
        out!(
            "{}: rebuilt its damaged sidecar ({:?})",
            path.display(),
            done.sidecar
        );
    }
    Ok(0)
}

/// Clients `serve --listen` answers at once; more wait in the backlog.
const MAX_CLIENTS: usize = 8;

fn serve(args: &[OsString]) -> Result<u8, Fail> {
    let Some(p) = parse("serve", args, &[], &[LISTEN, STDIO, ALLOW, TOKEN_FILE])? else {
        out!("{USAGE}");
        return Ok(0);
    };
    let mut policy = Policy::new();
    for arg in p.values("allow") {
        let (root, access) = remote::parse_allow(utf8("--allow", arg)?).map_err(usage)?;
        policy = policy.allow(root, access);
    }
    let token = token_arg(&p)?;
    let opts = ServeOptions {
        token: token.clone(),
        ..ServeOptions::default()
    };
    match (p.value("listen"), p.has("stdio")) {
        (Some(_), true) | (None, false) => {
            Err(usage("serve needs one of --listen HOST:PORT and --stdio"))
        }
        (None, true) => {
            // Nothing else may write to stdout from here on.
            let zfs = open()?;
            let channel =
                Channel::stdio().map_err(|e| Fail::Other(1, format!("stdin/stdout: {e}")))?;
            let why = remote::serve(channel, &Local::new(&zfs), &policy, &opts)?;
            if why == remote::SessionEnd::PeerClosed {
                Ok(0)
            } else {
                Err(Fail::Other(1, format!("the session ended: {why}")))
            }
        }
        (Some(listen), false) => {
            let text = utf8("--listen", listen)?;
            let addr = text
                .to_socket_addrs()
                .map_err(|e| usage(format!("--listen {text:?}: {e}")))?
                .next()
                .ok_or_else(|| usage(format!("--listen {text:?}: no address")))?;
            let listener = remote::listen_tcp(addr, token.as_deref()).map_err(|e| {
                if token.is_none() && !addr.ip().is_loopback() {
                    // Refused: beyond loopback without a token.
                    Fail::Other(2, e.to_string())
                } else {
                    Fail::Other(1, format!("cannot listen on {addr}: {e}"))
                }
            })?;
            let zfs = open()?;
            let bound = listener.local_addr().map_or(addr, |a| a);
            {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "backup: listening on {bound}");
                if policy.grants().is_empty() {
                    let _ = writeln!(err, "backup: no --allow: every request is refused");
                }
            }
            remote::serve_tcp(&listener, &Local::new(&zfs), &policy, &opts, MAX_CLIENTS)
                .map_err(|e| Fail::Other(1, format!("accepting connections on {bound}: {e}")))?;
            Ok(0)
        }
    }
}
