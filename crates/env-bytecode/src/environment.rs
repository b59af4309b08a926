//! Bytecode for a built environment: linked from the shared store, compiled now, or compiled
//! in the background while the model already runs.

use std::path::{Path, PathBuf};

use env_cache::Cache;

use env_prefix::{python_of, site_packages};

use crate::BytecodeError;

/// Runs `command` (which compiles an environment's bytecode, e.g. `pyfunc-env
/// __compile-bytecode PREFIX`) in a detached, low-priority process (`nice -n 19`), for a
/// `Created::bytecode_deferred` (env-build) environment: the model starts at once, and later runs find
/// `.pyc` files even under `PYTHONDONTWRITEBYTECODE=1`. Python writes and replaces `.pyc` files
/// atomically, so a reader never sees half a file; files missing meanwhile are compiled in
/// memory, as without bytecode. `keep` is a lock file the compiler holds (its descriptor is
/// inherited), so `cache prune` leaves the environment alone until it is done.
pub fn compile_in_background(
    program: &Path,
    args: &[std::ffi::OsString],
    keep: Option<&std::fs::File>,
) -> std::io::Result<u32> {
    let nice = ["/usr/bin/nice", "/bin/nice"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    // Idle I/O class too, where `ionice` exists: the compiler must not slow a build agent.
    let ionice = ["/usr/bin/ionice", "/bin/ionice"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    // `sh` forks the compiler into the background, prints its pid and exits at once, so the
    // compiler is re-parented to init and never left a zombie of the model process we become.
    let script = r#"("$@" >/dev/null 2>&1 </dev/null & echo $!)"#;
    let mut command = std::process::Command::new("/bin/sh");
    command.arg("-c").arg(script).arg("sh");
    if let Some(nice) = nice {
        command.args([nice, "-n", "19"]);
    }
    if let Some(ionice) = ionice {
        command.args([ionice, "-c", "3"]);
    }
    command
        .arg(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    if let Some(keep) = keep {
        env_prefix::keep_open_across_exec(keep);
    }
    let output = command.output()?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0))
}

/// What `pyfunc-env __compile-bytecode PREFIX` runs: [`compile_environment`] holding the
/// cache's and the environment's lock shared, and passing the environment's on to the
/// compiler processes, so `cache prune` and a rebuild wait until the last of them has exited.
/// It never waits: when `cache clean` or `cache prune` holds the cache, or a builder the
/// environment, the environment is going away and there is nothing to compile.
pub fn compile_in_this_process(
    cache: &Cache,
    prefix: &Path,
) -> Result<crate::Stats, BytecodeError> {
    let Some(_cache_lock) =
        env_cache::LockedFile::try_acquire(&cache.lock_path(), env_cache::LockKind::Shared)?
    else {
        return Ok(crate::Stats::default());
    };
    let key = prefix
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entry = cache.env(&key)?;
    // Never wait: a builder or `cache clean`/`prune` holding the lock exclusively means the
    // environment is going away (or being replaced), and there is nothing left to do.
    let Some(lock) = entry.try_lock_shared()? else {
        return Ok(crate::Stats::default());
    };
    if !matches!(entry.state(), env_cache::EnvState::Complete(_)) {
        return Ok(crate::Stats::default());
    }
    let _inherit = lock.file().map(env_cache::child::inherit_in_children);
    compile_environment(cache, prefix, &mut || {})
}

/// Compiles the bytecode of the environment at `prefix` through the cache's store: at the end
/// of a build, or later by `pyfunc-env __compile-bytecode`. `on_wait` as in
/// [`crate::compile`].
pub fn compile_environment(
    cache: &Cache,
    prefix: &Path,
    on_wait: &mut dyn FnMut(),
) -> Result<crate::Stats, BytecodeError> {
    let store = cache.bucket(env_cache::PYC_BUCKET)?;
    let dirs: Vec<PathBuf> = site_packages(prefix).into_iter().collect();
    let stats = crate::compile(
        &python_of(prefix),
        &dirs,
        &store,
        cache.lock_timeout(),
        on_wait,
    )?;
    // A manifest saved before the bytecode (a `cache push` or a pack while the background
    // compiler ran) no longer lists every file: the next reader scans again (issue 25).
    if stats.reused + stats.compiled > 0 {
        let saved = prefix
            .join(env_cache::META_DIR)
            .join(env_store::MANIFEST_FILE);
        match fs_err::remove_file(&saved) {
            Ok(()) => tracing::debug!("Bytecode added: `{}` will be rescanned", saved.display()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::debug!("{error}"),
        }
    }
    Ok(stats)
}

/// Links the bytecode the cache's store already has into the environment at `prefix`
/// ([`crate::link_stored`]); compiles nothing.
pub fn link_environment(cache: &Cache, prefix: &Path) -> Result<crate::Linked, BytecodeError> {
    let store = cache.bucket(env_cache::PYC_BUCKET)?;
    let tag = crate::cache_tag(&python_of(prefix))?;
    let dirs: Vec<PathBuf> = site_packages(prefix).into_iter().collect();
    Ok(crate::link_stored(&tag, &dirs, &store))
}

#[cfg(test)]
mod tests {
    use env_cache::{LockKind, LockedFile};

    use super::*;

    /// While `cache clean` (here, this test) holds the cache exclusively, the background
    /// compiler touches nothing and does not wait: the environment is being deleted. (This
    /// decision was the CLI's, in `lib.rs`, untested.) Without the exclusive holder, the same
    /// call goes on to the compiler, which makes the bytecode store.
    #[test]
    fn it_compiles_nothing_while_the_cache_is_held_exclusively() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path().join("cache"));
        cache.init().unwrap();
        let key = "0".repeat(32);
        let entry = cache.env(&key).unwrap();
        let build = entry.lock_exclusive(|_, _| {}).unwrap();
        entry
            .begin_build(&cache.root().join(env_cache::TMP_DIR))
            .unwrap();
        entry
            .finish_build(&env_cache::Metadata {
                key: key.clone(),
                tool_version: "0".into(),
                created: 0,
                build_seconds: 0.0,
                env_manager: "conda".into(),
                model: "m".into(),
                python: None,
                python_version: None,
                spec: serde_json::Value::Null,
                conda_packages: vec![],
                pip_packages: vec![],
                extra: serde_json::Map::new(),
            })
            .unwrap();
        drop(build);
        let store = cache.root().join(env_cache::PYC_BUCKET);
        let clean = LockedFile::acquire_blocking(&cache.lock_path(), LockKind::Exclusive).unwrap();
        compile_in_this_process(&cache, entry.dir()).unwrap();
        assert!(
            !store.exists(),
            "compiled while the cache was being cleaned"
        );
        drop(clean);
        let _ = compile_in_this_process(&cache, entry.dir());
        assert!(store.exists(), "the test did not reach the compiler");
    }
}
