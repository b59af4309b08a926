//! Conformance: every real model directory of `tests/corpus` read by us and by MLflow.
//!
//! Each case's `expected.json` records what MLflow 3.17.2 answers for the directory (see
//! `tests/corpus/README.md`). For every MLflow call recorded there, this test makes the same
//! call through `env-spec` and compares: the `python_function` config, the env file names, both
//! formats of `get_model_dependencies` (file, text, parsed requirements, the YAML as PyYAML
//! loads it), the requirements files, `python_env.yaml`, the conda-to-virtualenv conversion with
//! its warnings, and the virtualenv environment. Where MLflow raised, we must fail with the
//! same kind of error. Where we differ on purpose, the difference must be one listed in
//! `DEVIATIONS.md` (each has an id checked here). The canonical spec must build for both env
//! managers whenever MLflow's corresponding code path succeeds.
//!
//! Set `PYFUNC_ENV_CORPUS` to run against another copy of the corpus.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use env_spec::requirements::{MlflowRequirement, Sources};
use env_spec::{EnvManager, ModelDir, SpecError, WarningKind};
use serde_json::{Value, json};

const CURRENT_PYTHON: &str = "<CURRENT_PYTHON>";

fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PYFUNC_ENV_CORPUS") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus")
}

/// The outcome of comparing one case.
#[derive(Default)]
struct Report {
    mismatches: Vec<String>,
    deviations: BTreeMap<&'static str, usize>,
}

impl Report {
    fn mismatch(&mut self, what: impl Into<String>) {
        self.mismatches.push(what.into());
    }

    fn deviation(&mut self, id: &'static str) {
        *self.deviations.entry(id).or_default() += 1;
    }
}

fn reqs(requirements: &[MlflowRequirement]) -> Value {
    Value::Array(
        requirements
            .iter()
            .map(|r| json!({"req_str": r.req_str, "is_constraint": r.is_constraint}))
            .collect(),
    )
}

/// JSON equality where a recorded YAML timestamp only needs to be a timestamp on our side, and
/// paths under the system temp dir are `<TMP>` as the corpus generator wrote them.
fn same(expected: &Value, ours: &Value) -> bool {
    match (expected, ours) {
        (Value::String(e), Value::String(o)) if e.contains("<TMP>") => {
            let tmp = std::env::temp_dir();
            let tmp = tmp.to_string_lossy();
            let tmp = tmp.trim_end_matches('/');
            let normalized = o
                .strip_prefix(tmp)
                .and_then(|rest| rest.strip_prefix('/'))
                .map(|rest| {
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
                        .unwrap_or(rest.len());
                    format!("<TMP>{}", &rest[end..])
                });
            normalized.as_deref() == Some(e.as_str()) || e == o
        }
        (Value::Object(e), Value::Object(o)) if e.contains_key("__timestamp__") => {
            o.contains_key("__timestamp__")
        }
        (Value::Object(e), Value::Object(o)) => {
            e.len() == o.len()
                && e.iter()
                    .zip(o.iter())
                    .all(|((ek, ev), (ok, ov))| ek == ok && same(ev, ov))
        }
        (Value::Array(e), Value::Array(o)) => {
            e.len() == o.len() && e.iter().zip(o).all(|(e, o)| same(e, o))
        }
        (Value::Number(e), Value::Number(o)) => e.as_f64() == o.as_f64(),
        _ => expected == ours,
    }
}

/// Compares one recorded MLflow call with ours.
fn compare<T>(
    report: &mut Report,
    field: &str,
    expected: &Value,
    ours: Result<T, SpecError>,
    check: impl FnOnce(&mut Report, &Value, T),
) {
    match (expected["ok"].as_bool(), ours) {
        (Some(true), Ok(value)) => check(report, &expected["value"], value),
        (Some(true), Err(err)) => {
            report.mismatch(format!("{field}: MLflow succeeds, we fail: {err}"));
        }
        (Some(false), Ok(_)) => report.mismatch(format!(
            "{field}: MLflow raises {} ({}), we succeed",
            expected["error"]["type"], expected["error"]["message"]
        )),
        (Some(false), Err(err)) => {
            let kind = expected["error"]["type"].as_str().unwrap_or_default();
            if !err.mlflow_equivalent().python_types().contains(&kind) {
                report.mismatch(format!(
                    "{field}: MLflow raises {kind}, we fail differently: {err}"
                ));
            }
        }
        (None, _) => report.mismatch(format!("{field}: malformed expectation")),
    }
}

