//! Progress of conda installs: rattler's installer reporter adapted to the narrow
//! [`Reporter`] of this crate.

use crate::Reporter;

/// Adapts rattler's installer reporter to ours.
pub(crate) struct InstallReporter<'a> {
    pub(crate) inner: std::sync::Arc<dyn Reporter + 'a>,
    pub(crate) names: std::sync::Mutex<Vec<String>>,
}

impl rattler::install::Reporter for InstallReporter<'static> {
    fn on_transaction_start(
        &self,
        transaction: &rattler::install::Transaction<
            rattler_conda_types::PrefixRecord,
            rattler_conda_types::RepoDataRecord,
        >,
    ) {
        self.inner.on_link_start(transaction.operations.len());
    }
    fn on_transaction_operation_start(&self, _operation: usize) {}
    fn on_populate_cache_start(
        &self,
        _operation: usize,
        record: &rattler_conda_types::RepoDataRecord,
    ) -> usize {
        let mut names = self
            .names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        names.push(record.package_record.name.as_normalized().to_string());
        names.len() - 1
    }
    fn on_validate_start(&self, cache_entry: usize) -> usize {
        cache_entry
    }
    fn on_validate_complete(&self, _validate_idx: usize) {}
    fn on_download_start(&self, cache_entry: usize) -> usize {
        let name = self
            .names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(cache_entry)
            .cloned()
            .unwrap_or_default();
        self.inner.on_download_start(&name)
    }
    fn on_download_progress(&self, download_idx: usize, progress: u64, total: Option<u64>) {
        self.inner
            .on_download_progress(download_idx, progress, total);
    }
    fn on_download_completed(&self, download_idx: usize) {
        self.inner.on_download_complete(download_idx);
    }
    fn on_populate_cache_complete(&self, _cache_entry: usize) {}
    fn on_unlink_start(
        &self,
        operation: usize,
        _record: &rattler_conda_types::PrefixRecord,
    ) -> usize {
        operation
    }
    fn on_unlink_complete(&self, _index: usize) {}
    fn on_link_start(
        &self,
        operation: usize,
        record: &rattler_conda_types::RepoDataRecord,
    ) -> usize {
        let mut names = self
            .names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        names.push(record.package_record.name.as_normalized().to_string());
        operation
    }
    fn on_link_complete(&self, _index: usize) {
        self.inner.on_link_complete("");
    }
    fn on_transaction_operation_complete(&self, _operation: usize) {}
    fn on_transaction_complete(&self) {}
    fn on_post_link_start(&self, _package_name: &str, _script_path: &str) -> usize {
        0
    }
    fn on_post_link_complete(&self, _index: usize, _success: bool) {}
    fn on_pre_unlink_start(&self, _package_name: &str, _script_path: &str) -> usize {
        0
    }
    fn on_pre_unlink_complete(&self, _index: usize, _success: bool) {}
}
