//! Integration tests of the `pyfunc-env` binary.

mod cache;
mod common;
mod create;
mod deps;
mod lock;
mod python;
mod pack;
mod reliability;
mod run;
