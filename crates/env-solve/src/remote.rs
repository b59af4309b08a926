//! The hook a remote environment cache plugs into (`env-remote` implements it; issue 13).
//!
//! Every builder goes through [`crate::build::create`], which, holding the environment's
//! exclusive lock and finding it incomplete, first asks the remote ([`RemoteCache::pull`]): a
//! hit installs the complete environment and nothing is solved or installed. After a local
//! build is complete (fingerprint written, lock released) it offers the environment to the
//! remote ([`RemoteCache::push`]). A remote never fails a build: its faults come back as
//! warnings and the build goes on locally.

use std::path::Path;
use std::sync::Arc;

use env_cache::{Cache, EnvEntry};

use crate::reporter::Reporter;

/// What the remote needs to know about the environment besides its cache entry.
#[derive(Debug, Clone, Copy)]
pub struct RemoteEnv<'a> {
    /// The model directory it is built for (recorded in a pulled environment's metadata).
    pub model_root: &'a Path,
    /// Whether the environment has bytecode (`--no-compile` builds have none, and a different key).
    pub compile_bytecode: bool,
}

/// The result of [`RemoteCache::pull`].
#[derive(Debug, Clone, PartialEq)]
pub enum Pulled {
    /// Installed and complete; seconds spent downloading and unpacking.
    Hit {
        /// Download, check and unpack.
        seconds: f64,
    },
    /// The remote has no such environment.
    Miss,
    /// The remote could not be used (unreachable, refused, a damaged archive): one warning.
    Failed {
        /// What to tell the user.
        warning: String,
    },
}

/// The result of [`RemoteCache::push`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    /// The environment is in the remote now (uploaded by this call).
    pub pushed: bool,
    /// A line for the user: why it was not pushed, or what went wrong.
    pub warning: Option<String>,
}

/// A shared cache of complete environments. Blocking calls: [`crate::build::create`] runs them
/// on a blocking thread.
pub trait RemoteCache: Send + Sync + std::fmt::Debug {
    /// The remote's URL, for messages (no secrets).
    fn url(&self) -> String;

    /// Installs the environment of `env`'s key from the remote into `env` (missing or
    /// incomplete; the caller holds its exclusive lock): complete marker last, nothing left
    /// behind on failure.
    fn pull(
        &self,
        cache: &Cache,
        env: &EnvEntry,
        what: RemoteEnv<'_>,
        reporter: &dyn Reporter,
    ) -> Pulled;

    /// Uploads the complete environment `env` (the caller holds no lock on it; the
    /// implementation holds a shared one while it reads).
    fn push(
        &self,
        cache: &Cache,
        env: &EnvEntry,
        what: RemoteEnv<'_>,
        reporter: &dyn Reporter,
    ) -> Pushed;
}

/// Runs `call` with the remote on a blocking thread (the remote's calls block).
async fn on_blocking_thread<T: Send + 'static>(
    remote: &Arc<dyn RemoteCache>,
    cache: &Cache,
    env: &EnvEntry,
    model_root: &Path,
    compile_bytecode: bool,
    reporter: &Arc<dyn Reporter>,
    call: fn(&dyn RemoteCache, &Cache, &EnvEntry, RemoteEnv<'_>, &dyn Reporter) -> T,
) -> Result<T, String> {
    let (remote, cache, env, reporter) =
        (remote.clone(), cache.clone(), env.clone(), reporter.clone());
    let model_root = model_root.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let what = RemoteEnv {
            model_root: &model_root,
            compile_bytecode,
        };
        call(remote.as_ref(), &cache, &env, what, reporter.as_ref())
    })
    .await
    .map_err(|error| format!("The remote cache failed: {error}"))
}

/// [`RemoteCache::pull`] on a blocking thread.
pub(crate) async fn pull(
    remote: &Arc<dyn RemoteCache>,
    cache: &Cache,
    env: &EnvEntry,
    model_root: &Path,
    compile_bytecode: bool,
    reporter: &Arc<dyn Reporter>,
) -> Pulled {
    on_blocking_thread(
        remote,
        cache,
        env,
        model_root,
        compile_bytecode,
        reporter,
        |r, c, e, w, p| r.pull(c, e, w, p),
    )
    .await
    .unwrap_or_else(|warning| Pulled::Failed { warning })
}

/// [`RemoteCache::push`] on a blocking thread.
pub(crate) async fn push(
    remote: &Arc<dyn RemoteCache>,
    cache: &Cache,
    env: &EnvEntry,
    model_root: &Path,
    compile_bytecode: bool,
    reporter: &Arc<dyn Reporter>,
) -> Pushed {
    on_blocking_thread(
        remote,
        cache,
        env,
        model_root,
        compile_bytecode,
        reporter,
        |r, c, e, w, p| r.push(c, e, w, p),
    )
    .await
    .unwrap_or_else(|warning| Pushed {
        pushed: false,
        warning: Some(warning),
    })
}
