//! `cache dir | list | prune | clean`, and that nothing in use is deleted.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestContext, describe, json, mirror_args, pyfunc_env_snapshot};

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
    pyfunc_env_snapshot!(ctx.filters(), ctx.command().args(["cache", "dir"]), @r#"
        exit_code: 0 (success)
        ----- stdout -----
        [CACHE_DIR]

        ----- stderr -----
    "#);
}

/// A duration or size that does not parse is the caller's to fix (exit 1), locally and for the
/// remote cache: the class is the library's `UnitError`'s own.
#[test]
fn prune_refuses_a_bad_duration_or_size_as_bad_input() {
    let ctx = TestContext::new();
    fs_err::create_dir_all(&ctx.cache_dir).unwrap();
    fs_err::write(
        ctx.cache_dir.join("CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    let remote = format!("file://{}", ctx.path().join("remote").display());
    let prune = |flags: &[&str]| {
        let mut command = ctx.command();
        command.args(["cache", "prune"]).args(flags);
        command
    };
    pyfunc_env_snapshot!(ctx.filters(), prune(&["--older-than", "3x"]), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Invalid duration unit `x` in `3x`: use s, m, h, d or w
    "#);
    pyfunc_env_snapshot!(ctx.filters(), prune(&["--max-size", "lots"]), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Invalid size `lots`: expected e.g. `[SIZE]` or `[SIZE]`
    "#);
    pyfunc_env_snapshot!(
        ctx.filters(),
        prune(&["--remote", "--older-than", "soon", "--remote-cache", &remote]),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Invalid duration `soon`: expected a number and a unit, e.g. `30d`, `12h`
    "#
    );
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

    // Nothing is older than a day: prune keeps everything.
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command().args(["cache", "prune", "--older-than", "1d"]),
        @r#"
        exit_code: 0 (success)
        ----- stdout -----

        ----- stderr -----
        Pruned 0 environment(s), [SIZE]
    "#
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
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command().args(["cache", "prune", "--older-than", "1d"]),
        @r#"
        exit_code: 0 (success)
        ----- stdout -----

        ----- stderr -----
        Removed unused environment [KEY] ([SIZE])
        Pruned 1 environment(s), [SIZE]
    "#
    );
    assert!(!std::path::Path::new(a["prefix"].as_str().unwrap()).exists());
    assert!(std::path::Path::new(b["prefix"].as_str().unwrap()).exists());
    // One environment left (two would be listed in key order, which differs between machines).
    pyfunc_env_snapshot!(ctx.filters(), ctx.command().args(["cache", "list"]), @r#"
        exit_code: 0 (success)
        ----- stdout -----
        KEY                               STATE       MANAGER          SIZE  CREATED              LAST USED            MODEL
        [KEY]  complete    conda        [SIZE]  [DATE]  [DATE]  [TEMP_DIR]/models/b

        ----- stderr -----
    "#);

    // A size budget of zero removes the rest; --dry-run removes nothing.
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command().args(["cache", "prune", "--max-size", "0", "--dry-run"]),
        @r#"
        exit_code: 0 (success)
        ----- stdout -----

        ----- stderr -----
        Would remove least recently used environment [KEY] ([SIZE])
        Would prune 1 environment(s), [SIZE]
    "#
    );
    assert!(std::path::Path::new(b["prefix"].as_str().unwrap()).exists());

    pyfunc_env_snapshot!(ctx.filters(), ctx.command().args(["cache", "clean"]), @r#"
        exit_code: 0 (success)
        ----- stdout -----

        ----- stderr -----
        Removed everything in [CACHE_DIR] ([SIZE])
    "#);
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
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command().args(["cache", "prune", "--older-than", "1s"]),
        @r#"
        exit_code: 0 (success)
        ----- stdout -----

        ----- stderr -----
        Kept 1 environment(s) in use by other processes
        Pruned 0 environment(s), [SIZE]
    "#
    );
    assert!(
        std::path::Path::new(created["prefix"].as_str().unwrap())
            .join("bin/python")
            .exists()
    );

    // clean needs the whole cache: it waits, then gives up after PYFUNC_ENV_LOCK_TIMEOUT.
    pyfunc_env_snapshot!(ctx.filters(), ctx.command().args(["cache", "clean"]), @r#"
        exit_code: 2 (error)
        ----- stdout -----

        ----- stderr -----
        Cache is in use, waiting (use `--force` to override)
        error: Timed out after 1 s waiting for the lock on `[CACHE_DIR]/.lock`, held by pid [PID] (`[CACHE_DIR]/envs-v1/[KEY]/bin/python -c import pathlib,...`)

        hint: Another process is using it (a running model holds its environment's lock for as long as it runs). Wait for it to finish or stop it, or raise `PYFUNC_ENV_LOCK_TIMEOUT` (seconds)
    "#);
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
    // `pack --cached` archives: one of a removed environment goes (with its report) once
    // nothing holds the cache; the built environment's stays.
    let built = fs_err::read_dir(ctx.cache_dir.join("envs-v1"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .find(|name| name.len() == 32 && name != "0123456789abcdef0123456789abcdef")
        .unwrap();
    let packs = ctx.cache_dir.join("packs-v1");
    fs_err::create_dir_all(&packs).unwrap();
    let kept_archive = packs.join(format!("pyfunc-env-{built}-py4j+pyspark.tar.gz"));
    let orphan = packs.join("pyfunc-env-fedcba9876543210fedcba9876543210-py4j+pyspark.tar.gz");
    for archive in [&kept_archive, &orphan] {
        fs_err::write(archive, "archive").unwrap();
        fs_err::write(format!("{}.json", archive.display()), "{}").unwrap();
    }
    // A killed `pack`'s staging from yesterday goes; a running one's (fresh) stays while the
    // `pack` runs (holding the cache's shared lock, as every command that stages does).
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
    let running = env_cache::LockedFile::acquire_blocking(
        &ctx.cache_dir.join(".lock"),
        env_cache::LockKind::Shared,
    )
    .unwrap();
    pyfunc_env_snapshot!(ctx.filters(), ctx.command().args(["cache", "prune"]), @r#"
        exit_code: 0 (success)
        ----- stdout -----

        ----- stderr -----
        Removed incomplete environment [KEY] ([SIZE])
        Removed abandoned staging `tmp/pack-abandoned` ([SIZE])
        Kept unknown cache bucket(s) `envs-v0` while other processes use the cache (an older pyfunc-env may be running a model from one)
        Pruned 1 environment(s), [SIZE]
    "#);
    assert!(!leftover.exists());
    assert!(!old_staging.exists());
    assert!(fresh_staging.exists());
    // Once nothing holds the cache, whatever is in `tmp/` is a killed process's leftover
    // (issue 23: a killed pull's fresh partial files stayed for 6 hours), and goes.
    drop(running);
    pyfunc_env_snapshot!(ctx.filters(), ctx.command().args(["cache", "prune"]), @r#"
        exit_code: 0 (success)
        ----- stdout -----

        ----- stderr -----
        Removed abandoned staging `tmp/pack-running` ([SIZE])
        Removed packed archive `packs-v1/pyfunc-env-[KEY]-py4j+pyspark.tar.gz` of a removed environment ([SIZE])
        Removed unknown cache bucket `envs-v0`
        Pruned 0 environment(s), [SIZE]
    "#);
    assert!(!orphan.exists());
    assert!(
        !packs
            .join(format!(
                "{}.json",
                orphan.file_name().unwrap().to_str().unwrap()
            ))
            .exists()
    );
    assert!(kept_archive.exists());
    assert!(!fresh_staging.exists());
    assert!(!ctx.cache_dir.join("envs-v0").exists());
}

/// `cache clean` and `cache prune` of a cache that was never created do nothing, create
/// nothing, and succeed.
#[test]
fn clean_and_prune_of_no_cache_do_nothing() {
    let ctx = TestContext::new();
    pyfunc_env_snapshot!(ctx.filters(), ctx.command().args(["cache", "clean"]), @r#"
        exit_code: 0 (success)
        ----- stdout -----

        ----- stderr -----
        No cache at [CACHE_DIR]
    "#);
    let prune = ["cache", "prune", "--older-than", "1d"];
    pyfunc_env_snapshot!(ctx.filters(), ctx.command().args(prune), @r#"
        exit_code: 0 (success)
        ----- stdout -----

        ----- stderr -----
        No cache at [CACHE_DIR]
    "#);
    assert!(!ctx.cache_dir.join("CACHEDIR.TAG").exists());
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
    pyfunc_env_snapshot!(ctx.filters(), command, @r#"
        exit_code: 2 (error)
        ----- stdout -----

        ----- stderr -----
        error: `[CACHE_DIR]` exists and is not a pyfunc-env cache

        hint: Point `--cache-dir` at an empty or new directory
    "#);
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
    pyfunc_env_snapshot!(ctx.filters(), ctx.command().args(["cache", "prune"]), @r#"
        exit_code: 0 (success)
        ----- stdout -----

        ----- stderr -----
        Kept unknown cache bucket(s) `envs-v0` while other processes use the cache (an older pyfunc-env may be running a model from one)
        Pruned 0 environment(s), [SIZE]
    "#);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(old.is_dir());
    let output = ctx.command().args(["cache", "prune"]).output().unwrap();
    assert!(!old.exists(), "{}", describe(&output));
}

#[test]
fn verify_reports_ok_damaged_and_unknown_environments() {
    let ctx = TestContext::new();
    let created = create(&ctx, &small_model(&ctx, "a", ""));
    // How many files an environment lists depends on this machine's Python build.
    let mut filters = ctx.filters();
    filters.push((r#""checked": [0-9]+"#.into(), r#""checked": "[N]""#.into()));
    filters.push((r"of [0-9]+ files".into(), "of [N] files".into()));
    pyfunc_env_snapshot!(filters.clone(), ctx.command().args(["cache", "verify"]), @r#"
        exit_code: 0 (success)
        ----- stdout -----
        ok [KEY]: [N] files ok

        ----- stderr -----
    "#);
    pyfunc_env_snapshot!(
        filters.clone(),
        ctx.command().args(["cache", "verify", "--json"]),
        @r#"
        exit_code: 0 (success)
        ----- stdout -----
        [
          {
            "key": "[KEY]",
            "model": "[TEMP_DIR]/models/a --env-manager conda",
            "ok": true,
            "checked": "[N]",
            "missing": [],
            "changed": []
          }
        ]

        ----- stderr -----
    "#
    );

    let prefix = std::path::Path::new(created["prefix"].as_str().unwrap());
    fs_err::remove_file(prefix.join("lib/python3.11/site-packages/tinypkg/__init__.py")).unwrap();
    pyfunc_env_snapshot!(
        filters.clone(),
        ctx.command().args(["cache", "verify", "--hash"]),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----
        damaged [KEY]: 1 missing, 0 changed of [N] files
            missing lib/python3.11/site-packages/tinypkg/__init__.py
            repair: pyfunc-env create [TEMP_DIR]/models/a --env-manager conda --reinstall

        ----- stderr -----
    "#
    );
    pyfunc_env_snapshot!(
        filters.clone(),
        ctx.command().args(["cache", "verify", "--json"]),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----
        [
          {
            "key": "[KEY]",
            "model": "[TEMP_DIR]/models/a --env-manager conda",
            "ok": false,
            "checked": "[N]",
            "missing": [
              "lib/python3.11/site-packages/tinypkg/__init__.py"
            ],
            "changed": []
          }
        ]

        ----- stderr -----
    "#
    );
    pyfunc_env_snapshot!(
        filters,
        ctx.command()
            .args(["cache", "verify", "0123456789abcdef0123456789abcdef"]),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: No complete environment `[KEY]` in [CACHE_DIR]
    "#
    );
}

/// `cache push` holds the cache's shared lock like every command (`cache clean` cannot
/// delete an environment mid-pack), and reports a model it cannot read and pushes the others,
/// exiting non-zero at the end like `create` (issue 23).
#[test]
fn push_holds_the_cache_and_goes_on_past_an_unreadable_model() {
    let ctx = TestContext::new();
    let model = small_model(&ctx, "m", "");
    let built = create(&ctx, &model);
    assert!(built["key"].is_string(), "{built:#}");
    let remote = ctx.path().join("remote");
    let channel = env_test::test_channel().unwrap();
    let push = |models: &[&std::path::Path]| {
        let mut command = ctx.command();
        command
            .args(["cache", "push"])
            .args(models)
            .args(["--env-manager", "conda", "--no-compile", "--json"])
            .arg("--remote-cache")
            .arg(format!("file://{}", remote.display()))
            .args(mirror_args(channel.file_url().as_str()));
        command
    };
    {
        // `cache clean` holds the cache: push waits for it (here, gives up at once).
        let _clean = env_cache::LockedFile::acquire_blocking(
            &ctx.cache_dir.join(".lock"),
            env_cache::LockKind::Exclusive,
        )
        .unwrap();
        let output = push(&[&model])
            .env("PYFUNC_ENV_LOCK_TIMEOUT", "0")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("Timed out"),
            "{}",
            describe(&output)
        );
        assert!(
            !remote.join("v1").exists(),
            "pushed while the cache was held"
        );
    }
    let missing = ctx.path().join("missing");
    let output = push(&[&missing, &model]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rows[0]["result"], "failed", "{rows:#}");
    assert!(
        rows[0]["message"].as_str().unwrap().contains("missing"),
        "{rows:#}"
    );
    assert_eq!(rows[1]["result"], "pushed", "{rows:#}");
}
