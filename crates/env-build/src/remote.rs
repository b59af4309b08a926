//! The hook a remote environment cache plugs into (`env-remote` implements it; issue 13).
//!
//! Every builder goes through [`crate::build::create`], which, holding the environment's
//! exclusive lock and finding it incomplete, first asks the remote ([`RemoteCache::pull`]): a
//! hit installs the complete environment and nothing is solved or installed. After a local
//! build is complete (fingerprint written, lock released) it offers the environment to the
//! remote ([`RemoteCache::push`]). A remote never fails a build: its faults come back as
//! warnings and the build goes on locally.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt as _;

use env_cache::{Cache, EnvEntry};

use crate::reporter::Reporter;

/// What the remote needs to know about the environment besides its cache entry.
#[derive(Debug, Clone, Copy)]
pub struct RemoteEnv<'a> {
    /// The model directory it is built for (recorded in a pulled environment's metadata).
    pub model_root: &'a Path,
    /// Whether the environment has bytecode (`--no-compile` builds have none, and a different key).
    pub compile_bytecode: bool,
    /// The uv cache a local build would use: a pull takes the files it already holds from
    /// it rather than download them (`None` for a push).
    pub uv_cache: Option<&'a Path>,
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
    /// The remote holds an entry without a valid signature by a trusted key, and signatures
    /// are required (`--remote-cache-require-signed`): the build fails rather than goes on
    /// locally, so a production agent never runs what it cannot trust unnoticed (issue 26).
    Refused {
        /// Which entry and why.
        message: String,
        /// What to do.
        help: String,
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

/// A future of a [`RemoteCache`] call: boxed, so the trait stays object-safe
/// (`Arc<dyn RemoteCache>` in [`crate::BuildSettings`]); `async fn` in a trait is not, on the
/// workspace's Rust 1.95.
pub type RemoteFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A shared cache of complete environments. Its calls are async: they run on the caller's
/// runtime and put their blocking file work (archives, hashing) on its blocking pool.
pub trait RemoteCache: Send + Sync + std::fmt::Debug {
    /// The remote's URL, for messages (no secrets).
    fn url(&self) -> String;

    /// Installs the environment of `env`'s key from the remote into `env` (missing or
    /// incomplete; the caller holds its exclusive lock): complete marker last, nothing left
    /// behind on failure.
    fn pull<'a>(
        &'a self,
        cache: &'a Cache,
        env: &'a EnvEntry,
        what: RemoteEnv<'a>,
        reporter: &'a Arc<dyn Reporter>,
    ) -> RemoteFuture<'a, Pulled>;

    /// Whether [`Self::pull`] would install the environment of `key` (`create --dry-run`),
    /// reading as little as it can: `false` when the remote cannot say.
    fn holds<'a>(&'a self, _key: &'a str) -> RemoteFuture<'a, bool> {
        Box::pin(async { false })
    }

    /// Whether [`Self::push`] would upload anything (not read-only, not found unusable): a
    /// builder finishes the environment's bytecode first only then.
    fn accepts_pushes(&self) -> bool {
        true
    }

    /// Uploads the complete environment `env` (the caller holds no lock on it; the
    /// implementation holds a shared one while it reads).
    fn push<'a>(
        &'a self,
        cache: &'a Cache,
        env: &'a EnvEntry,
        what: RemoteEnv<'a>,
        reporter: &'a Arc<dyn Reporter>,
    ) -> RemoteFuture<'a, Pushed>;
}

/// `call` with a panic turned into a warning: a remote never fails a build.
async fn guarded<T>(call: RemoteFuture<'_, T>) -> Result<T, String> {
    std::panic::AssertUnwindSafe(call)
        .catch_unwind()
        .await
        .map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            format!("The remote cache failed: {message}")
        })
}

/// [`RemoteCache::pull`], its panic a [`Pulled::Failed`].
pub(crate) async fn pull(
    remote: &Arc<dyn RemoteCache>,
    cache: &Cache,
    env: &EnvEntry,
    model_root: &Path,
    compile_bytecode: bool,
    uv_cache: Option<&Path>,
    reporter: &Arc<dyn Reporter>,
) -> Pulled {
    let what = RemoteEnv {
        model_root,
        compile_bytecode,
        uv_cache,
    };
    tracing::debug!(
        "Looking for environment `{}` in the remote cache `{}`",
        env.key(),
        remote.url()
    );
    let pulled = guarded(remote.pull(cache, env, what, reporter))
        .await
        .unwrap_or_else(|warning| Pulled::Failed { warning });
    match &pulled {
        Pulled::Hit { seconds } => tracing::debug!(
            "Pulled environment `{}` from the remote cache `{}` in {seconds:.1}s",
            env.key(),
            remote.url()
        ),
        Pulled::Miss => tracing::debug!(
            "Remote cache miss for `{}` in `{}`: building locally",
            env.key(),
            remote.url()
        ),
        Pulled::Failed { warning } => tracing::debug!("Remote cache not used: {warning}"),
        Pulled::Refused { message, .. } => tracing::debug!("Remote cache entry refused: {message}"),
    }
    pulled
}

/// [`RemoteCache::push`], its panic a warning.
pub(crate) async fn push(
    remote: &Arc<dyn RemoteCache>,
    cache: &Cache,
    env: &EnvEntry,
    model_root: &Path,
    compile_bytecode: bool,
    reporter: &Arc<dyn Reporter>,
) -> Pushed {
    let what = RemoteEnv {
        model_root,
        compile_bytecode,
        uv_cache: None,
    };
    guarded(remote.push(cache, env, what, reporter))
        .await
        .unwrap_or_else(|warning| Pushed {
            pushed: false,
            warning: Some(warning),
        })
}
