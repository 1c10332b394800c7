//! The API server clients. Requests keep kube's retry of 429, 503 and 504, bounded by the
//! callers' own timeouts. Watches get a client without it: they retry with
//! [`crate::backoff::watch`] (at most 1 s apart), while kube's retry honours the server's
//! `Retry-After`, which a restarting API server sets to 5 s on the 503s it answers before its
//! custom resources are served (measured in `tests/outage.rs`: the shim's catalog caught up 5 s
//! later than it could have).

use kube::Client;

#[derive(Clone)]
pub struct Clients {
    /// Reads and writes.
    pub requests: Client,
    /// Lists and watches of the caches and catalogs.
    pub watches: Client,
}

impl Clients {
    /// Both clients from the in-cluster or kubeconfig configuration, as `Client::try_default`.
    pub async fn infer() -> Result<Self, kube::Error> {
        let config = kube::Config::infer()
            .await
            .map_err(kube::Error::InferConfig)?;
        let requests = Client::try_from(config.clone())?;
        let mut for_watches = config;
        for_watches.default_retry = false;
        let watches = Client::try_from(for_watches)?;
        Ok(Clients { requests, watches })
    }
}
