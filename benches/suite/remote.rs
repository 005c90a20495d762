//! Remote replication over loopback TCP: the `single` data set moved three
//! ways in the same rounds, so that the ratios come from one run: local
//! `execute`, `execute_with` to a `remote::Client` whose server runs in a
//! thread of this process, and the CLI over the network,
//! `zfs send | nc` into `nc -l | zfs receive`.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zfs_core::{DatasetName, SnapshotName, Zfs};
use zfs_replicate::endpoint::Local;
use zfs_replicate::remote::{listen_tcp, serve, Access, Channel, Client, Policy, ServeOptions};
use zfs_replicate::{execute, execute_with, ExecuteOptions, Replication};

use crate::cli::destroy_and_wait;
use crate::context::Context;
use crate::measure::{cpu_seconds, median, rounds, threads, Measured};
use crate::recipe::{dataset, DATA_SNAPSHOT, DST_POOL};
use crate::table::Row;
use crate::transfer::SEND_FLAGS;

/// The variants, in the order each round runs them.
const VARIANTS: [&str; 3] = ["local", "remote", "cli"];
const LOCAL: usize = 0;
const REMOTE: usize = 1;
const CLI: usize = 2;

/// `nc -l` of round `i` listens on this port + 1 + `i` (busybox `nc` picks
/// no port itself; a fresh one each round, whatever `TIME_WAIT` is left).
const NC_PORT: u16 = 47_000;

/// What one run measured besides its wall time.
#[derive(Default)]
struct Run {
    /// CPU seconds (user + system) of this process, or of the CLI's
    /// processes, while the transfer ran.
    cpu: f64,
    /// Remote: TCP connect and the handshake, before the plan (not timed).
    connect: Option<Duration>,
}

pub fn rows(ctx: &mut Context) -> Vec<Row> {
    let src = ctx.recipe.single_src();
    let snap = src.snapshot(DATA_SNAPSHOT).expect("a valid snapshot name");
    let mib = ctx.recipe.single_mib;
    // The server's own handle, as a server process would have.
    let server_zfs = Zfs::open().expect("opening /dev/zfs for the server");
    let opts = ServeOptions::default();
    let run = |i: usize, v: usize| -> (Duration, Run) {
        let dst = dataset(DST_POOL, &format!("remote-{}{i}", VARIANTS[v]));
        let out = match v {
            LOCAL => local_run(&ctx.zfs, &src, &dst),
            REMOTE => remote_run(&ctx.zfs, &server_zfs, &src, &dst, &opts),
            _ => cli_run(&snap, &dst, NC_PORT + 1 + i as u16),
        };
        check(&ctx.zfs, &snap, &dst);
        destroy_and_wait(&dst);
        out
    };

    // One untimed run of ours each way first: it warms the ARC for every
    // variant alike, and shows where our CPU goes, per thread.
    for v in [LOCAL, REMOTE] {
        let ((took, _), used) = threads(|| run(0, v));
        let line: Vec<String> = used.iter().map(ToString::to_string).collect();
        println!(
            "profile: {} {mib} MiB in {:.2} s, per thread: {}",
            VARIANTS[v],
            took.as_secs_f64(),
            line.join("; ")
        );
    }

    let mut extra: [Vec<Run>; 3] = Default::default();
    let measured = rounds(ctx.runs, VARIANTS.len(), |i, v| {
        let (took, r) = run(i, v);
        println!(
            "run {i}: {} {:.2} s, CPU {:.2} s",
            VARIANTS[v],
            took.as_secs_f64(),
            r.cpu
        );
        extra[v].push(r);
        took
    });
    let [local, remote, cli] = [measured[LOCAL], measured[REMOTE], measured[CLI]];
    let cpu = |v: usize| median(extra[v].iter().map(|r| r.cpu).collect());
    let connect = median(
        extra[REMOTE]
            .iter()
            .filter_map(|r| r.connect.map(|c| c.as_secs_f64()))
            .collect(),
    );
    let rate = |m: &Measured| mib as f64 * 1.048_576 / m.median;
    let cli_note = format!(
        "CLI: `zfs send {SEND_FLAGS} \\| nc 127.0.0.1 PORT` into `nc -l -p PORT \\| zfs receive -u` \
         (busybox nc, 1 KiB per read), {:.0} MB/s, its processes' CPU {:.2} s",
        rate(&cli),
        cpu(CLI)
    );
    vec![
        Row {
            label: format!("one {mib} MiB dataset, full, remote over loopback TCP"),
            ours: remote,
            cli: Some(cli),
            notes: format!(
                "ours: `execute_with(Local, Client)`, `serve` on `Local` in a thread, receive-only \
                 policy; connect + handshake {:.0} ms, not timed; {:.0} MB/s, our CPU {:.2} s; \
                 remote/local {:.2}× (local: next row, same rounds); {cli_note}",
                connect * 1000.0,
                rate(&remote),
                cpu(REMOTE),
                local.median / remote.median.max(1e-9),
            ),
        },
        Row {
            label: format!("one {mib} MiB dataset, full, local, same rounds as remote"),
            ours: local,
            cli: Some(cli),
            notes: format!(
                "ours: `execute` (planned beforehand), {:.0} MB/s, our CPU {:.2} s; {cli_note}",
                rate(&local),
                cpu(LOCAL)
            ),
        },
    ]
}

