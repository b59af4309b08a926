//! Compatibility constraints: what keeps an old MLflow's own scoring code working against
//! today's releases of the packages it leaves open.
//!
//! MLflow pins its scoring stack loosely (`fastapi<1`, nothing about Starlette; nothing about
//! setuptools) and the model's files pin only the model's own libraries, so an environment built
//! today for a model written years ago resolves the newest Starlette, setuptools, ... and
//! MLflow's server fails at start, under MLflow's own `mlflow models serve` too. [`TABLE`] lists,
//! per range of MLflow versions, an upper bound that keeps that MLflow working, each with the
//! error it prevents and the release that introduced it (measured by serving a model of each
//! MLflow version in an environment resolved today; see the README, "Compatibility
//! constraints").
//!
//! They are uv constraints (`-c`), never requirements: they install nothing, and they are added
//! only for packages the model's files leave open (named with no version, or not named at all),
//! so they never override what the model asked for. They are part of [`crate::EnvSpec`], so
//! they enter the environment key and show in `deps --format json` and `inspect`.

use std::str::FromStr;

use pep508_rs::pep440_rs::{Operator, Version, VersionSpecifiers};
use serde::Serialize;

use crate::requirements::{PipRequirement, Target};
use crate::spec::EnvSpec;

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct CompatEntry {
    /// A stable name for the row, recorded in the spec (and so in the key).
    pub id: &'static str,
    /// The MLflow versions it applies to (PEP 440 specifiers).
    pub mlflow: &'static str,
    /// The package it bounds (normalised name).
    pub package: &'static str,
    /// The constraint (a PEP 508 requirement with a version specifier).
    pub constraint: &'static str,
    /// What breaks without it, and since which release.
    pub evidence: &'static str,
}

/// The table. Each entry was found by serving a model of an MLflow version in that range in an
/// environment resolved on 2026-11-30 (the README lists the runs).
pub const TABLE: &[CompatEntry] = &[
    CompatEntry {
        id: "starlette-route",
        mlflow: ">=2.21.0.dev0,<3.11.0.dev0",
        package: "starlette",
        constraint: "starlette<1",
        evidence: "MLflow's FastAPI scoring server declares routes with `@app.route(...)`, which Starlette 1.0.0 removed: the server dies at start with `AttributeError: 'FastAPI' object has no attribute 'route'` (mlflow/pyfunc/scoring_server/__init__.py, MLflow 2.21.0 to 3.10.x; 3.11.0 uses `@app.get`); MLflow requires `fastapi<1` and nothing about Starlette",
    },
    CompatEntry {
        id: "setuptools-pkg-resources",
        mlflow: "<2.16.0.dev0",
        package: "setuptools",
        constraint: "setuptools<82",
        evidence: "MLflow imports `pkg_resources` when it loads a model (mlflow/utils/requirements_utils.py up to 2.15.x; 1.x also mlflow/utils/autologging_utils/versioning.py), which setuptools 82.0.0 removed: `ModuleNotFoundError: No module named 'pkg_resources'`",
    },
];

/// A constraint applied to a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompatConstraint {
    /// The uv constraint, e.g. `starlette<1`.
    pub constraint: String,
    /// The table row's id.
    pub id: String,
    /// The MLflow version the row was chosen for.
    pub mlflow: String,
}

impl CompatConstraint {
    /// The constraint as a requirement to hand to uv as a constraint.
    #[must_use]
    pub fn requirement(&self) -> PipRequirement {
        // The table's constraints are valid PEP 508 (a unit test parses every row).
        PipRequirement::named(&self.constraint).expect("table constraints are valid PEP 508")
    }

    /// The table row.
    #[must_use]
    pub fn entry(&self) -> Option<&'static CompatEntry> {
        TABLE.iter().find(|e| e.id == self.id)
    }
}

/// The MLflow version an environment gets from `spec`: an exact `mlflow==X` or
/// `mlflow-skinny==X` pin among its pip requirements, or an exact conda `mlflow` spec. `None`
/// when mlflow is absent, open (then the newest release installs, which needs no constraints)
/// or a range (see `constraints_for_range`).
#[must_use]
pub fn pinned_mlflow(spec: &EnvSpec) -> Option<Version> {
    for requirement in spec.build.requirements.iter().chain(&spec.pip.requirements) {
        if let Some((name, specifiers)) = named(requirement)
            && (name == "mlflow" || name == "mlflow-skinny")
            && let Some(version) = exact(&specifiers)
        {
            return Some(version);
        }
    }
    let conda = spec.conda.as_ref()?;
    conda.specs.iter().find_map(|text| {
        let mut parts = text.split_whitespace();
        let name = parts.next()?;
        if name != "mlflow" && name != "mlflow-skinny" {
            return None;
        }
        let version = parts.next()?;
        let version = version.strip_prefix("==").unwrap_or(version);
        if version.contains(['*', '<', '>', '!', ',', '|']) {
            return None;
        }
        Version::from_str(version).ok()
    })
}

