//! The one HTTP server every listener of the API shim uses: the HTTPS port (TLS, HTTP/1.1 and
//! HTTP/2 by ALPN) and the plaintext gRPC port (HTTP/2 with prior knowledge, h2c). One accept
//! loop, one set of [`ServerLimits`], so that no listener is softer than another.
//!
//! A connection costs the process a socket, a task and buffers before it has proved anything, so
//! every connection must earn its keep in bounded time: from accept to the first request's headers
//! (TLS handshake, HTTP/2 preface and SETTINGS included) it has `header_read_timeout`; after that
//! it is closed once no request has been under way for `idle_timeout`, or once no byte has moved
//! for as long. Connections are capped in total and per peer address, so that strangers holding
//! idle connections from a few addresses cannot lock everyone else out.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::auth::TlsState;

/// What one client can hold of a listener. The defaults are far above what SpaceONE clients and
/// kube-apiserver's aggregator use, and low enough that slow or idle clients cannot exhaust the
/// process.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Open connections at once; further ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Open connections from one IP address at once; further ones from it are closed on arrival.
    pub max_connections_per_peer: usize,
    /// From accept to the first request's headers: the TLS handshake, the HTTP/2 preface and
    /// SETTINGS and the request head all fit in it. Also the time for each later HTTP/1.1 head.
    pub header_read_timeout: Duration,
    /// A connection with no request under way, or no byte moving either way, for this long is
    /// closed. Also the HTTP/2 keep-alive ping interval.
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
            max_connections_per_peer: 256,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_concurrent_streams: 100,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// How a listener's bytes become HTTP.
#[derive(Clone)]
pub enum Transport {
    /// TLS with the configuration current at accept; HTTP/1.1 or HTTP/2 by ALPN. Every request
    /// carries the [`crate::auth::PeerIdentity`] its connection proved.
    Tls(TlsState),
    /// HTTP/2 with prior knowledge (h2c), for `grpc://` clients.
    H2c,
}

impl Transport {
    fn name(&self) -> &'static str {
        match self {
            Transport::Tls(_) => "HTTPS",
            Transport::H2c => "plaintext HTTP/2",
        }
    }
}

/// Serves `app` until `shutdown` resolves, then lets open connections finish (10 s). Every
/// connection is bounded by [`ServerLimits`].
pub async fn serve(
    listener: TcpListener,
    transport: Transport,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let admission = Admission::new(&limits);
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
        // One host, one count: an IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d.
        let Some(admitted) = admission.admit(remote.ip().to_canonical()) else {
            debug!(%remote, "connection limit reached (in total or for this address); closing the new connection");
            continue;
        };
        // Answers are written in several TLS records; Nagle would hold the last one back until
        // the client's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%remote, error = %e, "TCP_NODELAY not set");
        }
        let (transport, app, stop, limits) = (
            transport.clone(),
            app.clone(),
            stop_rx.clone(),
            limits.clone(),
        );
        connections.spawn(async move {
            let _admitted = admitted;
            serve_connection(stream, remote, transport, app, &limits, stop).await;
        });
    }
    info!(
        "{} server stopping; finishing open connections",
        transport.name()
    );
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// The connection caps: a semaphore for the total, a count per address for each peer.
struct Admission {
    total: Arc<tokio::sync::Semaphore>,
    per_peer: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_peer: usize,
}

