//! The Job service: SpaceONE's Job `get`, `list`, `stat` and `cancel` and JobTask `get`, `list`
//! and `stat`, and the Kubernetes views of the same jobs, behind one layer that owns authorization, the catalog, the query engine, the query
//! pool and the cancel write. The protocol adapters (REST, the aggregated API, gRPC) only decode a
//! request, call this, and encode the answer or the [`ServiceError`].

use std::sync::Arc;

use axum::http::HeaderMap;
use chrono::Utc;
use kube::Client;
use serde_json::Value;
use spaceone_query::{Limits, Scope};

use super::answer_budget::{AnswerBudget, AnswerPermit};
use super::catalog::{Catalog, Catalogs, SharedCatalog, SharedTasks};
use super::error::{Denied, ServiceError};
use super::objects::{Object, Page, Selection, Served};
use super::pool::{CancelOnDrop, QueryPool};
use crate::auth::{Authenticator, PeerIdentity, QUERY_GROUP, ResourceAttrs, UserInfo};
use crate::metrics::Metrics;
use crate::resources::CostAnalysisJob;

#[derive(Clone)]
pub struct JobService {
    jobs: SharedCatalog,
    tasks: SharedTasks,
    auth: Arc<Authenticator>,
    client: Client,
    pool: QueryPool,
    limits: Arc<Limits>,
    answers: AnswerBudget,
    metrics: Arc<Metrics>,
}

/// An answer in its wire form, with its share of the bytes-in-flight budget: keep the permit
/// until the answer has been sent.
pub struct Answered<A> {
    pub answer: A,
    pub permit: AnswerPermit,
}

/// An answer form whose size on the wire is known before it is sent.
pub trait WireSize {
    fn wire_size(&self) -> usize;
}

impl WireSize for spaceone_query::calls::Encoded {
    fn wire_size(&self) -> usize {
        self.0.len()
    }
}

