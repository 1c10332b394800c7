//! cost-analysis-operator: the SpaceONE cost-analysis Job API as a Kubernetes operator.
//!
//! - [`resources`]: the `CostAnalysisJob` and `CostAnalysisJobTask` custom resources;
//! - [`lifecycle`]: the pure decision of what a job's status should be (no I/O);
//! - [`controller`]: the kube-rs shell that applies those decisions;
//! - [`runner`] and [`runner_shell`]: templated tasks run as batch/v1 Jobs (decision and I/O);
//! - [`leader`]: Lease-based leader election;
//! - [`health`] and [`metrics`]: `/healthz`, `/readyz`, `/metrics`;
//! - [`api`]: the API shim (SpaceONE REST and the Kubernetes aggregated API over a watch-fed index);
//! - [`auth`]: front-proxy client certificates, TokenReview and SubjectAccessReview;
//! - [`server`]: the one HTTP server (TLS and h2c) every listener uses, with its connection limits;
//! - [`telemetry`]: request and reconcile spans, OpenTelemetry export (opt-in);
//! - [`crd`]: CRD YAML generation.

pub mod api;
pub mod auth;
pub mod backoff;
pub mod caches;
pub mod cli;
pub mod controller;
pub mod crd;
#[cfg(test)]
mod fake_apiserver;
pub mod health;
pub mod job_metrics;
pub mod leader;
pub mod lifecycle;
pub mod metrics;
pub mod offline;
pub mod own_writes;
pub mod passes;
pub mod percent;
pub mod pod_failure;
pub mod resources;
pub mod runner;
pub mod runner_shell;
pub mod serve;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod timestamp;
