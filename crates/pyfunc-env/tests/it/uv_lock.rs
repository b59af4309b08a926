//! Models logged from a uv project (issue 23): `--env-manager uv` installs the model's
//! `uv.lock` as MLflow 3.17's `uv sync --frozen --no-dev` does. The scoring conformance of the
//! MLflow-written fixtures is `conformance::pypi_conformance_mlflow_3_17_2_uv`; here: what
//! `deps` and `inspect` show, and the restore MLflow cannot do either.

use serde_json::Value;

use crate::common::{TestContext, describe, repo_root};

fn second_index_model() -> std::path::PathBuf {
    repo_root().join("fixtures/matrix/mlflow-3.17.2-uv/models/uv-second-index")
}

#[test]
fn deps_json_lists_every_locked_package_with_its_source() {
    let ctx = TestContext::new();
    let output = ctx
        .command()
        .args(["deps", "--format", "json", "--env-manager", "uv"])
        .arg(second_index_model())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["env_manager"], "uv");
    let files: Vec<&str> = document["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "MLmodel",
            "python_env.yaml",
            "uv.lock",
            "pyproject.toml",
            ".python-version"
        ]
    );
    let project = &document["spec"]["uv_project"];
    assert_eq!(project["lock"]["sha256"].as_str().unwrap().len(), 64);
    let packages = project["packages"].as_array().unwrap();
    let source_of = |name: &str| {
        packages
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {packages:?}"))["source"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        source_of("pyfunc-env-uv-helper"),
        "registry http://127.0.0.1:38517/simple"
    );
    assert_eq!(source_of("mlflow"), "registry https://pypi.org/simple");
    assert_eq!(source_of("iris-uv-second-index"), "virtual .");
    // requirements.txt is not what uv installs: the spec has no pip layer.
    assert!(
        document["spec"]["pip"]["requirements"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // virtualenv ignores the uv files, as MLflow does.
    let output = ctx
        .command()
        .args(["deps", "--format", "json", "--env-manager", "virtualenv"])
        .arg(second_index_model())
        .output()
        .unwrap();
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["env_manager"], "virtualenv");
    assert!(document["spec"].get("uv_project").is_none());
}

#[test]
fn inspect_shows_the_uv_environment_and_its_indexes() {
    let ctx = TestContext::new();
    let output = ctx
        .command()
        .arg("inspect")
        .arg(second_index_model())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    let uv = text
        .split_once("uv environment  key ")
        .unwrap_or_else(|| panic!("no uv environment in:\n{text}"))
        .1;
    assert!(
        uv.contains(
            "    from: MLmodel, python_env.yaml, uv.lock, pyproject.toml, .python-version\n"
        ),
        "{uv}"
    );
    assert!(
        uv.contains("    uv.lock: 89 packages, installed as `uv sync --frozen --no-dev` (default groups, no extras)\n"),
        "{uv}"
    );
    assert!(
        uv.contains("    indexes: https://pypi.org/simple, http://127.0.0.1:38517/simple\n"),
        "{uv}"
    );
}

/// A uv project that is itself a package (`[build-system]`, the lock's project entry
/// `source = { editable = "." }`): MLflow's `uv sync` builds it from the environment directory,
/// which has the pyproject but none of the project's source, and fails; so does pyfunc-env, with
/// uv's reason and a model error. Online: uv fetches the build backend (`uv_build`) from PyPI.
#[test]
fn pypi_uv_lock_of_a_packaged_project_fails_as_in_mlflow() {
    let ctx = TestContext::new().online();
    let model = ctx.path().join("model");
    fs_err::create_dir(&model).unwrap();
    for (name, text) in [
        (
            "MLmodel",
            "flavors:\n  python_function:\n    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n    loader_module: mlflow.pyfunc.model\n    python_version: 3.11.7\nmlflow_version: 3.17.2\n",
        ),
        (
            "python_env.yaml",
            "python: 3.11.7\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n",
        ),
        ("requirements.txt", "mlflow==3.17.2\n"),
        (
            "uv.lock",
            "version = 1\nrevision = 3\nrequires-python = \">=3.11\"\n\n[[package]]\nname = \"p1\"\nversion = \"0.1.0\"\nsource = { editable = \".\" }\n",
        ),
        (
            "pyproject.toml",
            "[project]\nname = \"p1\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = []\n\n[build-system]\nrequires = [\"uv_build>=0.13.9,<0.14.0\"]\nbuild-backend = \"uv_build\"\n",
        ),
    ] {
        fs_err::write(model.join(name), text).unwrap();
    }
    let output = ctx
        .command()
        .args(["create", "--env-manager", "uv", "--python-source", "system"])
        .arg(&model)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        stderr.contains("Failed to build `p1") && stderr.contains("src/p1/__init__.py"),
        "{}",
        describe(&output)
    );
    // The model's error (exit 1), and the way out MLflow's message gives too.
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(stderr.contains("uv.lock"), "{}", describe(&output));
    assert!(
        stderr.contains("--env-manager virtualenv"),
        "{}",
        describe(&output)
    );
}

/// `lock` of a uv.lock environment: the env manager is `uv`, and it pins what the uv.lock
/// installed (the default group's `tabulate`), not `requirements.txt` (which also lists the
/// non-default group's `toolz` and the extra's `termcolor`).
#[test]
fn pypi_lock_of_a_uv_model_pins_what_the_uv_lock_installed() {
    let ctx = TestContext::new().online();
    let model = repo_root().join("fixtures/matrix/mlflow-3.17.2-uv/models/uv-group-extra");
    let lock = ctx.path().join("model.lock");
    let output = ctx
        .command()
        .arg("lock")
        .arg(&model)
        .args(["--env-manager", "uv", "--python-source", "system", "-o"])
        .arg(&lock)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let text = fs_err::read_to_string(&lock).unwrap();
    assert!(
        text.lines().next().unwrap().ends_with(" env-manager=uv"),
        "{text}"
    );
    assert!(
        text.contains("/tabulate-0.9.0-py3-none-any.whl\n"),
        "{text}"
    );
    assert!(
        !text.contains("toolz") && !text.contains("termcolor"),
        "{text}"
    );
}
