//! The connection limits against real sockets on loopback: what slow, idle and crowding clients
//! get from each transport.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::*;
use crate::auth::{ServingCert, TlsState};

/// The HTTP/2 client preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
/// HEADERS on stream 1, END_STREAM | END_HEADERS: GET http://a/ (HPACK static indexes).
const GET_ROOT: &[u8] = &[
    0, 0, 6, 1, 5, 0, 0, 0, 1, 0x82, 0x86, 0x84, 0x01, 0x01, b'a',
];

fn limits(first_ms: u64, idle_ms: u64) -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_millis(first_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        ..ServerLimits::default()
    }
}

async fn start(transport: Transport, limits: ServerLimits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(serve(
        listener,
        transport,
        app,
        limits,
        std::future::pending(),
    ));
    addr
}

async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the server closes the connection; `false` if it is still open after `within`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(s: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Reads the first frame the server sends and returns its type.
async fn first_frame_type<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> u8 {
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut head))
        .await
        .expect("the server answered in time")
        .expect("the connection stayed open");
    head[3]
}

fn tls() -> (TlsState, Arc<rustls::ClientConfig>) {
    let serving = ServingCert::self_signed(&["localhost".into()]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(serving.cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    (TlsState::new(serving, None).unwrap(), Arc::new(client))
}

use rustls_pki_types::pem::PemObject;

#[tokio::test]
async fn plaintext_connections_that_never_send_a_request_are_closed() {
    // Idle far away: only the first-request deadline can close these.
    let addr = start(Transport::H2c, limits(300, 3_600_000)).await;
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(&PREFACE[..12]).await.unwrap();
    let mut preface_only = TcpStream::connect(addr).await.unwrap();
    preface_only.write_all(PREFACE).await.unwrap();
    preface_only.write_all(SETTINGS).await.unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    for (name, s) in [
        ("half a preface", &mut half),
        ("a preface and SETTINGS", &mut preface_only),
        ("nothing", &mut silent),
    ] {
        assert!(
            closed_within(s, Duration::from_secs(20)).await,
            "a connection that sent {name} is still open"
        );
    }
}

#[tokio::test]
async fn tls_connections_that_never_send_a_request_are_closed() {
    let (state, client) = tls();
    let addr = start(Transport::Tls(state), limits(300, 3_600_000)).await;
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut half = connector
        .connect(name.clone(), TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    half.write_all(&PREFACE[..12]).await.unwrap();
    half.flush().await.unwrap();
    let mut preface_only = connector
        .connect(name, TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    preface_only.write_all(PREFACE).await.unwrap();
    preface_only.write_all(SETTINGS).await.unwrap();
    preface_only.flush().await.unwrap();
    let mut no_handshake = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut half, Duration::from_secs(20)).await);
    assert!(closed_within(&mut preface_only, Duration::from_secs(20)).await);
    assert!(closed_within(&mut no_handshake, Duration::from_secs(20)).await);
}

#[tokio::test]
async fn a_connection_with_no_request_under_way_is_closed_after_the_idle_timeout() {
    let addr = start(Transport::H2c, limits(60_000, 300)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(SETTINGS).await.unwrap();
    s.write_all(GET_ROOT).await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(20)).await);
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let limits = ServerLimits {
        max_connections: 8,
        max_connections_per_peer: 3,
        ..limits(60_000, 3_600_000)
    };
    let addr = start(Transport::H2c, limits).await;
    // A stranger holds its share of idle connections...
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.2", addr).await;
        s.write_all(&PREFACE[..16]).await.unwrap();
        held.push(s);
    }
    // ...and gets no more,
    let mut refused = connect_from("127.0.0.2", addr).await;
    assert!(closed_within(&mut refused, Duration::from_secs(10)).await);
    // while another address is served.
    let mut s = connect_from("127.0.0.1", addr).await;
    s.write_all(PREFACE).await.unwrap();
    s.write_all(SETTINGS).await.unwrap();
    assert_eq!(first_frame_type(&mut s).await, 4, "the server's SETTINGS");
    // The stranger's slots come back when it lets go.
    held.clear();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from("127.0.0.2", addr).await;
    again.write_all(PREFACE).await.unwrap();
    again.write_all(SETTINGS).await.unwrap();
    assert_eq!(first_frame_type(&mut again).await, 4);
}

#[tokio::test]
async fn the_total_cap_holds_across_addresses() {
    let limits = ServerLimits {
        max_connections: 4,
        max_connections_per_peer: 3,
        ..limits(60_000, 3_600_000)
    };
    let addr = start(Transport::H2c, limits).await;
    let mut held = Vec::new();
    for source in ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"] {
        let mut s = connect_from(source, addr).await;
        s.write_all(PREFACE).await.unwrap();
        s.write_all(SETTINGS).await.unwrap();
        assert_eq!(first_frame_type(&mut s).await, 4);
        held.push(s);
    }
    let mut refused = connect_from("127.0.0.4", addr).await;
    assert!(closed_within(&mut refused, Duration::from_secs(10)).await);
}

#[test]
fn the_watchdog_judges_the_first_request_then_idleness() {
    let clock = Clock::default();
    let (first, idle) = (Duration::from_millis(0), Duration::from_secs(3600));
    assert_eq!(clock.overdue(first, idle), Some(Overdue::FirstRequest));
    let under_way = clock.request_started();
    clock.bytes_moved();
    assert_eq!(clock.overdue(first, idle), None);
    assert_eq!(
        clock.overdue(first, Duration::ZERO),
        Some(Overdue::Silent),
        "a request under way is cut only when no byte moves"
    );
    drop(under_way);
    assert_eq!(clock.overdue(first, Duration::ZERO), Some(Overdue::Idle));
}

/// The review's attack at its size, with the default limits: 4,096 connections from one address
/// that send 16 bytes and wait. Its share is taken, the rest refused, and another address is
/// served all along.
#[tokio::test]
async fn four_thousand_idle_strangers_do_not_shut_out_the_plaintext_port() {
    let defaults = ServerLimits::default();
    let addr = start(Transport::H2c, defaults.clone()).await;
    let mut held = Vec::new();
    for _ in 0..defaults.max_connections {
        let mut s = connect_from("127.0.0.2", addr).await;
        // A write to a connection the server already closed may fail; that is the point.
        let _ = s.write_all(&PREFACE[..16]).await;
        held.push(s);
    }
    let mut s = connect_from("127.0.0.1", addr).await;
    s.write_all(PREFACE).await.unwrap();
    s.write_all(SETTINGS).await.unwrap();
    assert_eq!(first_frame_type(&mut s).await, 4, "the server's SETTINGS");
    // Exactly the per-peer share of the strangers' connections is open.
    let mut open = 0;
    for s in &mut held {
        if !closed_within(s, Duration::from_millis(20)).await {
            open += 1;
        }
    }
    assert_eq!(open, defaults.max_connections_per_peer);
}

#[test]
fn an_ipv4_peer_counts_once_whether_or_not_it_arrives_mapped_to_ipv6() {
    let admission = Admission::new(&ServerLimits {
        max_connections_per_peer: 1,
        ..ServerLimits::default()
    });
    let v4: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let mapped: std::net::IpAddr = "::ffff:192.0.2.7".parse().unwrap();
    let _held = admission
        .admit(v4.to_canonical())
        .expect("the first connection");
    assert!(admission.admit(mapped.to_canonical()).is_none());
}
