//! Replication with a far side: a client and a server that speak a small
//! framed protocol over any duplex byte channel (ssh stdio, TCP, a Unix
//! socket, a pair of pipes).
//!
//! **The protocol.** After 8 magic bytes and a HELLO/WELCOME handshake
//! that agrees on a version, features and limits ([`handshake`]), each side
//! sends [`frame`]s: requests and replies that mirror the endpoint calls,
//! and send streams as DATA frames multiplexed by id. The server checks
//! every request against its [`Policy`] (dataset roots, each with an
//! [`Access`]) before anything runs.
//!
//! **Bounded memory.** Every frame kind has a body limit, checked against
//! the header before anything is allocated; length claims inside bodies
//! fail at the end of the body. Streams move only as much as the receiver
//! granted (CREDIT), so a fast sender cannot fill a slow receiver's memory.
//!
//! **No encryption.** Plain TCP has neither encryption nor integrity beyond
//! TCP's checksums and the ZFS stream's own; the token
//! ([`read_token_file`]) crosses in cleartext and only keeps out those who
//! cannot read the traffic. Across any network you do not trust, run the
//! protocol over ssh or a VPN (WireGuard).

mod auth;
mod channel;
mod client;
mod conn;
pub mod frame;
pub mod handshake;
mod message;
mod policy;
mod server;

pub use auth::{read_token_file, TokenError, MIN_TOKEN};
pub use channel::Channel;
pub use client::{Client, ClientOptions};
pub use conn::{SessionEnd, Timing};
pub use frame::FrameError;
pub use handshake::{HandshakeError, Version, PROTOCOL};
pub use message::{ReceiveSpec, Refusal, Request, Response, WireError};
pub use policy::{parse_allow, Access, Grant, Policy, PolicyParseError, Refused, RefusedReason};
pub use server::{listen_tcp, serve, serve_tcp, ServeOptions};