fn check_case(dir: &Path) -> Report {
    let expected: Value =
        serde_json::from_str(&fs_err::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let mut report = Report::default();
    let model = ModelDir::open(dir).unwrap();

    // 1. Model.load
    compare(
        &mut report,
        "mlmodel",
        &expected["mlmodel"],
        model.mlmodel(),
        |report, value, mlmodel| {
            let flavors: Value = mlmodel
                .flavors
                .iter()
                .map(|f| Value::String(f.clone()))
                .collect();
            if value["flavors"].is_array() && !same(&value["flavors"], &flavors) {
                report.mismatch(format!("flavors: {} vs {flavors}", value["flavors"]));
            }
            let ours = match &mlmodel.python_function {
                Some(Some(flavor)) => flavor.node.to_json(),
                _ => Value::Null,
            };
            if !same(&value["python_function"], &ours) {
                report.mismatch(format!(
                    "python_function: {} vs {ours}",
                    value["python_function"]
                ));
            }
            if mlmodel
                .warnings
                .iter()
                .any(|w| w.kind == WarningKind::VersionIsFloat)
            {
                report.deviation("float-versions");
            }
        },
    );

    // 2. env file names
    compare(
        &mut report,
        "env_files",
        &expected["env_files"],
        model.env_file_names(),
        |report, value, names| {
            if value["conda"] != names.conda || value["virtualenv"] != names.virtualenv {
                report.mismatch(format!("env_files: {value} vs {names:?}"));
            }
        },
    );

    // 3. get_model_dependencies
    let deps = &expected["get_model_dependencies"];
    compare(
        &mut report,
        "deps.pip",
        &deps["pip"],
        model.pip_dependencies(),
        |report, value, ours| {
            if value["path"] != json!(ours.path) {
                report.mismatch(format!(
                    "deps.pip path: {} vs {:?}",
                    value["path"], ours.path
                ));
            }
            if value["text"] != ours.text {
                report.mismatch("deps.pip text differs");
            }
            let mut sources = Sources::default();
            let parsed = model.parse_requirement_lines(&mut sources, ours.lines.clone());
            compare(
                report,
                "deps.pip.requirements",
                &value["requirements"],
                parsed,
                |report, value, parsed| {
                    if !same(value, &reqs(&parsed)) {
                        report.mismatch(format!(
                            "deps.pip requirements: {value} vs {}",
                            reqs(&parsed)
                        ));
                    }
                },
            );
            let expected_warnings: Vec<&str> = deps["pip"]["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let our_warnings: Vec<&str> =
                ours.warnings.iter().map(|w| w.message.as_str()).collect();
            if expected_warnings != our_warnings {
                report.mismatch(format!(
                    "deps.pip warnings: {expected_warnings:?} vs {our_warnings:?}"
                ));
            }
        },
    );
    compare(
        &mut report,
        "deps.conda",
        &deps["conda"],
        model.conda_dependencies(),
        |report, value, ours| {
            if value["path"] != json!(ours.path) {
                report.mismatch(format!(
                    "deps.conda path: {} vs {:?}",
                    value["path"], ours.path
                ));
            }
            if value["text"] != ours.text {
                report.mismatch("deps.conda text differs");
            }
            let file = env_spec::source::SourceFile {
                name: ours.path.clone().unwrap_or_default(),
                text: ours.text.clone(),
            };
            let loaded = env_spec::diagnostics::load_yaml(&file);
            compare(
                report,
                "deps.conda.yaml",
                &value["yaml"],
                loaded,
                |report, value, node| {
                    let ours = node.map_or(Value::Null, |n| n.to_json());
                    if !same(value, &ours) {
                        report.mismatch(format!("deps.conda yaml: {value} vs {ours}"));
                    }
                },
            );
        },
    );

    // 4. _get_pip_requirements_from_model_path
    let from_path = model
        .requirements_file("requirements.txt")
        .unwrap_or(Ok(Vec::new()))
        .map(|r| r.into_iter().map(|r| r.req_str).collect::<Vec<_>>());
    compare(
        &mut report,
        "pip_requirements_from_model_path",
        &expected["pip_requirements_from_model_path"],
        from_path,
        |report, value, ours| {
            if *value != json!(ours) {
                report.mismatch(format!(
                    "pip_requirements_from_model_path: {value} vs {ours:?}"
                ));
            }
        },
    );

    // 5. the files on their own
    for (field, name) in [
        ("requirements_txt", "requirements.txt"),
        ("constraints_txt", "constraints.txt"),
    ] {
        match (expected[field].is_null(), model.requirements_file(name)) {
            (true, None) => {}
            (false, Some(result)) => compare(
                &mut report,
                field,
                &expected[field],
                result,
                |report, value, ours| {
                    if !same(value, &reqs(&ours)) {
                        report.mismatch(format!("{field}: {value} vs {}", reqs(&ours)));
                    }
                },
            ),
            _ => report.mismatch(format!("{field}: presence differs")),
        }
    }
    if !expected["python_env_yaml"].is_null() {
        let ours = model
            .python_env_file("python_env.yaml")
            .expect("file exists");
        let expected_field = &expected["python_env_yaml"];
        if expected_field["ok"] == false
            && expected_field["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("`python` must be a string but got <class 'float'>"))
            && ours
                .as_ref()
                .is_ok_and(|(_, w)| w.iter().any(|w| w.kind == WarningKind::VersionIsFloat))
        {
            report.deviation("float-versions");
        } else {
            compare(
                &mut report,
                "python_env_yaml",
                expected_field,
                ours,
                |report, value, (env, _)| {
                    let ours = env.to_json(CURRENT_PYTHON);
                    if !same(value, &ours) {
                        report.mismatch(format!("python_env_yaml: {value} vs {ours}"));
                    }
                },
            );
        }
    }
    if !expected["conda_yaml"].is_null() {
        let file = env_spec::source::ModelFs::open(dir)
            .unwrap()
            .read("conda.yaml", None, "")
            .unwrap();
        let ours = env_spec::conda::CondaFile::parse(file).and_then(|c| c.to_python_env());
        compare(
            &mut report,
            "conda_yaml.to_python_env",
            &expected["conda_yaml"]["to_python_env"],
            ours,
            |report, value, (env, warnings)| {
                let list = |lines: Option<&Vec<env_spec::requirements::RawLine>>| -> Value {
                    lines.map_or(Value::Null, |l| {
                        l.iter().map(|l| Value::String(l.text.clone())).collect()
                    })
                };
                let ours = json!({
                    "python": env.python.as_deref().unwrap_or(CURRENT_PYTHON),
                    "build_dependencies": list(env.build_dependencies.as_ref()),
                    "dependencies": list(env.dependencies.as_ref()),
                });
                if !same(value, &ours) {
                    report.mismatch(format!("conda_yaml.to_python_env: {value} vs {ours}"));
                }
                check_dropped_warning(
                    report,
                    &expected["conda_yaml"]["to_python_env"]["warnings"],
                    &warnings,
                );
            },
        );
    }

    // 6. the virtualenv environment
    let expected_venv = &expected["virtualenv"];
    let float_python = expected_venv["ok"] == false
        && expected_venv["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("must be a string but got <class 'float'>"));
    let ours = model.virtualenv_env();
    if float_python && ours.is_ok() {
        report.deviation("float-versions");
    } else {
        compare(
            &mut report,
            "virtualenv",
            expected_venv,
            ours,
            |report, value, env| {
                let mut expected_env = value["python_env"].clone();
                let ours = env.python_env.to_json(CURRENT_PYTHON);
                if expected_env["python"] == CURRENT_PYTHON && ours["python"] != CURRENT_PYTHON {
                    // We take the MLmodel's python_version where MLflow takes its own.
                    report.deviation("python-fallback");
                    expected_env["python"] = ours["python"].clone();
                }
                if !same(&expected_env, &ours) {
                    report.mismatch(format!("virtualenv.python_env: {expected_env} vs {ours}"));
                }
                if !same(&value["requirements"], &reqs(&env.requirements)) {
                    report.mismatch(format!(
                        "virtualenv.requirements: {} vs {}",
                        value["requirements"],
                        reqs(&env.requirements)
                    ));
                }
                check_dropped_warning(report, &expected_venv["warnings"], &env.warnings);
            },
        );
    }

    // 7. the canonical spec builds wherever MLflow's code path works
    let venv_ok = expected_venv["ok"] == true || float_python;
    match (venv_ok, model.spec(EnvManager::Virtualenv)) {
        (true, Err(err)) => report.mismatch(format!(
            "virtualenv spec fails where MLflow succeeds: {err}"
        )),
        (false, Ok(_)) => report.mismatch("virtualenv spec succeeds where MLflow fails"),
        _ => {}
    }
    let conda_ok = deps["conda"]["ok"] == true;
    match (conda_ok, model.spec(EnvManager::Conda)) {
        (true, Err(err)) => report.mismatch(format!(
            "conda spec fails where MLflow reads the conda file: {err}"
        )),
        (false, Ok(_)) => {
            report.mismatch("conda spec succeeds where MLflow cannot find the conda file");
        }
        _ => {}
    }
    report
}

/// MLflow's "will not be installed" warning lists the same conda dependencies as ours.
fn check_dropped_warning(report: &mut Report, expected: &Value, ours: &[env_spec::Warning]) {
    let prefix =
        "The following conda dependencies will not be installed in the resulting environment: ";
    let theirs: Vec<&str> = expected
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|w| w.strip_prefix(prefix))
        .collect();
    let mine: Vec<String> = ours
        .iter()
        .filter(|w| matches!(w.kind, WarningKind::DroppedCondaDependencies(_)))
        .filter_map(|w| w.message.strip_prefix(prefix).map(str::to_string))
        .collect();
    if theirs != mine {
        report.mismatch(format!(
            "dropped-dependency warning: {theirs:?} vs {mine:?}"
        ));
    }
}

/// Deviation ids that `DEVIATIONS.md` documents.
fn documented_deviations() -> Vec<String> {
    let text =
        fs_err::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../DEVIATIONS.md"))
            .unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("## `"))
        .filter_map(|line| line.split('`').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn corpus_matches_mlflow() {
    let cases_dir = corpus_dir().join("cases");
    let mut cases: Vec<PathBuf> = fs_err::read_dir(&cases_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 119,
        "corpus at {} has only {} cases",
        cases_dir.display(),
        cases.len()
    );
    let documented = documented_deviations();
    let mut matched = 0;
    let mut failures = Vec::new();
    let mut deviations: BTreeMap<&str, usize> = BTreeMap::new();
    for case in &cases {
        let report = check_case(case);
        for (id, count) in &report.deviations {
            assert!(
                documented.iter().any(|d| d == id),
                "deviation `{id}` is not documented in DEVIATIONS.md"
            );
            *deviations.entry(id).or_default() += count;
        }
        if report.mismatches.is_empty() {
            matched += 1;
        } else {
            failures.push(format!(
                "case {}:\n  {}",
                case.file_name().unwrap().to_string_lossy(),
                report.mismatches.join("\n  ")
            ));
        }
    }
    #[expect(
        clippy::print_stderr,
        reason = "the conformance summary is the point of this test"
    )]
    {
        eprintln!("{matched}/{} cases match", cases.len());
        for (id, count) in &deviations {
            eprintln!("  deliberate deviation `{id}`: {count} place(s)");
        }
    }
    assert!(
        failures.is_empty(),
        "{matched}/{} cases match\n{}",
        cases.len(),
        failures.join("\n")
    );
}
