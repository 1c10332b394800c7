//! Leader election through a `coordination.k8s.io` Lease, so that of several controller replicas
//! exactly one acts at a time.

use std::future::Future;
use std::sync::Arc;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tracing::info;

use crate::metrics::Metrics;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration_seconds: u64,
    pub grace_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease: {0}")]
    Lease(#[from] LeaseManagerError),
    #[error("lost the controller lease to another replica")]
    Lost,
}

/// Waits for the lease, then runs `work` while holding it. `work` receives a future that resolves
/// when it must stop (shutdown requested or lease lost). Returns `Err(Lost)` when the lease was
/// lost, so that the process exits and restarts clean rather than acting on a stale view.
pub async fn run_while_leader<F, Fut>(
    client: Client,
    config: LeaseConfig,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    work: F,
) -> Result<(), LeaderError>
where
    F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>>) -> Fut,
    Fut: Future<Output = ()>,
{
    let manager = LeaseManagerBuilder::new(client, &config.name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.duration_seconds)
        .with_grace(config.grace_seconds)
        .with_field_manager(crate::controller::FIELD_MANAGER)
        .build()
        .await?;
    let (mut leader, handle) = manager.watch().await;
    info!(lease = %config.name, identity = %config.identity, "waiting for the controller lease");
    let acquired = tokio::select! {
        r = leader.wait_for(|l| *l) => r.is_ok(),
        _ = shutdown.wait_for(|s| *s) => false,
    };
    if !acquired {
        return finish(leader, handle, false).await;
    }
    info!(identity = %config.identity, "acquired the controller lease");
    metrics.leader.set(1);

    let (lost_tx, mut lost_rx) = watch::channel(false);
    let mut watch_leader = leader.clone();
    let mut watch_shutdown = shutdown.clone();
    let stop = Box::pin(async move {
        tokio::select! {
            _ = watch_leader.wait_for(|l| !*l) => { let _ = lost_tx.send(true); }
            _ = watch_shutdown.wait_for(|s| *s) => {}
        }
    });
    work(stop).await;
    metrics.leader.set(0);
    let lost = *lost_rx.borrow_and_update();
    finish(leader, handle, lost).await
}

async fn finish(
    leader: watch::Receiver<bool>,
    handle: tokio::task::JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
    lost: bool,
) -> Result<(), LeaderError> {
    // Dropping the last receiver makes the manager release the lease before its task ends.
    drop(leader);
    match handle.await {
        Ok(Ok(_)) | Err(_) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "releasing the lease failed"),
    }
    if lost { Err(LeaderError::Lost) } else { Ok(()) }
}
