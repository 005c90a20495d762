//! Raw FFI bindings to OpenZFS's `libzfs_core` and `libnvpair`, plus the raw
//! `/dev/zfs` ioctl structures that libzfs_core lacks (see [`ioctl`]).
//!
//! The function bindings cover the stable libzfs_core API of OpenZFS 2.1
//! (`libzfs_core.so.3`), which every later release keeps. They are generated
//! by bindgen and committed, so building needs no libclang; the
//! `buildtime-bindgen` feature regenerates them from the installed headers.
//! `lzc_send_progress` is deliberately absent: no release defines it; use
//! [`ioctl::ZFS_IOC_SEND_PROGRESS`] instead.
//!
//! This crate is all `unsafe`; the safe API lives in `zfs-core`.

#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case)]

// Generated code is not linted; the hand-written `ioctl` module is (clippy's
// `incompatible_msrv` included).
#[cfg(feature = "buildtime-bindgen")]
#[allow(clippy::all)]
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}
#[cfg(not(feature = "buildtime-bindgen"))]
#[allow(clippy::all)]
mod bindings;

pub use bindings::*;

/// The crate README's example compiles (checked as a doc test).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod ioctl;
