//! HTTPS serving with optional client certificates: the aggregator presents its front-proxy
//! certificate, direct REST callers present none. The TLS configuration is swapped whenever the
//! front-proxy CA changes; each connection uses the configuration current when it arrives, and
//! every request carries the [`PeerIdentity`] its connection proved.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use super::front_proxy::FrontProxyConfig;

/// What the client's certificate proved on this connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The common name of a client certificate that chains to the front-proxy CA and is among the
    /// allowed names: the caller is kube-apiserver's aggregator, whose identity headers count.
    pub front_proxy_cn: Option<String>,
}

pub struct ServingCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// PEM of the certificate (the APIService's caBundle when self-signed).
    pub cert_pem: String,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl ServingCert {
    pub fn from_files(cert: &Path, key: &Path) -> Result<ServingCert, BoxError> {
        let cert_pem =
            std::fs::read_to_string(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
        let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("{}: no certificate", cert.display()).into());
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| format!("{}: {e}", key.display()))?;
        Ok(ServingCert {
            chain,
            key,
            cert_pem,
        })
    }

    /// A self-signed certificate for the given host names (development and tests).
    pub fn self_signed(names: &[String]) -> Result<ServingCert, BoxError> {
        let names = if names.is_empty() {
            vec!["localhost".to_string()]
        } else {
            names.to_vec()
        };
        let ck = rcgen::generate_simple_self_signed(names)?;
        let key = PrivateKeyDer::from_pem_slice(ck.signing_key.serialize_pem().as_bytes())?;
        Ok(ServingCert {
            chain: vec![ck.cert.der().clone()],
            key,
            cert_pem: ck.cert.pem(),
        })
    }
}

#[derive(Clone)]
pub struct TlsState {
    serving: Arc<ServingCert>,
    current: Arc<RwLock<Arc<ServerConfig>>>,
    allowed_names: Arc<RwLock<Vec<String>>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(
    serving: &ServingCert,
    front_proxy: Option<&FrontProxyConfig>,
) -> Result<ServerConfig, BoxError> {
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match front_proxy.filter(|f| !f.ca_pem.trim().is_empty()) {
        Some(fp) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(fp.ca_pem.as_bytes()) {
                roots.add(cert?)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(serving.chain.clone(), serving.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

impl TlsState {
    pub fn new(
        serving: ServingCert,
        front_proxy: Option<&FrontProxyConfig>,
    ) -> Result<TlsState, BoxError> {
        let config = server_config(&serving, front_proxy)?;
        Ok(TlsState {
            current: Arc::new(RwLock::new(Arc::new(config))),
            allowed_names: Arc::new(RwLock::new(
                front_proxy
                    .map(|f| f.allowed_names.clone())
                    .unwrap_or_default(),
            )),
            serving: Arc::new(serving),
        })
    }

    /// Trust a new front-proxy CA (and allowed names) for connections from now on.
    pub fn set_front_proxy(&self, fp: &FrontProxyConfig) -> Result<(), BoxError> {
        let config = server_config(&self.serving, Some(fp))?;
        if let Ok(mut c) = self.current.write() {
            *c = Arc::new(config);
        }
        if let Ok(mut n) = self.allowed_names.write() {
            *n = fp.allowed_names.clone();
        }
        Ok(())
    }

    fn acceptor(&self) -> Option<TlsAcceptor> {
        self.current
            .read()
            .ok()
            .map(|c| TlsAcceptor::from(c.clone()))
    }

    fn identity(&self, peer: Option<&[CertificateDer<'_>]>) -> PeerIdentity {
        // rustls only completes the handshake with a client certificate that chains to the CA.
        let Some(cert) = peer.and_then(|c| c.first()) else {
            return PeerIdentity::default();
        };
        let cn = x509_parser::parse_x509_certificate(cert.as_ref())
            .ok()
            .and_then(|(_, c)| {
                c.subject()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok())
                    .map(str::to_string)
            });
        let allowed = self
            .allowed_names
            .read()
            .map(|n| n.clone())
            .unwrap_or_default();
        let front_proxy_cn = cn.filter(|cn| allowed.is_empty() || allowed.iter().any(|a| a == cn));
        PeerIdentity { front_proxy_cn }
    }
}

/// What one client can hold of the HTTPS server. The defaults are far above what SpaceONE clients
/// and kube-apiserver's aggregator use, and low enough that slow or idle clients cannot exhaust
/// the process.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Open connections at once; further ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Time for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time for a request's headers to arrive whole (HTTP/1.1).
    pub header_read_timeout: Duration,
    /// A connection with no bytes moving either way for this long is closed.
    pub idle_timeout: Duration,
    /// Concurrent streams on one HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// Size of a request's headers (431 beyond it, on HTTP/1.1 and HTTP/2).
    pub max_header_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_concurrent_streams: 100,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Serves `app` over TLS until `shutdown` resolves, then lets open connections finish (10 s).
/// Every connection is bounded by [`ServerLimits`].
pub async fn serve(
    listener: TcpListener,
    tls: TlsState,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%remote, "connection limit reached; closing the new connection");
            continue;
        };
        let Some(acceptor) = tls.acceptor() else {
            continue;
        };
        // Answers are written in several TLS records; Nagle would hold the last one back until
        // the client's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%remote, error = %e, "TCP_NODELAY not set");
        }
        let (tls, app, stop, limits) = (tls.clone(), app.clone(), stop_rx.clone(), limits.clone());
        connections.spawn(async move {
            let _slot = slot;
            serve_connection(stream, remote, acceptor, tls, app, &limits, stop).await;
        });
    }
    info!("HTTPS server stopping; finishing open connections");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    remote: std::net::SocketAddr,
    acceptor: TlsAcceptor,
    tls: TlsState,
    app: Router,
    limits: &ServerLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let activity = Activity::default();
    let stream = Tracked {
        inner: stream,
        activity: activity.clone(),
    };
    let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await;
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return debug!(%remote, error = %e, "TLS handshake failed"),
        Err(_) => return debug!(%remote, "TLS handshake timed out"),
    };
    let peer = tls.identity(stream.get_ref().1.peer_certificates());
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(peer.clone());
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper answers 431 when the head does not fit.
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let idle = limits.idle_timeout;
    let tick = idle
        .checked_div(4)
        .unwrap_or(idle)
        .max(Duration::from_millis(100));
    let watchdog = async {
        loop {
            tokio::time::sleep(tick).await;
            if activity.idle_for() >= idle {
                return;
            }
        }
    };
    tokio::select! {
        r = conn.as_mut() => { if let Err(e) = r { debug!(%remote, error = %e, "connection ended"); } return; }
        () = watchdog => debug!(%remote, "closing an idle connection"),
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {}
    }
    // Requests under way may finish; a client that does not let go is cut off.
    conn.as_mut().graceful_shutdown();
    if tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .is_err()
    {
        debug!(%remote, "connection did not finish in time; closed");
    }
}

/// When bytes last moved on a connection, in milliseconds since it was accepted.
#[derive(Clone)]
struct Activity {
    since: std::time::Instant,
    last_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            since: std::time::Instant::now(),
            last_ms: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }
}

/// A TCP stream that records when bytes last moved in either direction.
struct Tracked {
    inner: tokio::net::TcpStream,
    activity: Activity,
}

impl tokio::io::AsyncRead for Tracked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() != before {
            self.activity.touch();
        }
        r
    }
}

impl tokio::io::AsyncWrite for Tracked {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
