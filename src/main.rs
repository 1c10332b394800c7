use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};
use cost_analysis_operator::{api, controller, crd, health, leader, lifecycle, metrics, shutdown};
use tracing_subscriber::EnvFilter;

/// The SpaceONE cost-analysis Job API as a Kubernetes operator.
#[derive(Parser)]
#[command(name = "cost-analysis-operator", version, about)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the job controller: progress, timeouts, cancel requests (leader-elected).
    Controller {
        #[command(flatten)]
        controller: ControllerArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Run the API shim: the SpaceONE REST API and the Kubernetes aggregated API over a
    /// watch-fed index of jobs (stateless; run as many replicas as you like).
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
    /// Evaluate a SpaceONE Job API request offline over a JSON file of jobs (no cluster needed).
    Query(QueryArgs),
}

#[derive(Args)]
struct CommonArgs {
    /// Address of /healthz, /readyz and /metrics (plain HTTP).
    #[arg(long, default_value = "0.0.0.0:8080", env = "METRICS_ADDR")]
    metrics_addr: SocketAddr,
}

#[derive(Args)]
struct ApiArgs {
    /// HTTPS address of the SpaceONE REST API and the aggregated API.
    #[arg(long, default_value = "0.0.0.0:8443", env = "API_ADDR")]
    api_addr: SocketAddr,
    /// PEM serving certificate (e.g. from cert-manager); without it a self-signed one is generated.
    #[arg(long, requires = "tls_key_file", env = "TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file", env = "TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// Host names of the generated serving certificate (repeatable).
    #[arg(long = "self-signed-name", default_values = ["localhost"])]
    self_signed_names: Vec<String>,
    /// Serve only jobs of this namespace (default: all namespaces).
    #[arg(long = "api-namespace", env = "API_WATCH_NAMESPACE")]
    api_namespace: Option<String>,
    /// How the index loads the jobs: `streaming` (a watch that first sends every job, Kubernetes
    /// WatchList; falls back to `paged` when the API server refuses it) or `paged` (LIST in pages
    /// of 500, then watch).
    #[arg(long, value_enum, default_value_t = api::InitialList::Streaming, env = "API_INITIAL_LIST")]
    initial_list: api::InitialList,
    /// Also serve the gRPC Job service (SpaceONE's `spaceone.api.cost_analysis.v1.Job`, with
    /// reflection and health) over plaintext HTTP/2 (h2c) on this address, for in-cluster SpaceONE
    /// services and spacectl dialing `grpc://`. Off by default; gRPC is always served on
    /// --api-addr over TLS (content-type routing).
    #[arg(long, env = "GRPC_PLAINTEXT_ADDR")]
    grpc_plaintext_addr: Option<SocketAddr>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// What one client or one request can take of the API shim. The defaults are far above anything
/// a SpaceONE client or kubectl sends; see docs/reliability.md.
#[derive(Args)]
#[command(next_help_heading = "Limits")]
struct LimitArgs {
    /// Open HTTPS connections at once; further ones are closed on arrival.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Seconds a client has to send a request's headers (HTTP/1.1) or finish the TLS handshake.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_read_timeout: u64,
    /// Seconds after which a connection with no bytes moving is closed.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    idle_timeout: u64,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent_streams: u32,
    /// Bytes of request headers (431 beyond).
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1024..=1_048_576))]
    max_header_bytes: u32,
    /// Queries evaluated at once (on blocking threads, never on the async workers); default: the
    /// number of CPUs, at least 2.
    #[arg(long)]
    max_concurrent_queries: Option<u32>,
    /// Seconds a request waits for a query slot before it is answered ERROR_UNAVAILAVBLE (503).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    query_queue_timeout: u64,
    /// Seconds the index's watch may fail before /readyz turns unready (the index is then
    /// stale: a Service sends clients to replicas that can see the API server).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    index_grace: u64,
    /// Seconds one request may take in all before it is answered ERROR_UNAVAILAVBLE (503).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout: u64,
    /// Milliseconds of evaluation one query may take (ERROR_DB_QUERY "operation exceeded time
    /// limit" beyond, like MongoDB's maxTimeMS).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    query_max_time_ms: u64,
    /// Values in one in / not_in / contain_in / not_contain_in / regex_in condition.
    #[arg(long, default_value_t = 10_000)]
    query_max_values: usize,
    /// Bytes of all filter values of one query.
    #[arg(long, default_value_t = 1 << 20)]
    query_max_values_bytes: usize,
    /// Bytes of the patterns of one regex / regex_in / contain* condition (checked before compiling).
    #[arg(long, default_value_t = 4 << 10)]
    query_max_pattern_bytes: usize,
    /// Bytes of all compiled regular expressions of one query.
    #[arg(long, default_value_t = 16 << 20)]
    query_max_regex_bytes: usize,
    /// Rows any stat stage (group, unwind, project, distinct) may produce.
    #[arg(long, default_value_t = 1_000_000)]
    query_max_stage_rows: usize,
    /// Approximate bytes of one stat stage's output (MongoDB's stage limit is 100 MB).
    #[arg(long, default_value_t = 100 << 20)]
    query_max_stage_bytes: usize,
}

