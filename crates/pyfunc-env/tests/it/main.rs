//! Integration tests of the `pyfunc-env` binary.

mod cache;
mod cli_defects;
mod cloud;
mod common;
mod conformance;
mod create;
mod deps;
mod image;
mod key;
mod lock;
mod pack;
mod python;
mod registry;
mod registry_faults;
mod reliability;
mod remote;
mod run;
mod secrets;
mod serve_versions;
mod servers;
mod snapshots;
mod sources;
mod spark_udf;
mod uv_lock;
mod wheel;
