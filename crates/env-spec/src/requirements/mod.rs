//! pip requirements, read in two layers.
//!
//! 1. [`parse_lines`] is MLflow's `mlflow.utils.requirements_utils._parse_requirements`, line for
//!    line: strip each line, cut an inline comment at `" #"`, join `\` continuations, drop
//!    comments and blank lines, follow `-r FILE` / `-c FILE` (relative to the including file),
//!    flag constraint lines. Its output, [`MlflowRequirement`], is what MLflow reports and what
//!    the conformance corpus records. Unlike MLflow, it remembers where each line came from,
//!    detects `-r` cycles (MLflow recurses until `RecursionError`) and refuses include paths
//!    that leave the model directory.
//! 2. [`interpret`] reads each of those lines the way pip does when MLflow hands them to
//!    `pip install -r`: options (`--index-url`, `--find-links`, `--pre`, ...), PEP 508
//!    requirements, `name @ url`, bare URLs and paths, `-e`, `--hash`. A line neither pip nor we
//!    understand is an error naming the file and line, never a silent skip.

mod lines;
mod options;
mod pep508;

pub use lines::{
    MAX_INCLUDED_BYTES, MAX_INCLUDES, MlflowRequirement, Origin, RawLine, Sources, parse_file,
    parse_lines, split_lines,
};
pub use options::{IndexOptions, PipRequirement, PipSet, Target, interpret};

/// A line git writes around a merge conflict.
fn is_conflict_marker(text: &str) -> bool {
    text.starts_with("<<<<<<<") || text.starts_with(">>>>>>>") || text.starts_with("=======")
}

/// Longest quoted text in a message, in characters.
const MAX_QUOTED_CHARS: usize = 120;

