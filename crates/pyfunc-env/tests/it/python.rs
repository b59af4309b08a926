//! Virtualenv-mode Python: from the machine (pyenv 3.10/3.11/3.12) or a conda channel; exact
//! patch version when possible, the same minor with a warning otherwise, never another minor.

use std::process::Command;

use crate::common::{TestContext, describe, json, mirror_args, pyfunc_env_snapshot, stderr};

fn venv_model(ctx: &TestContext, name: &str, python: &str) -> std::path::PathBuf {
    let wheels = env_test::wheel_dir().unwrap();
    ctx.model(
        name,
        &[
            (
                "python_env.yaml",
                &format!("python: \"{python}\"\nbuild_dependencies: []\ndependencies:\n- --no-index\n- --find-links file://{}\n- wheel==0.45.1\n", wheels.display()),
            ),
        ],
    )
}

fn version_of(python: &str) -> String {
    let output = Command::new(python)
        .args([
            "-c",
            "import sys, wheel; print('%d.%d.%d' % sys.version_info[:3])",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[test]
fn exact_versions_from_pyenv_for_310_311_312() {
    let ctx = TestContext::new();
    for version in env_test::PYTHON_VERSIONS {
        let model = venv_model(&ctx, &format!("m{version}"), version);
        let output = ctx
            .command()
            .arg("create")
            .arg(&model)
            .args(["--python-source", "system", "--no-compile", "--json"])
            .output()
            .unwrap();
        let result = json(&output);
        assert_eq!(version_of(result["python"].as_str().unwrap()), version);
        assert!(
            !stderr(&output).contains("warning"),
            "{}",
            describe(&output)
        );
    }
}

#[test]
fn exact_versions_from_a_conda_channel() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    for version in env_test::PYTHON_VERSIONS {
        let model = venv_model(&ctx, &format!("m{version}"), version);
        let mut command = ctx.command();
        command
            .arg("create")
            .arg(&model)
            .args(["--python-source", "conda", "--no-compile", "--json"])
            .args(mirror_args(channel.file_url().as_str()));
        let result = json(&command.output().unwrap());
        let python = result["python"].as_str().unwrap();
        assert_eq!(version_of(python), version);
        // A complete prefix (conda-meta), not a venv pointing elsewhere.
        let prefix = std::path::Path::new(result["prefix"].as_str().unwrap());
        assert!(prefix.join("conda-meta").is_dir());
        assert!(!prefix.join("pyvenv.cfg").exists());
    }
}

#[test]
fn another_patch_version_warns_naming_both() {
    let ctx = TestContext::new();
    let model = venv_model(&ctx, "m", "3.11.99");
    let create = || {
        let mut command = ctx.command();
        command
            .arg("create")
            .arg(&model)
            .args(["--python-source", "system", "--no-compile"]);
        command
    };
    pyfunc_env_snapshot!(ctx.filters(), create(), @r#"
        exit_code: 0 (success)
        ----- stdout -----
        [CACHE_DIR]/envs-v1/[KEY]

        ----- stderr -----
        warning: Python 3.11.99 is not available; using Python 3.11.7 from [PYENV_ROOT]/versions/3.11.7/bin/python3.11 (same minor version)
        Created virtualenv environment in [TIME]: [CACHE_DIR]/envs-v1/[KEY]
    "#);
    let result = json(&create().arg("--json").output().unwrap());
    assert_eq!(version_of(result["python"].as_str().unwrap()), "3.11.7");
}

#[test]
fn another_minor_version_is_an_error() {
    let ctx = TestContext::new();
    let channel = env_test::test_channel().unwrap();
    // Neither the channel (3.10-3.12) nor pyenv here has any 3.5.
    let model = venv_model(&ctx, "m35", "3.5.10");
    let mut command = ctx.command();
    command
        .arg("create")
        .arg(&model)
        .args(["--no-compile"])
        .args(mirror_args(channel.file_url().as_str()));
    // Each attempt is listed, and the way out.
    pyfunc_env_snapshot!(ctx.filters(), command, @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Failed to create the virtualenv environment for `[TEMP_DIR]/models/m35`
          Caused by: Cannot provide Python 3.5.10:
            conda `python 3.5.10.*`: No channel has a package for `python 3.5.10.*` (looked in `file://[REPO]/target/env-test/channel-[ID]` for `linux-64` and `noarch`)
            this machine: no Python 3.5.10
            conda `python 3.5.*`: No channel has a package for `python 3.5.*` (looked in `file://[REPO]/target/env-test/channel-[ID]` for `linux-64` and `noarch`)
            this machine: no Python 3.5.x

        hint: Install that Python (e.g. `pyenv install 3.5.10` or `uv python install 3.5.10`), make a conda channel with it reachable (`--mirror conda-forge=...`), or choose another version with `--python-version`
    "#);
}

#[test]
fn python_version_flag_overrides_the_model() {
    let ctx = TestContext::new();
    let model = venv_model(&ctx, "m", "3.11.7");
    let output = ctx
        .command()
        .arg("create")
        .arg(&model)
        .args([
            "--python-source",
            "system",
            "--python-version",
            "3.12.1",
            "--no-compile",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        version_of(json(&output)["python"].as_str().unwrap()),
        "3.12.1"
    );
}
