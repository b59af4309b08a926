//! `create`: conda-mode environments from a real local channel, the cache protocol, errors.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{TestContext, describe, json, mirror_args, stderr};

/// A conda-mode model: python, a compiled conda package, noarch packages with an entry point,
/// and a pip section installed offline from real PyPI wheels.
fn conda_model(ctx: &TestContext, name: &str, extra_conda: &str, pip: &str) -> std::path::PathBuf {
    let wheels = env_test::wheel_dir().unwrap();
    let conda = format!(
        "name: test\nchannels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- numpy=1.26\n- tinypkg\n- pip\n{extra_conda}- pip:\n  - --no-index\n  - --find-links file://{}\n{pip}",
        wheels.display()
    );
    ctx.model(name, &[("conda.yaml", &conda)])
}

/// `create MODEL --env-manager conda --json`, without channel mirrors.
fn create_command(ctx: &TestContext, model: &std::path::Path) -> Command {
    let mut command = ctx.command();
    command
        .arg("create")
        .arg(model)
        .args(["--env-manager", "conda", "--json"]);
    command
}

fn create(
    ctx: &TestContext,
    model: &std::path::Path,
    channel: &str,
    extra: &[&str],
) -> std::process::Output {
    create_command(ctx, model)
        .args(mirror_args(channel))
        .args(extra)
        .output()
        .unwrap()
}

/// An environment's `.pyfunc-env/metadata.json`.
fn metadata(prefix: &str) -> serde_json::Value {
    serde_json::from_slice(&fs_err::read(format!("{prefix}/.pyfunc-env/metadata.json")).unwrap())
        .unwrap()
}

fn python_says(prefix: &str, code: &str) -> String {
    let output = Command::new(format!("{prefix}/bin/python"))
        .args(["-c", code])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[test]
fn conda_environment_over_http_then_cache_hit() {
    // Online (the channel is on 127.0.0.1); the pip section is `--no-index` with local wheels.
    let ctx = TestContext::new().env("PYFUNC_ENV_OFFLINE", "0");
    let channel = env_test::test_channel().unwrap();
    let server = channel.serve().unwrap();
    let model = conda_model(&ctx, "m", "", "  - wheel==0.45.1\n");
    let first = json(&create(&ctx, &model, server.url().as_str(), &[]));
    assert_eq!(first["cache_hit"], false);
    let prefix = first["prefix"].as_str().unwrap().to_string();
    assert!(prefix.starts_with(&ctx.cache_dir.join("envs-v1").display().to_string()));
    // The conda packages (a compiled one and noarch ones) and the pip package all work.
    assert_eq!(
        python_says(
            &prefix,
            "import sys, numpy, tinypkg, wheel; print(sys.version.split()[0], numpy.__version__, wheel.__version__, sys.prefix)"
        ),
        format!("3.11.7 1.26.4 0.45.1 {prefix}")
    );
    let hello = Command::new(format!("{prefix}/bin/tinypkg-hello"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&hello.stdout).trim(),
        "tinypkg 1.2.0 says 42"
    );
    // Bytecode was compiled into the environment.
    assert!(
        std::path::Path::new(&prefix)
            .join("lib/python3.11/site-packages/wheel/__pycache__")
            .is_dir()
    );
    // The metadata records what was solved and installed.
    let metadata = metadata(&prefix);
    let conda: Vec<&str> = metadata["conda_packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["python", "numpy", "tinypkg", "tinydep", "pip"] {
        assert!(conda.contains(&name), "{conda:?}");
    }
    assert!(
        metadata["pip_packages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "wheel" && p["installer"] == "uv")
    );
    let served = server.requests().len();
    assert!(served > 0, "nothing was fetched over HTTP");

    // The second create neither solves nor installs: a cache hit that touches no channel.
    let second = json(&create(&ctx, &model, server.url().as_str(), &[]));
    assert_eq!(second["cache_hit"], true);
    assert_eq!(second["key"], first["key"]);
    assert_eq!(second["timings"]["solve"], 0.0);
    assert_eq!(
        server.requests().len(),
        served,
        "a cache hit fetched from the channel"
    );
}

#[test]
fn conda_environment_from_a_file_channel() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let model = conda_model(&ctx, "m", "", "");
    let result = json(&create(&ctx, &model, channel.file_url().as_str(), &[]));
    let prefix = result["prefix"].as_str().unwrap();
    assert_eq!(
        python_says(prefix, "import tinypkg, numpy; print(numpy.__version__)"),
        "1.26.4"
    );
}

#[test]
fn a_killed_build_is_rebuilt_and_never_reported_as_a_hit() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let model = conda_model(&ctx, "m", "", "  - wheel==0.45.1\n");
    let mut command = ctx.command();
    command
        .arg("create")
        .arg(&model)
        .args(["--env-manager", "conda", "--json"])
        .args(mirror_args(channel.file_url().as_str()));
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it while it installs: once the environment directory has content.
    let envs = ctx.cache_dir.join("envs-v1");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let installing = fs_err::read_dir(&envs)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().is_dir() && e.path().join("conda-meta").is_dir());
        if installing || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The leftover directory has no fingerprint.
    let leftovers: Vec<_> = fs_err::read_dir(&envs)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(leftovers.len(), 1);
    assert!(!leftovers[0].path().join(".pyfunc-env/complete").exists());

    let result = json(&create(&ctx, &model, channel.file_url().as_str(), &[]));
    assert_eq!(
        result["cache_hit"], false,
        "an incomplete environment was reused"
    );
    let prefix = result["prefix"].as_str().unwrap();
    assert_eq!(
        python_says(prefix, "import numpy, tinypkg, wheel; print('ok')"),
        "ok"
    );
}