/// `text`, cut to [`MAX_QUOTED_CHARS`] characters with `…`: a message quotes the offending line
/// (and the parser quotes it again), and a line can be 10 MB long.
fn abbreviate(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::options::split_option;
    use super::pep508::{marker_start, parse_pep508};
    use super::*;
    use crate::error::SpecError;
    use crate::source::ModelFs;

    struct Model {
        dir: tempfile::TempDir,
    }

    impl Model {
        fn new(files: &[(&str, &str)]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            for (name, text) in files {
                let path = dir.path().join(name);
                fs_err::create_dir_all(path.parent().unwrap()).unwrap();
                fs_err::write(path, text).unwrap();
            }
            Self { dir }
        }

        fn fs(&self) -> ModelFs {
            ModelFs::open(self.dir.path()).unwrap()
        }

        fn mlflow(&self, name: &str) -> Result<Vec<(String, bool)>, SpecError> {
            let fs = self.fs();
            let file = fs.read(name, None, "").unwrap();
            let mut sources = Sources::default();
            Ok(parse_file(&fs, &mut sources, &file, false)?
                .into_iter()
                .map(|r| (r.req_str, r.is_constraint))
                .collect())
        }

        fn pip(&self, name: &str) -> Result<PipSet, SpecError> {
            let fs = self.fs();
            let file = fs.read(name, None, "").unwrap();
            let mut sources = Sources::default();
            let lines = parse_file(&fs, &mut sources, &file, false)?;
            interpret(&fs, &mut sources, &lines)
        }
    }

    fn names(set: &PipSet) -> Vec<String> {
        set.requirements
            .iter()
            .map(|r| match &r.target {
                Target::Named(s) | Target::Url(s) | Target::Path(s) => s.clone(),
            })
            .collect()
    }

    #[test]
    fn comments_blank_lines_and_inline_comments() {
        let model = Model::new(&[(
            "requirements.txt",
            "# a comment\n\n  numpy==1.26.4  # pinned\npandas#not-a-comment\n   \n",
        )]);
        assert_eq!(
            model.mlflow("requirements.txt").unwrap(),
            vec![
                ("numpy==1.26.4".into(), false),
                ("pandas#not-a-comment".into(), false)
            ]
        );
    }

    #[test]
    fn continuations_and_crlf() {
        let model = Model::new(&[(
            "requirements.txt",
            "scikit-learn\\\r\n>=1.3,\\\r\n<1.4\r\nsix\r\nlast\\",
        )]);
        assert_eq!(
            model.mlflow("requirements.txt").unwrap(),
            vec![
                ("scikit-learn>=1.3,<1.4".into(), false),
                ("six".into(), false),
                ("last".into(), false)
            ]
        );
        let set = model.pip("requirements.txt").unwrap();
        assert_eq!(set.requirements[0].origin.as_ref().unwrap().line, 1);
        assert_eq!(set.requirements[1].origin.as_ref().unwrap().line, 4);
    }

    #[test]
    fn includes_are_relative_to_the_including_file() {
        let model = Model::new(&[
            (
                "requirements.txt",
                "-r reqs/base.txt\n-c constraints.txt\nmlflow\n",
            ),
            ("reqs/base.txt", "-r more.txt\nnumpy\n"),
            ("reqs/more.txt", "six\n"),
            ("constraints.txt", "numpy<2\n"),
        ]);
        assert_eq!(
            model.mlflow("requirements.txt").unwrap(),
            vec![
                ("six".into(), false),
                ("numpy".into(), false),
                ("numpy<2".into(), true),
                ("mlflow".into(), false)
            ]
        );
        let set = model.pip("requirements.txt").unwrap();
        assert_eq!(names(&set), ["six", "numpy", "mlflow"]);
        assert_eq!(set.constraints.len(), 1);
        assert_eq!(set.constraints[0].target, Target::Named("numpy<2".into()));
    }

    #[test]
    fn include_cycles_are_detected() {
        let model = Model::new(&[("a.txt", "-r b.txt\n"), ("b.txt", "six\n-r a.txt\n")]);
        let err = model.mlflow("a.txt").unwrap_err();
        assert!(matches!(err, SpecError::RequirementsCycle { .. }), "{err}");
        assert!(
            err.to_string().contains("`a.txt` -> `b.txt` -> `a.txt`"),
            "{err}"
        );
    }

    #[test]
    fn include_escapes_are_refused() {
        let model = Model::new(&[("requirements.txt", "-r ../../etc/passwd\n")]);
        assert!(matches!(
            model.mlflow("requirements.txt").unwrap_err(),
            SpecError::PathEscape { .. }
        ));
        let model = Model::new(&[("requirements.txt", "-c /etc/passwd\n")]);
        assert!(matches!(
            model.mlflow("requirements.txt").unwrap_err(),
            SpecError::PathEscape { .. }
        ));
    }

    #[test]
    fn missing_include_names_the_line() {
        let model = Model::new(&[("requirements.txt", "six\n-r nope.txt\n")]);
        let err = model.mlflow("requirements.txt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`nope.txt` does not exist (referenced from `requirements.txt` line 2)"
        );
    }

    #[test]
    fn index_options() {
        let model = Model::new(&[
            (
                "requirements.txt",
                "--index-url https://pypi.example/simple\n-i https://mirror.example/simple\n--extra-index-url=https://extra.example/simple\n--find-links https://pypi.python.org/simple/index.html\n-f wheels\n--pre\n--no-binary :all:\n--only-binary=numpy\n--prefer-binary\n--trusted-host example.com\n--no-index\n--require-hashes\nsix\n",
            ),
            ("wheels/x.txt", ""),
        ]);
        let set = model.pip("requirements.txt").unwrap();
        let index = &set.index;
        assert_eq!(
            index.index_url.as_deref(),
            Some("https://mirror.example/simple")
        );
        assert_eq!(index.extra_index_urls, ["https://extra.example/simple"]);
        assert_eq!(
            index.find_links,
            ["https://pypi.python.org/simple/index.html", "wheels"]
        );
        assert!(index.pre && index.no_index && index.prefer_binary && index.require_hashes);
        assert_eq!(index.no_binary, [":all:"]);
        assert_eq!(index.only_binary, ["numpy"]);
        assert!(index.trusted_hosts.contains("example.com"));
        assert_eq!(names(&set), ["six"]);
    }

    #[test]
    fn requirement_forms() {
        let model = Model::new(&[
            (
                "requirements.txt",
                "Scikit_Learn >= 1.3 , <1.4 ; python_version >= \"3.8\"\nmlflow[gateway]==2.12.2\npkg @ https://host.example/pkg-1.0-py3-none-any.whl\nhttps://host.example/other-1.0.tar.gz\ngit+https://github.com/org/repo@v1#egg=repo\n./dist/local-1.0-py3-none-any.whl\n-e ./project\n--editable=./project[extra]\nrequests==2.31.0 --hash=sha256:bbb --hash sha256:aaa\n./dist/local-1.0-py3-none-any.whl ; python_version < \"3.9\"\nDistro_Info===1.1build1\n",
            ),
            ("dist/local-1.0-py3-none-any.whl", "not really a wheel"),
            ("project/pyproject.toml", ""),
        ]);
        let set = model.pip("requirements.txt").unwrap();
        let r = &set.requirements;
        assert_eq!(
            r[0].target,
            Target::Named("scikit-learn>=1.3,<1.4 ; python_full_version >= '3.8'".into())
        );
        assert_eq!(r[1].target, Target::Named("mlflow[gateway]==2.12.2".into()));
        assert_eq!(
            r[2].target,
            Target::Named("pkg @ https://host.example/pkg-1.0-py3-none-any.whl".into())
        );
        assert_eq!(
            r[3].target,
            Target::Url("https://host.example/other-1.0.tar.gz".into())
        );
        assert_eq!(
            r[4].target,
            Target::Url("git+https://github.com/org/repo@v1#egg=repo".into())
        );
        assert_eq!(
            r[5].target,
            Target::Path("dist/local-1.0-py3-none-any.whl".into())
        );
        assert!(r[6].editable);
        assert_eq!(r[6].target, Target::Path("project".into()));
        assert!(r[7].editable);
        assert_eq!(r[7].target, Target::Path("project[extra]".into()));
        assert_eq!(r[8].hashes, ["sha256:aaa", "sha256:bbb"]);
        assert_eq!(r[9].marker.as_deref(), Some("python_version < \"3.9\""));
        assert_eq!(
            r[10].target,
            Target::Named("distro-info===1.1build1".into())
        );
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        for (text, needle) in [
            ("six\nnumpy===\n", "line 2"),
            ("--frobnicate\n", "unknown pip option `--frobnicate`"),
            ("six --install-option=x\n", "unknown per-requirement option"),
            ("--index-url\n", "needs a value"),
            (
                "numpy ; python_version >>> '3'\n",
                "not a valid requirement",
            ),
            ("-e\n", "needs a path"),
            ("--use-feature=fast-deps\n", "not supported"),
        ] {
            let model = Model::new(&[("requirements.txt", text)]);
            let err = model.pip("requirements.txt").unwrap_err();
            assert!(
                matches!(err, SpecError::Requirement { .. }),
                "{text}: {err:?}"
            );
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn errors_point_at_their_line_when_the_parse_sources_are_gone() {
        // The virtualenv manager parses in one step and interprets with fresh `Sources`.
        let model = Model::new(&[("requirements.txt", "numpy\nnumpy>=>1\n")]);
        let fs = model.fs();
        let file = fs.read("requirements.txt", None, "").unwrap();
        let lines = parse_file(&fs, &mut Sources::default(), &file, false).unwrap();
        let err = interpret(&fs, &mut Sources::default(), &lines).unwrap_err();
        let SpecError::Requirement {
            src, span, line, ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(*line, 2);
        let text = miette::SourceCode::read_span(src, span, 0, 0).unwrap();
        assert_eq!(std::str::from_utf8(text.data()).unwrap(), "numpy>=>1");
    }

    #[test]
    fn long_lines_are_abbreviated_in_messages() {
        let line = format!("numpy==1.0 {}", "a".repeat(1_000_000));
        let model = Model::new(&[("requirements.txt", &line)]);
        let err = model.pip("requirements.txt").unwrap_err().to_string();
        assert!(err.len() < 600, "{} bytes", err.len());
        assert!(err.contains("aaa…` is not a valid requirement: "), "{err}");
    }

    #[test]
    fn conflict_markers_get_their_own_hint() {
        let model = Model::new(&[(
            "requirements.txt",
            "numpy\n<<<<<<< HEAD\npandas==1\n=======\npandas==2\n>>>>>>> main\n",
        )]);
        let err = model.pip("requirements.txt").unwrap_err();
        let help = miette::Diagnostic::help(&err).unwrap().to_string();
        assert!(help.contains("merge-conflict"), "{help}");
    }

    #[test]
    fn local_paths_must_stay_inside() {
        let model = Model::new(&[("requirements.txt", "../outside.whl\n")]);
        assert!(matches!(
            model.pip("requirements.txt").unwrap_err(),
            SpecError::PathEscape { .. }
        ));
        let model = Model::new(&[("requirements.txt", "pkg @ file:///etc/passwd\n")]);
        assert!(matches!(
            model.pip("requirements.txt").unwrap_err(),
            SpecError::PathEscape { .. }
        ));
        let model = Model::new(&[("requirements.txt", "./missing.whl\n")]);
        assert!(matches!(
            model.pip("requirements.txt").unwrap_err(),
            SpecError::MissingFile { .. }
        ));
    }

    #[test]
    fn pip_style_includes_are_followed() {
        let model = Model::new(&[
            (
                "requirements.txt",
                "--requirement=base.txt\n-cconstraints.txt\n",
            ),
            ("base.txt", "six\n"),
            ("constraints.txt", "six<2\n"),
        ]);
        let set = model.pip("requirements.txt").unwrap();
        assert_eq!(names(&set), ["six"]);
        assert_eq!(set.constraints.len(), 1);
    }

    /// `pep508_rs` 0.9.2 panicked on a name or extra ending in `.`, `-` or `_` that is not at the
    /// end of the line (`fuzz/artifacts/requirements/crash-a1008397…`, minimised).
    #[test]
    fn fuzz_regression_name_ending_in_separator() {
        for text in [
            "tensorflow-=2.19.0",
            "numpy_ >=1",
            "pkg. ; python_version > '3'",
            "pkg-[extra]",
            "pkg[extra-]",
            "pkg[extra_ ]==1",
            "pkg[a, b. ]",
            "pkg[a,b- c]",
            "pkg [a-",
            "pkg-",
            "pkg_ @ https://example.org/pkg.whl",
        ] {
            let model = Model::new(&[("requirements.txt", text)]);
            let err = model.pip("requirements.txt").unwrap_err();
            assert!(
                matches!(err, SpecError::Requirement { .. }),
                "{text}: {err:?}"
            );
            assert!(
                err.to_string()
                    .contains("must end with an alphanumeric character"),
                "{text}: {err}"
            );
            assert!(PipRequirement::named(text).is_err(), "{text}");
        }
        // Separators inside names and extras are fine.
        let model = Model::new(&[(
            "requirements.txt",
            "a.b-c_d>=1\npkg[a-b, c.d_e]==1 ; python_version > '3'\nzope.interface\n",
        )]);
        let set = model.pip("requirements.txt").unwrap();
        assert_eq!(set.requirements.len(), 3);
    }

    /// Files that include the next one twice, 40 deep: 2^40 reads. Not found by the fuzz target
    /// (its include files are fixed), but the same kind of bug as the YAML alias bombs.
    #[test]
    fn fuzz_regression_include_fan_out_is_bounded() {
        let mut files: Vec<(String, String)> = (0..40)
            .map(|i| {
                (
                    format!("r{i}.txt"),
                    format!("-r r{}.txt\n-r r{}.txt\n", i + 1, i + 1),
                )
            })
            .collect();
        files.push(("r40.txt".into(), "six\n".into()));
        files.push(("requirements.txt".into(), "-r r0.txt\n".into()));
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_str()))
            .collect();
        let model = Model::new(&files);
        let err = model.mlflow("requirements.txt").unwrap_err();
        assert!(matches!(err, SpecError::TooManyIncludes { .. }), "{err:?}");
        assert!(err.to_string().contains("10000 `-r`/`-c` lines"), "{err}");
        // A few repeated includes are fine, as in MLflow.
        let model = Model::new(&[
            ("requirements.txt", "-r a.txt\n-r a.txt\n-c a.txt\n"),
            ("a.txt", "six\n"),
        ]);
        assert_eq!(model.mlflow("requirements.txt").unwrap().len(), 3);
    }

    /// `pep508_rs` 0.9.2 sliced the word after a marker expression at its length in characters
    /// as bytes (`fuzz/artifacts/requirements/crash-19391af0…`, minimised).
    #[test]
    fn fuzz_regression_non_ascii_after_a_marker() {
        for text in [
            "six ; python_version < \"3.9\"€",
            "six;python_version<'3'aé",
            "six ; python_version < \"3\" x\"é\"",
            "six @ https://example.org/six.whl ; os_name == \"nt\" ǅ",
            "./pkg ; python_version < \"3.9\"€",
            "six===1.0 ; python_version < \"3.9\"€",
        ] {
            let model = Model::new(&[("requirements.txt", text), ("pkg/setup.py", "")]);
            let err = model.pip("requirements.txt").unwrap_err();
            assert!(
                matches!(err, SpecError::Requirement { .. }),
                "{text}: {err:?}"
            );
            assert!(
                err.to_string().contains("markers are ASCII"),
                "{text}: {err}"
            );
        }
        // Non-ASCII elsewhere is left to pep508_rs, and non-ASCII whitespace is whitespace.
        assert!(parse_pep508("six @ https://example.org/a;é/six.whl").is_ok());
        assert!(parse_pep508("six ;\u{a0}python_version\u{a0}<\u{a0}'3'").is_ok());
        assert_eq!(marker_start("six>=1 ; os_name == '@'"), Some(8));
        assert_eq!(
            marker_start("six @ https://h/a;b.whl ; os_name == 'nt'"),
            Some(25)
        );
        assert_eq!(marker_start("six @ https://h/a;b.whl"), None);
    }

    /// A short option with a non-ASCII letter was split inside the letter
    /// (`fuzz/artifacts/requirements/crash-356dfde7…`, minimised).
    #[test]
    fn fuzz_regression_non_ascii_short_option() {
        assert_eq!(split_option("-Ӗd3"), ("-Ӗ", Some("d3")));
        assert_eq!(split_option("-Ӗ"), ("-Ӗ", None));
        assert_eq!(split_option("-rfile.txt"), ("-r", Some("file.txt")));
        assert_eq!(split_option("-r"), ("-r", None));
        assert_eq!(split_option("--pre"), ("--pre", None));
        let model = Model::new(&[("requirements.txt", "-Ӗd3\n")]);
        let err = model.pip("requirements.txt").unwrap_err();
        assert!(matches!(err, SpecError::Requirement { .. }), "{err:?}");
    }

    #[test]
    fn python_splitlines_boundaries() {
        let lines = split_lines("f", "a\r\nb\rc\x0bd\u{2028}e\n");
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "c", "d", "e"]);
        assert_eq!(lines[4].origin.line, 5);
    }
}
