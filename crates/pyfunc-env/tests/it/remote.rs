//! The remote environment cache (issue 13): two cache directories play two agents sharing one
//! remote, a shared directory (`file://`) or a real S3 store (`SeaweedFS`, `pypi_*` tests).
//! Agent A builds and pushes; agent B, with an empty cache and channels that lead nowhere (so
//! any solve or install would fail), pulls; and every fault of the issue has its case.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::common::{TestContext, describe, fixture, json, mirror_args, repo_root, stderr};
use crate::pack::{channel_url, conda_model, system_venv_model};
use crate::servers::{Seaweed, free_port};

/// `create MODEL --env-manager conda --json` as the agent whose cache is `cache`, with the
/// local channel (`mirror` true) or a channel that does not exist (any solve would fail).
pub(crate) fn agent_create(
    ctx: &TestContext,
    cache: &Path,
    model: &Path,
    mirror: bool,
    env: &[(&str, String)],
    extra: &[&str],
) -> Output {
    let url = if mirror {
        channel_url()
    } else {
        "file:///nonexistent/channel".to_string()
    };
    let mut command = ctx.command();
    command
        .env("PYFUNC_ENV_CACHE_DIR", cache)
        .arg("create")
        .arg(model)
        .args(["--env-manager", "conda", "--json"])
        .args(mirror_args(&url))
        .args(extra);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// Asserts that the environment came from the remote: nothing solved, linked or installed.
#[track_caller]
pub(crate) fn assert_pulled(created: &serde_json::Value) {
    assert_eq!(created["remote_hit"], true, "{created:#}");
    assert_eq!(created["cache_hit"], false, "{created:#}");
    assert_eq!(created["pushed"], false, "{created:#}");
    for step in ["solve", "conda_install", "pip_install", "compile"] {
        assert_eq!(created["timings"][step], 0.0, "{step}: {created:#}");
    }
}

/// The remote's packs (`v2/packs/*.pack`), largest first.
fn packs(remote: &Path) -> Vec<PathBuf> {
    let Ok(read) = fs_err::read_dir(remote.join("v2/packs")) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, PathBuf)> = read
        .map(|e| {
            let path = e.unwrap().path();
            (fs_err::metadata(&path).unwrap().len(), path)
        })
        .collect();
    out.sort_by(|a, b| b.cmp(a));
    out.into_iter().map(|(_, path)| path).collect()
}

