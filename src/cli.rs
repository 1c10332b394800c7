//! The command line: subcommands, flags and their documented defaults, and how flags become the
//! components' options. No behaviour lives here.

use std::net::SocketAddr;
use std::path::PathBuf;

pub use crate::telemetry::LogFormat;
use clap::{Args, Parser, Subcommand};

use crate::api;

/// The SpaceONE cost-analysis Job and JobTask APIs as a Kubernetes operator.
#[derive(Parser)]
#[command(name = "cost-analysis-operator", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the job controller: progress, timeouts, cancel requests (leader-elected).
    Controller {
        #[command(flatten)]
        controller: ControllerArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Run the API shim: SpaceONE's Job and JobTask APIs (REST and gRPC) and the Kubernetes
    /// aggregated API over watch-fed catalogs of jobs and tasks (stateless; run as many replicas
    /// as you like).
    Api {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Run the controller and the API shim in one process (small installs and the demo).
    Run {
        #[command(flatten)]
        controller: ControllerArgs,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Print the CustomResourceDefinitions as YAML, or write them into a directory.
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Evaluate a SpaceONE Job API request offline over a JSON file of jobs, or a JobTask API
    /// request over a file of job tasks (no cluster needed). The request is read first, then the
    /// file one record at a time, keeping only what the answer needs.
    Query(QueryArgs),
}

#[derive(Args)]
pub struct CommonArgs {
    /// Address of /healthz, /readyz and /metrics (plain HTTP).
    #[arg(long, default_value = "0.0.0.0:8080", env = "METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// Add a `domain_id` label to `cost_analysis_operator_jobs_finished_total` (off by default:
    /// one series per domain; capped by --metrics-max-label-values).
    #[arg(long, env = "METRICS_DOMAIN_LABEL")]
    pub metrics_domain_label: bool,
    /// Distinct values a user-given metric label (`data_source_id`, `domain_id`) takes; later
    /// new values are counted as `other`.
    #[arg(long, default_value_t = 100, env = "METRICS_MAX_LABEL_VALUES")]
    pub metrics_max_label_values: usize,
}

impl CommonArgs {
    pub fn metric_labels(&self) -> crate::metrics::outcomes::LabelOptions {
        crate::metrics::outcomes::LabelOptions {
            domain_label: self.metrics_domain_label,
            max_label_values: self.metrics_max_label_values,
        }
    }
}

#[derive(Args)]
pub struct ApiArgs {
    /// HTTPS address of the SpaceONE REST API and the aggregated API.
    #[arg(long, default_value = "0.0.0.0:8443", env = "API_ADDR")]
    pub api_addr: SocketAddr,
    /// PEM serving certificate (e.g. from cert-manager); without it a self-signed one is generated.
    #[arg(long, requires = "tls_key_file", env = "TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file", env = "TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Host names of the generated serving certificate (repeatable).
    #[arg(long = "self-signed-name", default_values = ["localhost"])]
    pub self_signed_names: Vec<String>,
    /// Serve only jobs of this namespace (default: all namespaces).
    #[arg(long = "api-namespace", env = "API_WATCH_NAMESPACE")]
    pub api_namespace: Option<String>,
    /// How the catalog loads the jobs: `streaming` (a watch that first sends every job, Kubernetes
    /// WatchList; falls back to `paged` when the API server refuses it) or `paged` (LIST in pages
    /// of 500, then watch).
    #[arg(long, value_enum, default_value_t = api::InitialList::Streaming, env = "API_INITIAL_LIST")]
    pub initial_list: api::InitialList,
    /// Also serve the gRPC Job and JobTask services (SpaceONE's
    /// `spaceone.api.cost_analysis.v1.Job` and `.JobTask`, with reflection and health) over
    /// plaintext HTTP/2 (h2c) on this address, for in-cluster SpaceONE services and spacectl
    /// dialing `grpc://`. Off by default; gRPC is always served on
    /// --api-addr over TLS (content-type routing).
    #[arg(long, env = "GRPC_PLAINTEXT_ADDR")]
    pub grpc_plaintext_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What one client or one request can take of the API shim. The defaults are far above anything
/// a SpaceONE client or kubectl sends; see docs/reliability.md.
#[derive(Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Open connections at once, on each listener; further ones are closed on arrival.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Open connections from one IP address at once, on each listener; further ones from it are
    /// closed on arrival, so that idle strangers cannot fill --max-connections.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_peer: u32,
    /// Seconds from accepting a connection to its first request's headers (TLS handshake, HTTP/2
    /// preface and SETTINGS included); also each later HTTP/1.1 request's headers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout: u64,
    /// Seconds after which a connection with no request under way, or no bytes moving, is closed.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout: u64,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// Bytes of request headers (431 beyond).
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1024..=1_048_576))]
    pub max_header_bytes: u32,
    /// Queries evaluated at once (on blocking threads, never on the async workers); default: the
    /// number of CPUs, at least 2.
    #[arg(long)]
    pub max_concurrent_queries: Option<u32>,
    /// Seconds a request waits for a query slot before it is answered ERROR_UNAVAILAVBLE (503).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub query_queue_timeout: u64,
    /// Bytes of list and stat answers (SpaceONE's and the aggregated API's) built and not yet
    /// sent, in all; an answer waits up to
    /// --query-queue-timeout for room (then ERROR_UNAVAILAVBLE), one larger than this is refused
    /// (ERROR_DB_QUERY).
    #[arg(long, default_value_t = 256 << 20, value_parser = clap::value_parser!(u64).range(1 << 20..))]
    pub max_answer_bytes: u64,
    /// Seconds the catalog's watch may fail before /readyz turns unready (the catalog is then
    /// stale: a Service sends clients to replicas that can see the API server).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub index_grace: u64,
    /// Seconds one request may take in all before it is answered ERROR_UNAVAILAVBLE (503).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout: u64,
    /// Milliseconds of evaluation one query may take (ERROR_DB_QUERY "operation exceeded time
    /// limit" beyond, like MongoDB's maxTimeMS).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub query_max_time_ms: u64,
    /// Values in one in / not_in / contain_in / not_contain_in / regex_in condition.
    #[arg(long, default_value_t = 10_000)]
    pub query_max_values: usize,
    /// Bytes of all filter values of one query.
    #[arg(long, default_value_t = 1 << 20)]
    pub query_max_values_bytes: usize,
    /// Bytes of the patterns of one regex / regex_in / contain* condition (checked before compiling).
    #[arg(long, default_value_t = 4 << 10)]
    pub query_max_pattern_bytes: usize,
    /// Bytes of all compiled regular expressions of one query.
    #[arg(long, default_value_t = 16 << 20)]
    pub query_max_regex_bytes: usize,
    /// Rows any stat stage (group, unwind, project, distinct) may produce.
    #[arg(long, default_value_t = 1_000_000)]
    pub query_max_stage_rows: usize,
    /// Approximate bytes of one stat stage's output (MongoDB's stage limit is 100 MB).
    #[arg(long, default_value_t = 100 << 20)]
    pub query_max_stage_bytes: usize,
}

