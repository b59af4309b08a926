//! What `pack` decides before packing: the format, the reproducible mtime, the compression
//! level, the Spark target (`--for spark[=VERSION]`) and what it leaves out, and the check of the
//! Spark driver's Python. The CLI maps its flags to [`PackPolicy::new`] and calls
//! [`PackPolicy::options`] once the environment is built.

use std::path::{Path, PathBuf};

use crate::{Environment, Format, PackError, PackOptions, PackReport, spark};

/// The mtime of every entry when `SOURCE_DATE_EPOCH` is not set: 2000-01-01T00:00:00Z. Any
/// fixed value makes the archive reproducible; pack-time bytecode does not depend on mtimes.
pub const DEFAULT_MTIME: u64 = 946_684_800;

/// gzip level 6: the prototype measured level 9 at 0.8 % smaller for 3x the time, level 1 at
/// 14 % larger (notes/spark-and-pack.md).
pub const COMPRESSION_LEVEL: u32 = 6;

/// The decisions of one `pack`, made from its flags before anything is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackPolicy {
    /// The archive's format.
    pub format: Format,
    /// The Spark version of `--for spark[=VERSION]`.
    pub spark: Option<String>,
    /// Compile bytecode into the archive.
    pub compile: bool,
    /// Keep test directories.
    pub keep_tests: bool,
    /// Every entry's mtime.
    pub mtime: u64,
}

impl PackPolicy {
    /// `format` (else the one `output`'s name implies, else `tar.gz`), `target` (`--for`),
    /// and `source_date_epoch` (`SOURCE_DATE_EPOCH`, read and parsed with the other settings;
    /// else [`DEFAULT_MTIME`]).
    ///
    /// # Errors
    /// An unknown `--for` target or an invalid Spark version.
    pub fn new(
        format: Option<Format>,
        output: Option<&Path>,
        target: Option<&str>,
        compile: bool,
        keep_tests: bool,
        source_date_epoch: Option<u64>,
    ) -> Result<Self, PackError> {
        Ok(Self {
            format: format.unwrap_or_else(|| output.map_or(Format::TarGz, Format::from_path)),
            spark: spark_target(target)?,
            compile,
            keep_tests,
            mtime: source_date_epoch.unwrap_or(DEFAULT_MTIME),
        })
    }

    /// The options of [`crate::pack`]: for Spark, the distributions Spark provides are left
    /// out; `model` is the model directory to add (`--with-model`).
    #[must_use]
    pub fn options(&self, model: Option<PathBuf>, staging_dir: PathBuf) -> PackOptions {
        PackOptions {
            format: self.format,
            compile: self.compile,
            reuse_bytecode: false,
            keep_tests: self.keep_tests,
            exclude_distributions: if self.spark.is_some() {
                spark::PROVIDED_BY_SPARK
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            } else {
                Vec::new()
            },
            model,
            staging_dir,
            full_prefix: false,
            mtime: self.mtime,
            compression_level: COMPRESSION_LEVEL,
        }
    }

    /// For a Spark target, the warnings about using `environment` as the executors' Python,
    /// with the driver's Python `driver_python` (`PYSPARK_DRIVER_PYTHON`, else `python3`).
    #[must_use]
    pub fn spark_check(
        &self,
        environment: &Environment,
        driver_python: Option<String>,
    ) -> Option<SparkCheck> {
        let version = self.spark.as_deref()?;
        let driver = driver_python
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "python3".to_string());
        let driver_minor = spark::driver_python_minor(driver.as_ref());
        let note = driver_minor.is_none().then(|| {
            format!(
                "Could not run `PYSPARK_DRIVER_PYTHON` (or `python3`) to compare the driver's Python version with the archive's ({})",
                environment.python_minor
            )
        });
        Some(SparkCheck {
            warnings: spark::preflight(environment, version, driver_minor.as_deref()),
            driver_minor,
            note,
        })
    }

    /// For a Spark target, how to use the archive `report` describes ([`spark::recipe`], with
    /// the archive's file name, `env.tar.gz` if it has none). (The `if` and the name were the
    /// CLI's.)
    #[must_use]
    pub fn spark_recipe(&self, report: &PackReport) -> Option<String> {
        self.spark.as_ref()?;
        let name = report.output.file_name().map_or_else(
            || "env.tar.gz".to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        Some(spark::recipe(
            &name,
            &report.python_minor,
            report.with_model,
        ))
    }
}

/// [`PackPolicy::spark_check`]'s answer.
#[derive(Debug, Clone)]
pub struct SparkCheck {
    /// The driver's `major.minor`; `None` when it could not be run (its version was not
    /// compared).
    pub driver_minor: Option<String>,
    /// What would fail on Spark.
    pub warnings: Vec<String>,
    /// That the driver's Python could not be run, so its version was not compared: worth a
    /// line, not a warning. (Was the CLI's.)
    pub note: Option<String>,
}

