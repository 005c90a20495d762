//! The benchmark suite: zfs-replicate against the `zfs` CLI, in the same
//! run on the same pools. `cargo xtask bench` runs it in the VM; it reports
//! medians and ratios (CLI time / ours) and asserts nothing about speed.
//!
//! ```text
//! suite recipe [OPTIONS]   (host) the pools these options need, for xtask's image cache
//! suite build  [OPTIONS]   (guest) builds the pools on the blank disks /dev/vda, /dev/vdb
//! suite run    [OPTIONS]   (guest) imports them and runs the benchmarks
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
mod sync;
mod table;
mod transfer;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use zfs_core::Zfs;

use context::Context;
use plan::State;
use recipe::Recipe;
use table::Row;

const DEFAULT_RUNS: usize = 5;
const SMALL_RUNS: usize = 3;

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
    eprintln!("suite: {error}\nusage: suite recipe|build|run [--small] [--runs N] [NAME...]");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first() else {
        usage("which mode?")
    };
    let options = Options::parse(&args[1..]);
    let recipe = options.recipe();
    match mode.as_str() {
        "recipe" => {
            println!("recipe={}", recipe.text());
            let [src, dst] = recipe.disks_mib;
            println!("disks_mib={src} {dst}");
            let complete = !options.small && options.filters.is_empty() && options.runs.is_none();
            println!("complete={complete}");
        }
        "build" => build::build(&open(), &recipe),
        "run" => {
            let zfs = open();
            pools::import();
            let ok = run(Context::new(zfs, recipe, options.runs()), &options);
            std::process::exit(if ok { 0 } else { 1 });
        }
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
    for mib in recipe.rss_mib.clone() {
        out.push(bench(format!("rss-{mib}"), move |c| {
            vec![memory::row(c, mib)]
        }));
    }
    out
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
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for b in &selected {
        let t = Instant::now();
        println!("suite: running {}", b.id);
        match catch_unwind(AssertUnwindSafe(|| (b.run)(&mut ctx))) {
            Ok(new_rows) => {
                for r in &new_rows {
                    println!("{}", r.markdown());
                }
                rows.extend(new_rows);
            }
            Err(_) => failed.push(b.id.clone()),
        }
        println!("suite: {} took {:.0} s", b.id, t.elapsed().as_secs_f64());
    }
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
