//! The benchmark suite: zfs-replicate against the `zfs` CLI, in the same
//! run on the same pools. `cargo xtask bench` runs it in the VM; it reports
//! medians and ratios (CLI time / ours) and asserts nothing about speed.
//!
//! ```text
//! suite recipe [OPTIONS]   (host) the pools these options need, for xtask's image cache
//! suite build  [OPTIONS]   (guest) builds the pools on the blank disks /dev/vda, /dev/vdb
//! suite run    [OPTIONS]   (guest) imports them and runs the benchmarks
//! suite host   [OPTIONS]   (host) the host's benchmarks: a parity sidecar's
//!                          making on one core (xtask runs it before the guest)
//!
//! OPTIONS: --small      tiny pools and 3 runs (for development)
//!          --runs N     runs per sample (default 5)
//!          NAME...      only the benchmarks whose name contains one of these
//! ```

mod build;
mod cli;
mod context;
mod listing;
mod measure;
mod memory;
mod plan;
mod pools;
mod recipe;
mod remote;
mod stream_file;
mod sync;
mod table;
mod transfer;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use zfs_core::Zfs;

use context::Context;
use plan::State;
use recipe::{Recipe, DATA_SNAPSHOT};
use table::Row;

const DEFAULT_RUNS: usize = 5;
const SMALL_RUNS: usize = 3;
/// The host's stream for a sidecar's making, in MiB (1 GiB; 128 MiB small).
const HOST_STREAM_MIB: u64 = 1024;
const HOST_STREAM_MIB_SMALL: u64 = 128;

struct Options {
    small: bool,
    runs: Option<usize>,
    filters: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> Options {
        let mut options = Options {
            small: false,
            runs: None,
            filters: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--small" => options.small = true,
                "--runs" => {
                    let n = it.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0);
                    options.runs = Some(n.unwrap_or_else(|| usage("--runs needs a count")));
                }
                // libtest's flags, should a harness pass them.
                "--ignored" | "--include-ignored" | "--nocapture" | "--bench" => {}
                f if f.starts_with("--") => usage(&format!("unknown option {f}")),
                f => options.filters.push(f.to_owned()),
            }
        }
        options
    }

    fn recipe(&self) -> Recipe {
        if self.small {
            Recipe::small()
        } else {
            Recipe::full()
        }
    }

    fn runs(&self) -> usize {
        self.runs
            .unwrap_or(if self.small { SMALL_RUNS } else { DEFAULT_RUNS })
    }

    fn selects(&self, id: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| id.contains(f.as_str()))
    }
}

fn usage(error: &str) -> ! {
    eprintln!("suite: {error}\nusage: suite recipe|build|run|host [--small] [--runs N] [NAME...]");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first() else {
        usage("which mode?")
    };
    if mode == measure::RSS_OF {
        // Before the options: the rest is a command line, not ours.
        measure::rss_of(&args[1..]);
    }
    let options = Options::parse(&args[1..]);
    let recipe = options.recipe();
    match mode.as_str() {
        "recipe" => {
            println!("recipe={}", recipe.text());
            let [src, dst] = recipe.disks_mib;
            println!("disks_mib={src} {dst}");
            let complete = !options.small && options.filters.is_empty() && options.runs.is_none();
            println!("complete={complete}");
            let count = |ids: Vec<String>| ids.iter().filter(|id| options.selects(id)).count();
            println!(
                "benches={}",
                count(benches(&recipe).into_iter().map(|b| b.id).collect())
            );
            println!(
                "host_benches={}",
                count(host_benches(&options).into_iter().map(|b| b.id).collect())
            );
        }
        "build" => build::build(&open(), &recipe),
        "run" => {
            let zfs = open();
            pools::import();
            let ok = run(Context::new(zfs, recipe, options.runs()), &options);
            std::process::exit(if ok { 0 } else { 1 });
        }
        "host" => std::process::exit(if run_host(&options) { 0 } else { 1 }),
        other => usage(&format!("unknown mode {other}")),
    }
}

