use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};
use cost_analysis_operator::{controller, crd, health, leader, lifecycle, metrics, shutdown};
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
    Controller(ControllerArgs),
    /// Print the CustomResourceDefinitions as YAML, or write them into a directory.
    Crd {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ControllerArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Default job timeout in seconds, for jobs without spec.timeoutSeconds (SpaceONE's JOB_TIMEOUT).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..))]
    job_timeout: u32,
    /// How many milliseconds this controller's clock may run ahead of the API server's; timeouts
    /// wait this much past the deadline so they never fire early.
    #[arg(long, default_value_t = 1000)]
    clock_skew_allowance_ms: u32,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080", env = "METRICS_ADDR")]
    metrics_addr: SocketAddr,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Crd { out_dir } => print_crds(out_dir),
        Command::Controller(args) => {
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
            match runtime.block_on(run_controller(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "controller exited");
                    ExitCode::FAILURE
                }
            }
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

async fn run_controller(args: ControllerArgs) -> Result<(), Box<dyn std::error::Error>> {
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(metrics::Metrics::default());
    let stop = shutdown::on_signal();
    let ready = Arc::new(AtomicBool::new(false));
    let (addr, server) = health::serve(
        args.metrics_addr,
        health::Health {
            ready: ready.clone(),
            metrics: metrics.clone(),
        },
        shutdown::requested(stop.clone()),
    )
    .await?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");

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
    // A standby replica is ready: it serves its purpose by waiting for the lease.
    ready.store(true, Ordering::Release);
    let namespace = args.namespace;
    let result = leader::run_while_leader(client.clone(), lease, metrics.clone(), stop, |until| {
        controller::run(client, config, metrics, namespace, until)
    })
    .await;
    ready.store(false, Ordering::Release);
    server.abort();
    Ok(result?)
}