impl LimitArgs {
    pub fn server(&self) -> crate::server::ServerLimits {
        let secs = std::time::Duration::from_secs;
        crate::server::ServerLimits {
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            max_connections_per_peer: usize::try_from(self.max_connections_per_peer)
                .unwrap_or(usize::MAX),
            header_read_timeout: secs(self.header_read_timeout),
            idle_timeout: secs(self.idle_timeout),
            max_concurrent_streams: self.max_concurrent_streams,
            max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX),
        }
    }

    pub fn pool(&self) -> api::PoolLimits {
        let default = api::PoolLimits::default();
        api::PoolLimits {
            max_concurrent: self
                .max_concurrent_queries
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(default.max_concurrent),
            queue_timeout: std::time::Duration::from_secs(self.query_queue_timeout),
        }
    }

    pub fn query(&self) -> spaceone_query::Limits {
        spaceone_query::Limits {
            max_time: std::time::Duration::from_millis(self.query_max_time_ms),
            max_values: self.query_max_values,
            max_values_bytes: self.query_max_values_bytes,
            max_regex_pattern_bytes: self.query_max_pattern_bytes,
            max_regex_total_bytes: self.query_max_regex_bytes,
            max_stage_rows: self.query_max_stage_rows,
            max_stage_bytes: self.query_max_stage_bytes,
            ..spaceone_query::Limits::default()
        }
    }
}

