//! Integration tests of the `pyfunc-env` binary.

mod common;
mod create;
