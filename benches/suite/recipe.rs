//! What the pools hold: the trees, the data sets and the disks, at full
//! size or shrunk for development (`--small`). Its text keys the pool image
//! cache (`cargo xtask bench` builds the images once per recipe).

use zfs_core::DatasetName;

/// Bump when the way the pools are built changes (names, layout, contents).
const RECIPE_VERSION: u32 = 1;

pub const SRC_POOL: &str = "benchsrc";
pub const DST_POOL: &str = "benchdst";
/// The pools' partitions on the attached disks (`xtask/src/disk.rs`).
pub const SRC_DEVICE: &str = "/dev/vda1";
pub const DST_DEVICE: &str = "/dev/vdb1";

/// A source tree (a root with `datasets - 1` children, each with the same
/// `snapshots`), replicated to the same name on the target pool.
#[derive(Debug, Clone)]
pub struct Tree {
    pub name: String,
    pub datasets: usize,
    pub snapshots: usize,
}

impl Tree {
    fn new(prefix: &str, datasets: usize, snapshots: usize) -> Tree {
        Tree {
            name: format!("{prefix}{datasets}x{snapshots}"),
            datasets,
            snapshots,
        }
    }

    /// `11x100`: how benchmark names refer to the tree.
    pub fn shape(&self) -> String {
        format!("{}x{}", self.datasets, self.snapshots)
    }

    /// `11 datasets × 100 snapshots`.
    pub fn label(&self) -> String {
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        format!(
            "{} × {}",
            plural(self.datasets, "dataset"),
            plural(self.snapshots, "snapshot")
        )
    }

    pub fn src(&self) -> DatasetName {
        dataset(SRC_POOL, &self.name)
    }

    pub fn dst(&self) -> DatasetName {
        dataset(DST_POOL, &self.name)
    }

    /// The source's datasets, root first.
    pub fn src_datasets(&self) -> Vec<DatasetName> {
        let root = self.src();
        let mut out = vec![root.clone()];
        out.extend(
            (1..self.datasets)
                .map(|i| root.child(&format!("d{i:03}")).expect("a valid child name")),
        );
        out
    }
}

/// The short name of snapshot number `i` (from 1) of the trees.
pub fn tree_snapshot(i: usize) -> String {
    format!("s{i:04}")
}

/// The snapshot every data set has.
pub const DATA_SNAPSHOT: &str = "data";

#[derive(Debug, Clone)]
pub struct Recipe {
    /// Many snapshots per dataset, and many datasets.
    pub trees: Vec<Tree>,
    /// One dataset each, for plan time against snapshot count; the largest
    /// also serves the listing and property rows.
    pub growth: Vec<Tree>,
    /// Children of the `parallel` data set, and each one's MiB.
    pub children: usize,
    pub child_mib: u64,
    /// The `single` data set's MiB.
    pub single_mib: u64,
    /// The data sets `backup sync` runs on for peak RSS, in MiB.
    pub rss_mib: Vec<u64>,
    /// The source and target disks.
    pub disks_mib: [u64; 2],
}

impl Recipe {
    pub fn full() -> Recipe {
        Recipe {
            trees: vec![Tree::new("t", 11, 100), Tree::new("t", 101, 10)],
            growth: [10, 100, 1000].map(|n| Tree::new("g", 1, n)).to_vec(),
            children: 8,
            child_mib: 32,
            single_mib: 256,
            rss_mib: vec![64, 1024],
            disks_mib: [8192, 8192],
        }
    }

    /// For development: the same benchmarks on tiny pools.
    pub fn small() -> Recipe {
        Recipe {
            trees: vec![Tree::new("t", 3, 5), Tree::new("t", 5, 2)],
            growth: [5, 10, 20].map(|n| Tree::new("g", 1, n)).to_vec(),
            children: 8,
            child_mib: 2,
            single_mib: 16,
            rss_mib: vec![8, 32],
            disks_mib: [1024, 1024],
        }
    }

    /// Everything the pools hold, in one line.
    pub fn text(&self) -> String {
        let shapes = |trees: &[Tree]| trees.iter().map(Tree::shape).collect::<Vec<_>>().join(",");
        let mib = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        format!(
            "v{RECIPE_VERSION} trees={} growth={} parallel={}x{}MiB single={}MiB rss={}MiB disks={}MiB",
            shapes(&self.trees),
            shapes(&self.growth),
            self.children,
            self.child_mib,
            self.single_mib,
            mib(&self.rss_mib),
            mib(&self.disks_mib),
        )
    }

    /// Every tree, growth trees included.
    pub fn all_trees(&self) -> impl Iterator<Item = &Tree> {
        self.trees.iter().chain(&self.growth)
    }

    /// The dataset the listing and property rows use: the largest growth tree.
    pub fn listing_tree(&self) -> &Tree {
        self.growth
            .iter()
            .max_by_key(|t| t.snapshots)
            .expect("the recipe has growth trees")
    }

    pub fn parallel_src(&self) -> DatasetName {
        dataset(SRC_POOL, "parallel")
    }

    pub fn single_src(&self) -> DatasetName {
        dataset(SRC_POOL, "single")
    }

    pub fn rss_src(&self, mib: u64) -> DatasetName {
        dataset(SRC_POOL, &format!("rss{mib}"))
    }
}

/// `pool/name`.
pub fn dataset(pool: &str, name: &str) -> DatasetName {
    format!("{pool}/{name}")
        .parse()
        .expect("a valid dataset name")
}
