//! The load benchmarks of issue 10 on the real control plane (docs/reliability.md, "Load"):
//!
//! - **P5**: jobs with `LOAD_TASKS` tasks each are driven to completion by parallel test workers
//!   (each task marked SUCCESS by a status patch, `LOAD_WORKERS` at once). The same load is settled
//!   once by the controller and once by a *plain client*: a kube client in this process that makes
//!   the job status writes the controller would make (the same status document, computed by the
//!   same `lifecycle::decide`, one conditional server-side apply per change, one transition event
//!   per job), fed by a plain task watch, with the controller's concurrency (32, one job at a
//!   time per shard) and none of the controller machinery (queue, scheduler, store lookups,
//!   cache-sync waits). Rounds alternate (controller first in even rounds, plain first in odd
//!   ones) so that drift of the shared machine falls on both alike. Rate = jobs settled per second
//!   from the first worker write to the last job seen SUCCESS by a watch of the bench.
//! - **P6**: `LOAD_P6_JOBS` jobs in flight (`LOAD_P6_TASKS` tasks each, default 1): all but
//!   `LOAD_P6_TIMEOUTS` with a one-day timeout, and a batch of `LOAD_P6_TIMEOUTS` probes whose
//!   deadlines are spread at `LOAD_P6_RATE` per second from `LOAD_P6_LEAD` seconds on (whole
//!   seconds, as creationTimestamp and timeoutSeconds are); the delay from each deadline (creationTimestamp + timeoutSeconds +
//!   the 1 s clock-skew allowance) to the TIMEOUT status, by the status's `finishedAt` and by the
//!   time a watch of the bench saw it. Then the same again right after a failover: the leader is
//!   SIGKILLed `LOAD_P6_FAILOVER_LEAD` seconds before the first deadline of a second batch and the
//!   standby (running all along with warm caches, lease duration 3 s) takes over and decides
//!   everything.
//! - **shim**: the API shim over those jobs under `LOAD_SHIM_CLIENTS` concurrent clients (16)
//!   sending list (a data source's newest 100), stat and get in turn, over REST and over gRPC to
//!   the same HTTPS port (TLS, HTTP/2 by ALPN; the same bearer token, as `Authorization` or as the
//!   `token` metadata), each protocol on `LOAD_SHIM_CONNECTIONS` HTTP/2 connections (default 1),
//!   in windows of `LOAD_SHIM_SECONDS` (default 15) alternating REST, gRPC, REST, gRPC ...
//!   (`LOAD_SHIM_WINDOWS` per protocol, default 2; `LOAD_SHIM_KINDS=list` sends only the list),
//!   while jobs are created and canceled: answers per second, the shim's CPU per answer (from
//!   /proc) and latency percentiles per window, the totals and the ratios gRPC/REST, errors, the
//!   shim's RSS (VmRSS/VmHWM); afterwards the shim's counts must equal a fresh LIST.
//!
//!   cargo bench --bench load                    (full size: 10,000 jobs; see hack/reliability.sh)
//!   LOAD_PHASES=p5 LOAD_P5_JOBS=1000 cargo bench --bench load      (one phase, another size)
//!   LOAD_PHASES=shim LOAD_SHIM_WINDOWS=3 cargo bench --bench load   (only the shim phase)
//!
//! Correctness (every job in the state the rules give, no job in two terminal states, 0 shim
//! errors) fails the run; timings are reported, never asserted. Uses COST_ANALYSIS_CLUSTER_DIR if
//! set, otherwise starts a private control plane.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "load/common.rs"]
mod common;
#[path = "load/p5.rs"]
mod p5;
#[path = "load/p6.rs"]
mod p6;
#[path = "load/shim.rs"]
mod shim;

use std::time::{Duration, Instant};

use p5::p5;
use p6::p6;
use shim::shim;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const DOMAIN: &str = "domain-load";
/// The controller's default clock-skew allowance (`--clock-skew-allowance-ms`, src/lifecycle.rs).
const ALLOWANCE: Duration = Duration::from_secs(1);
const LEASE_DURATION: &str = "3";

/// The controllers' `--resync-interval` (`LOAD_RESYNC`, default the controller's 300 s); a short
/// one makes every P6 batch run through passes over all jobs.
fn resync_interval() -> String {
    env("LOAD_RESYNC", 300).to_string()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let phases = std::env::var("LOAD_PHASES").unwrap_or_else(|_| "p5,p6,shim".into());
    let c = support::cluster();
    let client = c.client().await;
    let started = Instant::now();
    if phases.contains("p5") {
        p5(c, &client).await;
    }
    if phases.contains("p6") || phases.contains("shim") {
        let (ns, standby, background) = p6(c, &client, phases.contains("p6")).await;
        if phases.contains("shim") {
            shim(c, &client, &ns, background).await;
        }
        drop(standby);
        c.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    }
    println!(
        "load bench done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
