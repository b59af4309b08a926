//! Integration tests of the `pyfunc-env` binary.

mod cache;
mod common;
mod create;
mod deps;
mod lock;
mod pack;
mod python;
mod registry;
mod reliability;
mod run;
