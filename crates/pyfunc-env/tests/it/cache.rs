//! `cache dir | list | prune | clean`, and that nothing in use is deleted.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestContext, describe, json, mirror_args, stderr, stdout};

/// A small conda-mode model from the local channel (no pip step).
fn small_model(ctx: &TestContext, name: &str, extra: &str) -> std::path::PathBuf {
    ctx.model(
        name,
        &[(
            "conda.yaml",
            &format!("channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- tinypkg\n{extra}"),
        )],
    )
}

fn create(ctx: &TestContext, model: &std::path::Path) -> serde_json::Value {
    let channel = env_test::test_channel().unwrap();
    let mut command = ctx.command();
    command
        .arg("create")
        .arg(model)
        .args(["--env-manager", "conda", "--json", "--no-compile"])
        .args(mirror_args(channel.file_url().as_str()));
    json(&command.output().unwrap())
}

#[test]
fn cache_dir_prints_the_root() {
    let ctx = TestContext::new();
    let output = ctx.command().args(["cache", "dir"]).output().unwrap();
    assert_eq!(stdout(&output).trim(), ctx.cache_dir.display().to_string());
}

#[test]
fn list_prune_and_clean() {
    let ctx = TestContext::new();
    let a = create(&ctx, &small_model(&ctx, "a", ""));
    let b = create(&ctx, &small_model(&ctx, "b", "- tinydep=0.1.0\n"));
    assert_ne!(a["key"], b["key"]);

    let list = json(
        &ctx.command()
            .args(["cache", "list", "--json"])
            .output()
            .unwrap(),
    );
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list:#}");
    for row in rows {
        assert_eq!(row["state"], "complete");
        assert_eq!(row["env_manager"], "conda");
        assert!(row["size"].as_u64().unwrap() > 1_000_000, "{row}");
        assert!(
            row["model"].as_str().unwrap().ends_with("/models/a")
                || row["model"].as_str().unwrap().ends_with("/models/b")
        );
    }
    let table = stdout(&ctx.command().args(["cache", "list"]).output().unwrap());
    assert!(table.starts_with("KEY"), "{table}");
    assert!(table.contains(a["key"].as_str().unwrap()), "{table}");

    // Nothing is older than a day: prune keeps everything.
    let output = ctx
        .command()
        .args(["cache", "prune", "--older-than", "1d"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        stderr(&output).contains("Pruned 0 environment(s)"),
        "{}",
        describe(&output)
    );

    // Make `a` look unused for two days; prune removes exactly it.
    let lock = ctx
        .cache_dir
        .join("envs-v1")
        .join(format!("{}.lock", a["key"].as_str().unwrap()));
    let old = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    fs_err::OpenOptions::new()
        .write(true)
        .open(&lock)
        .unwrap()
        .file()
        .set_modified(old)
        .unwrap();
    let output = ctx
        .command()
        .args(["cache", "prune", "--older-than", "1d"])
        .output()
        .unwrap();
    assert!(
        stderr(&output).contains(&format!(
            "Removed unused environment {}",
            a["key"].as_str().unwrap()
        )),
        "{}",
        describe(&output)
    );
    assert!(!std::path::Path::new(a["prefix"].as_str().unwrap()).exists());
    assert!(std::path::Path::new(b["prefix"].as_str().unwrap()).exists());

    // A size budget of zero removes the rest; --dry-run removes nothing.
    let output = ctx
        .command()
        .args(["cache", "prune", "--max-size", "0", "--dry-run"])
        .output()
        .unwrap();
    assert!(
        stderr(&output).contains("Would remove least recently used environment"),
        "{}",
        describe(&output)
    );
    assert!(std::path::Path::new(b["prefix"].as_str().unwrap()).exists());

    let output = ctx.command().args(["cache", "clean"]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(!ctx.cache_dir.join("envs-v1").exists());
    assert!(ctx.cache_dir.join("CACHEDIR.TAG").is_file());
}

#[test]
fn an_environment_in_use_is_not_pruned_and_clean_waits() {
    let ctx = TestContext::new().env("PYFUNC_ENV_LOCK_TIMEOUT", "1");
    let model = small_model(&ctx, "a", "");
    let created = create(&ctx, &model);
    let channel = env_test::test_channel().unwrap();
    let marker = ctx.path().join("started");
    let mut command = ctx.command();
    command
        .arg("run")
        .arg(&model)
        .args(["--env-manager", "conda", "--no-compile"])
        .args(mirror_args(channel.file_url().as_str()))
        .args(["--", "python", "-c"])
        .arg(format!(
            "import pathlib, time; pathlib.Path({:?}).touch(); time.sleep(30)",
            marker.display().to_string()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut running = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marker.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(marker.exists(), "the model did not start");

    // The running model holds its environment: prune keeps it however old it looks.
    let lock = ctx
        .cache_dir
        .join("envs-v1")
        .join(format!("{}.lock", created["key"].as_str().unwrap()));
    fs_err::OpenOptions::new()
        .write(true)
        .open(&lock)
        .unwrap()
        .file()
        .set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1))
        .unwrap();
    let output = ctx
        .command()
        .args(["cache", "prune", "--older-than", "1s"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        stderr(&output).contains("Kept 1 environment(s) in use"),
        "{}",
        describe(&output)
    );
    assert!(
        std::path::Path::new(created["prefix"].as_str().unwrap())
            .join("bin/python")
            .exists()
    );

    // clean needs the whole cache: it waits, then gives up after PYFUNC_ENV_LOCK_TIMEOUT.
    let output = ctx.command().args(["cache", "clean"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let text = stderr(&output);
    assert!(
        text.contains("Cache is in use, waiting (use `--force` to override)"),
        "{text}"
    );
    assert!(text.contains("Timed out"), "{text}");
    assert!(
        std::path::Path::new(created["prefix"].as_str().unwrap())
            .join("bin/python")
            .exists()
    );

    running.kill().unwrap();
    running.wait().unwrap();
    let output = ctx.command().args(["cache", "clean"]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
}

#[test]
fn prune_removes_leftovers_of_crashed_builds() {
    let ctx = TestContext::new();
    create(&ctx, &small_model(&ctx, "a", ""));
    let leftover = ctx
        .cache_dir
        .join("envs-v1")
        .join("0123456789abcdef0123456789abcdef");
    fs_err::create_dir_all(leftover.join("bin")).unwrap();
    fs_err::create_dir_all(ctx.cache_dir.join("envs-v0")).unwrap();
    // A killed `pack`'s staging from yesterday goes; a running one's (fresh) stays.
    let old_staging = ctx.cache_dir.join("tmp/pack-abandoned");
    let fresh_staging = ctx.cache_dir.join("tmp/pack-running");
    fs_err::create_dir_all(old_staging.join("lib")).unwrap();
    fs_err::write(old_staging.join("lib/x.pyc"), "x").unwrap();
    fs_err::create_dir_all(&fresh_staging).unwrap();
    let touched = Command::new("touch")
        .args(["-d", "1 day ago"])
        .arg(&old_staging)
        .status()
        .unwrap();
    assert!(touched.success());
    let output = ctx.command().args(["cache", "prune"]).output().unwrap();
    let text = stderr(&output);
    assert!(
        text.contains("Removed incomplete environment 0123456789abcdef0123456789abcdef"),
        "{text}"
    );
    assert!(
        text.contains("Removed unknown cache bucket `envs-v0`"),
        "{text}"
    );
    assert!(
        text.contains("Removed abandoned staging `tmp/pack-abandoned`"),
        "{text}"
    );
    assert!(!leftover.exists());
    assert!(!ctx.cache_dir.join("envs-v0").exists());
    assert!(!old_staging.exists());
    assert!(fresh_staging.exists());
}

#[test]
fn clean_refuses_a_directory_that_is_not_a_cache() {
    let ctx = TestContext::new();
    fs_err::create_dir_all(&ctx.cache_dir).unwrap();
    fs_err::write(ctx.cache_dir.join("precious.txt"), "x").unwrap();
    let model = small_model(&ctx, "a", "");
    let channel = env_test::test_channel().unwrap();
    let mut command = ctx.command();
    command
        .arg("create")
        .arg(&model)
        .args(["--env-manager", "conda"])
        .args(mirror_args(channel.file_url().as_str()));
    let output = command.output().unwrap();
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("is not a pyfunc-env cache"),
        "{}",
        describe(&output)
    );
    assert!(ctx.cache_dir.join("precious.txt").exists());
}

#[test]
fn prune_keeps_unknown_buckets_while_the_cache_is_in_use() {
    // An older binary running a model from `envs-v0/` holds only the cache's shared lock.
    let ctx = TestContext::new();
    let output = ctx.command().args(["cache", "prune"]).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    create(&ctx, &small_model(&ctx, "a", ""));
    let old = ctx.cache_dir.join("envs-v0");
    fs_err::create_dir_all(old.join("model-env/bin")).unwrap();
    // `--close`: only `flock` itself holds the lock, so killing it releases the lock.
    let mut holder = Command::new("flock")
        .args(["--shared", "--close"])
        .arg(ctx.cache_dir.join(".lock"))
        .args(["sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // `flock` takes the lock before running `sleep`; wait for it.
    let start = Instant::now();
    while Command::new("flock")
        .args(["--exclusive", "--nonblock"])
        .arg(ctx.cache_dir.join(".lock"))
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = ctx.command().args(["cache", "prune"]).output().unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(old.is_dir(), "{}", describe(&output));
    assert!(
        stderr(&output).contains("Kept unknown cache bucket(s) `envs-v0`"),
        "{}",
        describe(&output)
    );
    let output = ctx.command().args(["cache", "prune"]).output().unwrap();
    assert!(!old.exists(), "{}", describe(&output));
}
