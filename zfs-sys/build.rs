//! Finds libzfs_core and libnvpair and tells cargo how to link them.
//!
//! Environment overrides (checked before pkg-config):
//! - `ZFS_SYS_LIB_DIR`: directory that holds `libzfs_core.so` and `libnvpair.so`.
//! - `ZFS_SYS_INCLUDE_DIR`: with `buildtime-bindgen`, a directory that holds
//!   `libzfs/` and `libspl/` headers (default: pkg-config's include paths).
//! - `ZFS_SYS_BINDINGS_OUT`: with `buildtime-bindgen`, also copy the generated
//!   bindings to this path (used by `cargo xtask bindgen`).
//!
//! When `DOCS_RS` is set (docs.rs sets it; its builders have no OpenZFS),
//! nothing is probed or linked: documenting needs neither.

use std::env;
use std::path::PathBuf;

const INSTALL_HINT: &str = "zfs-sys: libzfs_core was not found.\n\
    Install the OpenZFS development files:\n\
    \x20 Debian/Ubuntu: apt-get install libzfslinux-dev (Debian: from the `contrib` component)\n\
    \x20 Fedora/RHEL:   dnf install libzfs5-devel (from the OpenZFS repository)\n\
    or point ZFS_SYS_LIB_DIR at the directory holding libzfs_core.so and libnvpair.so.";

fn main() {
    println!("cargo:rerun-if-env-changed=ZFS_SYS_LIB_DIR");
    println!("cargo:rerun-if-env-changed=ZFS_SYS_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=ZFS_SYS_BINDINGS_OUT");
    println!("cargo:rerun-if-env-changed=DOCS_RS");
    println!("cargo:rerun-if-changed=wrapper.h");

    let include_paths = if env::var_os("DOCS_RS").is_some() {
        Vec::new()
    } else {
        find_libraries()
    };

    #[cfg(feature = "buildtime-bindgen")]
    generate(include_paths);
    #[cfg(not(feature = "buildtime-bindgen"))]
    let _ = include_paths;
}

/// Tells cargo how to link libzfs_core and libnvpair; returns the header
/// directories pkg-config knows (for `buildtime-bindgen`).
fn find_libraries() -> Vec<PathBuf> {
    match env::var_os("ZFS_SYS_LIB_DIR") {
        Some(dir) => {
            println!(
                "cargo:rustc-link-search=native={}",
                PathBuf::from(dir).display()
            );
            println!("cargo:rustc-link-lib=dylib=zfs_core");
            println!("cargo:rustc-link-lib=dylib=nvpair");
            Vec::new()
        }
        None => match pkg_config::Config::new()
            .atleast_version("2.1")
            .probe("libzfs_core")
        {
            Ok(lib) => {
                // libzfs_core.pc names nvpair in `Libs`, but older releases did not:
                // name it explicitly, since we call libnvpair directly.
                println!("cargo:rustc-link-lib=dylib=nvpair");
                lib.include_paths
            }
            Err(err) => {
                eprintln!("{INSTALL_HINT}\n(pkg-config said: {err})");
                panic!("{INSTALL_HINT}");
            }
        },
    }
}

#[cfg(feature = "buildtime-bindgen")]
fn generate(mut include_paths: Vec<PathBuf>) {
    if let Some(dir) = env::var_os("ZFS_SYS_INCLUDE_DIR") {
        let dir = PathBuf::from(dir);
        include_paths = vec![dir.join("libzfs"), dir.join("libspl")];
    }
    // Functions of the libzfs_core API as of OpenZFS 2.1 (SONAME libzfs_core.so.3).
    // Deliberately absent: 2.2+ additions (lzc_ioctl_fd, lzc_send_wrapper,
    // lzc_receive_with_heal, vdev props, lzc_scrub), 2.3+ (lzc_get_props,
    // lzc_pool_prefetch, lzc_ddt_prune), and lzc_send_progress, which is
    // declared but defined in no release.
    const LZC_FUNCTIONS: &[&str] = &[
        "libzfs_core_init",
        "libzfs_core_fini",
        "lzc_snapshot",
        "lzc_create",
        "lzc_clone",
        "lzc_promote",
        "lzc_destroy_snaps",
        "lzc_bookmark",
        "lzc_get_bookmarks",
        "lzc_get_bookmark_props",
        "lzc_destroy_bookmarks",
        "lzc_load_key",
        "lzc_unload_key",
        "lzc_change_key",
        "lzc_initialize",
        "lzc_trim",
        "lzc_redact",
        "lzc_snaprange_space",
        "lzc_hold",
        "lzc_release",
        "lzc_get_holds",
        "lzc_send",
        "lzc_send_resume",
        "lzc_send_space",
        "lzc_send_redacted",
        "lzc_send_resume_redacted",
        "lzc_send_space_resume_redacted",
        "lzc_receive",
        "lzc_receive_resumable",
        "lzc_receive_with_header",
        "lzc_receive_one",
        "lzc_receive_with_cmdprops",
        "lzc_exists",
        "lzc_rollback",
        "lzc_rollback_to",
        "lzc_rename",
        "lzc_destroy",
        "lzc_channel_program",
        "lzc_channel_program_nosync",
        "lzc_sync",
        "lzc_reopen",
        "lzc_pool_checkpoint",
        "lzc_pool_checkpoint_discard",
        "lzc_wait",
        "lzc_wait_tag",
        "lzc_wait_fs",
        "lzc_set_bootenv",
        "lzc_get_bootenv",
    ];
    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("nvlist_.*")
        .allowlist_function("nvpair_.*")
        .blocklist_function("nvlist_print.*")
        .blocklist_function("nvlist_prt.*")
        .blocklist_function("nvpair_value_match.*")
        .blocklist_function("nvlist_x.*")
        .blocklist_function("nvlist_lookup_nv_alloc")
        .blocklist_function("nvlist_lookup_pairs")
        .allowlist_type("lzc_.*")
        .allowlist_type("data_type_t")
        .allowlist_var("NV_UNIQUE_NAME.*")
        .allowlist_var("NV_ENCODE_.*")
        .blocklist_type("FILE|_IO_.*|re_.*|regex_t|reg_syntax_t|__re_long_size_t")
        .rustified_enum("lzc_dataset_type")
        .bitfield_enum("lzc_send_flags")
        .constified_enum_module("data_type_t")
        .layout_tests(true)
        .derive_default(true)
        .generate_comments(false);
    for f in LZC_FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for dir in &include_paths {
        builder = builder.clang_arg(format!("-I{}", dir.display()));
    }
    let bindings = builder
        .generate()
        .expect("zfs-sys: bindgen failed to generate the bindings");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings
        .write_to_file(&out)
        .expect("zfs-sys: could not write bindings.rs");
    if let Some(copy_to) = env::var_os("ZFS_SYS_BINDINGS_OUT") {
        std::fs::copy(&out, &copy_to)
            .expect("zfs-sys: could not copy bindings to ZFS_SYS_BINDINGS_OUT");
    }
}
