//! Races, crashes and damage: the cache never hands out a broken environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::common::{TestContext, describe, json, mirror_args, stderr, stdout};

/// A conda model whose build has every stage: solve, link, a uv step and bytecode.
fn model(ctx: &TestContext, name: &str, numpy: bool) -> PathBuf {
    let wheels = env_test::wheel_dir().unwrap();
    let numpy = if numpy { "- numpy=1.26\n" } else { "" };
    ctx.model(
        name,
        &[(
            "conda.yaml",
            &format!(
                "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- tinypkg\n{numpy}- pip\n- pip:\n  - --no-index\n  - --find-links file://{}\n  - wheel==0.45.1\n",
                wheels.display()
            ),
        )],
    )
}

fn create_command(ctx: &TestContext, model: &Path) -> Command {
    let channel = env_test::test_channel().unwrap();
    let mut command = ctx.command();
    command
        .arg("create")
        .arg(model)
        .args(["--env-manager", "conda", "--json"])
        .args(mirror_args(channel.file_url().as_str()));
    command
}

fn works(prefix: &str) {
    let output = Command::new(format!("{prefix}/bin/python"))
        .args(["-c", "import tinypkg, wheel; print('ok')"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "ok",
        "{}",
        describe(&output)
    );
}

#[test]
fn eight_concurrent_creates_build_once() {
    let ctx = TestContext::new();
    let model = model(&ctx, "m", true);
    let children: Vec<_> = (0..8)
        .map(|_| {
            create_command(&ctx, &model)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| json(&c.wait_with_output().unwrap()))
        .collect();
    let built = results
        .iter()
        .filter(|r| r["cache_hit"] == false && r["built_by_other"] == false)
        .count();
    assert_eq!(built, 1, "{results:#?}");
    for result in &results {
        assert_eq!(result["prefix"], results[0]["prefix"]);
    }
    // The metadata was written once, by the builder.
    let prefix = results[0]["prefix"].as_str().unwrap();
    works(prefix);
    let verify = ctx
        .command()
        .args(["cache", "verify", "--hash"])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", describe(&verify));
}

#[test]
fn four_models_build_concurrently_sharing_the_caches() {
    let ctx = TestContext::new();
    let models: Vec<PathBuf> = (0..4)
        .map(|i| {
            let wheels = env_test::wheel_dir().unwrap();
            let extra = ["", "- numpy=1.26\n", "- tinydep=0.1.0\n", "- setuptools\n"][i];
            ctx.model(
                &format!("m{i}"),
                &[(
                    "conda.yaml",
                    &format!(
                        "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- tinypkg\n{extra}- pip\n- pip:\n  - --no-index\n  - --find-links file://{}\n  - wheel==0.45.1\n",
                        wheels.display()
                    ),
                )],
            )
        })
        .collect();
    let children: Vec<_> = models
        .iter()
        .map(|m| {
            create_command(&ctx, m)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| json(&c.wait_with_output().unwrap()))
        .collect();
    let mut keys: Vec<&str> = results.iter().map(|r| r["key"].as_str().unwrap()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 4);
    for result in &results {
        assert_eq!(result["cache_hit"], false);
        works(result["prefix"].as_str().unwrap());
    }
}

#[test]
fn sigkill_at_twenty_moments_never_leaves_a_usable_broken_environment() {
    let ctx = TestContext::new();
    let model = model(&ctx, "m", false);
    // How long a build with a warm package cache takes here, to spread the kills over it.
    let baseline = json(&create_command(&ctx, &model).output().unwrap());
    let wipe = ctx
        .command()
        .args(["cache", "prune", "--max-size", "0"])
        .output()
        .unwrap();
    assert!(wipe.status.success(), "{}", describe(&wipe));
    let start = Instant::now();
    json(&create_command(&ctx, &model).output().unwrap());
    // Full builds measured as the test goes, so the kills follow the machine's current speed.
    let mut durations = vec![start.elapsed()];
    let envs = ctx.cache_dir.join("envs-v1");
    let complete = envs
        .join(baseline["key"].as_str().unwrap())
        .join(".pyfunc-env/complete");
    let mut outcomes = (0, 0);
    for i in 1..=20u32 {
        // Start from an empty environment each time (the package cache stays warm).
        let wipe = ctx
            .command()
            .args(["cache", "prune", "--max-size", "0"])
            .output()
            .unwrap();
        assert!(wipe.status.success(), "{}", describe(&wipe));
        durations.sort();
        let delay = durations[durations.len() / 2] * i / 21;
        let mut child = create_command(&ctx, &model)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        // SAFETY-free SIGKILL through the standard library.
        let _ = child.kill();
        let _ = child.wait();
        let finished = complete.exists();
        let rebuild = Instant::now();
        let result = json(&create_command(&ctx, &model).output().unwrap());
        if result["cache_hit"] == false {
            durations.push(rebuild.elapsed());
        }
        if finished {
            assert_eq!(
                result["cache_hit"], true,
                "kill {i}: a finished build was not reused"
            );
            outcomes.0 += 1;
        } else {
            assert_eq!(
                result["cache_hit"], false,
                "kill {i}: an incomplete environment was reported as a cache hit"
            );
            outcomes.1 += 1;
        }
        works(result["prefix"].as_str().unwrap());
        let verify = ctx.command().args(["cache", "verify"]).output().unwrap();
        assert!(verify.status.success(), "kill {i}: {}", describe(&verify));
    }
    // The kills must really have landed inside builds, not all after them.
    assert!(
        outcomes.1 >= 10,
        "only {} of 20 kills interrupted a build",
        outcomes.1
    );
}

#[test]
fn a_damaged_environment_is_detected_and_repaired() {
    let ctx = TestContext::new();
    let model = model(&ctx, "m", false);
    let created = json(&create_command(&ctx, &model).output().unwrap());
    let prefix = PathBuf::from(created["prefix"].as_str().unwrap());
    let key = created["key"].as_str().unwrap();
    let ok = ctx
        .command()
        .args(["cache", "verify", key])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", describe(&ok));

    // One file of a conda package, one of a pip package, one changed in place.
    fs_err::remove_file(prefix.join("lib/python3.11/site-packages/tinypkg/__init__.py")).unwrap();
    fs_err::remove_file(prefix.join("lib/python3.11/site-packages/wheel/__init__.py")).unwrap();
    let damaged = ctx
        .command()
        .args(["cache", "verify", key])
        .output()
        .unwrap();
    assert_eq!(damaged.status.code(), Some(1), "{}", describe(&damaged));
    let text = stdout(&damaged);
    assert!(
        text.contains("missing lib/python3.11/site-packages/tinypkg/__init__.py"),
        "{text}"
    );
    assert!(
        text.contains("missing lib/python3.11/site-packages/wheel/__init__.py"),
        "{text}"
    );
    assert!(text.contains("--reinstall"), "{text}");

    let repaired = json(
        &create_command(&ctx, &model)
            .arg("--reinstall")
            .output()
            .unwrap(),
    );
    assert_eq!(repaired["cache_hit"], false);
    let ok = ctx
        .command()
        .args(["cache", "verify", key, "--hash"])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", describe(&ok));
    works(created["prefix"].as_str().unwrap());
}

#[test]
fn disk_full_gives_a_clear_error_and_leaves_nothing_complete() {
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let ctx = TestContext::new();
    let small = ctx.path().join("small");
    fs_err::create_dir_all(&small).unwrap();
    // A 12 MB tmpfs: the package cache fills it while extracting python (30 MB).
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"])
        .arg(&small)
        .status();
    // Mounting needs root (CI and these machines have it); say so rather than pass silently.
    assert!(
        mounted.is_ok_and(|s| s.success()),
        "cannot mount a tmpfs at {}: this test needs root (CAP_SYS_ADMIN)",
        small.display()
    );
    let _unmount = Unmount(small.clone());
    let model = model(&ctx, "m", false);
    let output = create_command(&ctx, &model)
        .arg("--cache-dir")
        .arg(small.join("cache"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let text = stderr(&output);
    assert!(text.contains("No space left on device"), "{text}");
    let envs = small.join("cache/envs-v1");
    for entry in fs_err::read_dir(&envs).unwrap().flatten() {
        assert!(
            !entry.path().join(".pyfunc-env/complete").exists(),
            "a failed build was marked complete"
        );
    }
}

#[test]
fn credentials_never_appear_in_output_logs_json_or_metadata() {
    let ctx = TestContext::new().env("PYFUNC_ENV_OFFLINE", "0");
    let channel = env_test::test_channel().unwrap();
    let server = channel.serve().unwrap();
    let secret = "hunter2-s3cret-token";
    let url = server
        .url()
        .as_str()
        .replacen("http://", &format!("http://deploy:{secret}@"), 1);
    let wheels = env_test::wheel_dir().unwrap();
    let model = ctx.model(
        "m",
        &[(
            "conda.yaml",
            &format!(
                "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- pip\n- pip:\n  - --index-url https://ci:{secret}@pypi.invalid/simple\n  - --find-links file://{}\n  - wheel==0.45.1\n",
                wheels.display()
            ),
        )],
    );
    let mut outputs = Vec::new();
    let mut command = ctx.command();
    command
        .arg("-vv")
        .arg("create")
        .arg(&model)
        .args(["--env-manager", "conda", "--json", "--mirror"])
        .arg(format!("conda-forge={url}"));
    outputs.push(command.output().unwrap());
    for args in [
        vec!["deps", "--format", "json"],
        vec!["inspect"],
        vec!["cache", "list", "--json"],
    ] {
        let mut command = ctx.command();
        command.args(&args[..1]);
        if args[0] != "cache" {
            command.arg(&model);
        }
        command.args(&args[1..]);
        outputs.push(command.output().unwrap());
    }
    // An error that quotes the URL.
    let mut command = ctx.command();
    command
        .arg("create")
        .arg(&model)
        .args(["--env-manager", "conda", "--reinstall", "--mirror"])
        .arg(format!("conda-forge=http://deploy:{secret}@127.0.0.1:9/"));
    outputs.push(command.output().unwrap());
    for output in &outputs {
        let text = describe(output);
        assert!(!text.contains(secret), "secret leaked:\n{text}");
    }
    assert!(
        describe(&outputs[4]).contains("deploy:****@127.0.0.1:9"),
        "{}",
        describe(&outputs[4])
    );
    for entry in walk(&ctx.cache_dir.join("envs-v1")) {
        if entry.ends_with("metadata.json") {
            let text = fs_err::read_to_string(&entry).unwrap();
            assert!(!text.contains(secret), "secret in {}", entry.display());
            assert!(text.contains("****"), "{text}");
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                if path.file_name().is_some_and(|n| n == ".pyfunc-env") {
                    out.extend(fs_err::read_dir(&path).unwrap().flatten().map(|e| e.path()));
                } else if path.parent() == Some(dir.as_path()) && dir.ends_with("envs-v1") {
                    stack.push(path);
                }
            }
        }
    }
    out
}

/// `--offline` with uv's cache empty is not the model's fault: the hint says to run online
/// once, not to "fix the requirement" (issue 15 item 9).
#[test]
fn offline_with_packages_missing_from_uv_cache_says_to_run_online() {
    let ctx = TestContext::new();
    let empty_uv_cache = ctx.path().join("empty-uv-cache");
    let ctx = ctx.env(
        "PYFUNC_ENV_UV_CACHE_DIR",
        empty_uv_cache.display().to_string(),
    );
    let model = ctx.model(
        "m",
        &[(
            "conda.yaml",
            "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- pip\n- pip:\n  - six==1.16.0\n",
        )],
    );
    let output = create_command(&ctx, &model).output().unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        text.contains("hint: `--offline` and uv's cache lacks these packages; run the same command once without `--offline` to download them"),
        "{text}"
    );
    assert!(!text.contains("fix the requirement"), "{text}");
}

/// A full disk under uv is something broken (exit 2) with a hint about space, not about the
/// model's requirements (issue 15 item 9).
#[test]
fn disk_full_under_uv_blames_the_disk_not_the_model() {
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let ctx = TestContext::new();
    let small = ctx.path().join("small-uv-cache");
    fs_err::create_dir_all(&small).unwrap();
    // 64 kB: uv can initialise its cache there, but not unpack a wheel into it.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&small)
        .status();
    assert!(
        mounted.is_ok_and(|s| s.success()),
        "cannot mount a tmpfs at {}: this test needs root (CAP_SYS_ADMIN)",
        small.display()
    );
    let _unmount = Unmount(small.clone());
    let ctx = ctx.env("PYFUNC_ENV_UV_CACHE_DIR", small.display().to_string());
    let model = model(&ctx, "m", false);
    let output = create_command(&ctx, &model).output().unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    // uv wraps its message; the errno is on one line.
    assert!(text.contains("(os error 28)"), "{text}");
    assert!(
        text.contains("hint: The disk holding the cache is full; free space there or move the cache (`--cache-dir`, `PYFUNC_ENV_CACHE_DIR`) and run again"),
        "{text}"
    );
    assert!(!text.contains("fix the requirement"), "{text}");
}
