use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cost_analysis_operator::cli::{Cli, Command};
use cost_analysis_operator::serve::Serve;
use cost_analysis_operator::{crd, offline, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The runtime first: the trace exporter, when asked for, runs its batches on it.
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
    let telemetry = {
        let _entered = runtime.enter();
        telemetry::init(cli.log_format)
    };
    let code = run(cli, &runtime);
    // Flush the spans still buffered (the exporter's batches need the runtime).
    if telemetry.exporting() {
        let flushed = runtime.spawn_blocking(move || telemetry.shutdown());
        let _ = runtime.block_on(flushed);
    }
    code
}

fn run(cli: Cli, runtime: &tokio::runtime::Runtime) -> ExitCode {
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
    match runtime.block_on(serve.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            ExitCode::FAILURE
        }
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
