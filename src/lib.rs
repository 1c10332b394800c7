//! cost-analysis-operator: the SpaceONE cost-analysis Job API as a Kubernetes operator.
//!
//! The resources and the pure decisions:
//! - [`resources`]: the `CostAnalysisJob` and `CostAnalysisJobTask` custom resources and the one
//!   mapping of a job to a SpaceONE Job; [`crd`]: their CRD YAML;
//! - [`lifecycle`]: what a job's status should be (no I/O); [`runner`]: what a templated task's
//!   batch/v1 Job should be and what its state means; [`pod_failure`]: what a failed pod says.
//!
//! The controller:
//! - [`controller`]: the kube-rs shell that applies the decisions; [`caches`]: its watch-fed
//!   caches and triggers; [`passes`]: looks at every job, most urgent first; [`own_writes`]: its
//!   recent writes, so their echoes trigger nothing; [`runner_shell`]: the task runner's
//!   requests; [`leader`]: Lease-based leader election; [`backoff`]: the watches' retry policy;
//!   [`job_metrics`]: what decisions and the cache tell the metrics.
//!
//! The API shim:
//! - [`api`]: SpaceONE's REST and gRPC APIs and the Kubernetes aggregated API over a watch-fed
//!   catalog of jobs; [`auth`]: front-proxy certificates, TokenReview and SubjectAccessReview;
//!   [`server`]: the one HTTP server (TLS and h2c) every listener uses, with its limits.
//!
//! The process:
//! - [`cli`]: flags and their defaults; [`serve`]: the wiring of `controller`, `api` and `run`;
//!   [`clients`]: the API server clients (watches without kube's request retry);
//!   [`offline`]: the offline `query` command; [`health`] and [`metrics`]: `/healthz`, `/readyz`,
//!   `/metrics`; [`telemetry`]: logs, request and reconcile spans, OpenTelemetry export (opt-in);
//!   [`shutdown`]: signals; [`timestamp`] and [`percent`]: small codecs.
//!
//! For tests and benches only (the `testing` feature): `testing`, builders of the custom
//! resources and the realistic job generator.

pub mod api;
pub mod auth;
pub mod backoff;
pub mod caches;
pub mod cli;
pub mod clients;
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
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timestamp;
