//! Sparse raw disk images for the guest, with one MBR partition spanning the
//! disk: the guest sees `/dev/vdX1`, on which `zpool create` takes the
//! partition as it is (on a whole disk it would write its own label and wait
//! for udev, which the guest does not run).

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::Result;

const SECTOR: u64 = 512;
/// The partition starts at 1 MiB, as partitioning tools align it.
const FIRST_SECTOR: u64 = 2048;

/// Creates `path` as a sparse image of `size_mib` MiB with one partition.
pub fn create_partitioned(path: &Path, size_mib: u64) -> Result<()> {
    let size = size_mib << 20;
    let sectors = size / SECTOR - FIRST_SECTOR;
    let sectors = u32::try_from(sectors).map_err(|_| "disk image too large for an MBR")?;
    let mut file = fs::File::create(path)?;
    file.set_len(size)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&mbr(FIRST_SECTOR as u32, sectors))?;
    file.sync_all()?;
    Ok(())
}

/// A master boot record with one Linux partition (`0x83`) by LBA.
fn mbr(first: u32, sectors: u32) -> [u8; 512] {
    let mut mbr = [0u8; 512];
    let entry = &mut mbr[446..462];
    entry[0] = 0x00; // not bootable
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]); // CHS unused: LBA only
    entry[4] = 0x83;
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&first.to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    mbr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_has_one_partition_and_a_signature() {
        let m = mbr(2048, 1000);
        assert_eq!(&m[510..], &[0x55, 0xaa]);
        assert_eq!(m[446 + 4], 0x83);
        assert_eq!(u32::from_le_bytes(m[454..458].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(m[458..462].try_into().unwrap()), 1000);
        assert!(m[462..510].iter().all(|b| *b == 0));
    }
}
