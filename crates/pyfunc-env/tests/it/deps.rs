//! `deps` and `inspect`: MLflow's `get_model_dependencies` bytes, the JSON spec and its key, the
//! readable summary. Malformed model directories are in `deps/bad_input.rs`.

mod bad_input;

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{
    TestContext, copy_dir, describe, fixture, json, pyfunc_env_snapshot, repo_root, stderr, stdout,
};

const FIXTURES: &[&str] = &[
    "conda-channels",
    "constraints",
    "custom-pyfunc",
    "failing-pyfunc",
    "sklearn-iris",
];

fn deps(ctx: &TestContext, model: &Path, args: &[&str]) -> Output {
    ctx.command()
        .arg("deps")
        .arg(model)
        .args(args)
        .output()
        .unwrap()
}

fn corpus_case(case: &str) -> PathBuf {
    repo_root().join("tests/corpus/cases").join(case)
}

/// `get_model_dependencies` as MLflow recorded it for a corpus case.
fn recorded(case: &str) -> serde_json::Value {
    let text = fs_err::read_to_string(corpus_case(case).join("expected.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    expected["get_model_dependencies"].clone()
}

/// Asserts a successful run printed exactly `expected` on stdout.
fn assert_bytes(output: &Output, expected: &[u8], what: &str) {
    assert!(output.status.success(), "{what}: {}", describe(output));
    assert!(
        output.stdout == expected,
        "{what}: stdout differs from MLflow's file\n--- expected ---\n{:?}\n--- got ---\n{:?}",
        String::from_utf8_lossy(expected),
        String::from_utf8_lossy(&output.stdout)
    );
}

/// An MLflow 3 logged-model directory (`models/m-<id>/`, the model under `artifacts/`) is
/// opened for its `artifacts/`, and the command says so (`OpenedModel::notices`).
#[test]
fn a_logged_model_directory_is_read_from_its_artifacts() {
    let ctx = TestContext::new();
    let logged = ctx.path().join("m-1");
    copy_dir(&fixture("sklearn-iris"), &logged.join("artifacts"));
    let output = deps(&ctx, &logged, &["--format", "pip"]);
    assert_bytes(
        &output,
        &fs_err::read(fixture("sklearn-iris").join("requirements.txt")).unwrap(),
        "logged model",
    );
    assert_eq!(
        ctx.filter(&stderr(&output)),
        "Using the model in `[TEMP_DIR]/m-1/artifacts` (an MLflow 3 logged-model directory keeps it under `artifacts/`)\n"
    );
}

#[test]
fn deps_prints_the_files_mlflow_returns_for_the_fixture_models() {
    let ctx = TestContext::new();
    for name in FIXTURES {
        let model = fixture(name);
        // Every fixture has a requirements.txt (which `get_model_dependencies(format="pip")`
        // returns as is) and `env: {conda: conda.yaml, ...}` (what `format="conda"` returns).
        let mlmodel = fs_err::read_to_string(model.join("MLmodel")).unwrap();
        assert!(mlmodel.contains("conda: conda.yaml"), "{name}");
        for (format, file) in [("pip", "requirements.txt"), ("conda", "conda.yaml")] {
            let output = deps(&ctx, &model, &["--format", format]);
            let expected = fs_err::read(model.join(file)).unwrap();
            assert_bytes(&output, &expected, &format!("{name} --format {format}"));
            assert_eq!(stderr(&output), "", "{name} --format {format}");
        }
        // pip is the default format.
        let output = deps(&ctx, &model, &[]);
        assert_bytes(
            &output,
            &fs_err::read(model.join("requirements.txt")).unwrap(),
            name,
        );
    }
}

/// Corpus cases with what makes each one interesting.
const CORPUS_CASES: &[(&str, &str)] = &[
    ("001", "requirements.txt without a final newline"),
    (
        "006",
        "no requirements.txt: the pip list of conda.yaml, with a warning",
    ),
    ("008", "CRLF requirements.txt and conda.yaml"),
    (
        "068",
        "CRLF conda.yaml without a final newline; pip list extracted",
    ),
    ("085", "neither file ends with a newline"),
    ("112", "CRLF conda.yaml; pip list extracted, with a warning"),
];

#[test]
fn deps_prints_the_bytes_mlflow_recorded_for_corpus_cases() {
    let ctx = TestContext::new();
    for (case, why) in CORPUS_CASES {
        let recorded = recorded(case);
        for format in ["pip", "conda"] {
            let what = format!("case {case} ({why}) --format {format}");
            let expected = &recorded[format];
            assert_eq!(expected["ok"], true, "{what}");
            let output = deps(&ctx, &corpus_case(case), &["--format", format]);
            assert_bytes(
                &output,
                expected["value"]["text"].as_str().unwrap().as_bytes(),
                &what,
            );
            // MLflow's warnings (e.g. "The following conda dependencies have been excluded
            // from the environment file: ...") go to stderr, one `warning:` line each.
            let err = stderr(&output);
            let warnings = expected["warnings"].as_array().unwrap();
            assert_eq!(
                err.lines().filter(|l| l.starts_with("warning: ")).count(),
                warnings.len(),
                "{what}: {err}"
            );
            for warning in warnings {
                assert!(err.contains(warning.as_str().unwrap()), "{what}: {err}");
            }
            assert!(!err.contains("error"), "{what}: {err}");
        }
    }
}

#[test]
fn deps_fails_where_mlflow_fails_for_corpus_cases() {
    let ctx = TestContext::new();
    // (case, format, MLflow's exception): MLflow fails on these too.
    let cases = [
        ("012", "pip", "FileNotFoundError"),
        ("012", "conda", "FileNotFoundError"),
        ("050", "pip", "MlflowException"),
        ("064", "conda", "KeyError"),
        ("079", "conda", "TypeError"),
        ("082", "conda", "ScannerError"),
    ];
    for (case, format, mlflow) in cases {
        let expected = &recorded(case)[format];
        assert_eq!(expected["ok"], false, "{case}");
        assert_eq!(expected["error"]["type"], mlflow, "{case}");
    }
    let deps = |case: &str, format: &str| {
        let mut command = ctx.command();
        command
            .arg("deps")
            .arg(corpus_case(case))
            .args(["--format", format]);
        command
    };
    pyfunc_env_snapshot!(ctx.filters(), deps("012", "pip"), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Failed to get the pip requirements of `[REPO]/tests/corpus/cases/012`
          Caused by: `conda.yaml` does not exist (referenced from `flavors.python_function.env` in `MLmodel`)

        hint: The model's `MLmodel` names an environment file that is not in the model directory; copy the whole model directory
    "#);
    pyfunc_env_snapshot!(ctx.filters(), deps("012", "conda"), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Failed to get the conda environment of `[REPO]/tests/corpus/cases/012`
          Caused by: `conda.yaml` does not exist (referenced from `flavors.python_function.env` in `MLmodel`)

        hint: The model's `MLmodel` names a conda file that is not in the model directory; copy the whole model directory
    "#);
    pyfunc_env_snapshot!(ctx.filters(), deps("050", "pip"), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Failed to get the pip requirements of `[REPO]/tests/corpus/cases/050`
          Caused by: `MLmodel` has no `python_function` flavor (flavors: `sklearn`)

        hint: Only models that MLflow can load with `mlflow.pyfunc.load_model` have an environment to build; re-save the model with a flavor that adds `python_function`
    "#);
    pyfunc_env_snapshot!(ctx.filters(), deps("064", "conda"), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Failed to get the conda environment of `[REPO]/tests/corpus/cases/064`
          Caused by: The `python_function` flavor in `MLmodel` has no `env` entry, so MLflow cannot find the model's environment file
           --> MLmodel:3:5
            |
          3 |     cloudpickle_version: 3.0.0
            |     ^^^^^^^^^^^^^^^^^^^^^^^^^^ this flavor

        hint: Add `env: {conda: conda.yaml, virtualenv: python_env.yaml}` under `flavors.python_function` in `MLmodel`, naming files that exist in the model directory
    "#);
    pyfunc_env_snapshot!(ctx.filters(), deps("079", "conda"), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Failed to get the conda environment of `[REPO]/tests/corpus/cases/079`
          Caused by: `flavors.python_function.env` in `MLmodel` is empty, so MLflow cannot find the model's environment file
            --> MLmodel:15:10
             |
          15 |     env: null
             |          ^^^^ empty

        hint: Set it to `{conda: conda.yaml, virtualenv: python_env.yaml}`, naming files that exist in the model directory
    "#);
    pyfunc_env_snapshot!(ctx.filters(), deps("082", "conda"), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Failed to get the conda environment of `[REPO]/tests/corpus/cases/082`
          Caused by: Invalid YAML in `MLmodel` at line 18, column 1: could not find expected ':'
            --> MLmodel:18:1
             |
          18 | =======
             | ^ here

        hint: `MLmodel` contains git merge-conflict markers (`<<<<<<<`, `=======`, `>>>>>>>`, first at line 16); resolve the conflict
    "#);
}

#[test]
fn deps_output_file_gets_the_same_bytes_and_stdout_stays_empty() {
    let ctx = TestContext::new();
    let cases: &[(PathBuf, &str)] = &[
        (fixture("constraints"), "pip"),
        (fixture("constraints"), "conda"),
        (fixture("constraints"), "json"),
        (corpus_case("006"), "pip"),
        (corpus_case("068"), "conda"),
    ];
    for (index, (model, format)) in cases.iter().enumerate() {
        let what = format!("{} --format {format}", model.display());
        let to_stdout = deps(&ctx, model, &["--format", format]);
        assert!(
            to_stdout.status.success(),
            "{what}: {}",
            describe(&to_stdout)
        );
        let target = ctx.path().join(format!("out-{index}/deps.txt"));
        fs_err::create_dir_all(target.parent().unwrap()).unwrap();
        let output = ctx
            .command()
            .arg("deps")
            .arg(model)
            .args(["--format", format, "-o"])
            .arg(&target)
            .output()
            .unwrap();
        assert!(output.status.success(), "{what}: {}", describe(&output));
        assert_eq!(stdout(&output), "", "{what}");
        assert_eq!(fs_err::read(&target).unwrap(), to_stdout.stdout, "{what}");
        let err = stderr(&output);
        assert!(err.contains("Wrote "), "{what}: {err}");
        // Warnings are printed whichever way the data goes.
        assert_eq!(
            err.lines().filter(|l| l.starts_with("warning: ")).count(),
            stderr(&to_stdout)
                .lines()
                .filter(|l| l.starts_with("warning: "))
                .count(),
            "{what}: {err}"
        );
        // Writing again replaces the file.
        let again = ctx
            .command()
            .arg("deps")
            .arg(model)
            .args(["--format", format, "--output"])
            .arg(&target)
            .output()
            .unwrap();
        assert!(again.status.success(), "{what}: {}", describe(&again));
        assert_eq!(fs_err::read(&target).unwrap(), to_stdout.stdout, "{what}");
    }
}

#[test]
fn deps_output_to_a_directory_or_a_missing_directory_is_refused() {
    let ctx = TestContext::new();
    let deps_to = |target: &Path| {
        let mut command = ctx.command();
        command
            .arg("deps")
            .arg(fixture("sklearn-iris"))
            .arg("-o")
            .arg(target);
        command
    };
    pyfunc_env_snapshot!(ctx.filters(), deps_to(ctx.path()), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Cannot write to `[TEMP_DIR]`: it is a directory

        hint: Pass a file name to `-o`, e.g. `-o requirements.txt`
    "#);
    pyfunc_env_snapshot!(
        ctx.filters(),
        deps_to(&ctx.path().join("missing/deps.txt")),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Cannot write to `[TEMP_DIR]/missing/deps.txt`: the directory `[TEMP_DIR]/missing` does not exist

        hint: Create the directory first, or pass another path to `-o`
    "#
    );
}

/// Replaces what depends on the machine (paths, the key, platform and virtual packages).
fn filter_spec(ctx: &TestContext, text: &str) -> String {
    let document: serde_json::Value = serde_json::from_str(text).unwrap();
    let mut text = ctx.filter(text);
    let context = &document["key_context"];
    text = text.replace(
        &format!("\"platform\": {}", context["platform"]),
        "\"platform\": \"[PLATFORM]\"",
    );
    for package in context["virtual_packages"].as_array().unwrap() {
        text = text.replace(&package.to_string(), "\"[VIRTUAL_PACKAGE]\"");
    }
    // The version of the uv on PATH (or the pinned one).
    if let Some(uv) = context.get("uv") {
        text = text.replace(&format!("\"uv\": {uv}"), "\"uv\": \"[UV_VERSION]\"");
    }
    text
}

#[test]
fn deps_json_schema() {
    let ctx = TestContext::new();
    let model = ctx.copy_fixture("constraints");
    let output = deps(&ctx, &model, &["--format", "json"]);
    let document = json(&output);
    assert_eq!(stderr(&output), "");
    assert_eq!(
        document
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        [
            "schema_version",
            "model_dir",
            "env_manager",
            "key",
            "key_context",
            "files",
            "spec",
            "warnings"
        ]
    );
    insta::assert_snapshot!(filter_spec(&ctx, &stdout(&output)), @r#"
    {
      "schema_version": 1,
      "model_dir": "[TEMP_DIR]/models/constraints",
      "env_manager": "virtualenv",
      "key": "[KEY]",
      "key_context": {
        "platform": "[PLATFORM]",
        "virtual_packages": [
          "[VIRTUAL_PACKAGE]"
        ],
        "python_source": "auto",
        "uv": "[UV_VERSION]",
        "compile_bytecode": true,
        "layout": 1
      },
      "files": [
        "MLmodel",
        "python_env.yaml",
        "requirements.txt",
        "constraints.txt"
      ],
      "spec": {
        "env_manager": "virtualenv",
        "python": "3.11.7",
        "build": {
          "requirements": [
            {
              "target": {
                "named": "pip==26.3"
              }
            },
            {
              "target": {
                "named": "setuptools==84.2.1"
              }
            },
            {
              "target": {
                "named": "wheel==0.48.0"
              }
            }
          ]
        },
        "pip": {
          "requirements": [
            {
              "target": {
                "named": "mlflow==3.17.2"
              }
            },
            {
              "target": {
                "named": "scikit-learn==1.9.1"
              }
            }
          ],
          "constraints": [
            {
              "target": {
                "named": "numpy==2.4.6"
              }
            },
            {
              "target": {
                "named": "pandas==3.1.1"
              }
            },
            {
              "target": {
                "named": "scipy==1.17.1"
              }
            },
            {
              "target": {
                "named": "cloudpickle==3.1.3"
              }
            }
          ]
        }
      },
      "warnings": []
    }
    "#);
}

#[test]
fn deps_json_key_is_stable_and_depends_on_the_env_manager() {
    let ctx = TestContext::new();
    let key_of = |output: &Output| json(output)["key"].as_str().unwrap().to_string();
    let original = fixture("sklearn-iris");
    let first = deps(&ctx, &original, &["--format", "json"]);
    let first_key = key_of(&first);
    assert_eq!(first_key.len(), 32, "{first_key}");
    assert!(first_key.bytes().all(|b| b.is_ascii_hexdigit()));
    // Twice: the same document, byte for byte.
    let second = deps(&ctx, &original, &["--format", "json"]);
    assert_eq!(first.stdout, second.stdout);

    // A copy elsewhere, and a copy seen from another context (other HOME, cache, cwd): the same
    // key, only `model_dir` differs.
    let other = TestContext::new();
    let copies = [
        ctx.copy_fixture("sklearn-iris"),
        other.copy_fixture("sklearn-iris"),
    ];
    for (copy, context) in copies.iter().zip([&ctx, &other]) {
        let output = deps(context, copy, &["--format", "json"]);
        let document = json(&output);
        assert_eq!(document["key"], first_key.as_str(), "{}", copy.display());
        assert_eq!(
            document["model_dir"],
            copy.canonicalize().unwrap().display().to_string()
        );
        let mut original: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
        original["model_dir"] = document["model_dir"].clone();
        assert_eq!(document, original);
    }

    // MLflow's default for a model with python_env.yaml is virtualenv; uv builds the same
    // environment; conda is another environment with another key.
    let default = json(&first);
    assert_eq!(default["env_manager"], "virtualenv");
    for manager in ["virtualenv", "uv"] {
        let output = deps(
            &ctx,
            &original,
            &["--format", "json", "--env-manager", manager],
        );
        assert_eq!(output.stdout, first.stdout, "{manager}");
    }
    let conda = json(&deps(
        &ctx,
        &original,
        &["--format", "json", "--env-manager", "conda"],
    ));
    assert_eq!(conda["env_manager"], "conda");
    assert_ne!(conda["key"], default["key"]);
    assert_eq!(conda["files"], serde_json::json!(["MLmodel", "conda.yaml"]));
    assert_eq!(conda["spec"]["conda"]["channels"][0], "conda-forge");

    // Changing an environment file changes the key.
    let copy = &copies[0];
    fs_err::write(
        copy.join("requirements.txt"),
        "mlflow==3.17.2\nnumpy==2.4.5\n",
    )
    .unwrap();
    let changed = json(&deps(&ctx, copy, &["--format", "json"]));
    assert_ne!(changed["key"], default["key"]);

    // `local` builds nothing, so it has no spec.
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command()
            .arg("deps")
            .arg(&original)
            .args(["--format", "json", "--env-manager", "local"]),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: `--env-manager local` builds no environment, so it has no spec

        hint: Pass `--env-manager conda`, `virtualenv` or `uv`, or leave it out for the model's default
    "#
    );
}

#[test]
fn inspect_summarises_a_fixture() {
    let ctx = TestContext::new();
    let model = ctx.copy_fixture("constraints");
    let output = ctx.command().arg("inspect").arg(&model).output().unwrap();
    let text = stdout(&output);
    // The keys are the ones `deps --format json` prints.
    for manager in ["virtualenv", "conda"] {
        let key = json(&deps(
            &ctx,
            &model,
            &["--format", "json", "--env-manager", manager],
        ))["key"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            text.contains(&format!("{manager} environment")) && text.contains(&key),
            "{manager} {key}: {text}"
        );
    }
    pyfunc_env_snapshot!(ctx.filters(), ctx.command().arg("inspect").arg(&model), @r#"
        exit_code: 0 (success)
        ----- stdout -----
        Model: [TEMP_DIR]/models/constraints
          MLflow version: 3.17.2
          Flavors: python_function, sklearn
          Loader module: mlflow.sklearn
          Python version (MLmodel): 3.11.7
          Signature inputs: sepal_length (double), sepal_width (double), petal_length (double)
          Signature outputs: tensor float64 [-1]
        Environment files:
          virtualenv / uv: python_env.yaml
          conda: conda.yaml
          Default env manager: virtualenv
        virtualenv environment (default)  key [KEY]
            from: MLmodel, python_env.yaml, requirements.txt, constraints.txt
            python: 3.11.7
            build:
              pip==26.3
              setuptools==84.2.1
              wheel==0.48.0
            pip:
              mlflow==3.17.2
              scikit-learn==1.9.1
              constraint numpy==2.4.6
              constraint pandas==3.1.1
              constraint scipy==1.17.1
              constraint cloudpickle==3.1.3
        conda environment  key [KEY]
            from: MLmodel, conda.yaml, constraints.txt
            channels: conda-forge
            conda:
              python 3.11.7.*
              pip <=26.3
            pip:
              mlflow==3.17.2
              scikit-learn==1.9.1
              constraint numpy==2.4.6
              constraint pandas==3.1.1
              constraint scipy==1.17.1
              constraint cloudpickle==3.1.3

        ----- stderr -----
    "#);
}

/// `inspect` lists a warning both environments share once, and shows the whole summary even
/// when the default environment cannot be built, then fails with the spec's error (exit 1).
#[test]
fn inspect_shows_a_shared_warning_once_and_fails_on_a_broken_default() {
    let ctx = TestContext::new();
    let model = ctx.path().join("model");
    fs_err::create_dir_all(&model).unwrap();
    // `python_version: 3.10` is a YAML float: a warning of the MLmodel, so of both environments.
    fs_err::write(
        model.join("MLmodel"),
        "flavors:\n  python_function:\n    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n    loader_module: mlflow.sklearn\n    python_version: 3.10\nmlflow_version: 2.9.2\n",
    )
    .unwrap();
    fs_err::write(
        model.join("conda.yaml"),
        "channels: [conda-forge]\ndependencies:\n- python=3.10.13\n- pip\n- pip:\n  - mlflow==2.9.2\n",
    )
    .unwrap();
    fs_err::write(
        model.join("python_env.yaml"),
        "python: 3.10.13\nbuild_dependencies: [pip]\ndependencies: [mlflow==2.9.2]\n",
    )
    .unwrap();
    let output = ctx.command().arg("inspect").arg(&model).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        stdout(&output)
            .matches("the YAML float 3.1 to MLflow")
            .count(),
        1,
        "{}",
        describe(&output)
    );
    // The default (virtualenv) environment's spec is broken; conda's still shows.
    fs_err::write(
        model.join("python_env.yaml"),
        "python: 3.10.13\nbuild_dependencies: [pip]\ndependencies: [mlflow==2.9.2, \"numpy>=1 ; bad (\"]\n",
    )
    .unwrap();
    pyfunc_env_snapshot!(ctx.filters(), ctx.command().arg("inspect").arg(&model), @r#"
        exit_code: 1 (failure)
        ----- stdout -----
        Model: [TEMP_DIR]/model
          MLflow version: 2.9.2
          Flavors: python_function
          Loader module: mlflow.sklearn
          Python version (MLmodel): 3.10
        Environment files:
          virtualenv / uv: python_env.yaml
          conda: conda.yaml
          Default env manager: virtualenv
        virtualenv environment (default): cannot be built: Invalid requirement in `python_env.yaml` at line 3: `numpy>=1 ; bad (` is not a valid requirement: Expected a quoted string or a valid marker name, found `bad`
        conda environment  key [KEY]
            from: MLmodel, conda.yaml
            channels: conda-forge
            conda:
              python 3.10.13.*
              pip
            pip:
              mlflow==2.9.2
            compat: setuptools<82 (setuptools-pkg-resources, for mlflow 2.9.2)
        Warnings:
          MLmodel:7: `flavors.python_function.python_version` is `3.10`, the YAML float 3.1 to MLflow; reading it as the version `3.10`. Quote it: `python_version: "3.10"`

        ----- stderr -----
        error: The model's default (virtualenv) environment cannot be built
          Caused by: Invalid requirement in `python_env.yaml` at line 3: `numpy>=1 ; bad (` is not a valid requirement: Expected a quoted string or a valid marker name, found `bad`
           --> python_env.yaml:3:31
            |
          3 | dependencies: [mlflow==2.9.2, "numpy>=1 ; bad ("]
            |                               ^^^^^^^^^^^^^^^^^^ this line

        hint: Requirements look like `numpy==1.26.4`, `pandas>=2,<3 ; python_version >= "3.9"`, `pkg @ https://host/pkg.whl`, `./local/pkg.whl` or `-e ./project`
    "#);
}

/// Credentials in a direct-URL requirement or an index option reach no human report:
/// `inspect` and `check` (table and `--json`) mask them as errors and logs do (issue 15 item 8).
#[test]
fn inspect_and_check_never_print_credentials_of_requirements() {
    let ctx = TestContext::new();
    let model = ctx.model(
        "secret",
        &[
            (
                "python_env.yaml",
                "python: 3.11.7\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n",
            ),
            (
                "requirements.txt",
                "--extra-index-url https://alice:T0KEN-alice@127.0.0.1:9/simple\nmypkg @ http://bob:S3CRET-bob@127.0.0.1:9/mypkg-1.0-py3-none-any.whl\nnumpy==2.4.6\n",
            ),
        ],
    );
    let python = env_test::pyenv_root()
        .unwrap()
        .join("versions/3.11.7/bin/python3.11");
    let runs = [
        vec!["inspect".to_string()],
        vec![
            "check".into(),
            "--python".into(),
            python.display().to_string(),
        ],
        vec![
            "check".into(),
            "--python".into(),
            python.display().to_string(),
            "--json".into(),
        ],
    ];
    for args in runs {
        let output = ctx
            .command()
            .args(&args[..1])
            .arg(&model)
            .args(&args[1..])
            .output()
            .unwrap();
        let text = describe(&output);
        assert!(output.status.success(), "{args:?}: {text}");
        assert!(
            !text.contains("S3CRET-bob") && !text.contains("T0KEN-alice"),
            "{args:?} printed a secret:\n{text}"
        );
        // The requirement is still shown, with its secret masked.
        assert!(
            text.contains("mypkg @ http://bob:****@127.0.0.1:9/mypkg-1.0-py3-none-any.whl"),
            "{args:?}:\n{text}"
        );
    }
}