#[test]
fn concurrent_creates_build_once() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let model = conda_model(&ctx, "m", "", "");
    let spawn = || {
        let mut command = ctx.command();
        command
            .arg("create")
            .arg(&model)
            .args(["--env-manager", "conda", "--json"])
            .args(mirror_args(channel.file_url().as_str()));
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = (0..2).map(|_| spawn()).collect();
    let results: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| json(&c.wait_with_output().unwrap()))
        .collect();
    let built = results
        .iter()
        .filter(|r| r["cache_hit"] == false && r["built_by_other"] == false)
        .count();
    assert_eq!(built, 1, "{results:#?}");
    assert_eq!(results[0]["prefix"], results[1]["prefix"]);
}

#[test]
fn unsatisfiable_specs_explain_the_conflict() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let model = ctx.model(
        "m",
        &[(
            "conda.yaml",
            "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- tinypkg=2\n",
        )],
    );
    let output = create(&ctx, &model, channel.file_url().as_str(), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(text.contains("cannot be installed together"), "{text}");
    assert!(
        text.contains("tinydep"),
        "resolvo's explanation names the missing dependency: {text}"
    );
    assert!(
        !ctx.cache_dir
            .join("envs-v1")
            .read_dir()
            .unwrap()
            .flatten()
            .any(|e| e.path().is_dir()),
        "a failed build left a directory"
    );
}

#[test]
fn a_package_no_channel_has_is_named() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let model = ctx.model(
        "m",
        &[(
            "conda.yaml",
            "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- nosuchpackage>=1\n",
        )],
    );
    let output = create(&ctx, &model, channel.file_url().as_str(), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(
        text.contains("No channel has a package for `nosuchpackage >=1`"),
        "{text}"
    );
    assert!(
        text.contains(channel.file_url().as_str().trim_end_matches('/')),
        "{text}"
    );
}

