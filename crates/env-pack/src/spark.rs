//! What an environment needs to be a Spark executor's Python, and the recipe to use it.
//!
//! `PySpark` checks none of this itself until a task runs: a worker of another minor version
//! fails with `PYTHON_VERSION_MISMATCH`, and pyarrow 17 with pandas 2.1 under pyspark 4.3 fails
//! inside `mapInPandas` with `AttributeError: 'pyarrow.lib.StructType' object has no attribute
//! 'names'` (notes/spark-and-pack.md, runs 12 and 13). These checks move that to pack time.

use serde::Serialize;

use crate::scan::Environment;

/// The Spark version `--for spark` assumes.
pub const DEFAULT_SPARK_VERSION: &str = "4.3.0";

/// The distributions Spark brings itself: the executor's `PYTHONPATH` puts its own
/// `pyspark.zip` and `py4j-*.zip` first, so copies in the environment are never imported.
pub const PROVIDED_BY_SPARK: [&str; 2] = ["pyspark", "py4j"];

/// The minimum versions `PySpark` declares for its pandas integration (`mapInPandas`, pandas
/// UDFs, and so `mlflow.pyfunc.spark_udf`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Floors {
    /// The Spark version these are for.
    pub spark: String,
    /// Minimum pandas.
    pub pandas: &'static str,
    /// Minimum pyarrow.
    pub pyarrow: &'static str,
    /// Minimum Python (`major.minor`).
    pub python: &'static str,
}

/// The floors for a Spark version; `None` for versions before 3.0.
#[must_use]
pub fn floors(spark: &str) -> Option<Floors> {
    let version = numbers(spark);
    let (pandas, pyarrow, python) = match (version.first(), version.get(1)) {
        (Some(4), _) => ("2.2.0", "18.0.0", "3.9"),
        (Some(3), Some(5)) => ("1.0.5", "4.0.0", "3.8"),
        (Some(3), Some(4)) => ("1.0.5", "1.0.0", "3.7"),
        (Some(3), _) => ("0.23.2", "1.0.0", "3.6"),
        _ => return None,
    };
    Some(Floors {
        spark: spark.to_string(),
        pandas,
        pyarrow,
        python,
    })
}