fn open() -> Zfs {
    Zfs::open().unwrap_or_else(|e| {
        panic!("opening /dev/zfs: {e} (the suite runs in the VM: `cargo xtask bench`)")
    })
}

/// What a benchmark runs: the rows it measures.
type Measure = Box<dyn Fn(&mut Context) -> Vec<Row>>;

/// A benchmark: its name (what `NAME` filters match) and what it measures.
struct Bench {
    id: String,
    run: Measure,
}

fn bench(id: String, run: impl Fn(&mut Context) -> Vec<Row> + 'static) -> Bench {
    Bench {
        id,
        run: Box::new(run),
    }
}

/// Every benchmark, in the order they run: cold plans come first, while the
/// trees are as the image has them.
fn benches(recipe: &Recipe) -> Vec<Bench> {
    let mut out = Vec::new();
    let listing = recipe.listing_tree().snapshots;
    out.push(bench(format!("list-{listing}"), |c| {
        vec![listing::list_row(c)]
    }));
    out.push(bench("written-per-snapshot".into(), |c| {
        vec![listing::written_row(c)]
    }));
    out.push(bench(format!("stream-check-{}", recipe.rss_mib[0]), |c| {
        vec![listing::stream_check_row(c)]
    }));
    for (kind, state) in [
        ("cold", State::Cold),
        ("uptodate", State::UpToDate),
        ("new", State::NewSnapshot),
    ] {
        for tree in &recipe.trees {
            let tree = tree.clone();
            out.push(bench(format!("plan-{kind}-{}", tree.shape()), move |c| {
                vec![plan::row(c, &tree, state)]
            }));
        }
    }
    for tree in &recipe.growth {
        let tree = tree.clone();
        out.push(bench(format!("plan-growth-{}", tree.snapshots), move |c| {
            vec![plan::growth_row(c, &tree)]
        }));
    }
    for tree in &recipe.trees {
        let tree = tree.clone();
        out.push(bench(format!("sync-{}", tree.shape()), move |c| {
            vec![sync::row(c, &tree)]
        }));
    }
    out.push(bench(
        format!("parallel-{}x{}", recipe.children, recipe.child_mib),
        transfer::parallel_rows,
    ));
    out.push(bench(format!("single-{}", recipe.single_mib), |c| {
        vec![transfer::single_row(c)]
    }));
    out.push(bench(format!("remote-{}", recipe.single_mib), remote::rows));
    // Stream files with parity: the smallest data set and the single one.
    let small = recipe.rss_mib[0];
    let small_snapshot = recipe
        .rss_src(small)
        .snapshot(DATA_SNAPSHOT)
        .expect("a valid snapshot name");
    for (mib, snapshot) in [
        (small, small_snapshot.clone()),
        (
            recipe.single_mib,
            recipe
                .single_src()
                .snapshot(DATA_SNAPSHOT)
                .expect("a valid snapshot name"),
        ),
    ] {
        out.push(bench(format!("stream-file-{mib}"), move |c| {
            stream_file::send_rows(c, mib, &snapshot)
        }));
    }
    let snapshot = small_snapshot.clone();
    out.push(bench(format!("parity-repair-{small}"), move |c| {
        stream_file::repair_rows(c, small, &snapshot)
    }));
    out.push(bench(format!("parity-parts-{small}"), move |c| {
        stream_file::parts_rows(c, small, &small_snapshot)
    }));
    for mib in recipe.rss_mib.clone() {
        out.push(bench(format!("rss-{mib}"), move |c| {
            vec![memory::row(c, mib)]
        }));
    }
    for mib in recipe.rss_mib.clone() {
        out.push(bench(format!("rss-parity-{mib}"), move |c| {
            memory::parity_rows(c, mib)
        }));
    }
    out
}