/// `--for spark[=VERSION]`: the Spark version.
fn spark_target(target: Option<&str>) -> Result<Option<String>, PackError> {
    let Some(target) = target else {
        return Ok(None);
    };
    let (name, version) = match target.split_once('=') {
        Some((name, version)) => (name, version.trim()),
        None => (target, spark::DEFAULT_SPARK_VERSION),
    };
    if !name.trim().eq_ignore_ascii_case("spark") {
        return Err(PackError::UnknownTarget {
            name: name.to_string(),
        });
    }
    if version.is_empty() || !version.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(PackError::SparkVersion {
            version: version.to_string(),
        });
    }
    Ok(Some(version.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        format: Option<Format>,
        output: Option<&str>,
        target: Option<&str>,
        epoch: Option<u64>,
    ) -> Result<PackPolicy, PackError> {
        PackPolicy::new(format, output.map(Path::new), target, true, false, epoch)
    }

    /// A driver that cannot be run is said once (its version not compared); no target, no
    /// check.
    #[test]
    fn a_driver_that_cannot_run_is_a_note() {
        let environment = Environment {
            root: "/env".into(),
            canonical: "/env".into(),
            python_minor: "3.11".into(),
            python_version: "3.11.7".into(),
            stdlib: "lib/python3.11".into(),
            distributions: Vec::new(),
        };
        let missing = Some("/nonexistent/python".to_string());
        let none = policy(None, None, None, None).unwrap();
        assert!(none.spark_check(&environment, missing.clone()).is_none());
        let spark = policy(None, None, Some("spark"), None).unwrap();
        let check = spark.spark_check(&environment, missing).unwrap();
        assert_eq!(check.driver_minor, None);
        assert_eq!(
            check.note.as_deref(),
            Some(
                "Could not run `PYSPARK_DRIVER_PYTHON` (or `python3`) to compare the driver's Python version with the archive's (3.11)"
            )
        );
    }

    #[test]
    fn the_format_is_the_flag_else_the_output_name_else_tar_gz() {
        let format = |f, o| policy(f, o, None, None).unwrap().format;
        assert_eq!(format(None, None), Format::TarGz);
        assert_eq!(format(None, Some("env.zip")), Format::Zip);
        assert_eq!(format(Some(Format::Tar), Some("env.zip")), Format::Tar);
    }

    /// Only a Spark target gets the recipe, naming the archive as written.
    #[test]
    fn the_spark_recipe_names_the_archive_written() {
        let report = PackReport {
            output: "/out/model-env.zip".into(),
            format: Format::Zip,
            archive_bytes: 0,
            unpacked_bytes: 0,
            files: 0,
            directories: 0,
            symlinks: 0,
            bytecode_files: 0,
            scripts_rewritten: Vec::new(),
            python: "3.11.7".into(),
            python_minor: "3.11".into(),
            excluded: crate::Excluded::default(),
            with_model: true,
            warnings: Vec::new(),
            timings: crate::PackTimings::default(),
        };
        assert_eq!(
            policy(None, None, None, None)
                .unwrap()
                .spark_recipe(&report),
            None
        );
        let recipe = policy(None, None, Some("spark"), None)
            .unwrap()
            .spark_recipe(&report)
            .unwrap();
        assert!(recipe.contains("--archives model-env.zip#env"), "{recipe}");
        assert!(recipe.contains("./env/bin/python3.11"), "{recipe}");
        assert!(recipe.contains("The model is in the archive"), "{recipe}");
    }

    #[test]
    fn the_mtime_is_source_date_epoch_else_2000() {
        let mtime = |e| policy(None, None, None, e).unwrap().mtime;
        assert_eq!(mtime(None), DEFAULT_MTIME);
        assert_eq!(mtime(Some(1_700_000_000)), 1_700_000_000);
    }

    #[test]
    fn spark_targets() {
        let spark = |t| policy(None, None, Some(t), None).map(|p| p.spark);
        assert_eq!(
            spark("spark").unwrap().as_deref(),
            Some(spark::DEFAULT_SPARK_VERSION)
        );
        assert_eq!(spark("Spark=3.5.1").unwrap().as_deref(), Some("3.5.1"));
        assert!(matches!(
            spark("flink"),
            Err(PackError::UnknownTarget { .. })
        ));
        assert!(matches!(
            spark("spark="),
            Err(PackError::SparkVersion { .. })
        ));
        assert!(matches!(
            spark("spark=x"),
            Err(PackError::SparkVersion { .. })
        ));
        assert!(spark("flink").unwrap_err().is_user_error());
    }

    #[test]
    fn spark_leaves_out_what_spark_provides() {
        let staging = PathBuf::from("/tmp");
        let plain = policy(None, None, None, None).unwrap();
        assert!(
            plain
                .options(None, staging.clone())
                .exclude_distributions
                .is_empty()
        );
        let spark = policy(None, None, Some("spark"), None).unwrap();
        let options = spark.options(None, staging);
        assert_eq!(options.exclude_distributions, ["pyspark", "py4j"]);
        assert_eq!(options.compression_level, COMPRESSION_LEVEL);
        assert!(!options.full_prefix);
    }
}
