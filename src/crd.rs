//! The CRD manifests, generated from the Rust types. `crds/` holds the committed copies and a test
//! keeps them identical to what this module prints.

use kube::CustomResourceExt;

use crate::resources::{CostAnalysisJob, CostAnalysisJobTask};

/// File name under `crds/` and YAML text of each CRD.
pub fn manifests() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    Ok(vec![
        (
            "costanalysisjob.yaml",
            serde_yaml::to_string(&CostAnalysisJob::crd())?,
        ),
        (
            "costanalysisjobtask.yaml",
            serde_yaml::to_string(&CostAnalysisJobTask::crd())?,
        ),
    ])
}

/// All CRDs as one multi-document YAML stream (what `cost-analysis-operator crd` prints).
pub fn all_yaml() -> Result<String, serde_yaml::Error> {
    Ok(manifests()?
        .into_iter()
        .map(|(_, y)| format!("---\n{y}"))
        .collect())
}
