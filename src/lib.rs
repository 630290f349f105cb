//! The `sluice` binary's library: daemon wiring, the component registry
//! (built-in components and those of the component crates) and the HTTP
//! API, configuration reload, and the operator commands (`status`, `top`,
//! `tap`, `schema`). `main.rs` is only the command line; benchmarks and
//! tests use this.

pub mod allocator;
pub mod api;
pub mod cli;
pub mod client;
pub mod components;
pub mod daemon;
pub mod reload;
pub mod schema;
pub mod status;
pub mod tap;
pub mod top;
