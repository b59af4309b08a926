//! The warnings `mlflow.pyfunc.load_model` logs when the model's requirements are not met, in
//! MLflow's words: `run` and `check` print them so, for users who grep their logs for them.

use crate::CheckReport;

impl CheckReport {
    /// MLflow's warnings about this report (none when everything matches): the Python version
    /// the model was saved with, then the requirements not met.
    #[must_use]
    pub fn mlflow_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let (true, Some(model)) = (self.python_mismatch, &self.model_python_version) {
            warnings.push(format!(
                "The version of Python that the model was saved in, `Python {model}`, differs from the version of Python that is currently running, `Python {}`, and may be incompatible",
                self.python_version
            ));
        }
        if !self.mismatches.is_empty() {
            let list: Vec<String> = self.mismatches.iter().map(|m| format!(" - {m}")).collect();
            warnings.push(format!(
                "Detected one or more mismatches between the model's dependencies and the current Python environment:\n{}\nTo fix the mismatches, call `mlflow.pyfunc.get_model_dependencies(model_uri)` to fetch the model's environment and install dependencies using the resulting environment file.",
                list.join("\n")
            ));
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use crate::{CheckReport, Mismatch};

    #[test]
    fn mlflows_words_for_python_then_packages() {
        let mut report = CheckReport {
            python: "/usr/bin/python3".into(),
            python_version: "3.12.1".into(),
            model_python_version: Some("3.11.7".into()),
            python_mismatch: false,
            checked: 1,
            mismatches: Vec::new(),
        };
        assert!(report.mlflow_warnings().is_empty());
        report.python_mismatch = true;
        report.mismatches.push(Mismatch {
            package: "numpy".into(),
            installed: None,
            requirement: "numpy==1.26.4".into(),
        });
        let warnings = report.mlflow_warnings();
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("`Python 3.11.7`, differs from the version of Python that is currently running, `Python 3.12.1`"));
        assert!(
            warnings[1].contains("\n - numpy (current: uninstalled, required: numpy==1.26.4)\n")
        );
    }
}
