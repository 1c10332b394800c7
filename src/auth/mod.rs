//! Who is calling and what they may do. Requests through kube-apiserver's aggregator are
//! authenticated by its front-proxy client certificate and carry the user in identity headers;
//! direct REST callers present a bearer token checked by a TokenReview. Every decision is a
//! SubjectAccessReview. Both answers are cached briefly; tokens are cached by their SHA-256 only.

mod authenticator;
mod front_proxy;
mod tls;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tracing::{info, warn};

pub use authenticator::{
    AuthError, Authenticator, QUERY_GROUP, QUERY_VERSION, ResourceAttrs, UserInfo,
};
pub use front_proxy::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, FrontProxyConfig};
pub use tls::{PeerIdentity, ServingCert, TlsState};

/// Keeps the TLS client-CA and the trusted header names in step with the ConfigMap.
pub async fn watch_front_proxy(client: Client, tls: TlsState, auth: std::sync::Arc<Authenticator>) {
    let api: Api<ConfigMap> = Api::namespaced(client, CONFIGMAP_NAMESPACE);
    let config = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}"));
    let mut stream = watcher(api, config)
        .backoff(crate::backoff::WatchBackoff::default())
        .applied_objects()
        .boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(cm) => match FrontProxyConfig::from_configmap(&cm.data.unwrap_or_default()) {
                Some(fp) => {
                    if let Err(e) = tls.set_front_proxy(&fp) {
                        warn!(error = %e, "front-proxy CA rejected");
                        continue;
                    }
                    info!(allowed = ?fp.allowed_names, "front-proxy configuration loaded");
                    auth.set_front_proxy(fp);
                }
                None => warn!(
                    "{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} has no requestheader-client-ca-file"
                ),
            },
            Err(e) => {
                warn!(error = %e, "watching {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} failed; retrying")
            }
        }
    }
}