/// The leading numbers of a version (`2.2.0rc1` is `[2, 2, 0]`).
fn numbers(version: &str) -> Vec<u64> {
    version
        .split('.')
        .map_while(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// `a < b` comparing the leading numbers (missing parts are 0).
fn less(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (numbers(a), numbers(b));
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    a < b
}

/// The `major.minor` of the Spark driver's Python `python` (a path or a name on `PATH`, as
/// `PYSPARK_DRIVER_PYTHON` gives it), or `None` when it cannot be run: [`preflight`] then
/// checks everything but the driver's version.
#[must_use]
pub fn driver_python_minor(python: &std::ffi::OsStr) -> Option<String> {
    let version = env_prefix::python_version(python)?;
    let (minor, _micro) = version.rsplit_once('.')?;
    Some(minor.to_string())
}

/// Warnings about using `environment` as the executors' Python for `spark` (a version), with
/// a driver of Python `driver_minor` (`3.11`) if known.
#[must_use]
pub fn preflight(
    environment: &Environment,
    spark: &str,
    driver_minor: Option<&str>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(driver) = driver_minor
        && driver != environment.python_minor
    {
        warnings.push(format!(
            "The archive's Python is {}, the driver's is {driver}: PySpark refuses workers of another minor version (`PYTHON_VERSION_MISMATCH`). Run the driver with Python {} (`PYSPARK_DRIVER_PYTHON`)",
            environment.python_minor, environment.python_minor
        ));
    }
    let Some(floors) = floors(spark) else {
        warnings.push(format!(
            "No requirements known for Spark {spark}; checked nothing but the Python version"
        ));
        return warnings;
    };
    if less(&environment.python_minor, floors.python) {
        warnings.push(format!(
            "Spark {spark} needs Python >= {}; the archive has {}",
            floors.python, environment.python_minor
        ));
    }
    for (name, floor) in [("pandas", floors.pandas), ("pyarrow", floors.pyarrow)] {
        match environment.version_of(name) {
            Some(version) if less(version, floor) => warnings.push(format!(
                "Spark {spark} needs {name} >= {floor} for `mapInPandas` and pandas UDFs (and so `mlflow.pyfunc.spark_udf`); the archive has {name} {version}"
            )),
            Some(_) => {}
            None => warnings.push(format!(
                "The archive has no {name}: `mapInPandas` and pandas UDFs (and so `mlflow.pyfunc.spark_udf`) need {name} >= {floor} on the executors"
            )),
        }
    }
    warnings
}

/// How to use the archive, for an archive file name and the archive's Python `major.minor`.
#[must_use]
pub fn recipe(archive_name: &str, python_minor: &str, with_model: bool) -> String {
    let model = if with_model {
        "\nThe model is in the archive: load it on the executors with\n  mlflow.pyfunc.load_model(os.path.join(sys.prefix, \"model\"))\n"
    } else {
        ""
    };
    format!(
        "Use it with spark-submit (YARN, Kubernetes, standalone):
  PYSPARK_DRIVER_PYTHON=python{python_minor} spark-submit \\
      --archives {archive_name}#env \\
      --conf spark.pyspark.python=./env/bin/python{python_minor} \\
      app.py
The driver needs its own Python {python_minor} with pyspark, pandas and pyarrow
(`PYSPARK_DRIVER_PYTHON` or `--conf spark.pyspark.driver.python=...`).
From Python, set the variable before the session starts (`spark.pyspark.python` given to the
builder is ignored when the driver is a plain `python app.py`):
  os.environ[\"PYSPARK_PYTHON\"] = \"./env/bin/python{python_minor}\"
  spark = SparkSession.builder.config(\"spark.archives\", \"{archive_name}#env\").getOrCreate()
In local[N] mode the workers start in the driver's working directory, where `./env` does not
exist: use `--master local-cluster[...]`, or unpack the archive (`pyfunc-env unpack`) and set
PYSPARK_PYTHON to the absolute path of its bin/python{python_minor}.{model}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Distribution;

    fn environment(minor: &str, packages: &[(&str, &str)]) -> Environment {
        Environment {
            root: "/env".into(),
            canonical: "/env".into(),
            python_minor: minor.into(),
            python_version: format!("{minor}.7"),
            stdlib: format!("lib/python{minor}"),
            distributions: packages
                .iter()
                .map(|(name, version)| Distribution {
                    name: (*name).into(),
                    version: (*version).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn versions() {
        assert!(less("2.1.4", "2.2.0"));
        assert!(!less("2.2", "2.2.0"));
        assert!(!less("3.1.1", "2.2.0"));
        assert!(less("17.0.0", "18.0.0"));
        assert!(!less("2.2.0rc1", "2.2.0"));
        assert_eq!(floors("4.3.0").unwrap().pyarrow, "18.0.0");
        assert_eq!(floors("3.5.1").unwrap().pandas, "1.0.5");
        assert_eq!(floors("2.4.8"), None);
    }

    #[test]
    fn checks() {
        let good = environment("3.11", &[("pandas", "3.1.1"), ("pyarrow", "26.0.1")]);
        assert!(preflight(&good, "4.3.0", Some("3.11")).is_empty());
        let old = environment("3.11", &[("pandas", "2.1.4"), ("pyarrow", "17.0.0")]);
        let warnings = preflight(&old, "4.3.0", Some("3.12"));
        assert_eq!(warnings.len(), 3, "{warnings:#?}");
        assert!(warnings[0].contains("driver's is 3.12"));
        assert!(warnings[1].contains("pandas >= 2.2.0"));
        assert!(warnings[2].contains("pyarrow 17.0.0"));
        assert!(preflight(&old, "3.5.1", None).is_empty());
        let none = environment("3.11", &[]);
        assert_eq!(preflight(&none, "4.3.0", None).len(), 2);
    }

    #[test]
    fn the_drivers_python_version_is_read_and_an_unrunnable_driver_is_none() {
        let minor = driver_python_minor("python3".as_ref()).expect("python3 is on PATH");
        let expected = String::from_utf8(
            std::process::Command::new("python3")
                .args([
                    "-c",
                    "import sys; print(sys.version_info[0], sys.version_info[1])",
                ])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .replace(' ', ".");
        assert_eq!(minor, expected);
        assert_eq!(driver_python_minor("/nonexistent/python3".as_ref()), None);
    }
}