/// The constraints of [`TABLE`] for `mlflow`, leaving out packages the spec pins.
#[must_use]
pub fn constraints_for(spec: &EnvSpec, mlflow: &Version) -> Vec<CompatConstraint> {
    TABLE
        .iter()
        .filter(|entry| {
            VersionSpecifiers::from_str(entry.mlflow).is_ok_and(|range| range.contains(mlflow))
        })
        .filter(|entry| !pins(spec, entry.package))
        .map(|entry| CompatConstraint {
            constraint: entry.constraint.to_string(),
            id: entry.id.to_string(),
            mlflow: mlflow.to_string(),
        })
        .collect()
}

/// Whether the model's files say anything about `package`'s version: a requirement or
/// constraint with a version specifier or a URL, or a conda spec with a version.
fn pins(spec: &EnvSpec, package: &str) -> bool {
    let pip = spec
        .build
        .requirements
        .iter()
        .chain(&spec.build.constraints)
        .chain(&spec.pip.requirements)
        .chain(&spec.pip.constraints)
        .any(|requirement| match &requirement.target {
            Target::Named(text) => pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(text)
                .is_ok_and(|r| {
                    r.name.as_ref() == package
                        && match &r.version_or_url {
                            None => false,
                            Some(pep508_rs::VersionOrUrl::VersionSpecifier(s)) => !s.is_empty(),
                            Some(pep508_rs::VersionOrUrl::Url(_)) => true,
                        }
                }),
            Target::Url(_) | Target::Path(_) => false,
        });
    let conda = spec.conda.as_ref().is_some_and(|conda| {
        conda.specs.iter().any(|text| {
            let mut parts = text.split_whitespace();
            parts.next() == Some(package) && parts.next().is_some()
        })
    });
    pip || conda
}

impl PipRequirement {
    /// The name and version of an exact pin (`name==1.2.3`, `name===1.2.3`), which
    /// `--exclude-newer` leaves exempt: it names one release, whatever its date.
    #[must_use]
    pub fn exact_pin(&self) -> Option<(String, Version)> {
        let (name, specifiers) = named(self)?;
        exact(&specifiers).map(|version| (name, version))
    }
}

fn named(requirement: &PipRequirement) -> Option<(String, VersionSpecifiers)> {
    let Target::Named(text) = &requirement.target else {
        return None;
    };
    let parsed = pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(text).ok()?;
    let specifiers = match parsed.version_or_url {
        Some(pep508_rs::VersionOrUrl::VersionSpecifier(s)) => s,
        _ => VersionSpecifiers::empty(),
    };
    Some((parsed.name.to_string(), specifiers))
}

fn exact(specifiers: &VersionSpecifiers) -> Option<Version> {
    let mut iter = specifiers.iter();
    let first = iter.next()?;
    (iter.next().is_none() && matches!(first.operator(), Operator::Equal | Operator::ExactEqual))
        .then(|| first.version().clone())
}

/// MLflow releases at and around the table's boundaries: a row applies to a version range
/// (`mlflow>=2.3,<3`) when one of these is in both.
const SAMPLE_RELEASES: &[&str] = &[
    "1.0.0", "1.30.1", "2.0.0", "2.3.0", "2.15.1", "2.16.0", "2.20.4", "2.21.0", "2.22.5", "3.0.0",
    "3.10.1", "3.11.0", "3.17.2",
];

/// The MLflow requirement's specifiers when it is a range rather than an exact pin (`None` for
/// an exact pin, an open `mlflow`, or no mlflow).
fn mlflow_range(spec: &EnvSpec) -> Option<VersionSpecifiers> {
    spec.build
        .requirements
        .iter()
        .chain(&spec.pip.requirements)
        .filter_map(named)
        .find(|(name, _)| name == "mlflow" || name == "mlflow-skinny")
        .map(|(_, specifiers)| specifiers)
        .filter(|specifiers| !specifiers.is_empty() && exact(specifiers).is_none())
}

/// The constraints for an MLflow range: every row that one of [`SAMPLE_RELEASES`] in the range
/// selects (uv picks the newest release in the range, which may be any of them over time).
fn constraints_for_range(spec: &EnvSpec, range: &VersionSpecifiers) -> Vec<CompatConstraint> {
    let mut out: Vec<CompatConstraint> = Vec::new();
    for release in SAMPLE_RELEASES {
        let Ok(version) = Version::from_str(release) else {
            continue;
        };
        if !range.contains(&version) {
            continue;
        }
        for constraint in constraints_for(spec, &version) {
            if !out.iter().any(|c| c.id == constraint.id) {
                out.push(CompatConstraint {
                    mlflow: range.to_string(),
                    ..constraint
                });
            }
        }
    }
    out
}

