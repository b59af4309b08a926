//! The `pyfunc-env` binary.

fn main() -> std::process::ExitCode {
    pyfunc_env::main(std::env::args_os())
}