#[test]
fn an_unreachable_channel_is_named_with_its_secret_redacted() {
    let ctx = TestContext::new().env("PYFUNC_ENV_OFFLINE", "0");
    let model = ctx.model(
        "m",
        &[(
            "conda.yaml",
            "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n",
        )],
    );
    // Nothing listens on port 9 of localhost.
    let output = create(
        &ctx,
        &model,
        "http://alice:s3cr3t-t0ken@127.0.0.1:9/conda-forge",
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let text = describe(&output);
    assert!(
        text.contains("http://alice:****@127.0.0.1:9/conda-forge"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t-t0ken"), "{text}");
    assert!(
        text.contains("--mirror"),
        "the hint mentions mirrors: {text}"
    );
}

#[test]
fn offline_with_nothing_cached_says_so() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let server = channel.serve().unwrap();
    let model = ctx.model(
        "m",
        &[(
            "conda.yaml",
            "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n",
        )],
    );
    let output = create(&ctx, &model, server.url().as_str(), &["--offline"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        stderr(&output).contains("`--offline` but the package lists"),
        "{}",
        describe(&output)
    );
    assert!(
        server.requests().is_empty(),
        "offline mode touched the network"
    );
}

#[test]
fn a_pip_failure_shows_uvs_message() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let model = conda_model(&ctx, "m", "", "  - nosuchdist==1.0\n");
    let output = create(&ctx, &model, channel.file_url().as_str(), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(
        text.contains("Failed to install the pip requirements with uv"),
        "{text}"
    );
    assert!(
        text.contains("nosuchdist"),
        "uv's own message is shown: {text}"
    );
}

#[test]
fn many_models_are_built_deduplicated_in_parallel_and_summarised() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let a = ctx.model(
        "a",
        &[(
            "conda.yaml",
            "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- tinypkg\n",
        )],
    );
    // Same environment as `a`, written differently: one build for both.
    let b = ctx.model(
        "b",
        &[(
            "conda.yaml",
            "# a copy of a\ndependencies:\n- python=3.11.7\n- tinypkg\nchannels:\n- conda-forge\n",
        )],
    );
    let c = ctx.model(
        "c",
        &[(
            "conda.yaml",
            "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- tinydep=0.1.0\n",
        )],
    );
    let broken = ctx.model(
        "broken",
        &[(
            "conda.yaml",
            "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- tinypkg=2\n",
        )],
    );
    let list = ctx.path().join("models.txt");
    fs_err::write(
        &list,
        format!(
            "# the build agent's list\n{}\n\n{}\n",
            c.display(),
            broken.display()
        ),
    )
    .unwrap();
    let mut command = ctx.command();
    command
        .arg("create")
        .arg(&a)
        .arg(&b)
        .arg("--from")
        .arg(&list)
        .args([
            "--jobs",
            "3",
            "--env-manager",
            "conda",
            "--no-compile",
            "--json",
        ])
        .args(mirror_args(channel.file_url().as_str()));
    let output = command.output().unwrap();
    // One model failed: non-zero after finishing the others.
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let results: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["key"], results[1]["key"]);
    assert_eq!(results[0]["result"], "built");
    assert_eq!(results[1]["result"], "shared");
    assert_eq!(
        results[0]["created"]["prefix"],
        results[1]["created"]["prefix"]
    );
    assert_eq!(results[2]["result"], "built");
    assert_eq!(results[3]["result"], "failed");
    assert!(
        results[3]["error"]
            .as_str()
            .unwrap()
            .contains("cannot be installed together"),
        "{}",
        results[3]
    );
    // Exactly two environments exist.
    let envs = fs_err::read_dir(ctx.cache_dir.join("envs-v1"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .count();
    assert_eq!(envs, 2);
    let text = stderr(&output);
    assert!(
        text.contains("MODEL") && text.contains("RESULT") && text.contains("SECONDS"),
        "{text}"
    );
    assert!(
        text.contains("4 models: 2 built, 1 cached or shared, 1 failed"),
        "{text}"
    );
    // A second run: every environment cached.
    let again = command.output().unwrap();
    let results: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(results[2]["result"], "cached");
}

#[test]
fn run_on_a_cache_miss_starts_at_once_and_compiles_bytecode_in_the_background() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let model = conda_model(&ctx, "m", "", "  - wheel==0.45.1\n");
    let mut command = ctx.command();
    command
        .arg("run")
        .arg(&model)
        .args(["--env-manager", "conda"])
        .args(mirror_args(channel.file_url().as_str()))
        .args(["--", "python", "-c", "import sys; print(sys.prefix)"]);
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let prefix = std::path::PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    // The bytecode arrives shortly after, compiled by a detached low-priority process.
    let pycache = prefix.join("lib/python3.11/site-packages/wheel/__pycache__");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pycache.is_dir() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        pycache.is_dir(),
        "no bytecode was compiled in {}",
        prefix.display()
    );
    // The environment is the one `create` (which compiles before returning) would reuse.
    let created = json(&create(&ctx, &model, channel.file_url().as_str(), &[]));
    assert_eq!(created["cache_hit"], true);
    assert_eq!(
        created["prefix"].as_str().unwrap(),
        prefix.to_str().unwrap()
    );
}

/// A find-links directory with `pinpkg` 1.0 and 2.0, tiny pure-Python wheels.
fn pinpkg_wheels(dir: &std::path::Path) -> std::path::PathBuf {
    let links = dir.join("pinpkg-links");
    fs_err::create_dir_all(&links).unwrap();
    let script = format!(
        "import sys\n{}\nfor version in ('1.0', '2.0'):\n    write_wheel(sys.argv[1], 'pinpkg', version, {{'pinpkg/__init__.py': 'VERSION = %r\\n' % version}})\n",
        crate::common::WRITE_WHEEL_PY
    );
    let status = Command::new("python3")
        .args(["-c", &script])
        .arg(&links)
        .status()
        .unwrap();
    assert!(status.success());
    links
}

/// `create -v` of a virtualenv model with these build dependencies and dependencies (each list
/// installs offline from the test wheels and `links`), which must succeed: the uv installs it
/// ran, and the distributions it installed.
fn create_venv_model(
    ctx: &TestContext,
    name: &str,
    links: &std::path::Path,
    build: &str,
    dependencies: &str,
) -> (usize, Vec<String>) {
    let wheels = env_test::wheel_dir().unwrap();
    let index = format!(
        "- --no-index\n- --find-links file://{}\n- --find-links file://{}\n",
        wheels.display(),
        links.display()
    );
    let model = ctx.model(
        name,
        &[(
            "python_env.yaml",
            &format!(
                "python: \"3.11.7\"\nbuild_dependencies:\n{index}{build}dependencies:\n{index}{dependencies}"
            ),
        )],
    );
    let output = ctx
        .command()
        .arg("-v")
        .arg("create")
        .arg(&model)
        .args(["--python-source", "system", "--no-compile", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let installs = stderr(&output)
        .lines()
        .filter(|line| line.contains("Running") && line.contains(r#""pip" "install""#))
        .count();
    (installs, distributions(&json(&output)))
}

/// The names and versions of the distributions in an environment `create --json` reported.
fn distributions(created: &serde_json::Value) -> Vec<String> {
    let site = std::path::Path::new(created["prefix"].as_str().unwrap())
        .join("lib/python3.11/site-packages");
    let mut found: Vec<String> = fs_err::read_dir(site)
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".dist-info").map(str::to_string)
        })
        .collect();
    found.sort();
    found
}

/// Exactly pinned build dependencies are installed with the requirements in one uv call (one
/// resolve instead of two), and the environment has what two calls would install.
#[test]
fn pinned_build_dependencies_and_requirements_install_in_one_uv_call() {
    let ctx = TestContext::new();
    let links = pinpkg_wheels(ctx.path());
    let (installs, installed) = create_venv_model(
        &ctx,
        "m",
        &links,
        "- setuptools==75.8.0\n",
        "- wheel==0.45.1\n- pinpkg==1.0\n",
    );
    assert_eq!(installs, 1);
    assert_eq!(
        installed,
        ["pinpkg-1.0", "setuptools-75.8.0", "wheel-0.45.1"]
    );
}

/// When the requirements conflict with a pinned build dependency, the joint call fails and the
/// two calls MLflow makes run instead: the requirements' version wins, as in MLflow.
#[test]
fn a_build_pin_the_requirements_override_installs_in_two_uv_calls() {
    let ctx = TestContext::new();
    let links = pinpkg_wheels(ctx.path());
    // The joint attempt, then build dependencies and requirements one after the other.
    let (installs, installed) = create_venv_model(
        &ctx,
        "m",
        &links,
        "- pinpkg==1.0\n",
        "- wheel==0.45.1\n- pinpkg>=2\n",
    );
    assert_eq!(installs, 3);
    assert_eq!(installed, ["pinpkg-2.0", "wheel-0.45.1"]);
    // Unpinned build dependencies are installed first, on their own, as MLflow does.
    let (installs, _) = create_venv_model(&ctx, "n", &links, "- pinpkg\n", "- wheel==0.45.1\n");
    assert_eq!(installs, 2);
}

/// The metadata of `relative` in the environment `create --json` reported.
fn file_in(created: &serde_json::Value, relative: &str) -> std::fs::Metadata {
    fs_err::metadata(std::path::Path::new(created["prefix"].as_str().unwrap()).join(relative))
        .unwrap()
}

/// `run` on a cache miss links what the bytecode store already has before the model starts:
/// the model's first imports find `.pyc` files (the same files as the store's), and only the
/// store's misses are left to the background compiler.
#[cfg(unix)]
#[test]
fn run_on_a_cache_miss_links_stored_bytecode_before_the_model_starts() {
    use std::os::unix::fs::MetadataExt;
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    // `a` fills the store (`create` compiles before returning); `b` has the same packages
    // under another key (the same pin, written differently).
    let a = conda_model(&ctx, "a", "", "  - wheel==0.45.1\n");
    let b = conda_model(&ctx, "b", "", "  - wheel>=0.45.1,<=0.45.1\n");
    let first = json(&create(&ctx, &a, channel.file_url().as_str(), &[]));
    assert!(
        first["bytecode"]["compiled"].as_u64().unwrap() > 0,
        "{first:#}"
    );
    let pyc = "wheel/__pycache__/wheelfile.cpython-311.pyc";
    // The model itself reports whether the bytecode is there when it starts.
    let check = format!(
        "import os, sysconfig; print(os.path.isfile(os.path.join(sysconfig.get_paths()['purelib'], {pyc:?})))"
    );
    let output = ctx
        .command()
        .arg("-v")
        .arg("run")
        .arg(&b)
        .args(["--env-manager", "conda"])
        .args(mirror_args(channel.file_url().as_str()))
        .args(["--", "python", "-c", &check])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "True",
        "{}",
        describe(&output)
    );
    let text = stderr(&output);
    assert!(text.contains("linked from the store"), "{text}");
    let second = json(&create(&ctx, &b, channel.file_url().as_str(), &[]));
    assert_eq!(second["cache_hit"], true);
    assert_ne!(first["key"], second["key"]);
    let site_pyc = format!("lib/python3.11/site-packages/{pyc}");
    let (one, two) = (file_in(&first, &site_pyc), file_in(&second, &site_pyc));
    // The store's file, not a copy compiled for `b`.
    assert_eq!(one.ino(), two.ino());
}

#[cfg(unix)]
#[test]
fn bytecode_is_compiled_once_and_shared_between_environments() {
    use std::os::unix::fs::MetadataExt;
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let a = conda_model(&ctx, "a", "", "  - wheel==0.45.1\n");
    let b = conda_model(&ctx, "b", "- tinydep=0.1.0\n", "  - wheel==0.45.1\n");
    let first = json(&create(&ctx, &a, channel.file_url().as_str(), &[]));
    let second = json(&create(&ctx, &b, channel.file_url().as_str(), &[]));
    assert_ne!(first["key"], second["key"]);
    let pyc = "lib/python3.11/site-packages/wheel/__pycache__/wheelfile.cpython-311.pyc";
    let (one, two) = (file_in(&first, pyc), file_in(&second, pyc));
    // One file on disk: the store's, linked into both environments.
    assert_eq!(one.ino(), two.ino());
    assert!(one.nlink() >= 3, "store + 2 environments: {}", one.nlink());
    // The second environment compiled only the files that differ (its own package, files that
    // embed the prefix such as `_sysconfigdata`) and took the rest from the store.
    let (first_compiled, second_compiled) = (
        first["bytecode"]["compiled"].as_u64().unwrap(),
        second["bytecode"]["compiled"].as_u64().unwrap(),
    );
    let second_reused = second["bytecode"]["reused"].as_u64().unwrap();
    assert!(first_compiled > 0, "{first:#}");
    assert!(
        second_reused * 10 >= first_compiled * 9,
        "{first:#}\n{second:#}"
    );
    assert!(
        second_compiled * 10 < first_compiled,
        "{first:#}\n{second:#}"
    );
    // Once no environment uses them, prune removes the store's files.
    let output = ctx
        .command()
        .args(["cache", "prune", "--max-size", "0"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let store = ctx.cache_dir.join("pyc-v1");
    let mut left = 0;
    for shard in fs_err::read_dir(&store).unwrap().flatten() {
        if shard.path().is_dir() {
            left += fs_err::read_dir(shard.path()).unwrap().count();
        }
    }
    assert_eq!(left, 0, "unused bytecode left in the store");
}

/// Asserts that every conda package of the environment `create --json` reported came from
/// `channel` (and that there are some).
#[track_caller]
fn assert_installed_from(created: &serde_json::Value, channel: &str) {
    let metadata = metadata(created["prefix"].as_str().unwrap());
    let urls: Vec<&str> = metadata["conda_packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["url"].as_str().unwrap())
        .collect();
    assert!(
        urls.iter().any(|u| u.contains("/python-3.11.7")),
        "{urls:#?}"
    );
    assert!(urls.iter().all(|u| u.starts_with(channel)), "{urls:#?}");
}

#[test]
fn mirrors_from_the_environment_variable_and_the_config_file() {
    let channel = env_test::test_channel().unwrap();
    let url = channel.file_url().to_string();
    let url = url.trim_end_matches('/');
    // Without a mirror, conda-forge is the real (unreachable, offline) channel: nothing cached.
    let ctx = TestContext::new();
    let model = conda_model(&ctx, "m", "", "");
    let output = create_command(&ctx, &model).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        stderr(&output).contains("conda-forge"),
        "{}",
        describe(&output)
    );

    // `PYFUNC_ENV_MIRRORS`: pairs separated by whitespace or commas.
    let ctx = TestContext::new().env(
        "PYFUNC_ENV_MIRRORS",
        format!("conda-forge={url}, defaults={url}"),
    );
    let model = conda_model(&ctx, "m", "", "");
    assert_installed_from(&json(&create_command(&ctx, &model).output().unwrap()), url);

    // The configuration file's `[mirrors]` table (`$XDG_CONFIG_HOME/pyfunc-env/config.toml`).
    let ctx = TestContext::new();
    let config = ctx.path().join("xdg-config/pyfunc-env/config.toml");
    fs_err::create_dir_all(config.parent().unwrap()).unwrap();
    fs_err::write(
        &config,
        format!("[mirrors]\n\"conda-forge\" = \"{url}\"\ndefaults = \"{url}\"\n"),
    )
    .unwrap();
    let model = conda_model(&ctx, "m", "", "");
    assert_installed_from(&json(&create_command(&ctx, &model).output().unwrap()), url);

    // A misspelt key is an error naming the file and the key, not a silently ignored setting.
    fs_err::write(&config, format!("[mirror]\n\"conda-forge\" = \"{url}\"\n")).unwrap();
    let output = ctx.command().args(["cache", "dir"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(
        text.contains("config.toml") && text.contains("mirror"),
        "{text}"
    );
    // And a malformed variable names the variable, without echoing credentials.
    fs_err::remove_file(&config).unwrap();
    let output = ctx
        .command()
        .env(
            "PYFUNC_ENV_MIRRORS",
            "https://user:s3cret@mirror.example/conda-forge",
        )
        .args(["cache", "dir"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(
        text.contains("PYFUNC_ENV_MIRRORS") && text.contains("CHANNEL=URL"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

/// `PATH` without any directory holding a `uv`.
fn path_without_uv() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<_> = std::env::split_paths(&path)
        .filter(|dir| !dir.join("uv").exists())
        .collect();
    std::env::join_paths(dirs)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn pypi_uv_is_downloaded_from_pypi_when_none_is_installed() {
    let channel = env_test::test_channel().unwrap();
    let path = path_without_uv();
    // Offline, with no uv anywhere: an error that says how to provide one.
    let ctx = TestContext::new().env("PATH", path.clone());
    let model = conda_model(&ctx, "m", "", "  - wheel==0.45.1\n");
    let output = create(&ctx, &model, channel.file_url().as_str(), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(
        text.contains("none is available offline") && text.contains("PYFUNC_ENV_UV"),
        "{text}"
    );
    assert!(
        !ctx.cache_dir
            .join("envs-v1")
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().path().join(".pyfunc-env/complete").exists() })
    );

    // Online: our own pinned copy, fetched from PyPI's uv wheel (sha256 checked), installs the
    // pip section, and is reused by the next environment even offline.
    let ctx = ctx.online();
    let created = json(&create(&ctx, &model, channel.file_url().as_str(), &[]));
    let own = ctx.cache_dir.join("tools-v1/uv-0.13.9/uv");
    let version = Command::new(&own).arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("uv 0.13.9"),
        "{}",
        describe(&version)
    );
    assert_eq!(
        python_says(
            created["prefix"].as_str().unwrap(),
            "import wheel; print(wheel.__version__)"
        ),
        "0.45.1"
    );
    let ctx = TestContext {
        offline: true,
        ..ctx
    };
    let other = conda_model(&ctx, "other", "- tinydep=0.1.0\n", "  - wheel==0.45.1\n");
    let created = json(&create(&ctx, &other, channel.file_url().as_str(), &[]));
    assert_eq!(created["cache_hit"], false);
}

#[test]
fn concurrent_builds_compile_shared_bytecode_once() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let url = channel.file_url().to_string();
    let models = [
        conda_model(&ctx, "a", "", "  - wheel==0.45.1\n"),
        conda_model(&ctx, "b", "- tinydep=0.1.0\n", "  - wheel==0.45.1\n"),
    ];
    let children: Vec<_> = models
        .iter()
        .map(|model| {
            create_command(&ctx, model)
                .args(mirror_args(&url))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<serde_json::Value> = children
        .into_iter()
        .map(|child| json(&child.wait_with_output().unwrap()))
        .collect();
    let compiled: Vec<u64> = results
        .iter()
        .map(|r| r["bytecode"]["compiled"].as_u64().unwrap())
        .collect();
    let reused: Vec<u64> = results
        .iter()
        .map(|r| r["bytecode"]["reused"].as_u64().unwrap())
        .collect();
    // Whichever compiled second found the first one's bytecode in the store.
    let (most, least) = (
        compiled.iter().max().unwrap(),
        compiled.iter().min().unwrap(),
    );
    assert!(*most > 100, "{results:#?}");
    assert!(least * 10 < *most, "both compiled everything: {results:#?}");
    assert!(
        reused.iter().max().unwrap() * 10 >= most * 9,
        "{results:#?}"
    );
}

#[test]
fn many_long_non_ascii_model_paths_fill_the_summary_table() {
    // The table cut paths at a byte offset and panicked inside a multi-byte character.
    let ctx = TestContext::new();
    let first = ctx.path().join(format!("{}xy", "日本".repeat(40)));
    let second = ctx.path().join(format!("{}xy", "é".repeat(50)));
    let output = ctx
        .command()
        .arg("create")
        .arg(&first)
        .arg(&second)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(text.contains("本xy  -"), "{text}");
    assert!(
        text.contains("2 models: 0 built, 0 cached or shared, 2 failed"),
        "{text}"
    );
}

/// `--exclude-newer` bounds conda packages too (issue 16): a cutoff before every package of
/// the channel leaves only exact pins, and a later one builds as usual.
#[test]
fn exclude_newer_bounds_conda_packages_and_exempts_exact_pins() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let url = channel.file_url();
    let open = ctx.model(
        "open",
        &[(
            "conda.yaml",
            "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- tinypkg\n",
        )],
    );
    // Every package of the test channel was published after 2000: `tinypkg` (open) is gone.
    let output = create(
        &ctx,
        &open,
        url.as_str(),
        &["--exclude-newer", "2000-01-01"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stderr(&output);
    assert!(text.contains("tinypkg"), "{text}");
    assert!(text.contains("cutoff"), "the reason is named: {text}");

    // `python=3.11.7` is an exact pin: exempt, so a python-only model still builds.
    let pinned = ctx.model(
        "pinned",
        &[(
            "conda.yaml",
            "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n",
        )],
    );
    let output = create(
        &ctx,
        &pinned,
        url.as_str(),
        &["--exclude-newer", "2000-01-01"],
    );
    assert!(output.status.success(), "{}", describe(&output));

    // A cutoff after the channel's packages changes nothing but the key.
    let later = json(&create(
        &ctx,
        &open,
        url.as_str(),
        &["--exclude-newer", "2100-01-01T00:00:00Z"],
    ));
    let plain = json(&create(&ctx, &open, url.as_str(), &[]));
    assert_ne!(later["key"], plain["key"]);

    // A value that is no time is refused with the forms it takes.
    let output = create(
        &ctx,
        &open,
        url.as_str(),
        &["--exclude-newer", "last tuesday"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        stderr(&output).contains("Invalid `--exclude-newer` value `last tuesday`"),
        "{}",
        describe(&output)
    );
}

/// `create --json` of one model that fails still prints a JSON document on stdout, as a
/// failed model of a multi-model `create` does (issue 15 item 9).
#[test]
fn create_json_of_one_failing_model_prints_the_error_document() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let model = ctx.model(
        "m",
        &[(
            "conda.yaml",
            "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- tinypkg=2\n",
        )],
    );
    let output = create(&ctx, &model, channel.file_url().as_str(), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", describe(&output)));
    assert_eq!(document["result"], "failed", "{document}");
    assert_eq!(document["model_dir"], model.display().to_string());
    assert!(
        document["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot be installed together")),
        "{document}"
    );
    // The error is on stderr as for any command.
    assert!(stderr(&output).contains("cannot be installed together"));
}

/// Builds `model` with the library's public async API on a current-thread runtime, as a caller
/// embedding the library (a Python binding, a test) would.
fn build_on_a_current_thread_runtime(
    ctx: &TestContext,
    model: &std::path::Path,
    request: &env_build::EnvRequest,
) -> env_build::Created {
    let environment =
        env_build::ModelEnvironment::resolve(env_spec::ModelDir::open(model).unwrap(), request)
            .unwrap();
    let cache = env_cache::Cache::new(&ctx.cache_dir);
    cache.init().unwrap();
    let settings = env_build::BuildSettings {
        offline: true,
        uv_cache_dir: Some(crate::common::shared_uv_cache()),
        reinstall: false,
        remote: None,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(environment.build(
            &cache,
            &settings,
            false,
            std::sync::Arc::new(env_build::NoReporter),
        ))
        .unwrap()
}

#[test]
fn the_async_build_works_on_a_current_thread_runtime() {
    // Issue 11: the build ran uv and the bytecode compiler inside `block_in_place`, which
    // panics on a current-thread runtime ("can call blocking only when running on the
    // multi-threaded runtime"). Conda mode with a `pip:` list (uv) and bytecode compiled in the
    // build; then virtualenv mode with this machine's Python (`uv venv`).
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let conda = conda_model(&ctx, "conda", "", "  - wheel==0.45.1\n");
    let request = env_build::EnvRequest {
        manager: Some(env_spec::EnvManager::Conda),
        channels: env_build::ChannelSettings {
            mirrors: vec![("conda-forge".into(), channel.file_url().to_string())],
            ..env_build::ChannelSettings::default()
        },
        ..env_build::EnvRequest::default()
    };
    let created = build_on_a_current_thread_runtime(&ctx, &conda, &request);
    let prefix = created.prefix.display().to_string();
    assert_eq!(
        python_says(&prefix, "import wheel; print(wheel.__version__)"),
        "0.45.1"
    );
    assert!(
        created
            .prefix
            .join("lib/python3.11/site-packages/wheel/__pycache__")
            .is_dir()
    );

    let wheels = env_test::wheel_dir().unwrap();
    let virtualenv = ctx.model(
        "virtualenv",
        &[
            (
                "python_env.yaml",
                "python: 3.11.7\ndependencies:\n- -r requirements.txt\n",
            ),
            (
                "requirements.txt",
                &format!(
                    "--no-index\n--find-links file://{}\nwheel==0.45.1\n",
                    wheels.display()
                ),
            ),
        ],
    );
    let request = env_build::EnvRequest {
        manager: Some(env_spec::EnvManager::Virtualenv),
        options: env_build::BuildOptions {
            python_source: env_build::PythonSource::System,
            ..env_build::BuildOptions::default()
        },
        ..env_build::EnvRequest::default()
    };
    let created = build_on_a_current_thread_runtime(&ctx, &virtualenv, &request);
    assert_eq!(
        python_says(
            &created.prefix.display().to_string(),
            "import sys, wheel; print(sys.version.split()[0], wheel.__version__)"
        ),
        "3.11.7 0.45.1"
    );
}

/// Runs `future` on a new runtime, current-thread or multi-thread, as a caller embedding the
/// library (a Python binding, a server) would.
fn on_runtime<T>(multi_thread: bool, future: impl std::future::Future<Output = T>) -> T {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().unwrap().block_on(future)
}

/// Shows nothing.
struct Silent;

impl env_build::EnsureReporter for Silent {
    fn on_resolved(
        &self,
        _env: &env_build::ModelEnvironment,
    ) -> std::sync::Arc<dyn env_build::Reporter> {
        std::sync::Arc::new(env_build::NoReporter)
    }
}

#[test]
fn the_library_runs_on_the_callers_runtime_with_a_remote_cache() {
    // Issue 11: each library call used to start a runtime of its own (`build_blocking`,
    // `ready_blocking`, env-remote's `block_on` for every store call), so a command started
    // three or more. Starting a runtime inside the caller's panics ("Cannot start a runtime
    // from within a runtime"): here, on a current-thread and on a multi-thread runtime, the
    // library's one entry point builds and pushes, pulls and holds, builds and locks, and
    // `create_many` schedules. A remote's panic becomes a warning and a local build, which the
    // assertions on `pushed`, `remote_hit` and `warnings` catch.
    use env_build::{ModelEnvironment, Purpose};
    use std::sync::Arc;

    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let model = conda_model(&ctx, "conda", "", "  - wheel==0.45.1\n");
    let open = || env_spec::ModelDir::open(&model).unwrap();
    let request = env_build::EnvRequest {
        manager: Some(env_spec::EnvManager::Conda),
        channels: env_build::ChannelSettings {
            mirrors: vec![("conda-forge".into(), channel.file_url().to_string())],
            ..env_build::ChannelSettings::default()
        },
        ..env_build::EnvRequest::default()
    };
    let remote =
        env_remote::RemoteUrl::parse(&format!("file://{}", ctx.path().join("remote").display()))
            .unwrap();
    let settings = env_build::BuildSettings {
        offline: true,
        uv_cache_dir: Some(crate::common::shared_uv_cache()),
        reinstall: false,
        remote: Some(Arc::new(env_remote::Remote::new(remote, false))),
    };

    // Agent A, current-thread runtime: builds, then pushes.
    let cache_a = env_cache::Cache::new(ctx.path().join("agent-a"));
    let built = on_runtime(
        false,
        ModelEnvironment::ensure(
            open(),
            &request,
            &cache_a,
            &settings,
            &Purpose::Create,
            Arc::new(Silent),
        ),
    )
    .unwrap();
    assert!(
        built.created.pushed && built.created.warnings.is_empty(),
        "{:#?}",
        built.created
    );

    // Agent B, multi-thread runtime: pulls it and holds it for a command (`run`, `pack`).
    let cache_b = env_cache::Cache::new(ctx.path().join("agent-b"));
    let pulled = on_runtime(
        true,
        ModelEnvironment::ensure(
            open(),
            &request,
            &cache_b,
            &settings,
            &Purpose::Use {
                bytecode: env_build::Bytecode::DuringBuild,
                mlflow: None,
            },
            Arc::new(Silent),
        ),
    )
    .unwrap();
    assert!(
        pulled.created.remote_hit && pulled.created.warnings.is_empty(),
        "{:#?}",
        pulled.created
    );
    assert_eq!(pulled.created.key, built.created.key);
    // The cache's and the environment's shared locks, for the command's process.
    assert_eq!(pulled.lock_files().len(), 2);
    drop(pulled);

    // `lock` on a multi-thread runtime: reuses the environment, then writes its lock file.
    let locked = on_runtime(
        true,
        ModelEnvironment::ensure(
            open(),
            &env_build::EnvRequest {
                lock: env_build::LockChoice::Ignore,
                ..request.clone()
            },
            &cache_b,
            &settings,
            &Purpose::Lock,
            Arc::new(Silent),
        ),
    )
    .unwrap();
    assert!(locked.created.cache_hit, "{:#?}", locked.created);
    let text = locked.lock_text.clone().unwrap();
    assert!(text.contains(locked.env.spec_key.as_str()), "{text}");
    drop(locked);

    // `create --jobs 2`'s scheduler on a current-thread runtime: one key, built once.
    let env = ModelEnvironment::resolve(open(), &request).unwrap();
    let envs: Arc<[Option<ModelEnvironment>]> = vec![Some(env), None].into();
    let outcomes = on_runtime(false, async {
        env_build::many::create_many(
            envs,
            2,
            &cache_b,
            &settings,
            Arc::new(|_: &ModelEnvironment| -> Arc<dyn env_build::Reporter> {
                Arc::new(env_build::NoReporter)
            }),
            Arc::new(|_: &ModelEnvironment, _: &Result<_, _>| {}),
        )
        .await
        .unwrap()
    });
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0].result.as_ref().unwrap().cache_hit);
}

/// Bytecode does not depend on where the environment is (issue 25): the same source compiled
/// in two caches (two agents) gives the same `.pyc`, so the remote cache stores it once; and
/// the code loaded from it still names the file where it is, for tracebacks.
#[test]
fn bytecode_is_the_same_in_two_caches_and_names_the_real_source() {
    let ctx = TestContext::new();
    let wheels = env_test::wheel_dir().unwrap();
    let model = ctx.model(
        "tiny",
        &[(
            "python_env.yaml",
            &format!(
                "python: \"3.11.7\"\nbuild_dependencies: []\ndependencies:\n- --no-index\n- --find-links file://{}\n- wheel==0.45.1\n",
                wheels.display()
            ),
        )],
    );
    let mut pycs = Vec::new();
    for cache in ["a", "b"] {
        let output = ctx
            .command()
            .env("PYFUNC_ENV_CACHE_DIR", ctx.path().join(cache))
            .arg("create")
            .arg(&model)
            .args(["--python-source", "system", "--json"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        let prefix = std::path::PathBuf::from(json(&output)["prefix"].as_str().unwrap());
        let site = prefix.join("lib/python3.11/site-packages");
        pycs.push(fs_err::read(site.join("wheel/__pycache__/__init__.cpython-311.pyc")).unwrap());
        let loaded = Command::new(prefix.join("bin/python"))
            .args([
                "-c",
                "import wheel; print(wheel.__spec__.loader.get_code('wheel').co_filename)",
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&loaded.stdout).trim(),
            site.join("wheel/__init__.py").to_string_lossy(),
            "{}",
            describe(&loaded)
        );
    }
    assert!(
        pycs[0] == pycs[1],
        "the bytecode of one source differs between two caches"
    );
}

/// `--env-manager local` builds nothing, so every command that builds refuses it as bad input
/// before opening the model (env-build's `RequestFlags::into_request` decides; the CLI did).
#[test]
fn env_manager_local_is_refused_by_commands_that_build() {
    let ctx = TestContext::new();
    for command in [
        &["create"][..],
        &["lock"],
        &["pack", "--output", "env.tar.gz"],
    ] {
        let output = ctx
            .command()
            .args(command)
            .args(["no-such-model", "--env-manager", "local"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert_eq!(
            stderr(&output),
            "error: `--env-manager local` builds no environment; it only applies to `run`\n",
            "{command:?}"
        );
    }
}