/// Runs each benchmark of `selected` (its id from `id`), printing each row
/// as it completes: the rows, and the ids of those that panicked (the
/// others still run).
fn run_each<B>(
    selected: &[B],
    id: impl Fn(&B) -> &String,
    tag: &str,
    mut run: impl FnMut(&B) -> Vec<Row>,
) -> (Vec<Row>, Vec<String>) {
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for b in selected {
        let t = Instant::now();
        println!("suite: running {}{tag}", id(b));
        match catch_unwind(AssertUnwindSafe(|| run(b))) {
            Ok(new_rows) => {
                for r in &new_rows {
                    println!("{}", r.markdown());
                }
                rows.extend(new_rows);
            }
            Err(_) => failed.push(id(b).clone()),
        }
        println!("suite: {} took {:.0} s", id(b), t.elapsed().as_secs_f64());
    }
    (rows, failed)
}

/// Runs the selected benchmarks, printing each row as it completes, then
/// the whole table between report markers. A benchmark that panics is
/// reported and the others still run.
fn run(mut ctx: Context, options: &Options) -> bool {
    let started = Instant::now();
    let selected: Vec<Bench> = benches(&ctx.recipe)
        .into_iter()
        .filter(|b| options.selects(&b.id))
        .collect();
    if selected.is_empty() {
        let names: Vec<String> = benches(&ctx.recipe).into_iter().map(|b| b.id).collect();
        eprintln!("suite: no benchmark matches; names: {}", names.join(" "));
        return false;
    }
    let (rows, failed) = run_each(&selected, |b| &b.id, "", |b| (b.run)(&mut ctx));
    println!("ZFS-HARNESS-REPORT-BEGIN");
    println!("- sizes: {}", ctx.recipe.text());
    println!(
        "- the suite ran {:.0} s; times are wall-clock medians, each row's runs in its notes",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("{}", table::HEADER);
    for r in &rows {
        println!("{}", r.markdown());
    }
    println!();
    println!(
        "ours = zfs-replicate in process (libzfs_core and ioctls); CLI = the `zfs` commands \
         peers run; CLI/ours above 1 means ours is faster (or, for RSS, smaller)."
    );
    for id in &failed {
        println!("FAILED: {id} (its panic is in the log above)");
    }
    println!("ZFS-HARNESS-REPORT-END");
    failed.is_empty()
}

/// A benchmark of the host's (no pool, no guest): the rows it measures
/// with `runs` runs each.
struct HostBench {
    id: String,
    run: Box<dyn Fn(usize) -> Vec<Row>>,
}

fn host_benches(options: &Options) -> Vec<HostBench> {
    let mib = if options.small {
        HOST_STREAM_MIB_SMALL
    } else {
        HOST_STREAM_MIB
    };
    vec![HostBench {
        id: format!("parity-host-{mib}"),
        run: Box::new(move |runs| stream_file::host_rows(runs, mib)),
    }]
}

/// Runs the selected host benchmarks (none selected: nothing, and
/// success), then prints their table between the host's report markers.
fn run_host(options: &Options) -> bool {
    let selected: Vec<HostBench> = host_benches(options)
        .into_iter()
        .filter(|b| options.selects(&b.id))
        .collect();
    if selected.is_empty() {
        return true;
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let started = Instant::now();
    let (rows, failed) = run_each(&selected, |b| &b.id, " (host)", |b| (b.run)(options.runs()));
    println!("SUITE-HOST-REPORT-BEGIN");
    println!("## On the host, one core");
    println!();
    println!(
        "- run on the host before the guest booted, pinned to one core; the host's load \
         average (1, 5, 15 min) when it started: {load} (other work may share the host)"
    );
    println!(
        "- the host's rows ran {:.0} s; times are wall-clock medians",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("{}", table::HEADER);
    for r in &rows {
        println!("{}", r.markdown());
    }
    for id in &failed {
        println!();
        println!("FAILED: {id} (its panic is in the log above)");
    }
    println!("SUITE-HOST-REPORT-END");
    failed.is_empty()
}
