//! Tracing for `-v`, `-vv` and `RUST_LOG`, written through a writer that masks secrets
//! ([`env_build::redact::RedactingWriter`]).

use crate::EnvVars;

/// Logs to stderr: off by default, `-v` our crates at debug, `-vv` at trace; `RUST_LOG`
/// overrides both.
pub fn init_tracing(verbose: u8, color: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = if let Ok(filter) = std::env::var(EnvVars::RUST_LOG) {
        EnvFilter::new(filter)
    } else {
        let level = match verbose {
            0 => return,
            1 => "debug",
            _ => "trace",
        };
        EnvFilter::new(format!(
            "pyfunc_env={level},env_spec={level},env_cache={level},env_build={level},env_python={level},env_bytecode={level},env_uv={level},env_conda={level},env_lock={level},env_settings={level},env_store={level},env_image={level},env_run={level},env_remote={level},env_source={level},env_pack={level},env_prefix={level}"
        ))
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| env_build::redact::RedactingWriter::new(std::io::stderr()))
        .with_ansi(color)
        .without_time()
        .with_target(false)
        .try_init();
}
