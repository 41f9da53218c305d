//! The end-to-end suite as one test binary: each module is one story (its doc comment
//! says which), started on its own stack or sharing one inside the module. One binary
//! rather than one per file: it is linked once, and the test runner's threads run the
//! modules' tests side by side instead of one file after another (each file's few
//! tests used to leave a core idle while workerd started). Run one module with
//! `cargo test -p course-edge-e2e -- purge::`.

mod cache;
mod canary;
mod dev_script;
mod drill;
mod edge_cache;
mod hardening;
mod health;
mod images;
mod purge;
mod remote;
mod rollout;
mod site;
