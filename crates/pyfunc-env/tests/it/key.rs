//! One key everywhere (issue 11): the key `deps --format json` prints, the key `inspect`
//! prints, the key `create --json` reports and the bucket `create` writes are the same, for
//! every fixture model (the conformance matrix included), every corpus case and both env
//! managers.
//!
//! Building every environment would take hours, so the full set is checked through
//! `create --dry-run --json` (the same code path as `create` up to the build: it resolves the
//! environment and stops), and one model per env manager whose channels are not the plain
//! default (`[conda-forge, nodefaults]`, where `deps` and `create` used to disagree) is really
//! built offline against the local test channel, checking the bucket on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::{TestContext, describe, json, mirror_args, repo_root, stdout};

/// The models: every fixture model, every corpus case, and models with channel lists that
/// `create` changes (`nodefaults`, none, duplicates).
fn models(ctx: &TestContext) -> Vec<PathBuf> {
    let mut models = Vec::new();
    let mut dirs: Vec<String> = [
        "fixtures/models",
        "fixtures/mlflow1/models",
        "tests/corpus/cases",
    ]
    .map(String::from)
    .to_vec();
    // The conformance matrix: models of every MLflow major, several of which get
    // compatibility constraints (issue 16), which deps, inspect and create must agree on too.
    let mut writers: Vec<PathBuf> = fs_err::read_dir(repo_root().join("fixtures/matrix"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("models").is_dir())
        .collect();
    writers.sort();
    assert!(!writers.is_empty(), "no models in fixtures/matrix");
    for writer in writers {
        let name = writer.file_name().unwrap().to_string_lossy().into_owned();
        dirs.push(format!("fixtures/matrix/{name}/models"));
    }
    for dir in &dirs {
        let mut found: Vec<PathBuf> = fs_err::read_dir(repo_root().join(dir))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.join("MLmodel").is_file())
            .collect();
        found.sort();
        assert!(!found.is_empty(), "no models in {dir}");
        models.extend(found);
    }
    for (name, channels) in [
        ("nodefaults", "channels:\n- conda-forge\n- nodefaults\n"),
        ("no-channels", ""),
        (
            "duplicates",
            "channels:\n- conda-forge\n- defaults\n- conda-forge\n",
        ),
    ] {
        let conda = format!("name: m\n{channels}dependencies:\n- python=3.11.7\n- pip\n");
        models.push(ctx.model(name, &[("conda.yaml", &conda)]));
    }
    models
}

/// `inspect`'s key for each env manager it can build.
fn inspect_keys(ctx: &TestContext, model: &Path) -> BTreeMap<String, String> {
    let output = ctx.command().arg("inspect").arg(model).output().unwrap();
    let mut keys = BTreeMap::new();
    for line in stdout(&output).lines() {
        for manager in ["virtualenv", "conda"] {
            if let Some(rest) = line.strip_prefix(&format!("{manager} environment"))
                && let Some((_, key)) = rest.split_once("  key ")
            {
                keys.insert(manager.to_string(), key.trim().to_string());
            }
        }
    }
    keys
}

fn deps_key(ctx: &TestContext, model: &Path, manager: &str) -> Option<String> {
    let output = ctx
        .command()
        .arg("deps")
        .arg(model)
        .args(["--format", "json", "--env-manager", manager])
        .output()
        .unwrap();
    output
        .status
        .success()
        .then(|| json(&output)["key"].as_str().unwrap().to_string())
}

fn dry_run_key(ctx: &TestContext, model: &Path, manager: &str) -> Option<String> {
    let output = ctx
        .command()
        .arg("create")
        .arg(model)
        .args(["--env-manager", manager, "--dry-run", "--json"])
        .output()
        .unwrap();
    output.status.success().then(|| {
        let document = json(&output);
        assert_eq!(document["dry_run"], true);
        assert!(
            document["prefix"]
                .as_str()
                .unwrap()
                .ends_with(document["key"].as_str().unwrap()),
            "{document}"
        );
        document["key"].as_str().unwrap().to_string()
    })
}

