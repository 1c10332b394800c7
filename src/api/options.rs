//! What the API shim is told at start: its addresses, certificates, namespace, how the catalog
//! loads, and every limit.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::pool::PoolLimits;
use crate::server::ServerLimits;

#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// HTTPS address of the SpaceONE and aggregated APIs.
    pub addr: SocketAddr,
    /// Plaintext (h2c) address of the gRPC Job and JobTask services, when they are served there too.
    pub grpc_plaintext_addr: Option<SocketAddr>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Host names for a generated serving certificate (when no files are given).
    pub self_signed_names: Vec<String>,
    /// Watch only this namespace.
    pub namespace: Option<String>,
    pub initial_list: InitialList,
    /// What one client can hold of the HTTPS server.
    pub server: ServerLimits,
    /// Where and how many queries run at once.
    pub pool: PoolLimits,
    /// The budgets of one query.
    pub query: spaceone_query::Limits,
    /// The longest a request may take, all included; then it is answered as unavailable.
    pub request_timeout: std::time::Duration,
    /// Bytes of answers built and not yet sent, in all.
    pub max_answer_bytes: usize,
}

/// How the index loads the jobs before it watches them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InitialList {
    /// One watch that first sends every job from the API server's cache (WatchList).
    Streaming,
    /// LIST in pages, then a watch.
    Paged,
}