impl LimitArgs {
    fn server(&self) -> cost_analysis_operator::auth::ServerLimits {
        let secs = std::time::Duration::from_secs;
        cost_analysis_operator::auth::ServerLimits {
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            handshake_timeout: secs(self.header_read_timeout),
            header_read_timeout: secs(self.header_read_timeout),
            idle_timeout: secs(self.idle_timeout),
            max_concurrent_streams: self.max_concurrent_streams,
            max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX),
        }
    }

    fn pool(&self) -> api::PoolLimits {
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

    fn query(&self) -> spaceone_query::Limits {
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
struct QueryArgs {
    /// Which call to evaluate.
    #[arg(value_enum)]
    verb: QueryVerb,
    /// Jobs: a JSON array of SpaceONE JobInfo objects, or a Kubernetes List of CostAnalysisJobs
    /// (`kubectl get caj -A -o json`).
    #[arg(long)]
    jobs: PathBuf,
    /// The REST request body (JobQuery, JobStatQuery or GetJobRequest); `-` reads standard input.
    #[arg(long, default_value = "-")]
    request: String,
    /// The current time for `timediff_*` operators (RFC 3339; default: now).
    #[arg(long)]
    now: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum QueryVerb {
    List,
    Stat,
    Get,
}

#[derive(Args)]
struct ControllerArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Default job timeout in seconds, for jobs without spec.timeoutSeconds (SpaceONE's JOB_TIMEOUT).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=31_536_000))]
    job_timeout: u32,
    /// How many milliseconds this controller's clock may run ahead of the API server's; timeouts
    /// wait this much past the deadline so they never fire early.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=3_600_000))]
    clock_skew_allowance_ms: u32,
    /// Name of the Lease used for leader election.
    #[arg(long, default_value = "cost-analysis-operator-controller")]
    lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, else "default").
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Seconds a lease stays valid without renewal; a replica that dies is replaced after this.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..))]
    lease_duration: u64,
    /// Identity in the lease (default: the pod name, else host name and a random suffix).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds after which every job is looked at again even if no event said so: the safety net
    /// under the watches (a settled job costs one cache read and no write).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    resync_interval: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let serve = match cli.command {
        Command::Crd { out_dir } => return print_crds(out_dir),
        Command::Query(args) => return run_query(args),
        Command::Controller { controller, common } => Serve {
            controller: Some(controller),
            api: None,
            common,
        },
        Command::Api { api, common } => Serve {
            controller: None,
            api: Some(api),
            common,
        },
        Command::Run {
            controller,
            api,
            common,
        } => Serve {
            controller: Some(controller),
            api: Some(api),
            common,
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn print_crds(out_dir: Option<PathBuf>) -> ExitCode {
    let manifests = match crd::manifests() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: cannot render CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    match out_dir {
        None => {
            for (_, yaml) in manifests {
                print!("---\n{yaml}");
            }
        }
        Some(dir) => {
            for (file, yaml) in manifests {
                let path = dir.join(file);
                if let Err(e) = std::fs::write(&path, yaml) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    ExitCode::SUCCESS
}

struct Serve {
    controller: Option<ControllerArgs>,
    api: Option<ApiArgs>,
    common: CommonArgs,
}

impl Serve {
    async fn run(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let client = kube::Client::try_default().await?;
        let metrics = Arc::new(metrics::Metrics::default());
        let stop = shutdown::on_signal();
        let ready = Arc::new(AtomicBool::new(false));
        let (addr, server) = health::serve(
            self.common.metrics_addr,
            health::Health {
                ready: ready.clone(),
                metrics: metrics.clone(),
            },
            shutdown::requested(stop.clone()),
        )
        .await?;
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");

        let mut tasks = tokio::task::JoinSet::new();
        let index = api::JobIndex::default();
        if let Some(args) = self.api {
            let options = api::ApiOptions {
                addr: args.api_addr,
                grpc_plaintext_addr: args.grpc_plaintext_addr,
                tls_cert_file: args.tls_cert_file,
                tls_key_file: args.tls_key_file,
                self_signed_names: args.self_signed_names,
                namespace: args.api_namespace,
                initial_list: args.initial_list,
                server: args.limits.server(),
                pool: args.limits.pool(),
                query: args.limits.query(),
                request_timeout: std::time::Duration::from_secs(args.limits.request_timeout),
            };
            let (c, i, m) = (client.clone(), index.clone(), metrics.clone());
            let until = shutdown::requested(stop.clone());
            tasks.spawn(async move { api::run(c, options, i, m, until).await });
            // The shim is ready once its index holds the initial list, and unready while its
            // watch has been failing for longer than --index-grace.
            let untrusted_after = std::time::Duration::from_secs(args.limits.index_grace);
            let (index, ready, metrics) = (index.clone(), ready.clone(), metrics.clone());
            tokio::spawn(async move {
                loop {
                    if let Ok(s) = index.store.try_read() {
                        metrics
                            .index_jobs
                            .set(i64::try_from(s.jobs.len()).unwrap_or(i64::MAX));
                    }
                    ready.store(index.is_trusted(untrusted_after), Ordering::Release);
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            });
        }
        if let Some(args) = self.controller {
            // With the API in the same process (`run`), readiness follows its index.
            if tasks.is_empty() {
                ready.store(true, Ordering::Release);
            }
            let (client, metrics, stop) = (client.clone(), metrics.clone(), stop.clone());
            tasks.spawn(async move { run_controller(client, args, metrics, stop).await });
        }
        let mut result = Ok(());
        // Whichever component ends first (shutdown, lost lease, fatal error) ends the process.
        if let Some(first) = tasks.join_next().await {
            result = first
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                .and_then(|r| r);
        }
        tasks.shutdown().await;
        ready.store(false, Ordering::Release);
        server.abort();
        result
    }
}

async fn run_controller(
    client: kube::Client,
    args: ControllerArgs,
    metrics: Arc<metrics::Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "controller".into());
        format!("{host}-{:08x}", rand::random::<u32>())
    });
    let lease = leader::LeaseConfig {
        name: args.lease_name,
        namespace: args.lease_namespace,
        identity,
        duration_seconds: args.lease_duration,
        grace_seconds: (args.lease_duration / 3).max(1),
    };
    let config = lifecycle::Config {
        default_timeout: chrono::Duration::seconds(i64::from(args.job_timeout)),
        clock_skew_allowance: chrono::Duration::milliseconds(i64::from(
            args.clock_skew_allowance_ms,
        )),
    };
    let namespace = args.namespace;
    let resync = std::time::Duration::from_secs(args.resync_interval);
    leader::run_while_leader(client.clone(), lease, metrics.clone(), stop, |until| {
        controller::run(client, config, metrics, namespace, resync, until)
    })
    .await?;
    Ok(())
}

fn run_query(args: QueryArgs) -> ExitCode {
    let jobs_text = match std::fs::read_to_string(&args.jobs) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read --jobs {}: {e}", args.jobs.display());
            return ExitCode::from(2);
        }
    };
    let jobs = match spaceone_query::offline::load_jobs(&jobs_text) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: --jobs {}: {e}", args.jobs.display());
            return ExitCode::from(2);
        }
    };
    let request_text = if args.request == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            eprintln!("error: cannot read the request from standard input: {e}");
            return ExitCode::from(2);
        }
        s
    } else {
        match std::fs::read_to_string(&args.request) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read --request {}: {e}", args.request);
                return ExitCode::from(2);
            }
        }
    };
    let request: serde_json::Value = if request_text.trim().is_empty() {
        serde_json::json!({})
    } else {
        match serde_json::from_str(&request_text) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: the request is not valid JSON: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let now = match args
        .now
        .as_deref()
        .map(chrono::DateTime::parse_from_rfc3339)
    {
        None => chrono::Utc::now(),
        Some(Ok(t)) => t.with_timezone(&chrono::Utc),
        Some(Err(e)) => {
            eprintln!("error: --now is not an RFC 3339 time: {e}");
            return ExitCode::from(2);
        }
    };
    let verb = match args.verb {
        QueryVerb::List => spaceone_query::offline::Verb::List,
        QueryVerb::Stat => spaceone_query::offline::Verb::Stat,
        QueryVerb::Get => spaceone_query::offline::Verb::Get,
    };
    let limits = spaceone_query::Limits::default();
    let (out, code) = spaceone_query::offline::run(verb, jobs, &request, now, &limits);
    // A reader that stops early (`| head`) is not an error of ours; anything else is.
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{out}").and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            eprintln!("error: cannot write the answer: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
