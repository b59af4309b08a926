//! The environment key: what changes it and what must not.
//!
//! One test per input that must change the key, one per formatting change that must not.

use std::path::Path;

use env_spec::{EnvManager, KeyContext, ModelDir};

const MLMODEL: &str = "flavors:\n  python_function:\n    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n    loader_module: mlflow.sklearn\n    python_version: 3.11.7\n";
const CONDA: &str = "channels:\n- conda-forge\n- defaults\ndependencies:\n- python=3.11.7\n- pip<=23.3\n- numpy=1.26\n- pip:\n  - mlflow==2.9.2\n  - scikit-learn==1.3.2\n";
const PYTHON_ENV: &str = "python: 3.11.7\nbuild_dependencies:\n- pip==23.3.1\n- setuptools==68.2.2\ndependencies:\n- -r requirements.txt\n";
const REQUIREMENTS: &str = "mlflow==2.9.2\nscikit-learn==1.3.2\n-c constraints.txt\n";
const CONSTRAINTS: &str = "numpy<2\n";

struct Files<'a> {
    mlmodel: &'a str,
    conda: &'a str,
    python_env: &'a str,
    requirements: &'a str,
    constraints: &'a str,
}

const BASE: Files<'static> = Files {
    mlmodel: MLMODEL,
    conda: CONDA,
    python_env: PYTHON_ENV,
    requirements: REQUIREMENTS,
    constraints: CONSTRAINTS,
};

fn write(dir: &Path, files: &Files) {
    for (name, text) in [
        ("MLmodel", files.mlmodel),
        ("conda.yaml", files.conda),
        ("python_env.yaml", files.python_env),
        ("requirements.txt", files.requirements),
        ("constraints.txt", files.constraints),
    ] {
        fs_err::write(dir.join(name), text).unwrap();
    }
}

fn key_with(files: &Files, manager: EnvManager, platform: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), files);
    let model = ModelDir::open(dir.path()).unwrap();
    let resolved = model.spec(manager).unwrap();
    resolved
        .spec
        .key(&KeyContext::for_platform(platform))
        .to_string()
}

fn key(files: &Files, manager: EnvManager) -> String {
    key_with(files, manager, "linux-64")
}

fn both(files: &Files) -> [String; 2] {
    [
        key(files, EnvManager::Conda),
        key(files, EnvManager::Virtualenv),
    ]
}

#[test]
fn same_files_same_key_across_directories() {
    assert_eq!(both(&BASE), both(&BASE));
}

#[test]
fn comments_whitespace_line_endings_and_key_order_do_not_change_the_key() {
    let base = both(&BASE);
    let crlf = |s: &str| s.replace('\n', "\r\n");
    let variants = [
        Files {
            requirements: "# pinned by the trainer\n\nmlflow == 2.9.2   # exact\n  scikit-learn==1.3.2\n-c   constraints.txt\n",
            constraints: "# keep numpy 1.x\nnumpy <2\n",
            ..BASE
        },
        Files {
            mlmodel: &crlf(MLMODEL),
            conda: &crlf(CONDA),
            python_env: &crlf(PYTHON_ENV),
            requirements: &crlf(REQUIREMENTS),
            constraints: &crlf(CONSTRAINTS),
        },
        Files {
            conda: "dependencies:   # reordered keys\n- python=3.11.7\n- pip<=23.3\n- numpy=1.26\n- pip: [mlflow==2.9.2, scikit-learn==1.3.2]\nchannels: [conda-forge, defaults]\nname: whatever\n",
            python_env: "dependencies: ['-r requirements.txt']\nbuild_dependencies: [pip==23.3.1, setuptools==68.2.2]\npython: '3.11.7'\n",
            mlmodel: "utc_time_created: '2024-01-01'\nflavors:\n  python_function: {python_version: 3.11.7, loader_module: mlflow.sklearn, env: {virtualenv: python_env.yaml, conda: conda.yaml}}\n",
            ..BASE
        },
        Files {
            requirements: "MLflow==2.9.2\nScikit_Learn==1.3.2\n-c constraints.txt\n",
            ..BASE
        },
    ];
    for (i, files) in variants.iter().enumerate() {
        assert_eq!(both(files), base, "variant {i} changed the key");
    }
}

