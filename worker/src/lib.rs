//! course-edge worker.
//!
//! The crate is split the way lol-html is: everything that decides something is a pure
//! module that builds and tests natively (`cargo test -p course-edge-worker`), and the
//! Workers runtime is reached only from [`edge`], which exists only on wasm32 because the
//! `worker` dependency does. Adding `use worker::…` to a pure module is a compile error on
//! native targets, which is the point.
//!
//! | module | role |
//! |---|---|
//! | [`config`] | wrangler vars and secrets parsed once into [`config::Config`] |
//! | [`route`] | method + path parsed into a [`route::Route`] (class, R2 key) |
//! | [`policy`] | the cache policy table, the sans-I/O cache flow, stored entries, headers, keys |
//! | [`collapse`] | request collapsing: one upstream trip per key in flight |
//! | [`assets`] | R2 object keys, content types, byte ranges |
//! | [`image`] | image URL options, fit geometry, format negotiation |
//! | [`segment`] | the viewer's segment from the verified session cookie |
//! | [`error`] | [`error::EdgeError`]: every failure, its fault class, status and public message |
//! | [`timing`] | the `Server-Timing` header value |
//! | [`upload`] | uploads of originals: type by magic bytes, dimensions, limits, purge URLs |
//! | `edge` (wasm32) | `#[event(fetch)]`, proxying, Workers API glue |

pub mod assets;
pub mod canary;
pub mod collapse;
pub mod config;
pub mod error;
pub mod fault;
pub mod image;
pub mod personalize;
pub mod policy;
pub mod route;
pub mod segment;
pub mod timing;
pub mod upload;
pub mod visitor;

#[cfg(target_arch = "wasm32")]
mod edge;
