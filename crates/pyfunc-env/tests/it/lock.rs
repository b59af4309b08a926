//! `lock` and `create --locked`: the same environment elsewhere, with no solve.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::{TestContext, describe, json, mirror_args, pyfunc_env_snapshot, stderr};

fn model(ctx: &TestContext, extra: &str) -> PathBuf {
    let wheels = env_test::wheel_dir().unwrap();
    ctx.model(
        "m",
        &[(
            "conda.yaml",
            &format!(
                "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- numpy=1.26\n- tinypkg\n{extra}- pip\n- pip:\n  - --no-index\n  - --find-links file://{}\n  - wheel==0.45.1\n",
                wheels.display()
            ),
        )],
    )
}

fn args(ctx: &TestContext, command: &str, model: &Path, cache: &Path) -> std::process::Command {
    let channel = env_test::test_channel().unwrap();
    let mut cmd = ctx.command();
    cmd.arg(command)
        .arg(model)
        .args(["--env-manager", "conda", "--cache-dir"])
        .arg(cache)
        .args(mirror_args(channel.file_url().as_str()));
    cmd
}

/// Every file of an environment (relative paths), without our metadata and bytecode caches.
fn files(prefix: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![prefix.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == ".pyfunc-env" || name == "__pycache__" {
                continue;
            }
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            } else {
                out.insert(
                    path.strip_prefix(prefix)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out
}

fn dist_infos(prefix: &Path) -> BTreeSet<String> {
    files(prefix)
        .into_iter()
        .filter(|f| f.ends_with(".dist-info/METADATA"))
        .collect()
}

#[test]
fn a_lock_reproduces_the_environment_elsewhere() {
    let ctx = TestContext::new();
    let model = model(&ctx, "");
    let machine_a = ctx.path().join("machine-a");
    let lock = ctx.path().join("model.lock");
    let output = args(&ctx, "lock", &model, &machine_a)
        .arg("-o")
        .arg(&lock)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let text = fs_err::read_to_string(&lock).unwrap();
    assert!(text.starts_with("# pyfunc-env lock: key="), "{text}");
    // A pixi lock: conda records with hashes, the pip wheel with its hash.
    for needle in [
        "version: 7",
        "python-3.11.7-0_pyenv_cpython.conda",
        "numpy-1.26.4-py311_0.conda",
        "sha256:",
        "md5:",
        "wheel-0.45.1-py3-none-any.whl",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from the lock:\n{text}"
        );
    }
    let solved = json(
        &args(&ctx, "create", &model, &machine_a)
            .arg("--json")
            .arg("--no-lock")
            .output()
            .unwrap(),
    );

    // "Another machine": a fresh cache, installing from the lock alone.
    let machine_b = ctx.path().join("machine-b");
    let locked = json(
        &args(&ctx, "create", &model, &machine_b)
            .arg("--json")
            .arg("--locked")
            .arg(&lock)
            .output()
            .unwrap(),
    );
    assert_eq!(locked["timings"]["solve"], 0.0);
    assert_ne!(
        locked["key"], solved["key"],
        "a locked environment has its own key"
    );
    let a = PathBuf::from(solved["prefix"].as_str().unwrap());
    let b = PathBuf::from(locked["prefix"].as_str().unwrap());
    let (fa, fb) = (files(&a), files(&b));
    let only_a: Vec<&String> = fa.difference(&fb).collect();
    let only_b: Vec<&String> = fb.difference(&fa).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "only in the solved environment: {only_a:?}\nonly in the locked one: {only_b:?}"
    );
    assert_eq!(dist_infos(&a), dist_infos(&b));
    assert!(
        dist_infos(&b)
            .iter()
            .any(|d| d.contains("wheel-0.45.1.dist-info"))
    );

    // A lock inside the model directory is used without the flag.
    fs_err::copy(&lock, model.join("pyfunc-env.lock")).unwrap();
    let machine_c = ctx.path().join("machine-c");
    let output = args(&ctx, "create", &model, &machine_c)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        stderr(&output).contains("Using lock file"),
        "{}",
        describe(&output)
    );
    assert_eq!(json(&output)["key"], locked["key"]);
}

#[test]
fn a_stale_lock_is_refused() {
    let ctx = TestContext::new();
    let model = model(&ctx, "");
    let cache = ctx.path().join("cache-a");
    let lock = ctx.path().join("model.lock");
    assert!(
        args(&ctx, "lock", &model, &cache)
            .arg("-o")
            .arg(&lock)
            .output()
            .unwrap()
            .status
            .success()
    );
    // The model's environment changes after the lock was written.
    let changed = self::model(&ctx, "- tinydep=0.1.0\n");
    pyfunc_env_snapshot!(
        ctx.filters(),
        args(&ctx, "create", &changed, &ctx.path().join("cache-b"))
            .arg("--locked")
            .arg(&lock),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: The lock file `[TEMP_DIR]/model.lock` is stale: it was written for environment `[KEY]`, but the model's files now give `[KEY]`

        hint: The model's environment files (or the flags that change the environment) changed since the lock was written; regenerate it with `pyfunc-env lock MODEL -o [TEMP_DIR]/model.lock`
    "#
    );
}

#[test]
fn a_tampered_hash_fails_the_install() {
    let ctx = TestContext::new();
    let model = model(&ctx, "");
    let lock = ctx.path().join("model.lock");
    assert!(
        args(&ctx, "lock", &model, &ctx.path().join("cache-a"))
            .arg("-o")
            .arg(&lock)
            .output()
            .unwrap()
            .status
            .success()
    );
    let text = fs_err::read_to_string(&lock).unwrap();
    // Change the recorded sha256 of the pip wheel.
    let marker = "wheel-0.45.1-py3-none-any.whl";
    let start = text.rfind(marker).unwrap();
    let hash_at = start + text[start..].find("sha256: ").unwrap() + "sha256: ".len();
    let mut tampered = text.clone();
    tampered.replace_range(hash_at..hash_at + 64, &"0".repeat(64));
    fs_err::write(&lock, tampered).unwrap();
    // The zeros stay visible: only hashes with a hex letter are hidden.
    let mut filters = ctx.filters();
    filters.insert(0, ("\\b0{64}\\b".into(), "[ZEROS]".into()));
    pyfunc_env_snapshot!(
        filters,
        args(&ctx, "create", &model, &ctx.path().join("cache-b"))
            .arg("--locked")
            .arg(&lock),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        Using lock file [TEMP_DIR]/model.lock
        error: Failed to create the conda environment for `[TEMP_DIR]/models/m`
          Caused by: `wheel-0.45.1-py3-none-any.whl` has sha256 `[HASH]`, but the lock file says `[ZEROS]`

        hint: The file changed since the lock was written (or the lock was edited); refusing to install it
    "#
    );
    // Nothing half-installed stays behind.
    let envs = ctx.path().join("cache-b/envs-v1");
    assert!(
        !fs_err::read_dir(&envs)
            .unwrap()
            .flatten()
            .any(|e| e.path().is_dir()),
        "a failed locked build left a directory"
    );
}
