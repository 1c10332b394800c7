use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cost_analysis_operator::cli::{Cli, Command, LogFormat};
use cost_analysis_operator::serve::Serve;
use cost_analysis_operator::{crd, offline};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let serve = match cli.command {
        Command::Crd { out_dir } => return print_crds(out_dir),
        Command::Query(args) => return offline::run(args),
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
