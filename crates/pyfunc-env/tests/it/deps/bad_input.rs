//! Malformed model directories, one table row each: every command that reads the broken file
//! must fail with exit code 1 and a report that starts with `error:`, names the file (and the
//! line, where the problem has one), ends with a `hint:`, fits on one screen and never panics.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{TestContext, describe, stderr, stdout};

const MLMODEL: &str = "flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.pyfunc.model
    python_version: 3.11.7
mlflow_version: 3.17.2
";
const CONDA: &str = "channels:
- conda-forge
dependencies:
- python=3.11.7
- pip<=26.3
- pip:
  - numpy==1.26.4
name: mlflow-env
";
const PYTHON_ENV: &str = "python: 3.11.7
build_dependencies:
- pip==26.3
dependencies:
- -r requirements.txt
";
const REQUIREMENTS: &str = "numpy==1.26.4\n";

/// What a case puts at a path of the (otherwise valid) model directory.
#[derive(Clone, Copy)]
enum File {
    Text(&'static str),
    Bytes(&'static [u8]),
    /// Generated content (large files).
    Generated(fn() -> Vec<u8>),
    Remove,
    Dir,
    /// A symlink to a file outside the model directory holding this text.
    SymlinkOutside(&'static str),
}

/// What the command is given as the model directory.
#[derive(Clone, Copy)]
enum Arg {
    Model,
    /// A path inside the model directory (a missing one, or a file).
    Inside(&'static str),
}

#[derive(Clone, Copy)]
enum Expect {
    /// Exit 1; the report names `file` (and `line`), and contains `message`.
    Error {
        file: &'static str,
        line: Option<usize>,
        message: &'static str,
    },
    /// Exit 0 with the data on stdout; a `warning:` names `file:line` and contains `message`.
    Warning {
        file: &'static str,
        line: usize,
        message: &'static str,
    },
}

/// How `inspect` treats the case.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inspect {
    /// Not run.
    Skip,
    /// The MLmodel or the directory is unusable: a report like `deps`.
    Fails,
    /// One environment is unusable: exit 0, and the summary says why, naming the file.
    Reports,
}

struct Case {
    name: &'static str,
    arg: Arg,
    files: Vec<(&'static str, File)>,
    /// The commands to run; the model path goes after the subcommand.
    runs: &'static [&'static [&'static str]],
    expect: Expect,
    inspect: Inspect,
}

const JSON: &[&str] = &["deps", "--format", "json"];
const JSON_CONDA: &[&str] = &["deps", "--format", "json", "--env-manager", "conda"];
const PIP: &[&str] = &["deps", "--format", "pip"];
const CONDA_FILE: &[&str] = &["deps", "--format", "conda"];
const CREATE: &[&str] = &["create", "--offline"];
const CREATE_CONDA: &[&str] = &["create", "--offline", "--env-manager", "conda"];

const fn error(file: &'static str, line: Option<usize>, message: &'static str) -> Expect {
    Expect::Error {
        file,
        line,
        message,
    }
}

fn ten_mb_line_mlmodel() -> Vec<u8> {
    let mut text = b"flavors: '".to_vec();
    text.resize(10 * 1024 * 1024, b'a');
    text
}

fn ten_mb_line_requirements() -> Vec<u8> {
    let mut text = b"numpy==1.26.4\nnumpy==1.0 ".to_vec();
    text.resize(10 * 1024 * 1024, b'a');
    text.push(b'\n');
    text
}

fn huge_requirements() -> Vec<u8> {
    // 17 MiB of valid lines: over the 16 MiB limit.
    b"numpy==1.26.4\n".repeat(17 * 1024 * 1024 / 14 + 1)
}

fn deep_flow_nesting() -> Vec<u8> {
    format!("flavors: {}\n", "[".repeat(10_000)).into_bytes()
}

fn deep_block_nesting() -> Vec<u8> {
    let mut text = String::new();
    for depth in 0..1000 {
        text.push_str(&" ".repeat(depth));
        text.push_str("a:\n");
    }
    text.into_bytes()
}

const CONFLICT_MLMODEL: &str = "flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.pyfunc.model
    python_version: 3.11.7
<<<<<<< HEAD
mlflow_version: 3.17.2
=======
mlflow_version: 3.16.0
>>>>>>> other-branch
";

#[expect(clippy::too_many_lines, reason = "one table")]
fn cases() -> Vec<Case> {
    use File::{Bytes, Dir, Generated, Remove, SymlinkOutside, Text};
    let env = |conda: &'static str| -> &'static str {
        Box::leak(
            MLMODEL
                .replace(
                    "    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n",
                    conda,
                )
                .into_boxed_str(),
        )
    };
    vec![
        // The directory itself.
        Case {
            name: "missing model directory",
            arg: Arg::Inside("does-not-exist"),
            files: vec![],
            runs: &[JSON, PIP, CONDA_FILE, CREATE],
            expect: error("does-not-exist", None, "does not exist"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "a file instead of a directory",
            arg: Arg::Inside("MLmodel"),
            files: vec![],
            runs: &[JSON, PIP, CREATE],
            expect: error("MLmodel", None, "is not a directory"),
            inspect: Inspect::Fails,
        },
        // MLmodel.
        Case {
            name: "no MLmodel",
            arg: Arg::Model,
            files: vec![("MLmodel", Remove)],
            runs: &[JSON, CONDA_FILE, CREATE],
            expect: error("MLmodel", None, "has no `MLmodel` file"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "MLmodel is a directory",
            arg: Arg::Model,
            files: vec![("MLmodel", Dir)],
            runs: &[JSON, CONDA_FILE],
            expect: error("MLmodel", None, "is a directory"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "empty MLmodel",
            arg: Arg::Model,
            files: vec![("MLmodel", Text(""))],
            runs: &[JSON, CONDA_FILE, CREATE],
            expect: error("MLmodel", None, "found an empty document"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "MLmodel is a list",
            arg: Arg::Model,
            files: vec![("MLmodel", Text("- python_function\n- sklearn\n"))],
            runs: &[JSON, CONDA_FILE],
            expect: error("MLmodel", Some(1), "found a list"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "MLmodel is a string",
            arg: Arg::Model,
            files: vec![("MLmodel", Text("just some text\n"))],
            runs: &[JSON],
            expect: error("MLmodel", Some(1), "found a string"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "merge-conflict markers in MLmodel",
            arg: Arg::Model,
            files: vec![("MLmodel", Text(CONFLICT_MLMODEL))],
            runs: &[JSON, CONDA_FILE, CREATE],
            expect: error("MLmodel", Some(9), "first at line 8"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "truncated YAML",
            arg: Arg::Model,
            files: vec![(
                "MLmodel",
                Text(
                    "flavors:\n  python_function:\n    env: {conda: conda.yaml, virtualenv: [python_e",
                ),
            )],
            runs: &[JSON, CONDA_FILE],
            expect: error("MLmodel", Some(3), "Invalid YAML"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "tab indentation",
            arg: Arg::Model,
            files: vec![(
                "MLmodel",
                Text("flavors:\n\tpython_function:\n\t\tenv: conda.yaml\n"),
            )],
            runs: &[JSON],
            expect: error("MLmodel", Some(2), "tabs"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "!!python/object tag",
            arg: Arg::Model,
            files: vec![(
                "MLmodel",
                Text("flavors: !!python/object:os.system\n  python_function: {}\n"),
            )],
            runs: &[JSON, CONDA_FILE],
            expect: error("MLmodel", None, "could not determine a constructor"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "unknown local tag",
            arg: Arg::Model,
            files: vec![(
                "python_env.yaml",
                Text("python: !version 3.11.7\ndependencies: []\n"),
            )],
            runs: &[JSON],
            expect: error("python_env.yaml", Some(1), "for the tag '!version'"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "duplicate anchor",
            arg: Arg::Model,
            files: vec![(
                "conda.yaml",
                Text("channels: &c [conda-forge]\ndependencies: &c\n- python=3.11.7\n"),
            )],
            runs: &[JSON_CONDA, CREATE_CONDA],
            expect: error("conda.yaml", Some(2), "found duplicate anchor 'c'"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "undefined alias",
            arg: Arg::Model,
            files: vec![(
                "conda.yaml",
                Text("channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- *numpy\n"),
            )],
            runs: &[JSON_CONDA],
            expect: error("conda.yaml", Some(4), "found undefined alias 'numpy'"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "10k nested flow sequences",
            arg: Arg::Model,
            files: vec![("MLmodel", Generated(deep_flow_nesting))],
            runs: &[JSON, CONDA_FILE],
            expect: error("MLmodel", Some(1), "Invalid YAML"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "1000 nested block mappings",
            arg: Arg::Model,
            files: vec![("MLmodel", Generated(deep_block_nesting))],
            runs: &[JSON],
            expect: error("MLmodel", Some(513), "nesting deeper than"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "10 MB line in MLmodel",
            arg: Arg::Model,
            files: vec![("MLmodel", Generated(ten_mb_line_mlmodel))],
            runs: &[JSON, CONDA_FILE],
            expect: error("MLmodel", Some(1), "Invalid YAML"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "binary garbage MLmodel",
            arg: Arg::Model,
            files: vec![(
                "MLmodel",
                Bytes(b"\x7fELF\x02\x01\x01\x00\x00\xff\xfe\x00garbage"),
            )],
            runs: &[JSON, CONDA_FILE, CREATE],
            expect: error("MLmodel", None, "is not UTF-8 text"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "invalid UTF-8 in conda.yaml",
            arg: Arg::Model,
            files: vec![(
                "conda.yaml",
                Bytes(b"channels: [conda-forge]\ndependencies:\n- caf\xe9\n"),
            )],
            runs: &[JSON_CONDA, CONDA_FILE],
            expect: error(
                "conda.yaml",
                None,
                "is not UTF-8 text (invalid byte at line 3, offset 43)",
            ),
            inspect: Inspect::Reports,
        },
        Case {
            name: "invalid UTF-8 in requirements.txt",
            arg: Arg::Model,
            files: vec![(
                "requirements.txt",
                Bytes(b"numpy==1.26.4\n\xff\xfepandas\n"),
            )],
            runs: &[JSON, PIP],
            expect: error("requirements.txt", None, "is not UTF-8 text"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "NUL byte in python_env.yaml",
            arg: Arg::Model,
            files: vec![(
                "python_env.yaml",
                Text("python: 3.11.7\0\ndependencies: []\n"),
            )],
            runs: &[JSON],
            expect: error("python_env.yaml", Some(1), "unacceptable character #x0000"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "BOM in the middle of python_env.yaml",
            arg: Arg::Model,
            files: vec![(
                "python_env.yaml",
                Text("\u{feff}python: 3.11.7\n\u{feff}dependencies: []\n"),
            )],
            runs: &[JSON],
            expect: error("python_env.yaml", Some(2), "expected only the keys"),
            inspect: Inspect::Reports,
        },
        // Environment files named by the MLmodel.
        Case {
            name: "env names missing files",
            arg: Arg::Model,
            files: vec![(
                "MLmodel",
                Text(env(
                    "    env:\n      conda: nope.yaml\n      virtualenv: nope_env.yaml\n",
                )),
            )],
            runs: &[JSON, JSON_CONDA, CONDA_FILE, CREATE],
            expect: error(
                "nope.yaml",
                None,
                "`nope.yaml` does not exist (referenced from",
            ),
            inspect: Inspect::Reports,
        },
        Case {
            name: "env string names a missing file",
            arg: Arg::Model,
            files: vec![("MLmodel", Text(env("    env: old_conda.yaml\n")))],
            runs: &[JSON_CONDA, CONDA_FILE],
            expect: error("old_conda.yaml", None, "does not exist"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "env points outside with ..",
            arg: Arg::Model,
            files: vec![
                (
                    "MLmodel",
                    Text(env(
                        "    env:\n      conda: ../x.yaml\n      virtualenv: python_env.yaml\n",
                    )),
                ),
                ("requirements.txt", Remove),
            ],
            runs: &[JSON_CONDA, CONDA_FILE, PIP, CREATE_CONDA],
            expect: error("../x.yaml", None, "leaves the model directory"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "env points at /etc/passwd",
            arg: Arg::Model,
            files: vec![("MLmodel", Text(env("    env: /etc/passwd\n")))],
            runs: &[JSON_CONDA, CONDA_FILE],
            expect: error("/etc/passwd", None, "leaves the model directory"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "env.virtualenv points outside",
            arg: Arg::Model,
            files: vec![(
                "MLmodel",
                Text(env(
                    "    env:\n      conda: conda.yaml\n      virtualenv: ../../python_env.yaml\n",
                )),
            )],
            runs: &[JSON, CREATE],
            expect: error("../../python_env.yaml", None, "leaves the model directory"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "conda.yaml is a symlink pointing outside",
            arg: Arg::Model,
            files: vec![("conda.yaml", SymlinkOutside(CONDA))],
            runs: &[JSON_CONDA, CONDA_FILE],
            expect: error("conda.yaml", None, "leaves the model directory"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "requirements.txt is a symlink pointing outside",
            arg: Arg::Model,
            files: vec![("requirements.txt", SymlinkOutside("secret==1.0\n"))],
            runs: &[PIP, JSON],
            expect: error("requirements.txt", None, "leaves the model directory"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "MLmodel is a symlink pointing outside",
            arg: Arg::Model,
            files: vec![("MLmodel", SymlinkOutside(MLMODEL))],
            runs: &[JSON, CONDA_FILE],
            expect: error("MLmodel", None, "a symlink to"),
            inspect: Inspect::Fails,
        },
        Case {
            name: "env is an integer",
            arg: Arg::Model,
            files: vec![("MLmodel", Text(env("    env: 5\n")))],
            runs: &[JSON, CONDA_FILE],
            expect: error("MLmodel", Some(3), "found an integer `5`"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "env is null",
            arg: Arg::Model,
            files: vec![("MLmodel", Text(env("    env: null\n")))],
            runs: &[CONDA_FILE, JSON_CONDA],
            expect: error("MLmodel", Some(3), "is empty"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "env mapping without conda",
            arg: Arg::Model,
            files: vec![(
                "MLmodel",
                Text(env("    env:\n      virtualenv: python_env.yaml\n")),
            )],
            runs: &[CONDA_FILE, JSON],
            expect: error("MLmodel", Some(4), "has no `conda` entry"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "no env entry",
            arg: Arg::Model,
            files: vec![("MLmodel", Text(env("")))],
            runs: &[CONDA_FILE, JSON_CONDA],
            expect: error("MLmodel", Some(3), "has no `env` entry"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "no python_function flavor",
            arg: Arg::Model,
            files: vec![(
                "MLmodel",
                Text("flavors:\n  sklearn:\n    pickled_model: model.pkl\n"),
            )],
            runs: &[CONDA_FILE, JSON_CONDA],
            expect: error(
                "MLmodel",
                None,
                "has no `python_function` flavor (flavors: `sklearn`)",
            ),
            inspect: Inspect::Reports,
        },
        // conda.yaml.
        Case {
            name: "conda dependencies: 5",
            arg: Arg::Model,
            files: vec![(
                "conda.yaml",
                Text("channels: [conda-forge]\ndependencies: 5\n"),
            )],
            runs: &[JSON_CONDA, CREATE_CONDA],
            expect: error("conda.yaml", Some(2), "found an integer `5`"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "conda channels: {a: b}",
            arg: Arg::Model,
            files: vec![(
                "conda.yaml",
                Text("channels: {a: b}\ndependencies:\n- python=3.11.7\n"),
            )],
            runs: &[JSON_CONDA],
            expect: error("conda.yaml", Some(1), "found a mapping"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "conda pip: \"x\"",
            arg: Arg::Model,
            files: vec![
                (
                    "conda.yaml",
                    Text("dependencies:\n- python=3.11.7\n- pip: \"x\"\n"),
                ),
                ("requirements.txt", Remove),
                ("python_env.yaml", Remove),
            ],
            runs: &[JSON_CONDA, PIP],
            expect: error("conda.yaml", Some(3), "expected a list of pip requirements"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "invalid conda match spec",
            arg: Arg::Model,
            files: vec![(
                "conda.yaml",
                Text("channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- numpy >=>1\n"),
            )],
            runs: &[JSON_CONDA, CREATE_CONDA],
            expect: error(
                "conda.yaml",
                Some(4),
                "Invalid conda dependency `numpy >=>1`",
            ),
            inspect: Inspect::Reports,
        },
        Case {
            name: "invalid conda package name",
            arg: Arg::Model,
            files: vec![(
                "conda.yaml",
                Text("dependencies:\n- python=3.11.7\n- 'numpy[version=\"1'\n"),
            )],
            runs: &[JSON_CONDA],
            expect: error("conda.yaml", Some(3), "Invalid conda dependency"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "unpinned python for the virtualenv manager",
            arg: Arg::Model,
            files: vec![
                (
                    "conda.yaml",
                    Text("dependencies:\n- python\n- pip:\n  - numpy\n"),
                ),
                ("python_env.yaml", Remove),
            ],
            runs: &[JSON, CREATE],
            expect: error("conda.yaml", Some(2), "it must be pinned"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "merge-conflict markers in conda.yaml",
            arg: Arg::Model,
            files: vec![(
                "conda.yaml",
                Text("dependencies:\n<<<<<<< HEAD\n- numpy=1\n=======\n- numpy=2\n>>>>>>> b\n"),
            )],
            runs: &[JSON_CONDA],
            expect: error("conda.yaml", Some(3), "merge-conflict markers"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "conda.yaml is a list",
            arg: Arg::Model,
            files: vec![("conda.yaml", Text("- python=3.11.7\n- numpy\n"))],
            runs: &[JSON_CONDA],
            expect: error("conda.yaml", Some(1), "found a list"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "invalid requirement in conda's pip list",
            arg: Arg::Model,
            files: vec![(
                "conda.yaml",
                Text("dependencies:\n- python=3.11.7\n- pip:\n  - numpy\n  - numpy>=>1\n"),
            )],
            runs: &[JSON_CONDA],
            expect: error(
                "conda.yaml",
                Some(5),
                "`numpy>=>1` is not a valid requirement",
            ),
            inspect: Inspect::Reports,
        },
        // python_env.yaml.
        Case {
            name: "python_env.yaml with an unknown key",
            arg: Arg::Model,
            files: vec![(
                "python_env.yaml",
                Text("python: 3.11.7\nfoo: 1\ndependencies: []\n"),
            )],
            runs: &[JSON, CREATE],
            expect: error("python_env.yaml", Some(2), "expected only the keys"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "python: [3]",
            arg: Arg::Model,
            files: vec![("python_env.yaml", Text("python: [3]\ndependencies: []\n"))],
            runs: &[JSON],
            expect: error("python_env.yaml", Some(1), "found a list"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "python: 3.10 (a warning by design, DEVIATIONS.md `float-versions`)",
            arg: Arg::Model,
            files: vec![("python_env.yaml", Text("python: 3.10\ndependencies: []\n"))],
            runs: &[JSON],
            expect: Expect::Warning {
                file: "python_env.yaml",
                line: 1,
                message: "`python: 3.10` is the YAML float 3.1",
            },
            inspect: Inspect::Skip,
        },
        Case {
            name: "python: banana",
            arg: Arg::Model,
            files: vec![(
                "python_env.yaml",
                Text("python: banana\ndependencies: []\n"),
            )],
            runs: &[JSON, CREATE],
            expect: error("python_env.yaml", Some(1), "found `banana`"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "python_env.yaml dependencies: numpy",
            arg: Arg::Model,
            files: vec![(
                "python_env.yaml",
                Text("python: 3.11.7\ndependencies: numpy\n"),
            )],
            runs: &[JSON],
            expect: error("python_env.yaml", Some(2), "found a string `numpy`"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "empty python_env.yaml",
            arg: Arg::Model,
            files: vec![("python_env.yaml", Text(""))],
            runs: &[JSON],
            expect: error("python_env.yaml", None, "found an empty file"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "invalid build dependency",
            arg: Arg::Model,
            files: vec![(
                "python_env.yaml",
                Text("python: 3.11.7\nbuild_dependencies:\n- pip>=>1\ndependencies: []\n"),
            )],
            runs: &[JSON, CREATE],
            expect: error(
                "python_env.yaml",
                Some(3),
                "`pip>=>1` is not a valid requirement",
            ),
            inspect: Inspect::Reports,
        },
        Case {
            name: "unknown pip option in python_env.yaml",
            arg: Arg::Model,
            files: vec![(
                "python_env.yaml",
                Text("python: 3.11.7\ndependencies:\n- numpy\n- --frobnicate\n"),
            )],
            runs: &[JSON],
            expect: error(
                "python_env.yaml",
                Some(4),
                "unknown pip option `--frobnicate`",
            ),
            inspect: Inspect::Reports,
        },
        // requirements.txt.
        Case {
            name: "invalid PEP 508 requirement",
            arg: Arg::Model,
            files: vec![("requirements.txt", Text("numpy\nscikit-learn>=>1.3\n"))],
            runs: &[JSON, CREATE],
            expect: error("requirements.txt", Some(2), "is not a valid requirement"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "unknown pip option",
            arg: Arg::Model,
            files: vec![("requirements.txt", Text("--frobnicate\nnumpy\n"))],
            runs: &[JSON],
            expect: error(
                "requirements.txt",
                Some(1),
                "unknown pip option `--frobnicate`",
            ),
            inspect: Inspect::Reports,
        },
        Case {
            name: "unsupported pip option",
            arg: Arg::Model,
            files: vec![("requirements.txt", Text("numpy --global-option=x\n"))],
            runs: &[JSON],
            expect: error(
                "requirements.txt",
                Some(1),
                "`--global-option` is not supported",
            ),
            inspect: Inspect::Reports,
        },
        Case {
            name: "--index-url without a value",
            arg: Arg::Model,
            files: vec![("requirements.txt", Text("numpy\n--index-url\n"))],
            runs: &[JSON],
            expect: error("requirements.txt", Some(2), "needs a value"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "-r cycle",
            arg: Arg::Model,
            files: vec![
                ("requirements.txt", Text("numpy\n-r a.txt\n")),
                ("a.txt", Text("-r b.txt\n")),
                ("b.txt", Text("six\n-r a.txt\n")),
            ],
            runs: &[JSON, CREATE],
            expect: error("b.txt", Some(2), "Requirements files include each other"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "-r itself",
            arg: Arg::Model,
            files: vec![("requirements.txt", Text("numpy\n-r requirements.txt\n"))],
            runs: &[JSON],
            expect: error("requirements.txt", Some(2), "include each other"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "-r a missing file",
            arg: Arg::Model,
            files: vec![("requirements.txt", Text("numpy\n-r nope.txt\n"))],
            runs: &[JSON],
            expect: error("nope.txt", Some(2), "does not exist"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "-r ../escape",
            arg: Arg::Model,
            files: vec![("requirements.txt", Text("numpy\n-r ../escape.txt\n"))],
            runs: &[JSON, CREATE],
            expect: error("../escape.txt", Some(2), "leaves the model directory"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "-c /etc/passwd",
            arg: Arg::Model,
            files: vec![("requirements.txt", Text("-c /etc/passwd\nnumpy\n"))],
            runs: &[JSON],
            expect: error("/etc/passwd", Some(1), "leaves the model directory"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "--hash without an algorithm",
            arg: Arg::Model,
            files: vec![("requirements.txt", Text("numpy==1.26.4 --hash=0123abcd\n"))],
            runs: &[JSON],
            expect: error("requirements.txt", Some(1), "has no algorithm"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "--hash without a value",
            arg: Arg::Model,
            files: vec![("requirements.txt", Text("numpy==1.26.4 --hash\n"))],
            runs: &[JSON],
            expect: error("requirements.txt", Some(1), "`--hash` needs a value"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "-e without a path",
            arg: Arg::Model,
            files: vec![("requirements.txt", Text("numpy\n-e\n"))],
            runs: &[JSON],
            expect: error("requirements.txt", Some(2), "`-e` needs a path or URL"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "-e of a missing directory",
            arg: Arg::Model,
            files: vec![("requirements.txt", Text("-e ./src/pkg\n"))],
            runs: &[JSON],
            expect: error("src/pkg", Some(1), "does not exist"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "file: URL outside the model",
            arg: Arg::Model,
            files: vec![("requirements.txt", Text("pkg @ file:///etc/passwd\n"))],
            runs: &[JSON],
            expect: error("file:///etc/passwd", Some(1), "leaves the model directory"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "invalid environment marker",
            arg: Arg::Model,
            files: vec![
                ("requirements.txt", Text("./pkg ; python_version >>> '3'\n")),
                ("pkg/setup.py", Text("")),
            ],
            runs: &[JSON],
            expect: error("requirements.txt", Some(1), "invalid environment marker"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "merge-conflict markers in requirements.txt",
            arg: Arg::Model,
            files: vec![(
                "requirements.txt",
                Text("numpy\n<<<<<<< HEAD\npandas==1\n=======\npandas==2\n>>>>>>> b\n"),
            )],
            runs: &[JSON],
            expect: error("requirements.txt", Some(2), "merge-conflict marker"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "terminal escape sequence in requirements.txt",
            arg: Arg::Model,
            files: vec![(
                "requirements.txt",
                Text("numpy\n\u{1b}[2J\u{1b}[31mpandas\n"),
            )],
            runs: &[JSON],
            expect: error("requirements.txt", Some(2), "is not a valid requirement"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "10 MB requirement line",
            arg: Arg::Model,
            files: vec![("requirements.txt", Generated(ten_mb_line_requirements))],
            runs: &[JSON],
            expect: error("requirements.txt", Some(2), "is not a valid requirement"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "requirements.txt over 16 MiB",
            arg: Arg::Model,
            files: vec![("requirements.txt", Generated(huge_requirements))],
            runs: &[JSON, PIP, CREATE],
            expect: error("requirements.txt", None, "more than the 16777216 bytes"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "requirements.txt is a directory",
            arg: Arg::Model,
            files: vec![("requirements.txt", Dir)],
            runs: &[JSON, PIP],
            expect: error("requirements.txt", None, "is a directory"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "invalid constraint",
            arg: Arg::Model,
            files: vec![
                ("requirements.txt", Text("numpy\n-c constraints.txt\n")),
                ("constraints.txt", Text("numpy<2\nscipy>>1\n")),
            ],
            runs: &[JSON],
            expect: error("constraints.txt", Some(2), "is not a valid requirement"),
            inspect: Inspect::Reports,
        },
        Case {
            name: "editable constraint",
            arg: Arg::Model,
            files: vec![
                ("requirements.txt", Text("numpy\n-c constraints.txt\n")),
                ("constraints.txt", Text("-e ./pkg\n")),
                ("pkg/setup.py", Text("")),
            ],
            runs: &[JSON],
            expect: error("constraints.txt", Some(1), "cannot be constraints"),
            inspect: Inspect::Reports,
        },
    ]
}

/// Writes the base model plus the case's changes; returns what to pass to the command.
fn build(ctx: &TestContext, index: usize, case: &Case) -> PathBuf {
    let dir = ctx.path().join(format!("case-{index:02}"));
    let model = dir.join("model");
    fs_err::create_dir_all(&model).unwrap();
    for (name, text) in [
        ("MLmodel", MLMODEL),
        ("conda.yaml", CONDA),
        ("python_env.yaml", PYTHON_ENV),
        ("requirements.txt", REQUIREMENTS),
    ] {
        fs_err::write(model.join(name), text).unwrap();
    }
    for (name, file) in &case.files {
        let path = model.join(name);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        if path.is_dir() {
            fs_err::remove_dir_all(&path).unwrap();
        } else if path.exists() {
            fs_err::remove_file(&path).unwrap();
        }
        match file {
            File::Text(text) => fs_err::write(&path, text).unwrap(),
            File::Bytes(bytes) => fs_err::write(&path, bytes).unwrap(),
            File::Generated(make) => fs_err::write(&path, make()).unwrap(),
            File::Remove => {}
            File::Dir => fs_err::create_dir(&path).unwrap(),
            File::SymlinkOutside(text) => {
                let outside = dir.join(format!("outside-{}", name.replace('/', "-")));
                fs_err::write(&outside, text).unwrap();
                std::os::unix::fs::symlink(&outside, &path).unwrap();
            }
        }
    }
    match case.arg {
        Arg::Model => model,
        Arg::Inside(path) => model.join(path),
    }
}

fn run(ctx: &TestContext, args: &[&str], model: &Path) -> Output {
    ctx.command()
        .arg(args[0])
        .arg(model)
        .args(&args[1..])
        .output()
        .unwrap()
}

/// Checks one failed run's report; returns what is wrong with it.
fn check_report(err: &str, file: &str, line: Option<usize>, message: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            problems.push(what.to_string());
        }
    };
    check(err.starts_with("error: "), "does not start with `error: `");
    check(err.contains(message), &format!("does not say `{message}`"));
    check(err.contains(file), &format!("does not name `{file}`"));
    if let Some(line) = line {
        check(
            err.contains(&format!("--> {file}:{line}:")) || err.contains(&format!("line {line}")),
            &format!("does not point at line {line} (`--> {file}:{line}:` or `line {line}`)"),
        );
    }
    check(err.contains("\nhint: "), "has no `hint:`");
    check(
        err.lines().count() <= 25,
        &format!("is {} lines, more than one screen", err.lines().count()),
    );
    check(
        err.len() <= 4096,
        &format!("is {} bytes, more than one screen", err.len()),
    );
    check(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panicked",
    );
    // `NO_COLOR` is set: any escape sequence came from the model's files.
    check(
        !err.contains('\u{1b}'),
        "passes an escape sequence to the terminal",
    );
    problems
}

#[test]
fn malformed_model_directories_are_reported_not_crashed_on() {
    let ctx = TestContext::new();
    let cases = cases();
    let malformed = cases.len();
    assert!(malformed >= 40, "only {malformed} malformed cases");
    let mut failures = Vec::new();
    let mut runs = 0;
    for (index, case) in cases.iter().enumerate() {
        let model = build(&ctx, index, case);
        let mut commands: Vec<&[&str]> = case.runs.to_vec();
        if case.inspect != Inspect::Skip {
            commands.push(&["inspect"]);
        }
        for args in commands {
            runs += 1;
            let output = run(&ctx, args, &model);
            let (err, out) = (stderr(&output), stdout(&output));
            let mut problems = Vec::new();
            let is_inspect = args[0] == "inspect";
            match case.expect {
                Expect::Error { file, .. } if is_inspect && case.inspect == Inspect::Reports => {
                    // The summary prints what it can and says, naming the file, why an
                    // environment cannot be built; when it is the default env manager's,
                    // the full report follows on stderr and the exit code is 1.
                    match output.status.code() {
                        Some(0) => {}
                        Some(1)
                            if err.starts_with("error: The model's default")
                                && err.contains("hint:") => {}
                        code => {
                            problems.push(format!("exit code {code:?}, not 0 or 1 with a report"));
                        }
                    }
                    let says_why = out.lines().any(|l| {
                        (l.contains("cannot be built: ") || l.contains("unreadable: "))
                            && l.contains(file)
                    });
                    if !says_why {
                        problems.push(format!("stdout does not say why, naming `{file}`"));
                    }
                    if err.contains("panicked") {
                        problems.push("panicked".to_string());
                    }
                }
                Expect::Error {
                    file,
                    line,
                    message,
                } => {
                    if output.status.code() != Some(1) {
                        problems.push(format!("exit code {:?}, not 1", output.status.code()));
                    }
                    if !out.is_empty() {
                        problems.push("printed data on stdout".to_string());
                    }
                    problems.extend(check_report(&err, file, line, message));
                }
                Expect::Warning {
                    file,
                    line,
                    message,
                } => {
                    if output.status.code() != Some(0) {
                        problems.push(format!("exit code {:?}, not 0", output.status.code()));
                    }
                    if !err.starts_with(&format!("warning: {file}:{line}: "))
                        || !err.contains(message)
                    {
                        problems.push(format!("no `warning: {file}:{line}: ...{message}...`"));
                    }
                    if err.contains("error") || err.contains("panicked") {
                        problems.push("reports an error".to_string());
                    }
                    if serde_json::from_str::<serde_json::Value>(&out).is_err() {
                        problems.push("stdout is not the JSON spec".to_string());
                    }
                }
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "{} / {}: {}\n{}",
                    case.name,
                    args.join(" "),
                    problems.join("; "),
                    describe(&output)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs over {malformed} malformed model directories are wrong:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The control: the base model of the table, and the same files with a BOM, are fine.
#[test]
fn the_base_model_of_the_table_is_valid() {
    let ctx = TestContext::new();
    for (index, files) in [
        vec![],
        vec![
            ("MLmodel", File::Text("\u{feff}flavors:\n  python_function:\n    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n")),
            ("requirements.txt", File::Text("\u{feff}numpy==1.26.4\r\n")),
            ("python_env.yaml", File::Text("\u{feff}python: \"3.11.7\"\r\ndependencies: [-r requirements.txt]\r\n")),
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let case = Case {
            name: "valid",
            arg: Arg::Model,
            files,
            runs: &[],
            expect: error("", None, ""),
            inspect: Inspect::Skip,
        };
        let model = build(&ctx, 100 + index, &case);
        for args in [JSON, JSON_CONDA, PIP, CONDA_FILE, &["inspect"][..]] {
            let output = run(&ctx, args, &model);
            assert!(output.status.success(), "{}: {}", case.name, describe(&output));
            assert_eq!(stderr(&output), "", "{args:?}");
        }
    }
}
