//! Host tests (no ZFS needed): the library's pipe relay never raises
//! `SIGPIPE`, even in a host that restored its default disposition.

use std::io::Write;

use zfs_core::pipe::Pipe;

/// A child with `SIGPIPE` at its default disposition splices into a pipe
/// whose reader is gone: it must see EPIPE and live.
#[test]
fn splice_into_a_pipe_without_reader_gives_epipe_not_death() {
    if std::env::var_os("ZFS_TEST_SIGPIPE_CHILD").is_some() {
        zfs_core::testing::restore_default_sigpipe().unwrap();
        let input = Pipe::new(1 << 16).unwrap();
        let output = Pipe::new(1 << 16).unwrap();
        drop(output.read); // the receiver died
        std::fs::File::from(input.write)
            .write_all(&[7u8; 4096])
            .unwrap();
        let err = zfs_core::pipe::splice(&input.read, &output.write, 4096).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE), "{err}");
        println!("ALIVE after {err}");
        std::io::stdout().flush().unwrap();
        return;
    }
    let out = zfs_replicate_tests::run_test_in_child(
        "splice_into_a_pipe_without_reader_gives_epipe_not_death",
        "ZFS_TEST_SIGPIPE_CHILD",
    );
    zfs_replicate_tests::assert_child_alive(&out);
}
