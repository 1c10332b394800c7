//! The one write of the Job service: a cancel, applied synchronously. The status write is
//! conditional on a resourceVersion, so a cancel racing the controller's completion ends in
//! exactly one terminal state: whichever write lands first wins, the loser re-reads, and the answer
//! is the truth (the CANCELED job, or ERROR_JOB_STATE naming the state that won).
//!
//! The first attempt writes from the index's copy of the job (one round trip); only when that copy
//! is stale (409) is the job read fresh and the write retried. A terminal state in the index is
//! final, so it is answered without a round trip. The controller, seeing CANCELED, cancels the
//! job's unfinished tasks: the job's status is written before any task is touched.

use chrono::Utc;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::catalog::Catalog;
use super::cataloged::LiveStatus;
use super::error::ServiceError;
use crate::resources::{CostAnalysisJob, CostAnalysisJobStatus};

/// Who wrote a cancel, in the job's managedFields.
pub const API_FIELD_MANAGER: &str = "cost-analysis-operator-api";

/// Fresh reads and writes tried after a stale copy before giving up.
const ATTEMPTS: usize = 10;

/// What the index knows of a job in one namespace, for a cancel.
#[derive(Debug)]
pub enum Known {
    LiveStatus(Box<LiveStatus>),
    Final(spaceone_query::JobStatus),
    OtherDomain,
}

/// The index's copies of the request's job in every namespace that holds one. Existence and
/// required parameters are judged exactly as `get` judges them.
pub fn known_copies(
    catalog: &Catalog,
    scope: &spaceone_query::Scope,
    request: &Value,
) -> Result<Vec<(String, Known)>, ServiceError> {
    spaceone_query::calls::get(&catalog.index, scope, request)?;
    let field = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or_default();
    let (job_id, domain) = (field("job_id"), field("domain_id"));
    Ok(catalog
        .namespaces_of(job_id)
        .iter()
        .map(|ns| {
            let known = match (catalog.live(ns, job_id), catalog.index.get(ns, job_id)) {
                (Some(live), _) if live.domain_id == domain => {
                    Known::LiveStatus(Box::new(live.clone()))
                }
                (None, Some(job)) if job.domain_id == domain => Known::Final(job.status),
                _ => Known::OtherDomain,
            };
            (ns.clone(), known)
        })
        .collect())
}

/// Writes cancels through the Kubernetes API.
pub struct Writer {
    client: Client,
}

impl Writer {
    pub fn new(client: Client) -> Self {
        Writer { client }
    }

    /// Cancels `job_id` of `domain` in the first namespace that holds it, starting from the index's
    /// `copies`. `Ok(None)`: the job vanished.
    pub async fn cancel(
        &self,
        job_id: &str,
        domain: &str,
        copies: Vec<(String, Known)>,
    ) -> Result<Option<CostAnalysisJob>, ServiceError> {
        for (ns, known) in copies {
            let api: Api<CostAnalysisJob> = Api::namespaced(self.client.clone(), &ns);
            match known {
                Known::OtherDomain => continue,
                Known::Final(state) => return Err(ServiceError::job_state(state.as_str())),
                Known::LiveStatus(live) => {
                    let created = live.created.unwrap_or_else(Utc::now);
                    let written = apply(
                        &api,
                        job_id,
                        &live.resource_version,
                        live.status.as_ref(),
                        live.generation,
                        created,
                    )
                    .await?;
                    if written.is_some() {
                        return Ok(written);
                    }
                }
            }
            for _attempt in 0..ATTEMPTS {
                let Some(job) = api.get_opt(job_id).await.map_err(kube_error)? else {
                    break;
                };
                if job.spec.domain_id != domain {
                    break;
                }
                let created = job
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .and_then(crate::timestamp::from_k8s)
                    .unwrap_or_else(Utc::now);
                let rv = job.metadata.resource_version.clone().unwrap_or_default();
                let written = apply(
                    &api,
                    job_id,
                    &rv,
                    job.status.as_ref(),
                    job.metadata.generation,
                    created,
                )
                .await?;
                if written.is_some() {
                    return Ok(written);
                }
            }
        }
        Ok(None)
    }
}