#[test]
fn deps_inspect_and_create_agree_on_the_key_of_every_model() {
    let ctx = TestContext::new();
    let mut checked = 0;
    let mut failures = Vec::new();
    for model in models(&ctx) {
        let inspected = inspect_keys(&ctx, &model);
        for manager in ["virtualenv", "conda"] {
            let deps = deps_key(&ctx, &model, manager);
            let create = dry_run_key(&ctx, &model, manager);
            let inspect = inspected.get(manager).cloned();
            if deps.is_none() && create.is_none() && inspect.is_none() {
                // Neither reads this env manager's files (MLflow fails there too).
                continue;
            }
            if deps.is_some() && deps == create && deps == inspect {
                checked += 1;
            } else {
                failures.push(format!(
                    "{} ({manager}): deps {deps:?}, inspect {inspect:?}, create {create:?}",
                    model.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked > 200, "only {checked} environments checked");
    // Nothing was built or written.
    assert!(!ctx.cache_dir.join("envs-v1").exists());
}

#[test]
fn the_bucket_create_writes_is_the_key_deps_and_inspect_print() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    let conda =
        "name: m\nchannels:\n- conda-forge\n- nodefaults\ndependencies:\n- python=3.11.7\n- pip\n";
    let model = ctx.model("nodefaults", &[("conda.yaml", conda)]);
    let deps = deps_key(&ctx, &model, "conda").unwrap();
    let inspect = inspect_keys(&ctx, &model)["conda"].clone();
    let dry_run = dry_run_key(&ctx, &model, "conda").unwrap();
    let output = ctx
        .command()
        .arg("create")
        .arg(&model)
        .args(["--env-manager", "conda", "--json"])
        .args(mirror_args(channel.file_url().as_str()))
        .output()
        .unwrap();
    let created = json(&output);
    let key = created["key"].as_str().unwrap();
    let buckets: Vec<String> = fs_err::read_dir(ctx.cache_dir.join("envs-v1"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(buckets, [key.to_string()], "{}", describe(&output));
    assert_eq!(
        [deps.as_str(), inspect.as_str(), dry_run.as_str()],
        [key; 3],
        "deps, inspect and create --dry-run against the bucket create wrote"
    );
    // Now cached: the dry run says so, and a plain `create` prints the prefix on stdout.
    let again = ctx
        .command()
        .arg("create")
        .arg(&model)
        .args(["--env-manager", "conda", "--dry-run", "--json"])
        .output()
        .unwrap();
    assert_eq!(json(&again)["cache_hit"], true);
    let plain = ctx
        .command()
        .arg("create")
        .arg(&model)
        .args(["--env-manager", "conda"])
        .args(mirror_args(channel.file_url().as_str()))
        .output()
        .unwrap();
    assert!(plain.status.success(), "{}", describe(&plain));
    assert_eq!(
        stdout(&plain),
        format!("{}\n", created["prefix"].as_str().unwrap())
    );
}

#[test]
fn the_uv_version_is_part_of_the_key_when_uv_installs_packages() {
    use std::os::unix::fs::PermissionsExt as _;
    let ctx = TestContext::new();
    let fake_uv = ctx.path().join("old-uv");
    fs_err::write(
        &fake_uv,
        "#!/bin/sh\necho 'uv 0.7.0 (0000000 2025-05-01)'\n",
    )
    .unwrap();
    fs_err::set_permissions(&fake_uv, std::fs::Permissions::from_mode(0o755)).unwrap();
    let model = crate::common::fixture("sklearn-iris");
    let conda_only = ctx.model(
        "conda-only",
        &[(
            "conda.yaml",
            "channels:\n- conda-forge\ndependencies:\n- python=3.11.7\n",
        )],
    );
    for (model, manager, uses_uv) in [
        (&model, "virtualenv", true),
        (&model, "conda", true),
        (&conda_only, "conda", false),
    ] {
        let default = deps_key(&ctx, model, manager).unwrap();
        let with_old_uv = ctx
            .command()
            .env("PYFUNC_ENV_UV", &fake_uv)
            .arg("deps")
            .arg(model)
            .args(["--format", "json", "--env-manager", manager])
            .output()
            .unwrap();
        let document = json(&with_old_uv);
        assert_eq!(
            document["key"] != default.as_str(),
            uses_uv,
            "{manager}: {document}"
        );
        let create = ctx
            .command()
            .arg("create")
            .arg(model)
            .args(["--env-manager", manager, "--dry-run", "--json", "--uv"])
            .arg(&fake_uv)
            .output()
            .unwrap();
        assert_eq!(json(&create)["key"], document["key"], "{manager}");
        if uses_uv {
            assert_eq!(document["key_context"]["uv"], "0.7.0");
        }
    }
}

/// A cached `run` starts no process but its command (issue 25): the key needs uv's version,
/// and asking it on every `run` cost 10-30 ms for the uv binary and 0.3-0.7 s through a pyenv
/// shim. The version is remembered in the cache by the binary's identity; a changed binary is
/// asked again, and a stale memo never keys a build.
#[test]
fn a_cached_run_asks_uv_nothing_and_a_changed_uv_is_asked_again() {
    use std::os::unix::fs::PermissionsExt as _;
    let ctx = TestContext::new();
    let log = ctx.path().join("uv-calls.log");
    let wrapper = ctx.path().join("uv-wrapper");
    let write_wrapper = |version_line: &str| {
        fs_err::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\n{version_line}exec uv \"$@\"\n",
                log.display()
            ),
        )
        .unwrap();
        fs_err::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write_wrapper("");
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
    let flags = ["--python-source", "system", "--no-compile"];
    let create = || {
        let output = ctx
            .command()
            .env("PYFUNC_ENV_UV", &wrapper)
            .arg("create")
            .arg(&model)
            .args(flags)
            .arg("--json")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        json(&output)
    };
    let first = create();
    assert_eq!(first["cache_hit"], false, "{first}");
    assert!(log.is_file(), "the build ran uv through the wrapper");
    fs_err::remove_file(&log).unwrap();

    let run = ctx
        .command()
        .env("PYFUNC_ENV_UV", &wrapper)
        .arg("run")
        .arg(&model)
        .args(flags)
        .args(["--", "python", "-c", "print('ran')"])
        .output()
        .unwrap();
    assert_eq!(stdout(&run), "ran\n", "{}", describe(&run));
    assert!(
        !log.exists(),
        "a cached run asked uv: {}",
        fs_err::read_to_string(&log).unwrap_or_default()
    );

    // A stale memo for an unchanged wrapper (the uv behind it changed): the key it gives is
    // not cached, so uv is asked before anything is built, and the existing environment is
    // found under the real version's key.
    let memo = ctx.cache_dir.join("tools-v1/uv-versions-v1.json");
    let text = fs_err::read_to_string(&memo).unwrap();
    let output = std::process::Command::new("uv")
        .arg("--version")
        .output()
        .unwrap();
    let real = String::from_utf8(output.stdout).unwrap();
    let real = real.split_whitespace().nth(1).unwrap().to_string();
    fs_err::remove_file(&log).ok();
    assert!(text.contains(&format!("\"{real}\"")), "{text}");
    fs_err::write(&memo, text.replace(&format!("\"{real}\""), "\"0.9.0\"")).unwrap();
    let again = create();
    assert_eq!(again["key"], first["key"], "{again}");
    assert_eq!(again["cache_hit"], true, "{again}");
    assert!(fs_err::read_to_string(&log).unwrap().contains("--version"));
    assert!(
        fs_err::read_to_string(&memo)
            .unwrap()
            .contains(&format!("\"{real}\"")),
        "the memo is corrected"
    );

    // A changed binary is asked again: another version, another key.
    fs_err::remove_file(&log).unwrap();
    write_wrapper("[ \"$1\" = --version ] && echo 'uv 0.8.0 (fake)' && exit 0\n");
    let changed = create();
    assert!(fs_err::read_to_string(&log).unwrap().contains("--version"));
    assert_ne!(changed["key"], first["key"], "{changed}");
}

/// A cached `run` on a machine without an NVIDIA driver runs no `nvidia-smi` (issue 25):
/// rattler's CUDA probe ends with `nvidia-smi` there (about 4 ms of every `run`) and keeps no
/// record of the absence, so the cache remembers it for the boot (`tools-v1/no-cuda-v1.json`).
/// A fake `nvidia-smi` first on `PATH` leaves a marker when run; another `PATH` probes again.
#[test]
fn a_cached_run_runs_no_nvidia_smi() {
    use std::os::unix::fs::PermissionsExt as _;
    if Path::new("/sys/module/nvidia").exists() || Path::new("/dev/nvidiactl").exists() {
        // A real driver answers through NVML before `nvidia-smi`: nothing to observe here.
        return;
    }
    let ctx = TestContext::new();
    let bin = ctx.path().join("fake-bin");
    fs_err::create_dir_all(&bin).unwrap();
    let marker = ctx.path().join("nvidia-smi-ran");
    let fake = bin.join("nvidia-smi");
    fs_err::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n",
            marker.display()
        ),
    )
    .unwrap();
    fs_err::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
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
    let run = |path: &std::ffi::OsStr| {
        let output = ctx
            .command()
            .env("PATH", path)
            .arg("run")
            .arg(&model)
            .args(["--python-source", "system", "--no-compile"])
            .args(["--", "python", "-c", "print('ran')"])
            .output()
            .unwrap();
        assert_eq!(stdout(&output), "ran\n", "{}", describe(&output));
    };
    // The first run builds: rattler probes, through the fake (so the marker can be seen).
    run(&path);
    assert!(
        marker.is_file(),
        "the first run probed CUDA with `nvidia-smi`"
    );
    fs_err::remove_file(&marker).unwrap();
    run(&path);
    assert!(
        !marker.exists(),
        "a cached run ran `nvidia-smi {}`",
        fs_err::read_to_string(&marker).unwrap_or_default().trim()
    );
    // Another `PATH` may hold another `nvidia-smi`: probed again, same environment.
    let other = std::env::join_paths(
        [bin, ctx.path().join("empty-dir")]
            .into_iter()
            .chain(std::env::split_paths(&path).skip(1)),
    )
    .unwrap();
    run(&other);
    assert!(marker.is_file(), "another PATH is probed again");
}
