//! Tracing for `-v`, `-vv` and `RUST_LOG`, written through a filter that masks secrets.

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
        .with_writer(RedactingWriter::default)
        .with_ansi(color)
        .without_time()
        .with_target(false)
        .try_init();
}

/// A log writer that masks secrets (URL credentials, registered tokens) line by line, so
/// `-v` output never shows them whatever a library logs.
#[derive(Default)]
struct RedactingWriter {
    buffer: Vec<u8>,
}

impl std::io::Write for RedactingWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            let text = env_build::redact::redact(&String::from_utf8_lossy(&self.buffer));
            self.buffer.clear();
            std::io::stderr().lock().write_all(text.as_bytes())?;
        }
        Ok(())
    }
}

impl Drop for RedactingWriter {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}
