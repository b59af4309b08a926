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

/// A tmpfs of `size` mounted at `dir` until dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Self {
        fs_err::create_dir_all(&dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status();
        // Mounting needs root (CI and these machines have it); say so rather than pass silently.
        assert!(
            mounted.is_ok_and(|s| s.success()),
            "cannot mount a tmpfs at {}: this test needs root (CAP_SYS_ADMIN)",
            dir.display()
        );
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_gives_a_clear_error_and_leaves_nothing_complete() {
    let ctx = TestContext::new();
    // A 12 MB tmpfs: the package cache fills it while extracting python (30 MB).
    let tmpfs = Tmpfs::mount(ctx.path().join("small"), "12m");
    let small = &tmpfs.0;
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

/// A local sdist whose in-tree build backend sleeps for a minute the first time it builds
/// (while `flag` exists), writing its pid to `started` first; later builds are immediate. Its
/// wheel has 200 modules, so an orphaned install writes many files.
fn slow_sdist(dir: &Path, flag: &Path, started: &Path) -> PathBuf {
    let source = dir.join("src/slowpkg-0.1");
    fs_err::create_dir_all(&source).unwrap();
    fs_err::write(
        source.join("pyproject.toml"),
        "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n",
    )
    .unwrap();
    fs_err::write(
        source.join("PKG-INFO"),
        "Metadata-Version: 2.1\nName: slowpkg\nVersion: 0.1\n",
    )
    .unwrap();
    let backend = format!(
        r#"import os, time
FLAG = {flag:?}
STARTED = {started:?}

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    if os.path.exists(FLAG):
        os.remove(FLAG)
        with open(STARTED, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)
    files = {{"slowpkg/m%d.py" % i: "X = %d\n" % i for i in range(200)}}
    files["slowpkg/__init__.py"] = "X = 1\n"
    return write_wheel(wheel_directory, "slowpkg", "0.1", files)
{write_wheel}"#,
        flag = flag.display().to_string(),
        started = started.display().to_string(),
        write_wheel = crate::common::WRITE_WHEEL_PY,
    );
    fs_err::write(source.join("backend.py"), backend).unwrap();
    let links = dir.join("links");
    fs_err::create_dir_all(&links).unwrap();
    let status = Command::new("tar")
        .arg("-czf")
        .arg(links.join("slowpkg-0.1.tar.gz"))
        .arg("-C")
        .arg(dir.join("src"))
        .arg("slowpkg-0.1")
        .status()
        .unwrap();
    assert!(status.success());
    links
}

/// Live (not zombie) processes whose environment holds `marker`: every descendant of a
/// process started with it, re-parented or not.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs_err::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(environ) = fs_err::read(entry.path().join("environ")) else {
            continue;
        };
        if !String::from_utf8_lossy(&environ).contains(marker) {
            continue;
        }
        let stat = fs_err::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
        if state == Some("Z") || state.is_none() {
            continue;
        }
        let cmdline = fs_err::read(entry.path().join("cmdline")).unwrap_or_default();
        found.push(format!(
            "{name}: {}",
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        ));
    }
    found
}

/// Every path under `prefix` (outside our own `.pyfunc-env/`) modified after `marker`.
fn newer_than(prefix: &Path, marker: std::time::SystemTime) -> Vec<PathBuf> {
    let mut newer = Vec::new();
    let mut stack = vec![prefix.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == ".pyfunc-env") {
                continue;
            }
            let metadata = path.symlink_metadata().unwrap();
            if metadata.modified().unwrap() > marker {
                newer.push(path.clone());
            }
            if metadata.is_dir() {
                stack.push(path);
            }
        }
    }
    newer
}