#[derive(Args)]
pub struct QueryArgs {
    /// Which call to evaluate.
    #[arg(value_enum)]
    pub verb: QueryVerb,
    /// Jobs: a JSON array of SpaceONE JobInfo objects, or a Kubernetes List of CostAnalysisJobs
    /// (`kubectl get caj -A -o json`). The call is then a Job API call.
    #[arg(long, required_unless_present = "tasks", conflicts_with = "tasks")]
    pub jobs: Option<PathBuf>,
    /// Job tasks: a Kubernetes List of CostAnalysisJobTasks (`kubectl get cajt -A -o json`), or
    /// a JSON array of such objects. The call is then a JobTask API call.
    #[arg(long)]
    pub tasks: Option<PathBuf>,
    /// The REST request body (JobQuery, JobStatQuery or GetJobRequest; JobTaskQuery,
    /// JobTaskStatQuery or GetJobTaskRequest with --tasks); `-` reads standard input.
    #[arg(long, default_value = "-")]
    pub request: String,
    /// The current time for `timediff_*` operators (RFC 3339; default: now).
    #[arg(long)]
    pub now: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum QueryVerb {
    List,
    Stat,
    Get,
}

#[derive(Args)]
pub struct ControllerArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Default job timeout in seconds, for jobs without spec.timeoutSeconds (SpaceONE's JOB_TIMEOUT).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=31_536_000))]
    pub job_timeout: u32,
    /// How many milliseconds this controller's clock may run ahead of the API server's; timeouts
    /// wait this much past the deadline so they never fire early.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=3_600_000))]
    pub clock_skew_allowance_ms: u32,
    /// Name of the Lease used for leader election.
    #[arg(long, default_value = "cost-analysis-operator-controller")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, else "default").
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Seconds a lease stays valid without renewal; a replica that dies is replaced after this.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..))]
    pub lease_duration: u64,
    /// Identity in the lease (default: the pod name, else host name and a random suffix).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds after which every job is looked at again even if no event said so: the safety net
    /// under the watches (a settled job costs one cache read and no write).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub resync_interval: u64,
    /// Run tasks that have a pod template (`spec.tasks[].template`) as batch/v1 Jobs, and follow
    /// them. Off by default: templated tasks then wait for an external worker like any other.
    /// Needs RBAC on batch jobs and pods (see the chart's `taskRunner` values).
    #[arg(long, env = "TASK_RUNNER")]
    pub task_runner: bool,
    /// Namespaces the task runner runs tasks in (comma-separated; default: every namespace the
    /// controller watches).
    #[arg(
        long,
        value_delimiter = ',',
        requires = "task_runner",
        env = "TASK_RUNNER_NAMESPACES"
    )]
    pub task_runner_namespaces: Vec<String>,
}

impl ControllerArgs {
    /// The task runner's configuration.
    pub fn runner(&self) -> crate::runner::RunnerConfig {
        crate::runner::RunnerConfig {
            enabled: self.task_runner,
            namespaces: self
                .task_runner_namespaces
                .iter()
                .filter(|n| !n.is_empty())
                .cloned()
                .collect(),
        }
    }

    /// What the lifecycle's decisions depend on.
    pub fn lifecycle(&self) -> crate::lifecycle::Config {
        crate::lifecycle::Config {
            default_timeout: chrono::Duration::seconds(i64::from(self.job_timeout)),
            clock_skew_allowance: chrono::Duration::milliseconds(i64::from(
                self.clock_skew_allowance_ms,
            )),
        }
    }

    /// The controller lease; without `--identity`, the pod's host name and a random suffix.
    pub fn lease(&self) -> crate::leader::LeaseConfig {
        let identity = self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "controller".into());
            format!("{host}-{:08x}", rand::random::<u32>())
        });
        crate::leader::LeaseConfig {
            name: self.lease_name.clone(),
            namespace: self.lease_namespace.clone(),
            identity,
            duration_seconds: self.lease_duration,
            grace_seconds: (self.lease_duration / 3).max(1),
        }
    }
}

impl ApiArgs {
    pub fn options(self) -> api::ApiOptions {
        api::ApiOptions {
            addr: self.api_addr,
            grpc_plaintext_addr: self.grpc_plaintext_addr,
            tls_cert_file: self.tls_cert_file,
            tls_key_file: self.tls_key_file,
            self_signed_names: self.self_signed_names,
            namespace: self.api_namespace,
            initial_list: self.initial_list,
            server: self.limits.server(),
            pool: self.limits.pool(),
            query: self.limits.query(),
            request_timeout: std::time::Duration::from_secs(self.limits.request_timeout),
            max_answer_bytes: usize::try_from(self.limits.max_answer_bytes).unwrap_or(usize::MAX),
        }
    }
}