/// One admitted connection; its slots come back when it is dropped.
struct Admitted {
    _total: tokio::sync::OwnedSemaphorePermit,
    per_peer: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Admission {
    fn new(limits: &ServerLimits) -> Self {
        Admission {
            total: Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1))),
            per_peer: Arc::default(),
            max_per_peer: limits.max_connections_per_peer.max(1),
        }
    }

    fn admit(&self, ip: IpAddr) -> Option<Admitted> {
        let total = self.total.clone().try_acquire_owned().ok()?;
        let mut peers = self.per_peer.lock().ok()?;
        let n = peers.entry(ip).or_insert(0);
        if *n >= self.max_per_peer {
            return None;
        }
        *n = n.saturating_add(1);
        Some(Admitted {
            _total: total,
            per_peer: self.per_peer.clone(),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut peers) = self.per_peer.lock()
            && let Some(n) = peers.get_mut(&self.ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                peers.remove(&self.ip);
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    transport: Transport,
    app: Router,
    limits: &ServerLimits,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let clock = Clock::default();
    let stream = Tracked {
        inner: stream,
        clock: clock.clone(),
    };
    match transport {
        Transport::H2c => serve_http(stream, remote, app, None, true, limits, clock, stop).await,
        Transport::Tls(tls) => {
            let Some(acceptor) = tls.acceptor() else {
                return;
            };
            let handshake =
                tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await;
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return debug!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => return debug!(%remote, "TLS handshake timed out"),
            };
            let peer = tls.identity(stream.get_ref().1.peer_certificates());
            serve_http(stream, remote, app, Some(peer), false, limits, clock, stop).await;
        }
    }
}

#[allow(clippy::too_many_arguments)] // one call site per transport, all internal
async fn serve_http<I>(
    io: I,
    remote: SocketAddr,
    app: Router,
    peer: Option<crate::auth::PeerIdentity>,
    http2_only: bool,
    limits: &ServerLimits,
    clock: Clock,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let requests = clock.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            if let Some(peer) = &peer {
                req.extensions_mut().insert(peer.clone());
            }
            // The request is under way until its answer's body is sent or dropped.
            let under_way = requests.request_started();
            let answer = app.clone().oneshot(req.map(axum::body::Body::new));
            async move {
                let response = answer.await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |f| {
                        let _ = &under_way;
                        f
                    }))
                }))
            }
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
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.idle_timeout))
        .keep_alive_timeout(Duration::from_secs(20));
    if http2_only {
        builder = builder.http2_only();
    }
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let (first, idle) = (limits.header_read_timeout, limits.idle_timeout);
    let tick = first
        .min(idle)
        .checked_div(4)
        .unwrap_or(idle)
        .max(Duration::from_millis(50));
    let watchdog = async {
        loop {
            tokio::time::sleep(tick).await;
            if let Some(why) = clock.overdue(first, idle) {
                return why;
            }
        }
    };
    tokio::select! {
        r = conn.as_mut() => { if let Err(e) = r { debug!(%remote, error = %e, "connection ended"); } return; }
        why = watchdog => {
            debug!(%remote, "closing the connection: {why}");
            if why == Overdue::FirstRequest {
                // Nothing was asked, so nothing is owed: the connection is dropped at once.
                return;
            }
        }
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

/// Why a connection is closed by its watchdog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Overdue {
    FirstRequest,
    Idle,
    Silent,
}

impl std::fmt::Display for Overdue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Overdue::FirstRequest => "no request within the header read timeout",
            Overdue::Idle => "no request under way for the idle timeout",
            Overdue::Silent => "no bytes moved for the idle timeout",
        })
    }
}

/// A connection's clock: when bytes last moved, how many requests started, how many are under
/// way and when the last one started or ended, in milliseconds since accept.
#[derive(Clone)]
struct Clock {
    since: Instant,
    state: Arc<ClockState>,
}

#[derive(Default)]
struct ClockState {
    bytes_ms: AtomicU64,
    requests_ms: AtomicU64,
    started: AtomicU64,
    under_way: AtomicUsize,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            since: Instant::now(),
            state: Arc::default(),
        }
    }
}

/// A request under way on its connection; it ends when dropped.
struct UnderWay(Clock);

impl Drop for UnderWay {
    fn drop(&mut self) {
        self.0.state.under_way.fetch_sub(1, Ordering::Relaxed);
        self.0.stamp(&self.0.state.requests_ms);
    }
}

impl Clock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn stamp(&self, at: &AtomicU64) {
        at.store(self.now_ms(), Ordering::Relaxed);
    }

    fn bytes_moved(&self) {
        self.stamp(&self.state.bytes_ms);
    }

    fn request_started(&self) -> UnderWay {
        self.state.started.fetch_add(1, Ordering::Relaxed);
        self.state.under_way.fetch_add(1, Ordering::Relaxed);
        self.stamp(&self.state.requests_ms);
        UnderWay(self.clone())
    }

    /// Whether the connection has outstayed its welcome, and why.
    fn overdue(&self, first: Duration, idle: Duration) -> Option<Overdue> {
        let now = Duration::from_millis(self.now_ms());
        let since =
            |at: &AtomicU64| now.saturating_sub(Duration::from_millis(at.load(Ordering::Relaxed)));
        let s = &self.state;
        if s.started.load(Ordering::Relaxed) == 0 {
            return (now >= first).then_some(Overdue::FirstRequest);
        }
        if s.under_way.load(Ordering::Relaxed) == 0 && since(&s.requests_ms) >= idle {
            return Some(Overdue::Idle);
        }
        (since(&s.bytes_ms) >= idle).then_some(Overdue::Silent)
    }
}

/// A TCP stream that records when bytes last moved in either direction.
struct Tracked {
    inner: TcpStream,
    clock: Clock,
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
            self.clock.bytes_moved();
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
            self.clock.bytes_moved();
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

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