/// The pack that holds the file ending in `suffix` of `key`'s environment.
fn pack_of(remote: &Path, key: &str, suffix: &str) -> PathBuf {
    let text =
        fs_err::read_to_string(remote.join(format!("v2/linux-64/{key}/manifest.json"))).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    let manifest = manifest["manifest"].clone();
    let entry = manifest["tree"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"].as_str().unwrap().ends_with(suffix))
        .unwrap();
    let sha = entry["sha256"].as_str().unwrap();
    let index = manifest["blobs"][sha]["pack"].as_u64().unwrap();
    let name = manifest["packs"]
        .as_object()
        .unwrap()
        .keys()
        .nth(usize::try_from(index).unwrap())
        .unwrap();
    remote.join(format!("v2/packs/{name}.pack"))
}

/// The pull report an agent recorded in the environment's metadata.
fn pull_report(cache: &Path, key: &str) -> serde_json::Value {
    let text =
        fs_err::read_to_string(cache.join(format!("envs-v1/{key}/.pyfunc-env/metadata.json")))
            .unwrap();
    let metadata: serde_json::Value = serde_json::from_str(&text).unwrap();
    metadata["extra"]["remote"]["pull"].clone()
}

/// Whether a timestamp-based `.pyc` matches its source (mtime and size), so Python uses it
/// as it is.
fn pyc_matches_source(pyc: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let bytes = fs_err::read(pyc).unwrap();
    let flags = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    let mtime = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    let size = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    let name = pyc.file_name().unwrap().to_string_lossy();
    let module = name.split('.').next().unwrap();
    let source = pyc
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join(format!("{module}.py"));
    let metadata = fs_err::metadata(&source).unwrap();
    flags == 0 && i64::from(mtime) == metadata.mtime() && u64::from(size) == metadata.len()
}

fn python_says(prefix: &Path, code: &str) -> String {
    let output = Command::new(prefix.join("bin/python"))
        .args(["-c", code])
        .current_dir("/")
        .env_remove("PYTHONPATH")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A shared directory: A pushes, B pulls and gets a first-class environment at its own path;
/// a damaged and a truncated archive are each detected by hash, discarded, rebuilt locally
/// and re-pushed; a read-only agent pushes nothing.
#[test]
fn remote_file_cache_shares_environments_and_replaces_damaged_archives() {
    let ctx = TestContext::new();
    let model = conda_model(&ctx);
    let remote = ctx.path().join("shared");
    let url = format!("file://{}", remote.display());
    let env = [("PYFUNC_ENV_REMOTE_CACHE", url.clone())];

    let built = json(&agent_create(
        &ctx,
        &ctx.path().join("a"),
        &model,
        true,
        &env,
        &[],
    ));
    assert_eq!(built["pushed"], true, "{built:#}");
    assert_eq!(built["remote_hit"], false, "{built:#}");
    let key = built["key"].as_str().unwrap();
    assert!(
        remote
            .join(format!("v2/linux-64/{key}/manifest.json"))
            .is_file(),
        "{built:#}"
    );
    assert!(!packs(&remote).is_empty());

    // A dry run on an empty cache says the environment would be pulled (`--reinstall`: built),
    // and neither pulls nor builds anything.
    let dry = ctx.path().join("dry");
    for (extra, says) in [
        (
            &["--dry-run"][..],
            "Would pull conda environment from the remote cache",
        ),
        (
            &["--dry-run", "--reinstall"][..],
            "Would create conda environment",
        ),
    ] {
        let output = agent_create(&ctx, &dry, &model, false, &env, extra);
        assert!(stderr(&output).contains(says), "{}", describe(&output));
        assert_eq!(json(&output)["key"], built["key"], "{}", describe(&output));
    }
    assert!(!dry.join(format!("envs-v1/{key}")).exists());

    // B: empty cache, no usable channel.
    let cache_b = ctx.path().join("b");
    let output = agent_create(&ctx, &cache_b, &model, false, &env, &[]);
    let pulled = json(&output);
    assert_pulled(&pulled);
    assert_eq!(pulled["key"], built["key"]);
    assert!(
        stderr(&output).contains(&format!("Pulled from the remote cache `{url}`")),
        "{}",
        describe(&output)
    );
    let prefix_b = PathBuf::from(pulled["prefix"].as_str().unwrap());
    assert_ne!(prefix_b.as_os_str(), built["prefix"].as_str().unwrap());
    // It runs from B's path: interpreter, compiled and pure packages, a console script.
    assert_eq!(
        python_says(
            &prefix_b,
            "import numpy, tinypkg, wheel, sys; print(sys.prefix, numpy.__version__, wheel.__version__)"
        ),
        format!(
            "{} 1.26.4 0.45.1",
            fs_err::canonicalize(&prefix_b).unwrap().display()
        )
    );
    let script = Command::new(prefix_b.join("bin/wheel"))
        .arg("version")
        .output()
        .unwrap();
    assert!(script.status.success(), "{}", describe(&script));
    // Bytecode came with it, valid as it is: each source kept the mtime its `.pyc` records.
    let pycs: Vec<PathBuf> =
        fs_err::read_dir(prefix_b.join("lib/python3.11/site-packages/wheel/__pycache__"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    assert!(!pycs.is_empty());
    for pyc in &pycs {
        assert!(pyc_matches_source(pyc), "{}", pyc.display());
    }
    // Files are hard-linked from B's store, not copied.
    {
        use std::os::unix::fs::MetadataExt as _;
        let numpy = prefix_b.join("lib/python3.11/site-packages/numpy/__init__.py");
        assert!(fs_err::metadata(&numpy).unwrap().nlink() >= 2);
    }
    // Every blob downloaded, but those B's uv cache (the shared one, which holds the wheel of
    // `wheel`) had: taken from there.
    let report = pull_report(&cache_b, key);
    let count = |field: &str| report[field].as_u64().unwrap();
    assert_eq!(
        count("blobs_downloaded") + count("seeded_files"),
        count("blobs"),
        "{report:#}"
    );
    assert!(count("seeded_files") > 0, "{report:#}");
    assert!(
        report["downloaded_bytes"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    // A first-class environment of B's cache: listed, verified (hashes too), used by `run`.
    let verify = ctx
        .command()
        .env("PYFUNC_ENV_CACHE_DIR", &cache_b)
        .args(["cache", "verify", "--hash", key])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", describe(&verify));
    let list = json(
        &ctx.command()
            .env("PYFUNC_ENV_CACHE_DIR", &cache_b)
            .args(["cache", "list", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(list[0]["key"], key, "{list:#}");
    assert_eq!(list[0]["state"], "complete", "{list:#}");
    let again = json(&agent_create(&ctx, &cache_b, &model, false, &env, &[]));
    assert_eq!(again["cache_hit"], true, "{again:#}");
    let remote_list = json(
        &ctx.command()
            .args([
                "cache",
                "list",
                "--remote",
                "--json",
                "--remote-cache",
                &url,
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(remote_list[0]["key"], key, "{remote_list:#}");

    // The agents below have an empty uv cache, so every pull needs the numpy pack (a warm uv
    // cache with a numpy wheel would hold `numpy/__init__.py`, and the pull would not read it).
    let empty_uv = ctx.path().join("uv-empty");
    fs_err::create_dir_all(&empty_uv).unwrap();
    let fresh = [
        env[0].clone(),
        ("PYFUNC_ENV_UV_CACHE_DIR", empty_uv.display().to_string()),
    ];

    // A damaged pack (same size, other bytes): detected, rebuilt, re-pushed.
    let numpy = "site-packages/numpy/__init__.py";
    let pack = pack_of(&remote, key, numpy);
    let mut bytes = fs_err::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs_err::write(&pack, &bytes).unwrap();
    let output = agent_create(&ctx, &ctx.path().join("c"), &model, true, &fresh, &[]);
    let rebuilt = json(&output);
    assert_eq!(
        (rebuilt["remote_hit"].clone(), rebuilt["pushed"].clone()),
        (false.into(), true.into()),
        "{rebuilt:#}"
    );
    let text = stderr(&output);
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        text.contains("is damaged: blob `") && text.contains("building locally"),
        "{text}"
    );
    // Nothing of the damaged pack entered C's store or was left in its staging area.
    assert_eq!(
        fs_err::read_dir(ctx.path().join("c/tmp")).unwrap().count(),
        0
    );
    // The damaged pack was uploaded again, and the next agent pulls the environment.
    assert_ne!(fs_err::read(&pack).unwrap(), bytes);
    assert_pulled(&json(&agent_create(
        &ctx,
        &ctx.path().join("d"),
        &model,
        false,
        &fresh,
        &[],
    )));

    // A truncated pack.
    let pack = pack_of(&remote, key, numpy);
    let file = fs_err::OpenOptions::new().write(true).open(&pack).unwrap();
    file.set_len(fs_err::metadata(&pack).unwrap().len() / 3)
        .unwrap();
    drop(file);
    let output = agent_create(&ctx, &ctx.path().join("e"), &model, true, &fresh, &[]);
    let truncated = json(&output);
    assert_eq!(truncated["pushed"], true, "{truncated:#}");
    assert!(
        stderr(&output).contains("(truncated or replaced)"),
        "{}",
        describe(&output)
    );
    // Nothing of the failed pull is left in the cache's staging area.
    let leftovers: Vec<_> = fs_err::read_dir(ctx.path().join("e/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A missing pack.
    let pack = pack_of(&remote, key, numpy);
    fs_err::remove_file(&pack).unwrap();
    let output = agent_create(&ctx, &ctx.path().join("e2"), &model, true, &fresh, &[]);
    let missing = json(&output);
    assert_eq!(missing["pushed"], true, "{missing:#}");
    assert!(
        stderr(&output).contains("it is missing"),
        "{}",
        describe(&output)
    );
    assert!(pack.is_file(), "the push uploaded the missing pack again");

    // Read-only: builds, never writes the remote.
    let empty = ctx.path().join("read-only-remote");
    fs_err::create_dir_all(&empty).unwrap();
    let read_only = [
        (
            "PYFUNC_ENV_REMOTE_CACHE",
            format!("file://{}", empty.display()),
        ),
        ("PYFUNC_ENV_REMOTE_CACHE_READ_ONLY", "1".to_string()),
    ];
    let read_only_build = json(&agent_create(
        &ctx,
        &ctx.path().join("f"),
        &model,
        true,
        &read_only,
        &[],
    ));
    assert_eq!(read_only_build["pushed"], false, "{read_only_build:#}");
    assert_eq!(fs_err::read_dir(&empty).unwrap().count(), 0);

    // `cache push` backfills from the local cache; `cache prune --remote` removes old entries
    // and the archives no entry names.
    let backfill = ctx
        .command()
        .env("PYFUNC_ENV_CACHE_DIR", ctx.path().join("f"))
        .args(["cache", "push"])
        .arg(&model)
        .args(["--env-manager", "conda", "--json", "--remote-cache"])
        .arg(format!("file://{}", empty.display()))
        .args(mirror_args(&channel_url()))
        .output()
        .unwrap();
    let rows = json(&backfill);
    assert_eq!(rows[0]["result"], "pushed", "{rows:#}");
    // An environment the local cache does not have is not built by `cache push`: exit 1.
    let not_built = ctx
        .command()
        .env("PYFUNC_ENV_CACHE_DIR", ctx.path().join("g"))
        .args(["cache", "push"])
        .arg(&model)
        .args(["--env-manager", "conda", "--json", "--remote-cache"])
        .arg(format!("file://{}", empty.display()))
        .args(mirror_args(&channel_url()))
        .output()
        .unwrap();
    assert_eq!(not_built.status.code(), Some(1), "{}", describe(&not_built));
    let rows: serde_json::Value = serde_json::from_slice(&not_built.stdout).unwrap();
    assert_eq!(rows[0]["result"], "not built", "{rows:#}");
    assert!(!ctx.path().join("g").join("envs-v1").join(key).exists());
    assert!(
        empty
            .join(format!("v2/linux-64/{key}/manifest.json"))
            .is_file()
    );
    let prune = ctx
        .command()
        .args([
            "cache",
            "prune",
            "--remote",
            "--older-than",
            "0s",
            "--remote-cache",
        ])
        .arg(format!("file://{}", empty.display()))
        .output()
        .unwrap();
    assert!(prune.status.success(), "{}", describe(&prune));
    assert!(
        !empty
            .join(format!("v2/linux-64/{key}/manifest.json"))
            .exists()
    );
    assert!(packs(&empty).is_empty(), "{}", describe(&prune));
}

/// The conda model with one more pin (`setuptools`): a sibling that shares every other file.
fn sibling_model(ctx: &TestContext) -> PathBuf {
    let wheels = env_test::wheel_dir().unwrap();
    let conda = format!(
        "name: test\nchannels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- numpy=1.26\n- tinypkg\n- pip\n- pip:\n  - --no-index\n  - --find-links file://{}\n  - wheel==0.45.1\n  - setuptools==75.8.0\n",
        wheels.display()
    );
    ctx.model("sibling", &[("conda.yaml", &conda)])
}

/// The manifest inside the object a push wrote (`{"signatures": [...], "manifest": {...}}`).
fn remote_manifest(remote: &Path, key: &str) -> serde_json::Value {
    let path = remote.join(format!("v2/linux-64/{key}/manifest.json"));
    let object: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(path).unwrap()).unwrap();
    object["manifest"].clone()
}

/// `(sha256, size)` of every distinct file of a remote manifest.
fn blobs_of(manifest: &serde_json::Value) -> std::collections::BTreeMap<String, u64> {
    manifest["tree"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "file")
        .map(|e| {
            (
                e["sha256"].as_str().unwrap().to_string(),
                e["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `run` builds with the bytecode left to a background compiler, so the model starts at once;
/// a push of that environment waits for the bytecode: the remote and the saved manifest list
/// every `.pyc`, and an agent that pulls it compiles nothing (issue 25). Before, the push
/// came first and carried no bytecode the store lacked.
#[test]
fn remote_push_after_run_includes_the_background_bytecode() {
    let ctx = TestContext::new();
    let wheels = env_test::wheel_dir().unwrap();
    let conda = format!(
        "name: test\nchannels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- pip\n- pip:\n  - --no-index\n  - --find-links file://{}\n  - wheel==0.45.1\n",
        wheels.display()
    );
    let model = ctx.model("small", &[("conda.yaml", &conda)]);
    let remote = ctx.path().join("shared");
    let cache_a = ctx.path().join("a");
    let output = ctx
        .command()
        .env("PYFUNC_ENV_CACHE_DIR", &cache_a)
        .env(
            "PYFUNC_ENV_REMOTE_CACHE",
            format!("file://{}", remote.display()),
        )
        .arg("run")
        .arg(&model)
        .args(["--env-manager", "conda"])
        .args(mirror_args(&channel_url()))
        .args(["--", "python", "-c", "print('ran')"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ran\n",
        "{}",
        describe(&output)
    );
    let key = fs_err::read_dir(cache_a.join("envs-v1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|name| !name.contains('.'))
        .unwrap();
    let pyc = "site-packages/wheel/__pycache__/__init__.cpython-311.pyc";
    let listed = |manifest: &serde_json::Value| {
        manifest["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"].as_str().unwrap().ends_with(pyc))
    };
    let pushed = remote_manifest(&remote, &key);
    assert!(listed(&pushed["tree"]), "the remote lacks `{pyc}`");
    let saved: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(cache_a.join(format!("envs-v1/{key}/.pyfunc-env/manifest.json")))
            .unwrap(),
    )
    .unwrap();
    assert!(listed(&saved), "the saved manifest lacks `{pyc}`");
}

/// An agent that holds an environment pulls its sibling (same packages, one more pin):
/// it downloads exactly the blobs its store lacks, a small part of the environment, and the
/// remote stores the shared files once.
#[test]
fn remote_sibling_pull_downloads_only_missing_blobs() {
    let ctx = TestContext::new();
    let (model, sibling) = (conda_model(&ctx), sibling_model(&ctx));
    let remote = ctx.path().join("shared");
    let env = [(
        "PYFUNC_ENV_REMOTE_CACHE",
        format!("file://{}", remote.display()),
    )];
    let cache_a = ctx.path().join("a");
    let first = json(&agent_create(&ctx, &cache_a, &model, true, &env, &[]));
    let second = json(&agent_create(&ctx, &cache_a, &sibling, true, &env, &[]));
    assert_eq!(
        (first["pushed"].clone(), second["pushed"].clone()),
        (true.into(), true.into())
    );
    let (key1, key2) = (
        first["key"].as_str().unwrap(),
        second["key"].as_str().unwrap(),
    );
    let (m1, m2) = (
        remote_manifest(&remote, key1),
        remote_manifest(&remote, key2),
    );

    // B holds the first environment, then pulls the sibling; its uv cache is empty, so what
    // it does not download comes from its store.
    let cache_b = ctx.path().join("b");
    let empty_uv = ctx.path().join("uv-b");
    fs_err::create_dir_all(&empty_uv).unwrap();
    let env_b = [
        env[0].clone(),
        ("PYFUNC_ENV_UV_CACHE_DIR", empty_uv.display().to_string()),
    ];
    assert_pulled(&json(&agent_create(
        &ctx,
        &cache_b,
        &model,
        false,
        &env_b,
        &[],
    )));
    let pulled = json(&agent_create(&ctx, &cache_b, &sibling, false, &env_b, &[]));
    assert_pulled(&pulled);
    let report = pull_report(&cache_b, key2);
    let (held, wanted) = (blobs_of(&m1), blobs_of(&m2));
    let missing: Vec<&String> = wanted
        .keys()
        .filter(|sha| !held.contains_key(*sha))
        .collect();
    assert_eq!(
        report["blobs_downloaded"].as_u64().unwrap(),
        missing.len() as u64,
        "{report:#}"
    );
    // Bytes: at least the compressed frames of the missing blobs, at most what the coalesced
    // ranges add, and a small part of the environment.
    let frames: u64 = missing
        .iter()
        .map(|sha| m2["blobs"][sha.as_str()]["length"].as_u64().unwrap())
        .sum();
    let downloaded = report["downloaded_bytes"].as_u64().unwrap();
    let env_bytes = m2["tree"]["bytes"].as_u64().unwrap();
    assert!(downloaded >= frames, "{downloaded} < {frames}: {report:#}");
    assert!(
        downloaded * 5 < env_bytes,
        "the sibling pull downloaded {downloaded} of {env_bytes} bytes: {report:#}"
    );
    let reused: u64 = wanted
        .iter()
        .filter(|(sha, _)| held.contains_key(*sha))
        .map(|(_, size)| size)
        .sum();
    assert_eq!(
        report["reused_bytes"].as_u64().unwrap(),
        reused,
        "{report:#}"
    );
    // The sibling works from B's path.
    let prefix = PathBuf::from(pulled["prefix"].as_str().unwrap());
    assert_eq!(
        python_says(
            &prefix,
            "import numpy, setuptools; print(numpy.__version__, setuptools.__version__)"
        ),
        "1.26.4 75.8.0"
    );
    // The remote stores shared packs once: measured 45 MB for both against 72 MB summed (the
    // bytecode packs of `numpy` and `pip` still differ between the two; issue 25).
    let stored: u64 = packs(&remote)
        .iter()
        .map(|p| fs_err::metadata(p).unwrap().len())
        .sum();
    let separately: u64 = [&m1, &m2]
        .iter()
        .map(|m| {
            m["packs"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum::<u64>()
        })
        .sum();
    assert!(stored * 10 < separately * 7, "{stored} of {separately}");
    // `cache list --remote` says so.
    let listed = ctx
        .command()
        .args(["cache", "list", "--remote", "--remote-cache"])
        .arg(format!("file://{}", remote.display()))
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", describe(&listed));
    assert!(
        stderr(&listed).contains("2 environment(s) take")
            && stderr(&listed).contains("without sharing"),
        "{}",
        describe(&listed)
    );
}

/// Hostile manifests are refused before anything is written, or stopped while writing: one
/// over the size cap, one with a path that climbs out, one whose file is larger than it says.
/// Each time the agent builds locally with one warning, and nothing is left behind.
#[test]
fn remote_hostile_manifests_are_bounded() {
    let ctx = TestContext::new();
    let model = conda_model(&ctx);
    let remote = ctx.path().join("shared");
    let env = [(
        "PYFUNC_ENV_REMOTE_CACHE",
        format!("file://{}", remote.display()),
    )];
    let built = json(&agent_create(
        &ctx,
        &ctx.path().join("a"),
        &model,
        true,
        &env,
        &[],
    ));
    let key = built["key"].as_str().unwrap();
    let path = remote.join(format!("v2/linux-64/{key}/manifest.json"));
    let good = remote_manifest(&remote, key);
    let read_only = [
        env[0].clone(),
        ("PYFUNC_ENV_REMOTE_CACHE_READ_ONLY", "1".to_string()),
    ];
    let mut case = 0;
    let mut expect_local_build = |manifest: &[u8], says: &str| {
        fs_err::write(&path, manifest).unwrap();
        case += 1;
        let cache = ctx.path().join(format!("hostile{case}"));
        let output = agent_create(&ctx, &cache, &model, true, &read_only, &[]);
        let created = json(&output);
        assert_eq!(created["remote_hit"], false, "{created:#}");
        let text = stderr(&output);
        let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
        assert_eq!(warnings.len(), 1, "{text}");
        assert!(
            text.contains(says) && text.contains("building locally"),
            "{text}"
        );
        let leftovers: Vec<_> = fs_err::read_dir(cache.join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        cache
    };

    // Over the cap: refused without being read whole.
    let mut huge = serde_json::to_vec(&good).unwrap();
    huge.truncate(huge.len() - 1);
    huge.extend(std::iter::repeat_n(b' ', 64 << 20));
    huge.push(b'}');
    expect_local_build(&huge, "more than the 67108864 bytes a manifest may have");

    // A path that climbs out.
    let mut climbing = good.clone();
    climbing["tree"]["entries"][0]["path"] = "../../escaped".into();
    expect_local_build(
        &serde_json::to_vec(&climbing).unwrap(),
        "is not a plain relative path",
    );
    assert!(!ctx.path().join("escaped").exists());

    // A file larger than the manifest says: the writer stops at the recorded size.
    let mut lying = good.clone();
    let entries = lying["tree"]["entries"].as_array_mut().unwrap();
    let numpy = entries
        .iter_mut()
        .find(|e| {
            e["path"]
                .as_str()
                .unwrap()
                .ends_with("site-packages/numpy/__init__.py")
        })
        .unwrap();
    let size = numpy["size"].as_u64().unwrap();
    numpy["size"] = (size / 2).into();
    let sha = numpy["sha256"].as_str().unwrap().to_string();
    let bytes = lying["tree"]["bytes"].as_u64().unwrap();
    lying["tree"]["bytes"] = (bytes - (size - size / 2)).into();
    let cache = expect_local_build(
        &serde_json::to_vec(&lying).unwrap(),
        &format!("more than the {} bytes of `{sha}`", size / 2),
    );
    assert!(!cache.join(format!("store-v1/{}/{sha}", &sha[..2])).exists());
}

/// An unreachable remote (nothing listening) and a slow one (accepts, never answers): the
/// environment is built locally, with one warning, exit 0, within the timeout.
#[test]
fn remote_unreachable_or_silent_builds_locally_with_one_warning() {
    let ctx = TestContext::new().online();
    let model = conda_model(&ctx);
    let closed = free_port();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    for (name, port) in [("unreachable", closed), ("silent", silent_port)] {
        let env = [
            ("PYFUNC_ENV_REMOTE_CACHE", "s3://envs/ci".to_string()),
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
            ("AWS_ACCESS_KEY_ID", "x".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "y".to_string()),
            ("PYFUNC_ENV_REMOTE_CACHE_TIMEOUT", "2".to_string()),
        ];
        let output = agent_create(&ctx, &ctx.path().join(name), &model, true, &env, &[]);
        let created = json(&output);
        assert_eq!(created["remote_hit"], false, "{name}: {created:#}");
        assert_eq!(created["pushed"], false, "{name}: {created:#}");
        let text = stderr(&output);
        let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
        assert_eq!(warnings.len(), 1, "{name}: {text}");
        assert!(
            warnings[0].contains("The remote cache `s3://envs/ci` did not answer"),
            "{name}: {text}"
        );
        assert!(text.contains("building locally"), "{name}: {text}");
    }
    drop(silent);
}

/// A venv made from this machine's interpreter is built and not pushed, with one line saying
/// why and how to make it shareable.
#[test]
fn remote_virtualenv_of_this_machines_python_is_not_pushed() {
    let ctx = TestContext::new();
    let model = system_venv_model(&ctx);
    let remote = ctx.path().join("shared");
    let output = ctx
        .command()
        .arg("create")
        .arg(&model)
        .args([
            "--env-manager",
            "virtualenv",
            "--python-source",
            "system",
            "--json",
        ])
        .arg("--remote-cache")
        .arg(format!("file://{}", remote.display()))
        .output()
        .unwrap();
    let created = json(&output);
    assert_eq!(created["pushed"], false, "{created:#}");
    let text = stderr(&output);
    assert!(
        text.contains(
            "Not pushed to the remote cache: this virtualenv uses this machine's interpreter"
        ) && text.contains("`--python-source conda`"),
        "{text}"
    );
    assert!(packs(&remote).is_empty());
}

/// An agent's variables for `SeaweedFS` and the remote cache `url`.
pub(crate) fn s3_env(weed: &Seaweed, url: &str) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&str, String)> = weed
        .env()
        .into_iter()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .collect();
    env.push(("PYFUNC_ENV_REMOTE_CACHE", url.to_string()));
    env
}

/// `env` with the S3 endpoint replaced by a proxy on `port`, and a remote timeout.
fn through(env: &[(&'static str, String)], port: u16, timeout: u64) -> Vec<(&'static str, String)> {
    let mut env = env.to_vec();
    for (key, value) in &mut env {
        if *key == "AWS_ENDPOINT_URL" {
            *value = format!("http://127.0.0.1:{port}");
        }
    }
    env.push(("PYFUNC_ENV_REMOTE_CACHE_TIMEOUT", timeout.to_string()));
    env
}

/// A TCP proxy in front of a server that, once `cut_after` bytes went to the client, stops
/// forwarding and accepts nothing more: the server "stopped" mid-transfer. With `stall`, the
/// open connections are kept but nothing more is sent (a hung transfer).
struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
}

impl Proxy {
    fn start(upstream: u16, cut_after: u64, stall: bool) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(600);
            while !stop2.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                });
                let (stop3, sent3) = (stop2.clone(), sent2.clone());
                std::thread::spawn(move || {
                    let (mut server, mut client) = (server, client);
                    let mut buffer = [0u8; 16384];
                    while let Ok(n) = server.read(&mut buffer) {
                        if n == 0 || stop3.load(Ordering::SeqCst) {
                            break;
                        }
                        if client.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                        if sent3.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > cut_after {
                            stop3.store(true, Ordering::SeqCst);
                            if stall {
                                // Hold the connection open, sending nothing (bounded).
                                std::thread::sleep(Duration::from_secs(120));
                            }
                            break;
                        }
                    }
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    let _ = server.shutdown(std::net::Shutdown::Both);
                });
            }
            // The listener is dropped: new connections are refused.
        });
        Self { port, stop, sent }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A real S3 store: A pushes the conda model's environment; the store stops in the middle of
/// B's download (B builds locally, one warning, exit 0, nothing of the pull left); two agents
/// pushing the same key at once leave one consistent entry that a third agent pulls.
#[test]
fn pypi_remote_s3_stopped_mid_download_and_concurrent_pushes() {
    let weed = Seaweed::start();
    weed.create_bucket("envs");
    let ctx = TestContext::new().online();
    let model = conda_model(&ctx);
    let env = s3_env(&weed, "s3://envs/ci/pyfunc");

    // Two agents build the same key at once and push it at once.
    let spawn = |cache: PathBuf| {
        let mut command = ctx.command();
        command
            .env("PYFUNC_ENV_CACHE_DIR", cache)
            .arg("create")
            .arg(&model)
            .args(["--env-manager", "conda", "--json"])
            .args(mirror_args(&channel_url()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &env {
            command.env(key, value);
        }
        command.spawn().unwrap()
    };
    let one = spawn(ctx.path().join("a1"));
    let two = spawn(ctx.path().join("a2"));
    let (one, two) = (
        one.wait_with_output().unwrap(),
        two.wait_with_output().unwrap(),
    );
    let (one, two) = (json(&one), json(&two));
    assert_eq!(one["key"], two["key"]);
    let key = one["key"].as_str().unwrap().to_string();
    assert!(
        one["pushed"] == true || two["pushed"] == true,
        "{one:#}\n{two:#}"
    );
    // One consistent entry: a third agent pulls it, and the store holds the archive its
    // manifest names (the loser's archive, if it lost a conditional put, was removed).
    let b = json(&agent_create(
        &ctx,
        &ctx.path().join("b"),
        &model,
        false,
        &env,
        &[],
    ));
    assert_pulled(&b);
    let listed = json(&{
        let mut command = ctx.command();
        command.args(["cache", "list", "--remote", "--json"]);
        for (k, v) in &env {
            command.env(k, v);
        }
        command.output().unwrap()
    });
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    assert_eq!(listed[0]["key"], key.as_str(), "{listed:#}");

    // The store stops after 1 MB of B2's download.
    let proxy = Proxy::start(weed.s3_port, 1 << 20, false);
    let cut_env = through(&env, proxy.port, 5);
    let cache_b2 = ctx.path().join("b2");
    let output = agent_create(&ctx, &cache_b2, &model, true, &cut_env, &[]);
    let b2 = json(&output);
    assert!(
        proxy.sent.load(Ordering::SeqCst) > 1 << 20,
        "the download never started"
    );
    assert_eq!(b2["remote_hit"], false, "{b2:#}");
    assert_eq!(b2["cache_hit"], false, "{b2:#}");
    let text = stderr(&output);
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(text.contains("building locally"), "{text}");
    let leftovers: Vec<_> = fs_err::read_dir(cache_b2.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The locally built environment works.
    let prefix = PathBuf::from(b2["prefix"].as_str().unwrap());
    assert_eq!(
        python_says(&prefix, "import numpy; print(numpy.__version__)"),
        "1.26.4"
    );
}

/// A pull killed in the middle of its download installs nothing: the next run sees no
/// environment and pulls it whole.
#[test]
fn pypi_remote_s3_killed_pull_installs_nothing() {
    let weed = Seaweed::start();
    weed.create_bucket("envs");
    let ctx = TestContext::new().online();
    let model = conda_model(&ctx);
    let env = s3_env(&weed, "s3://envs");
    let a = json(&agent_create(
        &ctx,
        &ctx.path().join("a"),
        &model,
        true,
        &env,
        &[],
    ));
    assert_eq!(a["pushed"], true, "{a:#}");

    // A proxy that stalls (forwards nothing more) after 1 MB, so the pull hangs mid-download.
    let cache_b = ctx.path().join("b");
    let (_stall, mut child) = hung_pull(&ctx, &weed, &env, &model, &cache_b);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the pull did not hang where the store stalled"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let key = a["key"].as_str().unwrap();
    assert!(
        !cache_b
            .join(format!("envs-v1/{key}/.pyfunc-env/complete"))
            .exists(),
        "a killed pull left a complete environment"
    );
    // The next agent run pulls it whole.
    let b = json(&agent_create(&ctx, &cache_b, &model, false, &env, &[]));
    assert_pulled(&b);

    // SIGINT in the middle of a hung download (issue 25): the pull stops at once, as the
    // signal says (130 in a shell), with no environment, nothing in `tmp/`, and only whole,
    // verified files in the store.
    let cache_c = ctx.path().join("c");
    let (_stall, mut child) = hung_pull(&ctx, &weed, &env, &model, &cache_c);
    assert!(child.try_wait().unwrap().is_none(), "the pull did not hang");
    interrupt(&mut child);
    assert!(
        !cache_c.join(format!("envs-v1/{key}")).exists(),
        "an interrupted pull left an environment directory"
    );
    let leftovers: Vec<_> = fs_err::read_dir(cache_c.join("tmp"))
        .map(|read| read.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Every store file is whole: its content hashes to its name.
    for shard in fs_err::read_dir(cache_c.join("store-v1"))
        .into_iter()
        .flatten()
    {
        let shard = shard.unwrap().path();
        if !shard.is_dir() {
            continue;
        }
        for file in fs_err::read_dir(&shard).unwrap() {
            let path = file.unwrap().path();
            let output = Command::new("sha256sum").arg(&path).output().unwrap();
            let text = String::from_utf8(output.stdout).unwrap();
            assert_eq!(
                text.split_whitespace().next(),
                path.file_name().and_then(|n| n.to_str()),
                "a damaged store file"
            );
        }
    }
    let c = json(&agent_create(&ctx, &cache_c, &model, false, &env, &[]));
    assert_pulled(&c);
}

/// A find-links directory with `manyfiles` 1.0, a wheel of `count` small data files (each its
/// own content, so each its own blob).
fn many_files_wheel(dir: &Path, count: usize) -> PathBuf {
    let wheels = dir.join("many-files-wheels");
    fs_err::create_dir_all(&wheels).unwrap();
    let python = env_test::pyenv_root()
        .unwrap()
        .join("versions/3.11.7/bin/python3.11");
    let script = r#"
import base64, hashlib, sys, zipfile
out, count = sys.argv[1], int(sys.argv[2])
files = {"manyfiles/__init__.py": "N = %d\n" % count}
for i in range(count):
    files["manyfiles/data/%03d/f%05d.txt" % (i // 1000, i)] = "%d\n" % i
info = "manyfiles-1.0.dist-info/"
files[info + "METADATA"] = "Metadata-Version: 2.1\nName: manyfiles\nVersion: 1.0\n"
files[info + "WHEEL"] = "Wheel-Version: 1.0\nGenerator: pyfunc-env-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
record = []
for name, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    record.append(f"{name},sha256={digest},{len(text)}")
record.append(info + "RECORD,,")
files[info + "RECORD"] = "\n".join(record) + "\n"
with zipfile.ZipFile(out + "/manyfiles-1.0-py3-none-any.whl", "w") as wheel:
    for name, text in files.items():
        wheel.writestr(zipfile.ZipInfo(name, (2000, 1, 1, 0, 0, 0)), text)
"#;
    let output = Command::new(python)
        .args(["-c", script])
        .arg(&wheels)
        .arg(count.to_string())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    wheels
}

/// SIGINT while a pull links the environment from the store (issue 25): the pull stops,
/// removes its staging tree (`tmp/<key>-pull-*`), ends as the signal says, and leaves no
/// environment; the next run pulls it whole. The environment has 20,000 files, so the signal,
/// sent once the staging tree has its first entries, comes well before the linking ends.
#[test]
fn remote_sigint_while_linking_removes_the_staging_tree() {
    let ctx = TestContext::new();
    let wheels = many_files_wheel(ctx.path(), 20_000);
    let conda = format!(
        "name: test\nchannels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- pip\n- pip:\n  - --no-index\n  - --find-links file://{}\n  - manyfiles==1.0\n",
        wheels.display()
    );
    let model = ctx.model("m", &[("conda.yaml", &conda)]);
    let remote = ctx.path().join("shared");
    let env = [
        (
            "PYFUNC_ENV_REMOTE_CACHE",
            format!("file://{}", remote.display()),
        ),
        // The wheel's files stay out of the uv cache the tests share.
        (
            "PYFUNC_ENV_UV_CACHE_DIR",
            ctx.path().join("uv-cache").display().to_string(),
        ),
    ];
    let a = json(&agent_create(
        &ctx,
        &ctx.path().join("a"),
        &model,
        true,
        &env,
        &[],
    ));
    assert_eq!(a["pushed"], true, "{a:#}");
    let key = a["key"].as_str().unwrap();

    let cache_b = ctx.path().join("b");
    let mut command = ctx.command();
    command
        .env("PYFUNC_ENV_CACHE_DIR", &cache_b)
        .arg("create")
        .arg(&model)
        .args(["--env-manager", "conda", "--json"])
        .args(mirror_args("file:///nonexistent/channel"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in &env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    // The staging tree's first entries: the link pass has begun.
    let staging_prefix = format!("{key}-pull-");
    let linking = || {
        fs_err::read_dir(cache_b.join("tmp"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&staging_prefix))
            .any(|e| fs_err::read_dir(e.path().join("env")).is_ok_and(|mut r| r.next().is_some()))
    };
    while !linking() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before its link pass was seen"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    interrupt(&mut child);
    let leftovers: Vec<_> = fs_err::read_dir(cache_b.join("tmp"))
        .map(|read| read.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        !cache_b
            .join(format!("envs-v1/{key}/.pyfunc-env/complete"))
            .exists(),
        "the interrupted pull completed the environment"
    );
    let b = json(&agent_create(&ctx, &cache_b, &model, false, &env, &[]));
    assert_pulled(&b);
}

/// Credentials the store refuses: one screen naming the settings, the secret never printed,
/// the build goes on locally and nothing is pushed.
#[test]
fn pypi_remote_s3_wrong_credentials_name_the_setting_and_build_locally() {
    let identities = serde_json::json!({
        "identities": [{
            "name": "admin",
            "credentials": [{"accessKey": "ci-agent", "secretKey": "the-right-secret"}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]
        }]
    });
    let weed = Seaweed::start_with_identities(&identities);
    let ctx = TestContext::new().online();
    let model = conda_model(&ctx);
    let env = [
        ("PYFUNC_ENV_REMOTE_CACHE", "s3://envs/ci".to_string()),
        ("AWS_ENDPOINT_URL", weed.endpoint()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "ci-agent".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "wrong-secret-5f3a9c".to_string()),
    ];
    let output = agent_create(&ctx, &ctx.path().join("a"), &model, true, &env, &["-v"]);
    let created = json(&output);
    assert_eq!(created["remote_hit"], false, "{created:#}");
    assert_eq!(created["pushed"], false, "{created:#}");
    let text = stderr(&output);
    assert!(
        text.contains("The remote cache `s3://envs/ci` refused the credentials")
            && text.contains("`AWS_SECRET_ACCESS_KEY`")
            && text.contains("building locally"),
        "{text}"
    );
    assert!(!text.contains("wrong-secret-5f3a9c"), "{text}");
    assert!(!crate::common::stdout(&output).contains("wrong-secret-5f3a9c"));
    // The right secret pushes (the admin may create the bucket on upload).
    let mut right = env.to_vec();
    right[4].1 = "the-right-secret".to_string();
    let pushed = json(&agent_create(
        &ctx,
        &ctx.path().join("b"),
        &model,
        true,
        &right,
        &[],
    ));
    assert_eq!(pushed["pushed"], true, "{pushed:#}");
}

/// The sklearn fixture, virtualenv mode with Python from a conda channel so it is shareable:
/// A builds and pushes, B pulls (no solve, no uv) and predicts byte-identically to A and to
/// MLflow's recorded output.
#[test]
fn pypi_remote_s3_sklearn_pulled_predicts_exactly_as_built() {
    let weed = Seaweed::start();
    weed.create_bucket("envs");
    let ctx = TestContext::new().online();
    let model = fixture("sklearn-iris");
    let mut env: Vec<(String, String)> = weed
        .env()
        .into_iter()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.push(("PYFUNC_ENV_REMOTE_CACHE".into(), "s3://envs/pyfunc".into()));
    let agent = |cache: &str, channel: &str| {
        let mut command = ctx.command();
        command
            .env("PYFUNC_ENV_CACHE_DIR", ctx.path().join(cache))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let args: Vec<String> = [
            "--env-manager",
            "virtualenv",
            "--python-source",
            "conda",
            "--mirror",
            &format!("conda-forge={channel}"),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        (command, args)
    };
    let (mut create_a, args) = agent("a", &channel_url());
    let a = json(
        &create_a
            .arg("create")
            .arg(&model)
            .args(&args)
            .arg("--json")
            .output()
            .unwrap(),
    );
    assert_eq!(a["pushed"], true, "{a:#}");

    let (mut create_b, args_b) = agent("b", "file:///nonexistent/channel");
    let b = json(
        &create_b
            .arg("create")
            .arg(&model)
            .args(&args_b)
            .arg("--json")
            .output()
            .unwrap(),
    );
    assert_pulled(&b);

    let input = repo_root().join("fixtures/inputs/sklearn-iris/dataframe_split.json");
    let expected =
        fs_err::read(repo_root().join("fixtures/expected/sklearn-iris/dataframe_split.out"))
            .unwrap();
    let mut outputs = Vec::new();
    for (cache, channel) in [
        ("a", channel_url()),
        ("b", "file:///nonexistent/channel".to_string()),
    ] {
        let (mut run, args) = agent(cache, &channel);
        let output = run
            .arg("run")
            .arg(&model)
            .args(&args)
            .args(["--", "predict", "-i"])
            .arg(&input)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        outputs.push(output.stdout);
    }
    assert_eq!(outputs[0], outputs[1], "A and B predict differently");
    assert!(outputs[1] == expected, "stdout differs from MLflow's");
}

/// Sends SIGINT to `child` and checks it ended as the signal says (killed by it, or 130 as a
/// shell reports it).
fn interrupt(child: &mut std::process::Child) {
    use std::os::unix::process::ExitStatusExt as _;
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(
        status.signal() == Some(2) || status.code() == Some(130),
        "{status:?}"
    );
}

/// Starts `create` pulling `model` into `cache` through a proxy that stalls after 1 MB, and
/// returns once the download hangs there (keep the proxy alive as long as the child).
fn hung_pull(
    ctx: &TestContext,
    weed: &Seaweed,
    env: &[(&'static str, String)],
    model: &Path,
    cache: &Path,
) -> (Proxy, std::process::Child) {
    let stall = Proxy::start(weed.s3_port, 1 << 20, true);
    let slow = through(env, stall.port, 300);
    let mut command = ctx.command();
    command
        .env("PYFUNC_ENV_CACHE_DIR", cache)
        .arg("create")
        .arg(model)
        .args(["--env-manager", "conda", "--json"])
        .args(mirror_args("file:///nonexistent/channel"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in &slow {
        command.env(key, value);
    }
    let child = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while stall.sent.load(Ordering::SeqCst) <= 1 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the download never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    (stall, child)
}

/// An agent with a warm uv cache and an empty store (issue 25): A builds the sklearn fixture
/// and pushes it; B pulls it and takes every file its uv cache holds from there, checked by
/// hash, so it downloads a small part of the environment; C's uv cache is a copy with one
/// file of scikit-learn changed (same size, `RECORD` untouched): that file is refused and
/// downloaded, and C's environment holds the right content. B and C predict exactly as MLflow
/// recorded, with channels that lead nowhere (no build could succeed).
#[test]
fn pypi_remote_warm_agent_takes_files_from_its_uv_cache() {
    let ctx = TestContext::new().online();
    let model = fixture("sklearn-iris");
    let remote_dir = ctx.path().join("shared");
    let remote = format!("file://{}", remote_dir.display());
    let agent = |cache: &str, channel: &str, uv_cache: &Path, args: &[&str]| {
        let mut command = ctx.command();
        command
            .env("PYFUNC_ENV_CACHE_DIR", ctx.path().join(cache))
            .env("PYFUNC_ENV_UV_CACHE_DIR", uv_cache)
            .env("PYFUNC_ENV_REMOTE_CACHE", &remote)
            .arg(args[0])
            .arg(&model)
            .args(["--env-manager", "virtualenv", "--python-source", "conda"])
            .args(["--mirror", &format!("conda-forge={channel}")])
            .args(&args[1..]);
        command.output().unwrap()
    };
    let shared = crate::common::shared_uv_cache();
    let nowhere = "file:///nonexistent/channel";
    let a = json(&agent("a", &channel_url(), &shared, &["create", "--json"]));
    assert_eq!(a["pushed"], true, "{a:#}");
    let input = repo_root().join("fixtures/inputs/sklearn-iris/dataframe_split.json");
    let expected =
        fs_err::read(repo_root().join("fixtures/expected/sklearn-iris/dataframe_split.out"))
            .unwrap();
    let input = input.to_str().unwrap();
    let predict = ["run", "--", "predict", "-i", input];

    let b = json(&agent("b", nowhere, &shared, &["create", "--json"]));
    assert_pulled(&b);
    let pull = &b["pull"];
    let (downloaded, env_bytes, seeded) = (
        pull["downloaded_bytes"].as_u64().unwrap(),
        pull["env_bytes"].as_u64().unwrap(),
        pull["seeded_bytes"].as_u64().unwrap(),
    );
    // Against what a pull without local caches downloads: every blob's compressed frame.
    let manifest = remote_manifest(&remote_dir, a["key"].as_str().unwrap());
    let frames: u64 = manifest["blobs"]
        .as_object()
        .unwrap()
        .values()
        .map(|at| at["length"].as_u64().unwrap())
        .sum();
    assert!(
        downloaded * 2 < frames,
        "a warm agent downloaded {downloaded} of the {frames} bytes of the environment's blobs: {pull:#}"
    );
    assert!(seeded * 2 > env_bytes, "{pull:#}");
    assert_eq!(pull["seed_rejected"], 0, "{pull:#}");
    let output = agent("b", nowhere, &shared, &predict);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(output.stdout == expected, "{}", describe(&output));

    // C: a copy of the wheels of scikit-learn in the shared cache (hard links: nothing of the
    // shared cache is written), with `sklearn/__init__.py` replaced by other bytes of its size.
    let site = PathBuf::from(a["prefix"].as_str().unwrap()).join("lib/python3.11/site-packages");
    let dist_info = fs_err::read_dir(&site)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("scikit_learn-") && n.ends_with(".dist-info"))
        .unwrap();
    let right = fs_err::read(site.join("sklearn/__init__.py")).unwrap();
    let uv_c = ctx.path().join("uv-c");
    fs_err::create_dir_all(uv_c.join("archive-v0")).unwrap();
    let mut copies = 0;
    for id in fs_err::read_dir(shared.join("archive-v0")).unwrap() {
        let id = id.unwrap().path();
        if !id.join(&dist_info).is_dir() {
            continue;
        }
        let copy = uv_c.join("archive-v0").join(id.file_name().unwrap());
        let status = Command::new("cp").arg("-al").arg(&id).arg(&copy).status();
        assert!(status.unwrap().success());
        let changed = copy.join("sklearn/__init__.py");
        let mut bytes = fs_err::read(&changed).unwrap();
        bytes.reverse();
        fs_err::remove_file(&changed).unwrap();
        fs_err::write(&changed, &bytes).unwrap();
        copies += 1;
    }
    assert!(
        copies > 0,
        "no wheel of `{dist_info}` in the shared uv cache"
    );
    let c = json(&agent("c", nowhere, &uv_c, &["create", "--json"]));
    assert_pulled(&c);
    let pull = &c["pull"];
    assert!(pull["seed_rejected"].as_u64().unwrap() >= 1, "{pull:#}");
    assert!(pull["seeded_bytes"].as_u64().unwrap() > 0, "{pull:#}");
    let site_c = PathBuf::from(c["prefix"].as_str().unwrap()).join("lib/python3.11/site-packages");
    assert!(
        fs_err::read(site_c.join("sklearn/__init__.py")).unwrap() == right,
        "C's environment holds the changed `sklearn/__init__.py` of its uv cache"
    );
    let output = agent("c", nowhere, &uv_c, &predict);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(output.stdout == expected, "{}", describe(&output));

    // A again, its environment and file store gone, its uv cache and bytecode store kept (a
    // warm agent): the bytecode comes from `pyc-v1/` too, and it downloads less than B.
    for bucket in ["envs-v1", "store-v1"] {
        fs_err::remove_dir_all(ctx.path().join("a").join(bucket)).unwrap();
    }
    let again = json(&agent("a", nowhere, &shared, &["create", "--json"]));
    assert_pulled(&again);
    let pull = &again["pull"];
    assert!(pull["seeded_pyc_files"].as_u64().unwrap() > 0, "{pull:#}");
    assert!(
        pull["downloaded_bytes"].as_u64().unwrap() < downloaded,
        "{pull:#}"
    );
    let output = agent("a", nowhere, &shared, &predict);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(output.stdout == expected, "{}", describe(&output));
}