#[test]
fn a_killed_build_leaves_no_children_and_nothing_written_after_complete() {
    let ctx = TestContext::new();
    let wheels = env_test::wheel_dir().unwrap();
    let flag = ctx.path().join("slow-once");
    let started = ctx.path().join("started");
    let links = slow_sdist(&ctx.path().join("sdist"), &flag, &started);
    // A virtualenv: uv locks a venv through a file inside it, which the rebuild wipes, so
    // nothing but pyfunc-env stops the killed build's uv from installing into the new one.
    // (Into a conda prefix, uv's lock lives in the temporary directory, keyed by the path, and
    // serialises the two installs by accident.)
    let model = ctx.model(
        "slow",
        &[(
            "python_env.yaml",
            &format!(
                "python: \"3.11.7\"\nbuild_dependencies: []\ndependencies:\n- --no-index\n- --find-links file://{}\n- --find-links file://{}\n- slowpkg==0.1\n",
                wheels.display(),
                links.display()
            ),
        )],
    );
    let create = || {
        let mut command = ctx.command();
        command
            .arg("create")
            .arg(&model)
            .args(["--python-source", "system", "--json"]);
        command
    };
    for (round, signal) in ["KILL", "INT", "TERM"].into_iter().enumerate() {
        let wipe = ctx
            .command()
            .args(["cache", "prune", "--max-size", "0"])
            .output()
            .unwrap();
        assert!(wipe.status.success(), "{}", describe(&wipe));
        fs_err::write(&flag, "").unwrap();
        let _ = fs_err::remove_file(&started);
        // Each build gets its own uv cache: with a shared one the second build would wait for
        // the first one's uv cache lock, hiding whether its processes were stopped.
        let marker = format!("PFE_KILL_TEST_{}_{round}", std::process::id());
        let mut first = create()
            .env(&marker, "1")
            .env(
                "PYFUNC_ENV_UV_CACHE_DIR",
                ctx.path().join(format!("uv-cache-{round}-a")),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let waiting = Instant::now();
        while !started.exists() {
            assert!(
                waiting.elapsed() < std::time::Duration::from_secs(120),
                "the slow build never started"
            );
            if let Some(status) = first.try_wait().unwrap() {
                let output = first.wait_with_output().unwrap();
                panic!(
                    "create ended before building: {status}\n{}",
                    stderr(&output)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let killed = Command::new("kill")
            .args(["-s", signal, &first.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = first.wait().unwrap();
        assert!(!status.success(), "SIG{signal}: create was not stopped");

        let second = json(
            &create()
                .env(
                    "PYFUNC_ENV_UV_CACHE_DIR",
                    ctx.path().join(format!("uv-cache-{round}-b")),
                )
                .output()
                .unwrap(),
        );
        assert_eq!(second["cache_hit"], false, "SIG{signal}");
        let survivors = processes_with(&marker);
        assert!(
            survivors.is_empty(),
            "SIG{signal}: processes of the killed build still run after the rebuild:\n{}",
            survivors.join("\n")
        );
        let prefix = PathBuf::from(second["prefix"].as_str().unwrap());
        let complete = fs_err::metadata(prefix.join(".pyfunc-env/complete"))
            .unwrap()
            .modified()
            .unwrap();
        let newer = newer_than(&prefix, complete);
        assert!(
            newer.is_empty(),
            "SIG{signal}: {} files changed after the environment was complete: {:?}",
            newer.len(),
            &newer[..newer.len().min(5)]
        );
        let output = Command::new(prefix.join("bin/python"))
            .args(["-c", "import slowpkg.m199"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", describe(&output));
    }
}

#[test]
fn a_busy_environment_times_out_naming_the_model_that_uses_it() {
    let ctx = TestContext::new();
    let model = model(&ctx, "m", false);
    let created = json(&create_command(&ctx, &model).output().unwrap());
    let channel = env_test::test_channel().unwrap();
    // A running model holds its environment's lock (shared) for as long as it runs.
    let mut running = ctx
        .command()
        .arg("run")
        .arg(&model)
        .args(["--env-manager", "conda"])
        .args(mirror_args(channel.file_url().as_str()))
        .args(["--", "python", "-c", "import time; time.sleep(120)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = ctx
        .cache_dir
        .join("envs-v1")
        .join(format!("{}.lock", created["key"].as_str().unwrap()));
    let start = Instant::now();
    // Wait until the model process (same pid: `run` execs it) holds the lock.
    loop {
        let holds = fs_err::read_dir(format!("/proc/{}/fd", running.id()))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| fs_err::read_link(fd.path()).is_ok_and(|target| target == lock));
        if holds {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the model never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut reinstall = create_command(&ctx, &model)
        .arg("--reinstall")
        .env("PYFUNC_ENV_LOCK_TIMEOUT", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while reinstall.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = reinstall.kill();
            let _ = running.kill();
            panic!(
                "`create --reinstall` waited past PYFUNC_ENV_LOCK_TIMEOUT=2 for a running model"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = reinstall.wait_with_output().unwrap();
    let _ = running.kill();
    let _ = running.wait();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let text = stderr(&output);
    let pid = format!("pid {}", running.id());
    assert!(text.contains("Timed out after 2 s"), "{text}");
    // While waiting, and in the error: who holds it, and what to do.
    assert!(
        text.contains("Waiting: environment") && text.contains("in use by a process running in it"),
        "{text}"
    );
    assert!(text.matches(&pid).count() >= 2, "{text}");
    assert!(text.contains("PYFUNC_ENV_LOCK_TIMEOUT"), "{text}");
    assert!(!text.contains("another process is building"), "{text}");
}

/// Mounts `dir` read-only over itself until dropped.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(dir: &Path) -> Self {
        let bind = Command::new("mount")
            .arg("--bind")
            .arg(dir)
            .arg(dir)
            .status();
        assert!(
            bind.is_ok_and(|s| s.success()),
            "cannot bind-mount {}: this test needs root (CAP_SYS_ADMIN)",
            dir.display()
        );
        let guard = Self(dir.to_path_buf());
        let remount = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            remount.success(),
            "cannot remount {} read-only",
            dir.display()
        );
        guard
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_cache_serves_run_list_verify_deps_and_inspect() {
    let ctx = TestContext::new();
    let model = model(&ctx, "m", false);
    let created = json(&create_command(&ctx, &model).output().unwrap());
    let channel = env_test::test_channel().unwrap();
    let _read_only = ReadOnly::mount(&ctx.cache_dir);
    // Really read-only, even for root.
    let probe = fs_err::write(ctx.cache_dir.join("probe"), "x").unwrap_err();
    assert_eq!(probe.kind(), std::io::ErrorKind::ReadOnlyFilesystem);

    let run = ctx
        .command()
        .arg("run")
        .arg(&model)
        .args(["--env-manager", "conda"])
        .args(mirror_args(channel.file_url().as_str()))
        .args(["--", "python", "-c", "import tinypkg, wheel; print('ok')"])
        .output()
        .unwrap();
    assert!(run.status.success(), "run: {}", describe(&run));
    assert_eq!(stdout(&run).trim(), "ok");
    let key = created["key"].as_str().unwrap();
    for args in [
        vec!["cache", "list"],
        vec!["cache", "list", "--json"],
        vec!["cache", "verify"],
        vec!["cache", "verify", key, "--hash"],
        vec!["deps"],
        vec!["inspect"],
    ] {
        let mut command = ctx.command();
        command.args(&args[..1]);
        if args[0] != "cache" {
            command.arg(&model);
        }
        command.args(&args[1..]);
        let output = command.output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", describe(&output));
    }
    let list = stdout(&ctx.command().args(["cache", "list"]).output().unwrap());
    assert!(list.contains(key), "{list}");

    // A command that must write says the cache is read-only, and what to do.
    let output = create_command(&ctx, &model)
        .arg("--reinstall")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let text = stderr(&output);
    assert!(text.contains("is read-only"), "{text}");
    assert!(text.contains("--cache-dir"), "{text}");
}

#[test]
fn verify_reports_a_missing_interpreter_and_an_environment_being_built() {
    let ctx = TestContext::new();
    let wheels = env_test::wheel_dir().unwrap();
    let model = ctx.model(
        "venv",
        &[(
            "python_env.yaml",
            &format!(
                "python: \"3.11.7\"\nbuild_dependencies: []\ndependencies:\n- --no-index\n- --find-links file://{}\n- wheel==0.45.1\n",
                wheels.display()
            ),
        )],
    );
    let created = json(
        &ctx.command()
            .arg("create")
            .arg(&model)
            .args(["--python-source", "system", "--no-compile", "--json"])
            .output()
            .unwrap(),
    );
    let prefix = PathBuf::from(created["prefix"].as_str().unwrap());
    let key = created["key"].as_str().unwrap();
    fs_err::remove_file(prefix.join("bin/python")).unwrap();
    let output = ctx.command().args(["cache", "verify"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stdout(&output);
    assert!(text.contains("missing bin/python"), "{text}");
    assert!(text.contains("--reinstall"), "{text}");

    // While a build holds the environment's lock, verify says it skipped it.
    let lock = fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .open(ctx.cache_dir.join("envs-v1").join(format!("{key}.lock")))
        .unwrap();
    lock.file().lock().unwrap();
    for args in [vec!["cache", "verify"], vec!["cache", "verify", key]] {
        let output = ctx.command().args(&args).output().unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        let text = stdout(&output);
        assert!(
            text.contains(&format!("skipped {key}: being built by another process")),
            "{args:?}: {text}"
        );
    }
}

/// Every path under `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in fs_err::read_dir(&current).unwrap().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn local_packages_are_keyed_by_content_and_never_built_in_the_model_directory() {
    let ctx = TestContext::new();
    let wheels = env_test::wheel_dir().unwrap();
    let make = |name: &str, x: u32| {
        ctx.model(
            name,
            &[
                (
                    "conda.yaml",
                    &format!(
                        "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- pip\n- pip:\n  - --no-index\n  - --find-links file://{}\n  - -e ./mypkg\n",
                        wheels.display()
                    ),
                ),
                (
                    "mypkg/pyproject.toml",
                    "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = \"mypkg\"\nversion = \"0.1\"\n",
                ),
                ("mypkg/mypkg/__init__.py", &format!("X = {x}\n")),
            ],
        )
    };
    let a = make("a", 2);
    let b = make("b", 3);
    let before = listing(&a);
    let output = create_command(&ctx, &a).output().unwrap();
    let created_a = json(&output);
    assert!(
        stderr(&output).contains("is installed as a regular (non-editable) package"),
        "{}",
        describe(&output)
    );
    let created_b = json(&create_command(&ctx, &b).output().unwrap());
    assert_ne!(
        created_a["key"], created_b["key"],
        "two copies of a model with different local source share an environment"
    );
    assert_eq!(listing(&a), before, "create wrote into the model directory");
    // The environments hold their own copies: deleting the model directory breaks nothing.
    fs_err::remove_dir_all(&a).unwrap();
    for (created, x) in [(&created_a, "2"), (&created_b, "3")] {
        let output = Command::new(created["python"].as_str().unwrap())
            .args(["-c", "import mypkg; print(mypkg.X)"])
            .current_dir(ctx.path())
            .output()
            .unwrap();
        assert_eq!(stdout(&output).trim(), x, "{}", describe(&output));
    }
}

#[test]
fn a_moved_or_restored_cache_is_rebuilt_not_used_with_broken_scripts() {
    let ctx = TestContext::new();
    let model = model(&ctx, "m", false);
    let created = json(&create_command(&ctx, &model).output().unwrap());
    let key = created["key"].as_str().unwrap();
    // Restored elsewhere while the original still exists (a backup, an image layer).
    let copy = ctx.path().join("restored-cache");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&ctx.cache_dir)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let output = create_command(&ctx, &model)
        .env("PYFUNC_ENV_CACHE_DIR", &copy)
        .output()
        .unwrap();
    let moved = json(&output);
    assert_eq!(
        moved["cache_hit"], false,
        "a moved environment was used: its scripts name the old path"
    );
    let prefix = copy.join("envs-v1").join(key);
    assert_eq!(moved["prefix"].as_str().unwrap(), prefix.to_str().unwrap());
    // Its console scripts run its own Python.
    let script = fs_err::read_to_string(prefix.join("bin/wheel")).unwrap();
    assert!(
        script
            .lines()
            .take(3)
            .any(|line| line.contains(&prefix.display().to_string())),
        "{script}"
    );
    let output = Command::new(prefix.join("bin/wheel"))
        .arg("version")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    // The original is still complete where it was built.
    let again = json(&create_command(&ctx, &model).output().unwrap());
    assert_eq!(again["cache_hit"], true);
}

/// Live background bytecode compilers working on `cache`.
fn compilers(cache: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs_err::read_dir("/proc").unwrap().flatten() {
        let cmdline = fs_err::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = fs_err::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_none_or(|(_, rest)| rest.starts_with('Z'));
        if !zombie
            && cmdline.contains("__compile-bytecode")
            && cmdline.contains(&cache.display().to_string())
        {
            found.push(cmdline);
        }
    }
    found
}

#[test]
fn the_background_compiler_is_announced_stopped_by_clean_and_optional() {
    let ctx = TestContext::new();
    let model = model(&ctx, "m", true);
    let channel = env_test::test_channel().unwrap();
    let run = |extra: &[&str]| {
        let mut command = ctx.command();
        command
            .arg("-v")
            .arg("run")
            .arg(&model)
            .args(["--env-manager", "conda"])
            .args(mirror_args(channel.file_url().as_str()))
            .args(extra)
            .args(["--", "python", "-c", "pass"]);
        command.output().unwrap()
    };
    // On a miss, `-v` says the compiler was started, and how to avoid it.
    let output = run(&[]);
    assert!(output.status.success(), "{}", describe(&output));
    let text = stderr(&output);
    assert!(
        text.contains("Compiling bytecode in the background at low priority (pid ")
            && text.contains("--compile-foreground"),
        "{text}"
    );
    // `cache clean` stops it rather than racing or waiting for it.
    let clean = ctx.command().args(["cache", "clean"]).output().unwrap();
    assert!(clean.status.success(), "{}", describe(&clean));
    assert!(compilers(&ctx.cache_dir).is_empty());

    // `--compile-foreground`: the bytecode is there when the command starts, nothing runs after.
    let output = run(&["--compile-foreground"]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        !stderr(&output).contains("in the background"),
        "{}",
        describe(&output)
    );
    assert!(compilers(&ctx.cache_dir).is_empty());
    let created = json(&create_command(&ctx, &model).output().unwrap());
    let pyc = PathBuf::from(created["prefix"].as_str().unwrap())
        .join("lib/python3.11/site-packages/numpy/__pycache__/__init__.cpython-311.pyc");
    assert!(pyc.is_file(), "{} missing", pyc.display());
}

#[test]
fn a_local_wheel_and_a_direct_url_are_locked_with_their_hashes() {
    // The direct URL is served on 127.0.0.1; nothing else is fetched.
    let ctx = TestContext::new().env("PYFUNC_ENV_OFFLINE", "0");
    let wheels = env_test::wheel_dir().unwrap();
    let server = env_test::ChannelServer::start(wheels).unwrap();
    let pinned = |name: &str| {
        env_test::PINNED_WHEELS
            .iter()
            .find(|w| w.name == name)
            .unwrap()
    };
    let (wheel, setuptools) = (pinned("wheel"), pinned("setuptools"));
    let model = ctx.model(
        "m",
        &[(
            "conda.yaml",
            &format!(
                "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- pip\n- pip:\n  - --no-index\n  - ./dist/{}\n  - setuptools @ {}{}\n",
                wheel.file_name,
                server.url(),
                setuptools.file_name
            ),
        )],
    );
    fs_err::create_dir_all(model.join("dist")).unwrap();
    fs_err::copy(
        wheels.join(wheel.file_name),
        model.join("dist").join(wheel.file_name),
    )
    .unwrap();
    let lock = ctx.path().join("model.lock");
    let output = create_command(&ctx, &model)
        .arg("--no-lock")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let mut command = ctx.command();
    command
        .arg("lock")
        .arg(&model)
        .args(["--env-manager", "conda", "-o"])
        .arg(&lock)
        .args(mirror_args(
            env_test::test_channel().unwrap().file_url().as_str(),
        ));
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let text = fs_err::read_to_string(&lock).unwrap();
    for needle in [
        wheel.file_name,
        wheel.sha256,
        setuptools.file_name,
        setuptools.sha256,
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    // And it installs elsewhere, every hash checked.
    let locked = json(
        &create_command(&ctx, &model)
            .arg("--locked")
            .arg(&lock)
            .arg("--cache-dir")
            .arg(ctx.path().join("elsewhere"))
            .output()
            .unwrap(),
    );
    let output = Command::new(locked["python"].as_str().unwrap())
        .args(["-c", "import wheel, setuptools"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
}

#[test]
fn a_damaged_environment_points_to_verify_and_reinstall() {
    let ctx = TestContext::new();
    let model = model(&ctx, "m", false);
    let created = json(&create_command(&ctx, &model).output().unwrap());
    let prefix = PathBuf::from(created["prefix"].as_str().unwrap());
    let channel = env_test::test_channel().unwrap();
    let run = |args: &[&str]| {
        ctx.command()
            .arg("run")
            .arg(&model)
            .args(["--env-manager", "conda"])
            .args(mirror_args(channel.file_url().as_str()))
            .arg("--")
            .args(args)
            .output()
            .unwrap()
    };
    // mlflow is installed (its dist-info is there) but its files are gone.
    let dist_info = prefix.join("lib/python3.11/site-packages/mlflow-3.17.2.dist-info");
    fs_err::create_dir_all(&dist_info).unwrap();
    fs_err::write(
        dist_info.join("METADATA"),
        "Metadata-Version: 2.1\nName: mlflow\nVersion: 3.17.2\n",
    )
    .unwrap();
    let input = ctx.path().join("input.json");
    fs_err::write(&input, "{}").unwrap();
    let output = run(&["predict", "-i", input.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(
        text.contains("cache verify") && text.contains("--reinstall"),
        "{text}"
    );
    assert!(!text.contains("--install-mlflow"), "{text}");

    // No interpreter at all.
    fs_err::remove_file(prefix.join("bin/python")).unwrap();
    let output = run(&["python", "-c", "pass"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(
        text.contains("is missing: the environment is damaged"),
        "{text}"
    );
    assert!(
        text.contains("cache verify") && text.contains("--reinstall"),
        "{text}"
    );
    assert!(!text.contains("Check the command name"), "{text}");
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
    let ctx = TestContext::new();
    // 64 kB: uv can initialise its cache there, but not unpack a wheel into it.
    let small = Tmpfs::mount(ctx.path().join("small-uv-cache"), "64k");
    let ctx = ctx.env("PYFUNC_ENV_UV_CACHE_DIR", small.0.display().to_string());
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

/// The shared bytecode store's lock is a lock wait like any other: `PYFUNC_ENV_LOCK_TIMEOUT`
/// bounds it and the error names the holder (issue 15 item 6; it used to wait forever).
#[test]
fn a_busy_bytecode_store_times_out_naming_its_holder() {
    let ctx = TestContext::new();
    let model = model(&ctx, "m", false);
    let store = ctx.cache_dir.join("pyc-v1");
    fs_err::create_dir_all(&store).unwrap();
    let python = env_test::pyenv_root()
        .unwrap()
        .join("versions/3.11.7/bin/python3.11");
    // Another process holds the store, as a long compile would.
    let mut holder = Command::new(&python)
        .args([
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)",
        ])
        .arg(store.join(".lock"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "held\n");
    let start = Instant::now();
    let output = create_command(&ctx, &model)
        .env("PYFUNC_ENV_LOCK_TIMEOUT", "2")
        .output()
        .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        start.elapsed() < std::time::Duration::from_secs(60),
        "waited past the timeout"
    );
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let text = stderr(&output);
    assert!(text.contains("Timed out after 2 s"), "{text}");
    assert!(text.contains("pyc-v1"), "{text}");
    assert!(text.contains(&format!("pid {}", holder.id())), "{text}");
}

/// The background compiler starts only for a command that starts: a `run -- serve` refused
/// for want of mlflow starts none (issue 23: it used to start before the checks).
#[test]
fn a_refused_run_starts_no_background_compiler() {
    let ctx = TestContext::new();
    let model = model(&ctx, "m", false);
    let channel = env_test::test_channel().unwrap();
    let output = ctx
        .command()
        .arg("-v")
        .arg("run")
        .arg(&model)
        .args(["--env-manager", "conda"])
        .args(mirror_args(channel.file_url().as_str()))
        .args(["--", "serve"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(text.contains("mlflow is not installed"), "{text}");
    assert!(!text.contains("in the background"), "{text}");
}

/// The uid of this process (tests that switch users need root).
fn uid() -> String {
    let output = Command::new("id").arg("-u").output().unwrap();
    stdout(&output).trim().to_string()
}

/// A cache built by root (an image baked as root) serves another user: every file the build
/// writes has the umask's mode like any tool's output, not tempfile's owner-only 0600, which
/// made every environment look incomplete to other users (issue 23).
#[test]
fn a_cache_built_by_root_serves_another_user() {
    // Switching users needs root (CI and these machines have it); say so rather than pass.
    assert_eq!(
        uid(),
        "0",
        "this test needs root to run commands as another user"
    );
    let ctx = TestContext::new();
    let model = model(&ctx, "m", false);
    let created = json(&create_command(&ctx, &model).output().unwrap());
    let key = created["key"].as_str().unwrap();
    let deps = ctx.path().join("deps.txt");
    let output = ctx
        .command()
        .arg("deps")
        .arg(&model)
        .arg("-o")
        .arg(&deps)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    // The test's own directory is the user's (0700): open it to the other user.
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs_err::set_permissions(ctx.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let prefix = PathBuf::from(created["prefix"].as_str().unwrap());
        for file in [
            prefix.join(".pyfunc-env/complete"),
            prefix.join(".pyfunc-env/metadata.json"),
            deps,
        ] {
            let mode = fs_err::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o044, 0o044, "{} is {mode:o}", file.display());
        }
    }
    let channel = env_test::test_channel().unwrap();
    let as_other = |args: &[&str]| {
        let mut command = ctx.command_for(Path::new("/usr/bin/setpriv"));
        command
            .args(["--reuid", "4242", "--regid", "4242", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_pyfunc-env"))
            .args(args);
        command.output().unwrap()
    };
    let mirrors = mirror_args(channel.file_url().as_str());
    let mut run = vec!["run", model.to_str().unwrap(), "--env-manager", "conda"];
    run.extend(mirrors.iter().map(String::as_str));
    run.extend(["--", "python", "-c", "import tinypkg, wheel; print('ok')"]);
    let output = as_other(&run);
    assert!(output.status.success(), "run: {}", describe(&output));
    assert_eq!(stdout(&output).trim(), "ok");
    let output = as_other(&["cache", "verify", key]);
    assert!(output.status.success(), "verify: {}", describe(&output));
}

/// Whether `pid` runs (a zombie does not).
fn running(pid: &str) -> bool {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with('Z'))
}

/// `kill -9` of `create` while uv builds a local sdist takes the build backend uv started
/// with it, not only uv (issue 23: `PR_SET_PDEATHSIG` reached uv, and the backend ran on).
/// Nothing else runs meanwhile: no later build stops it for us.
#[test]
fn sigkill_of_create_takes_the_build_backend_with_it() {
    let ctx = TestContext::new();
    let wheels = env_test::wheel_dir().unwrap();
    let flag = ctx.path().join("slow-once");
    let started = ctx.path().join("started");
    let links = slow_sdist(&ctx.path().join("sdist"), &flag, &started);
    let model = ctx.model(
        "slow",
        &[(
            "python_env.yaml",
            &format!(
                "python: \"3.11.7\"\nbuild_dependencies: []\ndependencies:\n- --no-index\n- --find-links file://{}\n- --find-links file://{}\n- slowpkg==0.1\n",
                wheels.display(),
                links.display()
            ),
        )],
    );
    fs_err::write(&flag, "").unwrap();
    let mut create = ctx
        .command()
        .arg("create")
        .arg(&model)
        .args(["--python-source", "system"])
        .env(
            "PYFUNC_ENV_UV_CACHE_DIR",
            ctx.path().join("uv-cache-sigkill"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let waiting = Instant::now();
    let backend = loop {
        if let Ok(pid) = fs_err::read_to_string(&started)
            && !pid.is_empty()
        {
            break pid;
        }
        assert!(
            waiting.elapsed() < std::time::Duration::from_secs(120),
            "the slow build never started"
        );
        assert!(create.try_wait().unwrap().is_none(), "create ended early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(running(&backend));
    create.kill().unwrap();
    create.wait().unwrap();
    // The backend sleeps for 60 s: gone well before that means it was killed.
    let killed = Instant::now();
    while running(&backend) && killed.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        !running(&backend),
        "the build backend (pid {backend}) outlived the killed create"
    );
}