/// Writes the CANCELED status computed from `status` if the job is still at `resource_version`.
/// `Ok(None)`: it is not (409) or is gone (404): read it again. A job no longer in progress is
/// ERROR_JOB_STATE.
async fn apply(
    api: &Api<CostAnalysisJob>,
    job_id: &str,
    resource_version: &str,
    status: Option<&CostAnalysisJobStatus>,
    generation: Option<i64>,
    created: chrono::DateTime<Utc>,
) -> Result<Option<CostAnalysisJob>, ServiceError> {
    let status = crate::lifecycle::cancel(status, generation, created, Utc::now())
        .map_err(|state| ServiceError::job_state(state.as_str()))?;
    // A merge patch that names a resourceVersion is conditional on it (409 otherwise). It is
    // one plain PATCH: cheaper for the API server than a server-side apply, and the status it
    // carries is whole (lifecycle::cancel keeps every field), so nothing else is touched. The
    // controller's next apply (forced) takes the fields' ownership back.
    let patch = json!({
        "metadata": {"resourceVersion": resource_version},
        "status": status,
    });
    let params = PatchParams {
        field_manager: Some(API_FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match api
        .patch_status(job_id, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(updated) => Ok(Some(updated)),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(None),
        Err(e) => Err(kube_error(e)),
    }
}

fn kube_error(e: kube::Error) -> ServiceError {
    ServiceError::Internal(format!("kubernetes API: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_apiserver::{self, status};
    use spaceone_query::JobStatus;

    const STATUS: &str =
        "/apis/cost-analysis.spaceone.dev/v1/namespaces/ns/costanalysisjobs/job-1/status";
    const OBJECT: &str = "/apis/cost-analysis.spaceone.dev/v1/namespaces/ns/costanalysisjobs/job-1";

    fn job(rv: &str, domain: &str, state: &str) -> Value {
        json!({
            "apiVersion": "cost-analysis.spaceone.dev/v1", "kind": "CostAnalysisJob",
            "metadata": {"name": "job-1", "namespace": "ns", "uid": "u-1", "resourceVersion": rv,
                         "generation": 1, "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"domainId": domain, "dataSourceId": "ds", "tasks": [{"id": "t1"}]},
            "status": {"status": state, "totalTasks": 1, "remainedTasks": 1},
        })
    }

    fn live(rv: &str) -> Known {
        Known::LiveStatus(Box::new(LiveStatus {
            domain_id: "d1".into(),
            resource_version: rv.into(),
            generation: Some(1),
            created: None,
            status: None,
        }))
    }

    #[tokio::test]
    async fn a_stale_copy_conflicts_then_the_job_is_read_again_and_canceled() {
        let (client, mut server) = fake_apiserver::client();
        let cancel = tokio::spawn(async move {
            Writer::new(client)
                .cancel("job-1", "d1", vec![("ns".into(), live("5"))])
                .await
        });
        // First from the index's copy: conditional on its resourceVersion.
        let first = server
            .expect("PATCH", STATUS, 409, status(409, "Conflict"))
            .await;
        assert_eq!(first.body["metadata"]["resourceVersion"], "5");
        assert_eq!(first.body["status"]["status"], "CANCELED");
        assert!(
            first
                .path
                .contains("fieldManager=cost-analysis-operator-api")
        );
        // Then read fresh, and written conditional on what was read.
        server
            .expect("GET", OBJECT, 200, job("7", "d1", "IN_PROGRESS"))
            .await;
        let second = server
            .expect("PATCH", STATUS, 200, job("8", "d1", "CANCELED"))
            .await;
        assert_eq!(second.body["metadata"]["resourceVersion"], "7");
        assert_eq!(second.body["status"]["status"], "CANCELED");
        assert_eq!(second.body["status"]["totalTasks"], 1);
        let written = cancel.await.unwrap().unwrap().expect("canceled");
        assert_eq!(
            written.status.and_then(|s| s.status),
            Some(JobStatus::Canceled)
        );
        server.expect_nothing_more(100).await;
    }

    #[tokio::test]
    async fn a_terminal_state_is_refused_without_a_write() {
        // Known final in the index: no request at all.
        let (client, mut server) = fake_apiserver::client();
        let e = Writer::new(client)
            .cancel(
                "job-1",
                "d1",
                vec![("ns".into(), Known::Final(JobStatus::Success))],
            )
            .await
            .unwrap_err();
        assert_eq!(e, ServiceError::job_state("SUCCESS"));
        server.expect_nothing_more(100).await;

        // Found final on the fresh read after a conflict: refused, nothing written.
        let (client, mut server) = fake_apiserver::client();
        let cancel = tokio::spawn(async move {
            Writer::new(client)
                .cancel("job-1", "d1", vec![("ns".into(), live("5"))])
                .await
        });
        server
            .expect("PATCH", STATUS, 409, status(409, "Conflict"))
            .await;
        server
            .expect("GET", OBJECT, 200, job("9", "d1", "TIMEOUT"))
            .await;
        let e = cancel.await.unwrap().unwrap_err();
        assert_eq!(e, ServiceError::job_state("TIMEOUT"));
        assert_eq!(
            e.spaceone().message,
            "Only running jobs can be canceled. (job_state = TIMEOUT)"
        );
        server.expect_nothing_more(100).await;
    }

    #[tokio::test]
    async fn a_job_gone_or_moved_to_another_domain_is_not_written() {
        let (client, mut server) = fake_apiserver::client();
        let cancel = tokio::spawn(async move {
            Writer::new(client)
                .cancel(
                    "job-1",
                    "d1",
                    vec![
                        ("other".into(), Known::OtherDomain),
                        ("ns".into(), live("5")),
                    ],
                )
                .await
        });
        server
            .expect("PATCH", STATUS, 404, status(404, "NotFound"))
            .await;
        server
            .expect("GET", OBJECT, 200, job("6", "d2", "IN_PROGRESS"))
            .await;
        assert!(cancel.await.unwrap().unwrap().is_none());
        server.expect_nothing_more(100).await;
    }

    #[tokio::test]
    async fn an_api_server_error_is_an_internal_error_not_a_retry_storm() {
        let (client, mut server) = fake_apiserver::client();
        let cancel = tokio::spawn(async move {
            Writer::new(client)
                .cancel("job-1", "d1", vec![("ns".into(), live("5"))])
                .await
        });
        server
            .expect("PATCH", STATUS, 500, status(500, "InternalError"))
            .await;
        let e = cancel.await.unwrap().unwrap_err();
        assert!(matches!(e, ServiceError::Internal(_)), "{e:?}");
        server.expect_nothing_more(100).await;
    }
}