fn assert_changes(files: &Files, managers: &[EnvManager]) {
    for manager in managers {
        assert_ne!(
            key(files, *manager),
            key(&BASE, *manager),
            "{manager} key did not change"
        );
    }
}

#[test]
fn python_version_changes_the_key() {
    assert_changes(
        &Files {
            python_env: &PYTHON_ENV.replace("3.11.7", "3.11.8"),
            conda: &CONDA.replace("python=3.11.7", "python=3.11.8"),
            ..BASE
        },
        &[EnvManager::Conda, EnvManager::Virtualenv],
    );
}

#[test]
fn channels_and_their_order_change_the_key() {
    assert_changes(
        &Files {
            conda: &CONDA.replace("- defaults\n", ""),
            ..BASE
        },
        &[EnvManager::Conda],
    );
    assert_changes(
        &Files {
            conda: &CONDA.replace("- conda-forge\n- defaults\n", "- defaults\n- conda-forge\n"),
            ..BASE
        },
        &[EnvManager::Conda],
    );
}

#[test]
fn conda_specs_change_the_key() {
    assert_changes(
        &Files {
            conda: &CONDA.replace("numpy=1.26", "numpy=1.25"),
            ..BASE
        },
        &[EnvManager::Conda],
    );
    assert_changes(
        &Files {
            conda: &CONDA.replace("- numpy=1.26\n", ""),
            ..BASE
        },
        &[EnvManager::Conda],
    );
}

#[test]
fn pip_requirements_change_the_key() {
    assert_changes(
        &Files {
            requirements: &REQUIREMENTS.replace("scikit-learn==1.3.2", "scikit-learn==1.3.1"),
            conda: &CONDA.replace("scikit-learn==1.3.2", "scikit-learn==1.3.1"),
            ..BASE
        },
        &[EnvManager::Conda, EnvManager::Virtualenv],
    );
    assert_changes(
        &Files {
            python_env: &PYTHON_ENV.replace("setuptools==68.2.2", "setuptools==69.0.0"),
            ..BASE
        },
        &[EnvManager::Virtualenv],
    );
}

#[test]
fn constraints_change_the_key() {
    assert_changes(
        &Files {
            constraints: "numpy<1.26\n",
            ..BASE
        },
        &[EnvManager::Virtualenv],
    );
}

#[test]
fn indexes_change_the_key() {
    let requirements = format!("--extra-index-url https://mirror.example/simple\n{REQUIREMENTS}");
    assert_changes(
        &Files {
            requirements: &requirements,
            ..BASE
        },
        &[EnvManager::Virtualenv],
    );
    let requirements = format!("--index-url https://mirror.example/simple\n{REQUIREMENTS}");
    assert_changes(
        &Files {
            requirements: &requirements,
            ..BASE
        },
        &[EnvManager::Virtualenv],
    );
    let conda = CONDA.replace(
        "  - mlflow==2.9.2\n",
        "  - --find-links https://wheels.example/\n  - mlflow==2.9.2\n",
    );
    assert_changes(
        &Files {
            conda: &conda,
            ..BASE
        },
        &[EnvManager::Conda],
    );
}

#[test]
fn platform_changes_the_key() {
    for manager in [EnvManager::Conda, EnvManager::Virtualenv] {
        assert_ne!(
            key_with(&BASE, manager, "linux-64"),
            key_with(&BASE, manager, "linux-aarch64")
        );
    }
}

#[test]
fn env_manager_changes_the_key() {
    let [conda, virtualenv] = both(&BASE);
    assert_ne!(conda, virtualenv);
}