impl JobService {
    pub fn new(
        catalogs: Catalogs,
        auth: Arc<Authenticator>,
        client: Client,
        pool: QueryPool,
        limits: Arc<Limits>,
        answers: AnswerBudget,
        metrics: Arc<Metrics>,
    ) -> Self {
        JobService {
            jobs: catalogs.jobs,
            tasks: catalogs.tasks,
            auth,
            client,
            pool,
            limits,
            answers,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Who the caller is: the user the aggregator vouches for (front-proxy certificate), or the
    /// owner of the bearer token in `headers` (TokenReview).
    pub async fn authenticate(
        &self,
        peer: &PeerIdentity,
        headers: &HeaderMap,
    ) -> Result<UserInfo, ServiceError> {
        Ok(self.auth.authenticate(peer, headers).await?)
    }

    /// `Job.cancel`: JobRequest -> JobInfo of the CANCELED job (see [`super::cancel`]), in the
    /// wire form `A`.
    pub async fn cancel<A>(&self, user: &UserInfo, request: Value) -> Result<A, ServiceError>
    where
        A: spaceone_query::calls::AnswerForm + Send + 'static,
    {
        let fields = request.as_object().into_iter().flat_map(|m| m.keys());
        if let Some(unknown) = fields
            .into_iter()
            .find(|k| !matches!(k.as_str(), "job_id" | "domain_id"))
        {
            return Err(ServiceError::invalid_parameter(unknown, "unknown field"));
        }
        let scope = self.domain_scope(user, "cancel", &request).await?;
        let (jobs, lookup) = (self.jobs.clone(), request.clone());
        let copies = self
            .pool
            .run(move || super::cancel::known_copies(&jobs.read(), &scope, &lookup))
            .await??;
        let job_id = text(&request, "job_id");
        let domain = text(&request, "domain_id");
        let writer = super::cancel::Writer::new(self.client.clone());
        if let Some(updated) = writer.cancel(&job_id, &domain, copies).await? {
            let info = spaceone_query::calls::info_as::<A, _>(&updated.spaceone_job());
            self.jobs.observe_write(updated).await;
            self.metrics.api_cancels.inc();
            return info
                .ok_or_else(|| ServiceError::Internal("could not encode the JobInfo".into()));
        }
        // The job vanished between the index lookup and the write: answer as `get` would.
        self.get_of::<CostAnalysisJob, A>(user, request).await?;
        Err(ServiceError::Internal(
            "the job changed too often to be canceled; try again".into(),
        ))
    }

    /// SpaceONE's `get` (`Job.get`, `JobTask.get`) over the catalog of `W`, in the request's
    /// domain, in the wire form `A` (JSON text, protobuf).
    pub async fn get_of<W: Served, A>(
        &self,
        user: &UserInfo,
        request: Value,
    ) -> Result<A, ServiceError>
    where
        A: spaceone_query::calls::AnswerForm + Send + 'static,
    {
        let scope = self.domain_scope(user, "get", &request).await?;
        self.on_catalog::<W, _>(move |catalog| {
            Ok(spaceone_query::calls::get_as(
                &catalog.index,
                &scope,
                &request,
            )?)
        })
        .await
    }

    /// SpaceONE's `list` over the catalog of `W`, in the wire form `A`, its wire size reserved
    /// before it leaves the pool.
    pub async fn list_of<W: Served, A>(
        &self,
        user: &UserInfo,
        request: Value,
    ) -> Result<Answered<A>, ServiceError>
    where
        A: spaceone_query::calls::AnswerForm + WireSize + Send + 'static,
    {
        let scope = self.domain_scope(user, "get", &request).await?;
        let ((limits, _stop), answers) = (self.request_limits(), self.answers.clone());
        self.on_catalog::<W, _>(move |catalog| {
            let answer = spaceone_query::calls::list_as(
                &catalog.index,
                &scope,
                &request,
                Utc::now(),
                &limits,
            )?;
            sized(answer, &answers)
        })
        .await
    }

    /// SpaceONE's `stat` over the catalog of `W`, put in its wire form by `form` on the query pool
    /// (a stat's answer can be tens of MB: neither building nor encoding it may take the async
    /// workers that every other request and the health checks need).
    pub async fn stat_of<W: Served, A, F>(
        &self,
        user: &UserInfo,
        request: Value,
        form: F,
    ) -> Result<Answered<A>, ServiceError>
    where
        A: WireSize + Send + 'static,
        F: FnOnce(Value) -> Result<A, ServiceError> + Send + 'static,
    {
        let scope = self.domain_scope(user, "get", &request).await?;
        let ((limits, _stop), answers) = (self.request_limits(), self.answers.clone());
        self.on_catalog::<W, _>(move |catalog| {
            let stat =
                spaceone_query::calls::stat(&catalog.index, &scope, &request, Utc::now(), &limits)?;
            sized(form(stat)?, &answers)
        })
        .await
    }

    /// Kubernetes `list` of `W::RESOURCE` (in `namespace`, or every namespace): the page
    /// `selection` asks for, put in its wire form by `form` on the query pool and counted in the
    /// answer budget (a list without `limit` is every object the caller may see).
    pub async fn list_objects<W, A, F>(
        &self,
        user: &UserInfo,
        namespace: Option<String>,
        selection: Selection,
        form: F,
    ) -> Result<Answered<A>, ServiceError>
    where
        W: Served,
        A: WireSize + Send + 'static,
        F: FnOnce(Page<W::Record>) -> Result<A, ServiceError> + Send + 'static,
    {
        self.allow(user, "list", W::RESOURCE, namespace.as_deref(), None)
            .await?;
        let ((limits, _stop), answers) = (self.request_limits(), self.answers.clone());
        self.on_catalog::<W, _>(move |catalog| {
            let page = super::objects::select_page(catalog, namespace, &selection, &limits)?;
            sized(form(page)?, &answers)
        })
        .await
    }

    /// Kubernetes `get` of `W::RESOURCE`/`<name>` in `namespace`.
    pub async fn get_object<W: Served>(
        &self,
        user: &UserInfo,
        namespace: String,
        name: String,
    ) -> Result<Object<W::Record>, ServiceError> {
        self.allow(user, "get", W::RESOURCE, Some(&namespace), Some(&name))
            .await?;
        self.on_catalog::<W, _>(move |catalog| super::objects::object(catalog, &namespace, name))
            .await
    }

    /// Kubernetes `create` of `W::STATS` in `namespace`: a StatisticsQuery over its objects, in
    /// `domains` if given, put in its wire form by `form` on the query pool and counted in the
    /// answer budget.
    pub async fn stat_objects<W, A, F>(
        &self,
        user: &UserInfo,
        namespace: String,
        domains: Option<Vec<String>>,
        query: Value,
        form: F,
    ) -> Result<Answered<A>, ServiceError>
    where
        W: Served,
        A: WireSize + Send + 'static,
        F: FnOnce(Value) -> Result<A, ServiceError> + Send + 'static,
    {
        self.allow(user, "create", W::STATS, Some(&namespace), None)
            .await?;
        let scope = Scope {
            namespace: Some(namespace),
            domains,
        };
        let ((limits, _stop), answers) = (self.request_limits(), self.answers.clone());
        self.on_catalog::<W, _>(move |catalog| {
            let result = spaceone_query::calls::stat_query(
                &catalog.index,
                &scope,
                &query,
                Utc::now(),
                &limits,
            )?;
            sized(form(result)?, &answers)
        })
        .await
    }

    /// This request's copy of the query limits, with a cancel token that fires when the returned
    /// guard is dropped: when the request ends, and also when its future is dropped unfinished
    /// (the request timeout, a client gone). A query still running then stops at its next check
    /// and frees its slot, instead of holding it for up to its own time limit.
    fn request_limits(&self) -> (Arc<Limits>, CancelOnDrop) {
        super::pool::cancellable(&self.limits)
    }

    /// Runs `f` over the catalog of `W` on the query pool.
    async fn on_catalog<W: Served, T: Send + 'static>(
        &self,
        f: impl FnOnce(&Catalog<W>) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let catalog = W::shared(&self.jobs, &self.tasks).clone();
        self.pool.run(move || f(&catalog.read())).await?
    }

    /// Authorizes `verb` (`get` or `cancel`) in the request's domain and returns the scope the
    /// engine may look at: that one domain, or nothing when the request names none (the engine
    /// then reports the missing parameter).
    async fn domain_scope(
        &self,
        user: &UserInfo,
        verb: &str,
        request: &Value,
    ) -> Result<Scope, ServiceError> {
        let Some(domain) = request.get("domain_id").and_then(Value::as_str) else {
            return Ok(Scope {
                namespace: None,
                domains: Some(vec![]),
            });
        };
        crate::telemetry::record_domain(domain);
        if !self
            .auth
            .authorize(user, ResourceAttrs::domain(verb, domain))
            .await?
        {
            return Err(ServiceError::Forbidden(Denied {
                user: user.name.clone(),
                verb: verb.into(),
                resource: "domains".into(),
                namespace: None,
            }));
        }
        Ok(Scope {
            namespace: None,
            domains: Some(vec![domain.to_string()]),
        })
    }

    /// Authorizes `verb` on a resource of the aggregated API group. The Kubernetes surface calls it
    /// before decoding a request, as kube-apiserver authorizes before it parses; every method that
    /// needs it checks again (a cache hit).
    pub async fn allow(
        &self,
        user: &UserInfo,
        verb: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<(), ServiceError> {
        let attrs = ResourceAttrs {
            group: QUERY_GROUP.into(),
            resource: resource.into(),
            verb: verb.into(),
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: None,
        };
        if self.auth.authorize(user, attrs).await? {
            return Ok(());
        }
        Err(ServiceError::Forbidden(Denied {
            user: user.name.clone(),
            verb: verb.into(),
            resource: resource.into(),
            namespace: namespace.map(str::to_string),
        }))
    }
}

/// Reserves `answer`'s wire size, from a query pool thread. The slot is kept while the answer
/// waits for the budget, so that answers waiting to be sent are never more than the pool's slots:
/// further requests wait for a slot instead of building more answers.
fn sized<A: WireSize>(answer: A, budget: &AnswerBudget) -> Result<Answered<A>, ServiceError> {
    let reserve = budget.reserve(answer.wire_size());
    let permit = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime.block_on(reserve)?,
        Err(_) => return Err(ServiceError::Internal("no runtime to wait on".into())),
    };
    Ok(Answered { answer, permit })
}

fn text(request: &Value, key: &str) -> String {
    request
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}
