//! Integration tests of the `pyfunc-env` binary.

mod cache;
mod common;
mod conformance;
mod create;
mod deps;
mod lock;
mod pack;
mod python;
mod reliability;
mod run;