#[test]
fn local_file_contents_change_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files {
        requirements: "./dist/pkg-1.0-py3-none-any.whl\n",
        ..BASE
    };
    write(dir.path(), &files);
    fs_err::create_dir(dir.path().join("dist")).unwrap();
    let wheel = dir.path().join("dist/pkg-1.0-py3-none-any.whl");
    let context = KeyContext::for_platform("linux-64");
    fs_err::write(&wheel, "one").unwrap();
    let first = ModelDir::open(dir.path())
        .unwrap()
        .spec(EnvManager::Virtualenv)
        .unwrap()
        .spec
        .key(&context);
    fs_err::write(&wheel, "two").unwrap();
    let second = ModelDir::open(dir.path())
        .unwrap()
        .spec(EnvManager::Virtualenv)
        .unwrap()
        .spec
        .key(&context);
    assert_ne!(first, second);
}

#[test]
fn key_context_inputs_change_the_key() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &BASE);
    let spec = ModelDir::open(dir.path())
        .unwrap()
        .spec(EnvManager::Virtualenv)
        .unwrap()
        .spec;
    let base = KeyContext::for_platform("linux-64");
    let variants = [
        KeyContext {
            virtual_packages: vec!["__glibc=2.36".into()],
            ..base.clone()
        },
        KeyContext {
            python_source: Some("system".into()),
            ..base.clone()
        },
        KeyContext {
            exclude_newer: Some("2024-01-01".into()),
            ..base.clone()
        },
        KeyContext {
            compile_bytecode: false,
            ..base.clone()
        },
        KeyContext {
            uv: Some("0.13.9".into()),
            ..base.clone()
        },
        KeyContext {
            layout: 2,
            ..base.clone()
        },
    ];
    for variant in variants {
        assert_ne!(spec.key(&variant), spec.key(&base), "{variant:?}");
    }
}

// ---- uv projects (issue 23): uv.lock, pyproject.toml and .python-version with `uv` ----

const UV_LOCK: &str = "version = 1\nrevision = 3\nrequires-python = \"==3.11.*\"\n\n[[package]]\nname = \"demo\"\nversion = \"0.1.0\"\nsource = { virtual = \".\" }\ndependencies = [{ name = \"six\" }]\n\n[[package]]\nname = \"six\"\nversion = \"1.17.0\"\nsource = { registry = \"https://pypi.org/simple\" }\n";
const PYPROJECT: &str = "[project]\nname = \"demo\"\nversion = \"0.1.0\"\nrequires-python = \"==3.11.*\"\ndependencies = [\"six==1.17.0\"]\n";

/// The `uv` key of BASE plus the uv files given (`None`: absent).
fn uv_key(lock: Option<&str>, pyproject: Option<&str>, python_version: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &BASE);
    for (name, text) in [
        ("uv.lock", lock),
        ("pyproject.toml", pyproject),
        (".python-version", python_version),
    ] {
        if let Some(text) = text {
            fs_err::write(dir.path().join(name), text).unwrap();
        }
    }
    let model = ModelDir::open(dir.path()).unwrap();
    model
        .spec(EnvManager::Uv)
        .unwrap()
        .spec
        .key(&KeyContext::for_platform("linux-64"))
        .to_string()
}

#[test]
fn uv_without_a_lock_shares_the_virtualenv_key() {
    // MLflow's uv manager installs requirements.txt then, like virtualenv; a pyproject alone
    // does not make it use uv sync (`has_uv_lock_artifact` checks uv.lock only).
    let virtualenv = key(&BASE, EnvManager::Virtualenv);
    assert_eq!(uv_key(None, None, None), virtualenv);
    assert_eq!(uv_key(None, Some(PYPROJECT), Some("3.11\n")), virtualenv);
    // With a lock, it is another environment.
    assert_ne!(uv_key(Some(UV_LOCK), Some(PYPROJECT), None), virtualenv);
}

