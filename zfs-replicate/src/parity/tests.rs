//! Host tests of the whole sidecar: written, damaged, checked, repaired.

use std::path::{Path, PathBuf};

use super::*;
use crate::stream::tests::synthetic_stream;

pub(crate) struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("zpar-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn damage(path: &Path, at: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&vec![0x5a; len], at).unwrap();
}

#[test]
fn a_hole_within_the_level_is_repaired_and_one_beyond_is_refused() {
    let dir = Dir::new("hole");
    let path = dir.0.join("s.zstream");
    let stream = synthetic_stream(4 << 20, 7);
    std::fs::write(&path, &stream).unwrap();
    let parity = Parity::percent(5).unwrap().block_size(4096).unwrap();
    let sidecar = create_sidecar(&path, &parity).unwrap();
    assert!(matches!(
        check_file(&path).unwrap(),
        Condition::Intact { .. }
    ));
    // A hole of exactly the guarantee.
    let hole = sidecar.hole_bytes as usize - 4096 + 1;
    damage(&path, 100_000, hole);
    match check_file(&path).unwrap() {
        Condition::Repairable { damaged, .. } => assert!(damaged.bytes >= hole as u64),
        other => panic!("{other:?}"),
    }
    let repaired = repair_file(&path).unwrap();
    assert!(!repaired.repaired.is_empty());
    assert_eq!(std::fs::read(&path).unwrap(), stream);
    assert!(matches!(
        check_file(&path).unwrap(),
        Condition::Intact { .. }
    ));
    // One block more than the guarantee, aligned: unrecoverable, unchanged.
    damage(&path, 4096, sidecar.hole_bytes as usize + 4096);
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(
        check_file(&path).unwrap(),
        Condition::Unrecoverable { .. }
    ));
    assert!(matches!(
        repair_file(&path),
        Err(crate::Error::Unrecoverable { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