/// The existing row's way: plan, then time `execute`.
fn local_run(zfs: &Zfs, src: &DatasetName, dst: &DatasetName) -> (Duration, Run) {
    let plan = Replication::new(src.clone(), dst.clone())
        .plan(zfs)
        .unwrap_or_else(|e| panic!("planning {src}: {e}"));
    timed_cpu(|| {
        execute(zfs, &plan, &ExecuteOptions::default())
            .unwrap_or_else(|e| panic!("replicating {src}: {e}"))
    })
}

/// Connects to a server in a thread over 127.0.0.1 TCP (receive-only on
/// the target), plans with both endpoints, then times `execute_with`.
fn remote_run(
    zfs: &Zfs,
    server_zfs: &Zfs,
    src: &DatasetName,
    dst: &DatasetName,
    opts: &ServeOptions,
) -> (Duration, Run) {
    let listener = listen_tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), None)
        .expect("listening on 127.0.0.1");
    let addr = listener.local_addr().expect("the listener's address");
    let policy = Policy::new().allow(dst.clone(), Access::Receive);
    let served = Local::new(server_zfs);
    let local = Local::new(zfs);
    std::thread::scope(|s| {
        let started = Instant::now();
        // Connected from the backlog: the accept below cannot wait forever.
        let stream = TcpStream::connect(addr).expect("connecting to the server");
        let (theirs, _) = listener.accept().expect("accepting the client");
        let server = std::thread::Builder::new()
            .name("bench-serve".into())
            .spawn_scoped(s, || {
                let channel = Channel::tcp(theirs).expect("the server's channel");
                serve(channel, &served, &policy, opts)
            })
            .expect("starting the server thread");
        let client = Client::connect(Channel::tcp(stream).expect("the client's channel"))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        let connect = started.elapsed();
        let plan = Replication::new(src.clone(), dst.clone())
            .plan_with(&local, &client)
            .unwrap_or_else(|e| panic!("planning {src} to {addr}: {e}"));
        let (took, mut run) = timed_cpu(|| {
            execute_with(&local, &client, &plan, &ExecuteOptions::default())
                .unwrap_or_else(|e| panic!("replicating {src} to {addr}: {e}"))
        });
        drop(client);
        server
            .join()
            .expect("the server thread")
            .unwrap_or_else(|e| panic!("the server's session: {e}"));
        run.connect = Some(connect);
        (took, run)
    })
}

/// `nc -l -p PORT | zfs receive -u`, then, once it listens,
/// `zfs send | nc 127.0.0.1 PORT`; timed from starting the receiver to
/// both ends exiting.
///
/// busybox `nc` has no `-q`/`-N`: at EOF of its stdin the sender shuts
/// down its write half and waits for the socket to close; the listener
/// exits at EOF of the connection. The listener's stdin is a pipe this
/// process holds open and never writes (at EOF of its stdin the listener
/// would shut down its half, and the sender would then quit early).
fn cli_run(snap: &SnapshotName, dst: &DatasetName, port: u16) -> (Duration, Run) {
    let cpu_before = cpu_seconds().1;
    let started = Instant::now();
    let mut receiver = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; nc -l -p {port} | zfs receive -u '{dst}'"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the receiving side");
    let held_open = receiver.stdin.take();
    wait_listening(port, &mut receiver);
    let sender = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; zfs send {SEND_FLAGS} '{snap}' | nc 127.0.0.1 {port}"
        ))
        .stdin(Stdio::null())
        .output()
        .expect("running the sending side");
    let received = receiver
        .wait_with_output()
        .expect("waiting for the receiving side");
    let took = started.elapsed();
    drop(held_open);
    assert!(
        sender.status.success() && received.status.success(),
        "nc transfer on port {port}: sender {} ({}), receiver {} ({})",
        sender.status,
        String::from_utf8_lossy(&sender.stderr).trim(),
        received.status,
        String::from_utf8_lossy(&received.stderr).trim()
    );
    let cpu = cpu_seconds().1 - cpu_before;
    (took, Run { cpu, connect: None })
}

/// Waits until a socket listens on `port` (`/proc/net/tcp`, `tcp6`: local
/// address `…:PORT`, state `0A`), or fails if the receiver ended first.
fn wait_listening(port: u16, receiver: &mut Child) {
    let needle = format!(":{port:04X}");
    let started = Instant::now();
    loop {
        let listening = ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
            std::fs::read_to_string(f).is_ok_and(|t| {
                t.lines().any(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.len() > 3 && cols[1].ends_with(&needle) && cols[3] == "0A"
                })
            })
        });
        if listening {
            return;
        }
        if let Some(status) = receiver.try_wait().expect("polling the receiving side") {
            let mut err = String::new();
            if let Some(mut e) = receiver.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("`nc -l -p {port}` ended ({status}) before listening: {err}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing listens on port {port} after 30 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wall time and our CPU time (user + system, every thread) of `f`.
fn timed_cpu<T>(f: impl FnOnce() -> T) -> (Duration, Run) {
    let cpu_before = cpu_seconds().0;
    let started = Instant::now();
    std::hint::black_box(f());
    let took = started.elapsed();
    (
        took,
        Run {
            cpu: cpu_seconds().0 - cpu_before,
            connect: None,
        },
    )
}

/// The target has the source's snapshot (same GUID).
fn check(zfs: &Zfs, snap: &SnapshotName, dst: &DatasetName) {
    let got = dst.snapshot(DATA_SNAPSHOT).expect("a valid snapshot name");
    let guid = |s: &SnapshotName| {
        zfs.snapshot_info(s)
            .unwrap_or_else(|e| panic!("{s} after the transfer: {e}"))
            .guid()
    };
    assert_eq!(guid(snap), guid(&got), "{got} is not a copy of {snap}");
}