impl EnvSpec {
    /// Replaces the model's requirements of the same names with `overrides` and adds the
    /// others, as MLflow's `--pip-requirements-override` does (it installs them after the
    /// model's requirements, upgrading or downgrading what they installed).
    pub fn override_requirements(&mut self, overrides: Vec<PipRequirement>) {
        for requirement in overrides {
            let name = requirement.name();
            self.pip
                .requirements
                .retain(|r| name.is_none() || r.name() != name);
            self.pip.requirements.push(requirement);
        }
    }

    /// Recomputes [`EnvSpec::compat_constraints`] from the spec's own mlflow pin (see
    /// [`pinned_mlflow`]).
    pub fn refresh_compat_constraints(&mut self) {
        self.compat_constraints = match (pinned_mlflow(self), mlflow_range(self)) {
            (Some(version), _) => constraints_for(self, &version),
            (None, Some(range)) => constraints_for_range(self, &range),
            (None, None) => Vec::new(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requirements::PipSet;
    use crate::spec::EnvManager;

    fn spec(lines: &[&str]) -> EnvSpec {
        EnvSpec {
            env_manager: EnvManager::Virtualenv,
            python: Some("3.11".into()),
            conda: None,
            build: PipSet::default(),
            pip: PipSet {
                requirements: lines
                    .iter()
                    .map(|l| PipRequirement::named(l).unwrap())
                    .collect(),
                ..PipSet::default()
            },
            local_files: std::collections::BTreeMap::new(),
            compat_constraints: Vec::new(),
            uv_project: None,
        }
    }

    fn applied(spec: &mut EnvSpec) -> Vec<String> {
        spec.refresh_compat_constraints();
        spec.compat_constraints
            .iter()
            .map(|c| c.constraint.clone())
            .collect()
    }

    #[test]
    fn overrides_replace_the_model_s_requirement_of_the_same_name() {
        let mut spec = spec(&["mlflow==2.22.5", "scikit-learn==1.5.0"]);
        spec.override_requirements(vec![
            PipRequirement::named("scikit-learn==1.4.2").unwrap(),
            PipRequirement::named("starlette==0.45.0").unwrap(),
        ]);
        let lines: Vec<String> = spec
            .pip
            .requirements
            .iter()
            .map(|r| r.written.clone())
            .collect();
        assert_eq!(
            lines,
            ["mlflow==2.22.5", "scikit-learn==1.4.2", "starlette==0.45.0"]
        );
        // The override pins starlette, so the table leaves it alone.
        assert!(applied(&mut spec).is_empty());
    }

    #[test]
    fn every_row_parses() {
        for entry in TABLE {
            VersionSpecifiers::from_str(entry.mlflow).unwrap();
            let requirement = PipRequirement::named(entry.constraint).unwrap();
            assert_eq!(requirement.name().as_deref(), Some(entry.package));
        }
    }

    #[test]
    fn constraints_follow_the_pinned_mlflow() {
        assert_eq!(
            applied(&mut spec(&["mlflow==2.22.5", "scikit-learn==1.5.0"])),
            ["starlette<1"]
        );
        assert_eq!(applied(&mut spec(&["mlflow==2.3"])), ["setuptools<82"]);
        assert_eq!(
            applied(&mut spec(&["mlflow-skinny==1.30.1"])),
            ["setuptools<82"]
        );
        assert!(applied(&mut spec(&["mlflow==3.17.2"])).is_empty());
        // Open or absent mlflow: the newest installs, which needs none.
        assert!(applied(&mut spec(&["mlflow", "scikit-learn"])).is_empty());
        // A range gets every row one of its releases needs (uv picks its newest).
        assert_eq!(
            applied(&mut spec(&["mlflow<3,>=2.3"])),
            ["setuptools<82", "starlette<1"]
        );
        assert!(applied(&mut spec(&["mlflow>=3.11"])).is_empty());
    }

    #[test]
    fn a_package_the_model_pins_is_left_alone() {
        assert!(applied(&mut spec(&["mlflow==2.22.5", "starlette==1.0.0"])).is_empty());
        assert!(applied(&mut spec(&["mlflow==2.22.5", "starlette>=0.40"])).is_empty());
        // Named without a version: still open.
        assert_eq!(
            applied(&mut spec(&["mlflow==2.22.5", "starlette"])),
            ["starlette<1"]
        );
    }

    #[test]
    fn conda_pins_count() {
        let mut spec = spec(&[]);
        spec.env_manager = EnvManager::Conda;
        spec.conda = Some(crate::spec::CondaLayer {
            channels: vec!["conda-forge".into()],
            specs: vec!["python 3.11.*".into(), "mlflow ==2.21.0".into()],
            variables: std::collections::BTreeMap::new(),
        });
        assert_eq!(applied(&mut spec), ["starlette<1"]);
        spec.conda
            .as_mut()
            .unwrap()
            .specs
            .push("starlette 0.45.*".into());
        assert!(applied(&mut spec).is_empty());
    }
}
