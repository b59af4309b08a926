//! Integration tests of the `pyfunc-env` binary.

mod cache;
mod cloud;
mod common;
mod conformance;
mod create;
mod deps;
mod key;
mod lock;
mod pack;
mod python;
mod registry;
mod registry_faults;
mod reliability;
mod remote;
mod run;
mod serve_versions;
mod servers;
mod snapshots;
mod uv_lock;
mod wheel;
