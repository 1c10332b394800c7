//! Logs and traces (issue 21). Every REST, gRPC and aggregated API request runs in a `request`
//! span (protocol, method, domain, SpaceONE code) that continues the caller's W3C `traceparent`
//! (an HTTP header, or gRPC metadata, which travels as one); every reconcile that writes, runs
//! the task runner or fails has a `reconcile` span (job, decision, writes; see
//! [`Traced`]). Spans are exported over OTLP only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the standard
//! `OTEL_*` variables apply (`OTEL_EXPORTER_OTLP_PROTOCOL` `grpc` or `http/protobuf`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` / `_ARG`,
//! `OTEL_SDK_DISABLED`). Log lines inside a span carry its `trace_id` and `span_id` (JSON: in
//! `span` and `spans`). See docs/observability.md.

use axum::http::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The trace exporter, when one runs; [`Telemetry::shutdown`] flushes it.
#[must_use]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered (blocking; call outside the async workers).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: could not flush the trace exporter: {e}");
        }
    }
}

/// How spans leave the process, from the `OTEL_*` variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Export {
    Off,
    Grpc,
    HttpProtobuf,
}

/// The export the environment asks for (`var` reads one variable): off without an endpoint or
/// with `OTEL_SDK_DISABLED=true`; the protocol's default is `http/protobuf`, as the
/// specification says.
pub fn export_from(var: impl Fn(&str) -> Option<String>) -> Result<Export, String> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(Export::Off);
    }
    if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .is_none()
    {
        return Ok(Export::Off);
    }
    let protocol = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    match protocol.trim() {
        "grpc" => Ok(Export::Grpc),
        "http/protobuf" => Ok(Export::HttpProtobuf),
        other => Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported (grpc or http/protobuf); traces are not exported"
        )),
    }
}

/// The trace provider the environment asks for, if any (what [`init`] installs; benchmarks build
/// their own subscribers around it). Call within a Tokio runtime.
pub fn provider_from_env() -> Result<Option<SdkTracerProvider>, String> {
    provider(&export_from(|n| std::env::var(n).ok())?)
}

fn provider(export: &Export) -> Result<Option<SdkTracerProvider>, String> {
    use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
    let exporter = match export {
        Export::Off => return Ok(None),
        Export::Grpc => SpanExporter::builder().with_tonic().build(),
        Export::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build(),
    }
    .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "the trace exporter needs the async runtime".to_string())?;
    let processor = opentelemetry_sdk::trace::BatchSpanProcessor::builder(OnRuntime {
        exporter: std::sync::Arc::new(exporter),
        runtime,
    })
    .build();
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("cost-analysis-operator");
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource.build())
            .build(),
    ))
}

/// The OTLP exporter with each export run on the Tokio runtime. The SDK's batch processor takes
/// a finished span into a bounded queue that its own thread drains every `OTEL_BSP_SCHEDULE_DELAY`
/// or `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` spans: nothing is woken per span (the async-runtime
/// processor woke its task for every one, on the cores serving requests). The OTLP clients run
/// on Tokio, so that thread hands each batch to the runtime and waits for it.
#[derive(Debug)]
struct OnRuntime<E> {
    exporter: std::sync::Arc<E>,
    runtime: tokio::runtime::Handle,
}

impl<E> opentelemetry_sdk::trace::SpanExporter for OnRuntime<E>
where
    E: opentelemetry_sdk::trace::SpanExporter + 'static,
{
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        let exporter = self.exporter.clone();
        match self
            .runtime
            .spawn(async move { exporter.export(batch).await })
            .await
        {
            Ok(result) => result,
            Err(e) => Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                format!("the export did not finish: {e}"),
            )),
        }
    }

    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        // The provider sets it while it is built, before any export holds a clone.
        if let Some(exporter) = std::sync::Arc::get_mut(&mut self.exporter) {
            exporter.set_resource(resource);
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the log subscriber (`RUST_LOG`, default `info`) and, when the environment asks for
/// it, the trace exporter. Call within a Tokio runtime (the exporter's batches run on it).
pub fn init(format: LogFormat) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (provider, problem) =
        match export_from(|n| std::env::var(n).ok()).and_then(|e| provider(&e)) {
            Ok(p) => (p, None),
            Err(e) => (None, Some(e)),
        };
    let otel = provider.as_ref().map(otel_layer);
    let base = tracing_subscriber::registry().with(filter).with(otel);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => base.with(fmt).try_init(),
        LogFormat::Json => base.with(fmt.json()).try_init(),
    };
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
    if provider.is_some() {
        tracing::info!("exporting traces over OTLP");
    }
    Telemetry { provider }
}

