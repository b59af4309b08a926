//! The Python wheel (issue 14): maturin builds it from `pyproject.toml`, uv installs it into a
//! fresh venv, and the installed executable does the main job.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TestContext, describe, repo_root, stdout};

/// maturin from `PYFUNC_ENV_TEST_MATURIN` or `PATH` (`.ci/run` installs it from PyPI).
fn maturin() -> PathBuf {
    if let Some(path) = std::env::var_os("PYFUNC_ENV_TEST_MATURIN") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("maturin"))
        .find(|candidate| candidate.is_file())
        .expect("maturin is not on PATH: `python3 -m pip install maturin` (.ci/run does)")
}

fn run_ok(command: &mut Command) -> std::process::Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}\n{}",
        describe(&output)
    );
    output
}

/// The one wheel in `dir`.
fn the_wheel(dir: &Path) -> PathBuf {
    let wheels: Vec<PathBuf> = fs_err::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "whl"))
        .collect();
    assert_eq!(wheels.len(), 1, "{wheels:?}");
    wheels.into_iter().next().unwrap()
}

#[test]
fn pypi_wheel_installs_with_uv_and_does_the_main_job() {
    let ctx = TestContext::new().online();
    let out = ctx.path().join("wheels");
    // The dev profile shares the artifacts the test build already made in the workspace's
    // target dir, so the binary is not compiled a second time; `pip install .` and
    // `maturin build --release` use the release profile, which only changes optimisation.
    run_ok(
        Command::new(maturin())
            .current_dir(repo_root())
            .env("CARGO_TARGET_DIR", env_test::target_dir())
            .args(["build", "--profile", "dev", "--out"])
            .arg(&out),
    );
    let wheel = the_wheel(&out);
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    let version = env!("CARGO_PKG_VERSION");
    // One version, the workspace's; a manylinux tag, which maturin only gives a binary that
    // passes its glibc-symbol audit; no Python ABI (it is an executable, not an extension).
    assert!(
        name.starts_with(&format!("pyfunc_env-{version}-py3-none-manylinux_")),
        "{name}"
    );

    let venv = ctx.path().join("venv");
    run_ok(
        Command::new("uv")
            .args(["venv", "-q", "-p", "3.11"])
            .arg(&venv),
    );
    let python = venv.join("bin/python");
    run_ok(
        Command::new("uv")
            .args(["pip", "install", "-q", "--offline", "--python"])
            .arg(&python)
            .arg(&wheel),
    );
    let binary = venv.join("bin/pyfunc-env");

    // The metadata: version, licence, README as the long description.
    let dist_info = venv.join(format!(
        "lib/python3.11/site-packages/pyfunc_env-{version}.dist-info"
    ));
    let metadata = fs_err::read_to_string(dist_info.join("METADATA")).unwrap();
    for line in [
        "Name: pyfunc-env".to_string(),
        format!("Version: {version}"),
        "License-Expression: Apache-2.0".to_string(),
        "License-File: LICENSE".to_string(),
        "Description-Content-Type: text/markdown; charset=UTF-8; variant=GFM".to_string(),
    ] {
        assert!(
            metadata.lines().any(|l| l == line),
            "{line:?} missing:\n{metadata}"
        );
    }
    assert!(
        metadata.contains("\n# pyfunc-env\n"),
        "README is not the description"
    );
    assert!(dist_info.join("licenses/LICENSE").is_file());

    // `--version` names the version and, built from this checkout, its commit.
    let output = run_ok(Command::new(&binary).arg("--version"));
    let text = stdout(&output);
    let commit = Command::new("git")
        .current_dir(repo_root())
        .args(["rev-parse", "--short=9", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| stdout(&o).trim().to_string());
    match commit {
        Some(hash) => assert!(
            text.starts_with(&format!("pyfunc-env {version} ({hash} ")) && text.ends_with(")\n"),
            "{text}"
        ),
        None => assert_eq!(text, format!("pyfunc-env {version}\n")),
    }

    // Python code finds the executable without PATH.
    let output = run_ok(Command::new(&python).args([
        "-c",
        "import pyfunc_env; print(pyfunc_env.find_pyfunc_env_bin())",
    ]));
    assert_eq!(stdout(&output).trim(), binary.to_str().unwrap());
    // ...and `python -m pyfunc_env` is the executable.
    let output = run_ok(Command::new(&python).args(["-m", "pyfunc_env", "--version"]));
    assert_eq!(stdout(&output), text);

    // The main job, from the installed executable: MLflow's exact bytes.
    let model = repo_root().join("fixtures/models/sklearn-iris");
    let input = repo_root().join("fixtures/inputs/sklearn-iris/dataframe_split.json");
    let output = run_ok(
        ctx.command_for(&binary)
            .args(["run", "--python-source", "system"])
            .arg(&model)
            .args(["--", "predict", "-i"])
            .arg(&input),
    );
    let expected =
        fs_err::read(repo_root().join("fixtures/expected/sklearn-iris/dataframe_split.out"))
            .unwrap();
    assert_eq!(
        output.stdout,
        expected,
        "stdout differs from MLflow's\n{}",
        describe(&output)
    );
}

#[test]
fn completions_are_generated_for_every_shell() {
    let ctx = TestContext::new();
    for (shell, marker) in [
        ("bash", "complete -F _pyfunc__env"),
        ("zsh", "#compdef pyfunc-env"),
        ("fish", "complete -c pyfunc-env"),
        ("elvish", "edit:completion:arg-completer[pyfunc-env]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let output = ctx.command().args(["completions", shell]).output().unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        let script = stdout(&output);
        assert!(script.contains(marker), "{shell}: {script}");
        // Subcommands and their flags are in the script.
        assert!(
            script.contains("create") && script.contains("--env-manager"),
            "{shell}"
        );
    }
    // The bash script really completes: `pyfunc-env cr<TAB>` offers `create`.
    let script = ctx.path().join("completion.bash");
    let output = ctx
        .command()
        .args(["completions", "bash"])
        .output()
        .unwrap();
    fs_err::write(&script, &output.stdout).unwrap();
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}'; COMP_WORDS=(pyfunc-env cr); COMP_CWORD=1; _pyfunc__env pyfunc-env cr pyfunc-env; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    assert_eq!(stdout(&output), "create\n", "{}", describe(&output));

    // An unknown shell is a usage error: bad input, exit 1 (not 2, "something broke").
    let output = ctx
        .command()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(stdout(&output).is_empty());
}
