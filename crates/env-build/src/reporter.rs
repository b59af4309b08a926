//! Progress reporting. Libraries report through [`Reporter`]; the CLI draws it.

use std::sync::Arc;

/// Receives progress of long operations. Every method has an empty default.
pub trait Reporter: Send + Sync {
    /// A phase started (`Solving`, `Installing conda packages`, `Installing pip packages`, ...).
    fn on_phase(&self, _phase: &str) {}
    /// A download started; returns an id for the other calls.
    fn on_download_start(&self, _name: &str) -> usize {
        0
    }
    /// Bytes downloaded so far.
    fn on_download_progress(&self, _id: usize, _bytes: u64, _total: Option<u64>) {}
    /// A download finished.
    fn on_download_complete(&self, _id: usize) {}
    /// The number of packages about to be linked into the environment.
    fn on_link_start(&self, _total: usize) {}
    /// One package linked.
    fn on_link_complete(&self, _name: &str) {}
    /// A line of output from a tool we run (uv), for a spinner's message.
    fn on_tool_output(&self, _line: &str) {}
    /// Waiting for a lock another process holds.
    fn on_wait(&self, _what: &str) {}
    /// Everything finished.
    fn on_finish(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReporter;

/// env-conda's narrow reporter over ours: downloads and links go to the same methods here.
pub(crate) fn conda_progress(reporter: &Arc<dyn Reporter>) -> Arc<dyn env_conda::Reporter> {
    struct Progress(Arc<dyn Reporter>);
    impl env_conda::Reporter for Progress {
        fn on_download_start(&self, name: &str) -> usize {
            self.0.on_download_start(name)
        }
        fn on_download_progress(&self, id: usize, bytes: u64, total: Option<u64>) {
            self.0.on_download_progress(id, bytes, total);
        }
        fn on_download_complete(&self, id: usize) {
            self.0.on_download_complete(id);
        }
        fn on_link_start(&self, total: usize) {
            self.0.on_link_start(total);
        }
        fn on_link_complete(&self, name: &str) {
            self.0.on_link_complete(name);
        }
    }
    Arc::new(Progress(Arc::clone(reporter)))
}

/// env-uv's narrow reporter over ours: uv's stderr lines go to [`Reporter::on_tool_output`].
pub(crate) fn uv_lines(reporter: &Arc<dyn Reporter>) -> Arc<dyn env_uv::Reporter> {
    struct Lines(Arc<dyn Reporter>);
    impl env_uv::Reporter for Lines {
        fn on_tool_output(&self, line: &str) {
            self.0.on_tool_output(line);
        }
    }
    Arc::new(Lines(Arc::clone(reporter)))
}

impl Reporter for NoReporter {}