/// The layer that turns `tracing` spans into OpenTelemetry spans, without what costs per span
/// and says little here: busy/idle timings, thread and code location attributes, and making
/// each span the thread's current OpenTelemetry context on entry (nothing in the process reads
/// it; parents come from the `tracing` span tree and the caller's `traceparent`).
pub fn otel_layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("cost-analysis-operator"))
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_context_activation(false)
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The caller's trace context from `traceparent` / `tracestate` (empty without one).
pub fn caller_context(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&Headers(headers))
}

/// The span of one API request, a child of the caller's `traceparent` when it sent one.
pub fn request_span(
    protocol: &'static str,
    method: &'static str,
    headers: &HeaderMap,
) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{protocol} {method}"),
        otel.kind = "server",
        otel.status_code = Empty,
        protocol,
        method,
        domain = Empty,
        code = Empty,
        trace_id = Empty,
        span_id = Empty,
    );
    let caller = caller_context(headers);
    let continued = caller.span().span_context().is_valid();
    if continued {
        let _ = span.set_parent(caller.clone());
    }
    record_ids(&span, continued.then_some(&caller));
    span
}

/// The span of one reconcile of a job: a trace of its own.
pub fn reconcile_span(namespace: &str, name: &str) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "reconcile",
        otel.name = "reconcile",
        otel.status_code = Empty,
        namespace,
        job = name,
        decision = Empty,
        writes = Empty,
        error = Empty,
        trace_id = Empty,
        span_id = Empty,
    );
    record_ids(&span, None);
    span
}

/// The `reconcile` span of one reconcile, opened only once there is something to trace: a
/// decision that writes, the task runner's work, or an error. A reconcile that finds its job
/// settled (most of a resync pass) is counted in the reconcile metrics but not traced: its trace
/// would say nothing, and exporting one span per settled job made a pass 4-5 times as long
/// (docs/observability.md, "Overhead").
pub struct Traced<'a> {
    job: &'a crate::resources::CostAnalysisJob,
    span: std::sync::OnceLock<tracing::Span>,
}

impl<'a> Traced<'a> {
    pub fn new(job: &'a crate::resources::CostAnalysisJob) -> Self {
        Traced {
            job,
            span: std::sync::OnceLock::new(),
        }
    }

    pub fn span(&self) -> &tracing::Span {
        self.span.get_or_init(|| {
            reconcile_span(
                kube::ResourceExt::namespace(self.job)
                    .as_deref()
                    .unwrap_or_default(),
                &kube::ResourceExt::name_any(self.job),
            )
        })
    }
}

/// Puts the span's trace and span ids into its fields (so that every log line inside it carries
/// them). Without an exporter there is no span id; the caller's trace id, if any, is kept.
fn record_ids(span: &tracing::Span, caller: Option<&Context>) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    let own = cx.span().span_context().clone();
    // Both at once: the JSON log layer parses and re-encodes a span's fields on each `record`.
    if own.is_valid() {
        tracing::record_all!(span, trace_id = %own.trace_id(), span_id = %own.span_id());
    } else if let Some(caller) = caller {
        span.record(
            "trace_id",
            tracing::field::display(caller.span().span_context().trace_id()),
        );
    }
}

/// Records the SpaceONE code of the answer on the current request span (`OK` on success).
pub fn record_code(code: &'static str) {
    record_code_on(&tracing::Span::current(), code);
}

pub fn record_code_on(span: &tracing::Span, code: &'static str) {
    if code == "OK" {
        span.record("code", code);
    } else {
        tracing::record_all!(span, code = code, otel.status_code = "ERROR");
    }
}

/// Records the SpaceONE domain a request is about on the current request span.
pub fn record_domain(domain: &str) {
    tracing::Span::current().record("domain", domain);
}

/// The gRPC method of a Job or JobTask service path (`/spaceone.api.cost_analysis.v1.Job/List`:
/// `list`; `/spaceone.api.cost_analysis.v1.JobTask/get`: `jobtask.get`, the request metrics'
/// labels); `None` for the other services (reflection, health), which get no span.
pub fn grpc_method(path: &str) -> Option<&'static str> {
    if let Some(method) = path.strip_prefix("/spaceone.api.cost_analysis.v1.JobTask/") {
        return Some(match method.to_ascii_lowercase().as_str() {
            "get" => "jobtask.get",
            "list" => "jobtask.list",
            "stat" => "jobtask.stat",
            _ => "other",
        });
    }
    let method = path.strip_prefix("/spaceone.api.cost_analysis.v1.Job/")?;
    Some(match method.to_ascii_lowercase().as_str() {
        "get" => "get",
        "list" => "list",
        "stat" => "stat",
        "cancel" => "cancel",
        _ => "other",
    })
}