#[test]
fn uv_lock_contents_change_the_key() {
    let base = uv_key(Some(UV_LOCK), Some(PYPROJECT), Some("3.11\n"));
    assert_eq!(base, uv_key(Some(UV_LOCK), Some(PYPROJECT), Some("3.11\n")));
    let other = UV_LOCK.replace("1.17.0", "1.16.0");
    assert_ne!(base, uv_key(Some(&other), Some(PYPROJECT), Some("3.11\n")));
}

#[test]
fn pyproject_contents_change_the_key() {
    let base = uv_key(Some(UV_LOCK), Some(PYPROJECT), None);
    // Absent: MLflow writes its minimal pyproject instead, another project.
    assert_ne!(base, uv_key(Some(UV_LOCK), None, None));
    let groups = format!("{PYPROJECT}\n[tool.uv]\ndefault-groups = []\n");
    assert_ne!(base, uv_key(Some(UV_LOCK), Some(&groups), None));
    // The bytes uv is given are keyed: even a comment is a change (uv_project's module doc).
    let comment = format!("# a comment\n{PYPROJECT}");
    assert_ne!(base, uv_key(Some(UV_LOCK), Some(&comment), None));
}

#[test]
fn python_version_file_changes_the_key() {
    let base = uv_key(Some(UV_LOCK), Some(PYPROJECT), None);
    let with = uv_key(Some(UV_LOCK), Some(PYPROJECT), Some("3.11\n"));
    assert_ne!(base, with);
    assert_ne!(
        with,
        uv_key(Some(UV_LOCK), Some(PYPROJECT), Some("3.11.7\n"))
    );
}

#[test]
fn uv_ignores_requirements_when_it_restores_from_the_lock() {
    // MLflow's uv sync never reads requirements.txt: changing it changes nothing.
    let dir = tempfile::tempdir().unwrap();
    let files = Files {
        requirements: "mlflow==2.9.2\nscikit-learn==1.4.0\n",
        ..BASE
    };
    write(dir.path(), &files);
    fs_err::write(dir.path().join("uv.lock"), UV_LOCK).unwrap();
    fs_err::write(dir.path().join("pyproject.toml"), PYPROJECT).unwrap();
    let changed = ModelDir::open(dir.path())
        .unwrap()
        .spec(EnvManager::Uv)
        .unwrap()
        .spec
        .key(&KeyContext::for_platform("linux-64"))
        .to_string();
    assert_eq!(changed, uv_key(Some(UV_LOCK), Some(PYPROJECT), None));
}

#[test]
fn an_invalid_uv_lock_is_the_models_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &BASE);
    fs_err::write(dir.path().join("uv.lock"), "version = [\n").unwrap();
    let err = ModelDir::open(dir.path())
        .unwrap()
        .spec(EnvManager::Uv)
        .unwrap_err();
    assert!(err.is_user_error());
    assert!(err.to_string().starts_with("Invalid `uv.lock`"), "{err}");
    // virtualenv and conda never read it.
    ModelDir::open(dir.path())
        .unwrap()
        .spec(EnvManager::Virtualenv)
        .unwrap();
}

#[test]
fn the_interpreter_comes_from_python_env_yaml_even_when_python_version_disagrees() {
    // DEVIATIONS.md `uv-python-version`: the environment's Python is python_env.yaml's (what
    // MLflow's `uv venv --python` is given); a `.python-version` naming another one is keyed
    // but does not choose the interpreter.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &BASE);
    fs_err::write(dir.path().join("uv.lock"), UV_LOCK).unwrap();
    fs_err::write(dir.path().join("pyproject.toml"), PYPROJECT).unwrap();
    fs_err::write(dir.path().join(".python-version"), "3.12\n").unwrap();
    let spec = ModelDir::open(dir.path())
        .unwrap()
        .spec(EnvManager::Uv)
        .unwrap()
        .spec;
    assert_eq!(spec.python.as_deref(), Some("3.11.7"));
}
