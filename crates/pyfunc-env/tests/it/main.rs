//! Integration tests of the `pyfunc-env` binary.

mod common;
mod cache;
mod create;