/// Runs each Job and JobTask service gRPC call in its request span (the code is recorded by the service).
pub fn grpc_spans(router: axum::Router) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            use tracing::Instrument;
            match grpc_method(request.uri().path()) {
                Some(method) => {
                    let span = request_span("grpc", method, request.headers());
                    next.run(request).instrument(span).await
                }
                None => next.run(request).await,
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_string())
        }
    }

    #[test]
    fn export_is_off_without_an_endpoint_and_follows_the_protocol() {
        assert_eq!(export_from(env(&[])), Ok(Export::Off));
        let e = "OTEL_EXPORTER_OTLP_ENDPOINT";
        assert_eq!(
            export_from(env(&[(e, "http://c:4318")])),
            Ok(Export::HttpProtobuf)
        );
        assert_eq!(
            export_from(env(&[
                (e, "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            ])),
            Ok(Export::Grpc)
        );
        assert_eq!(
            export_from(env(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317/"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ])),
            Ok(Export::Grpc)
        );
        assert_eq!(
            export_from(env(&[(e, "http://c:4318"), ("OTEL_SDK_DISABLED", "true")])),
            Ok(Export::Off)
        );
        assert!(
            export_from(env(&[
                (e, "x"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            ]))
            .is_err()
        );
    }

    /// Keeps what it is given: each span's name and whether its export ran on a Tokio runtime,
    /// and the service name of the resource.
    #[derive(Clone, Debug, Default)]
    struct Recording {
        spans: std::sync::Arc<std::sync::Mutex<Vec<(String, bool)>>>,
        service: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    }

    impl opentelemetry_sdk::trace::SpanExporter for Recording {
        async fn export(
            &self,
            batch: Vec<opentelemetry_sdk::trace::SpanData>,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            let on_tokio = tokio::runtime::Handle::try_current().is_ok();
            self.spans
                .lock()
                .unwrap()
                .extend(batch.into_iter().map(|s| (s.name.into_owned(), on_tokio)));
            Ok(())
        }

        fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
            *self.service.lock().unwrap() = resource
                .get(&opentelemetry::Key::new("service.name"))
                .map(|v| v.to_string());
        }
    }

    #[test]
    fn the_batch_thread_exports_on_the_runtime_with_the_resource() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let recording = Recording::default();
        let processor = opentelemetry_sdk::trace::BatchSpanProcessor::builder(OnRuntime {
            exporter: std::sync::Arc::new(recording.clone()),
            runtime: runtime.handle().clone(),
        })
        .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("under-test")
                    .build(),
            )
            .build();
        let subscriber = tracing_subscriber::registry().with(otel_layer(&provider));
        tracing::subscriber::with_default(subscriber, || {
            drop(request_span("rest", "list", &HeaderMap::new()));
        });
        provider.force_flush().unwrap();
        assert_eq!(
            *recording.spans.lock().unwrap(),
            vec![("rest list".to_string(), true)]
        );
        assert_eq!(
            recording.service.lock().unwrap().as_deref(),
            Some("under-test")
        );
        provider.shutdown().unwrap();
    }

    #[test]
    fn the_callers_traceparent_is_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let cx = caller_context(&headers);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(
            !caller_context(&HeaderMap::new())
                .span()
                .span_context()
                .is_valid()
        );
    }

    #[test]
    fn only_job_and_jobtask_service_paths_are_spanned() {
        assert_eq!(
            grpc_method("/spaceone.api.cost_analysis.v1.Job/List"),
            Some("list")
        );
        for (path, method) in [
            ("/spaceone.api.cost_analysis.v1.JobTask/get", "jobtask.get"),
            (
                "/spaceone.api.cost_analysis.v1.JobTask/list",
                "jobtask.list",
            ),
            (
                "/spaceone.api.cost_analysis.v1.JobTask/stat",
                "jobtask.stat",
            ),
            ("/spaceone.api.cost_analysis.v1.JobTask/cancel", "other"),
        ] {
            assert_eq!(grpc_method(path), Some(method), "{path}");
        }
        assert_eq!(
            grpc_method("/spaceone.api.cost_analysis.v1.JobTaskX/get"),
            None
        );
        assert_eq!(grpc_method("/grpc.health.v1.Health/Check"), None);
    }
}
