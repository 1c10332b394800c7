//! The HTTPS port's TLS, with optional client certificates: the aggregator presents its
//! front-proxy certificate, direct REST callers present none. The configuration is swapped
//! whenever the front-proxy CA changes; each connection uses the configuration current when it
//! arrives (see [`crate::server`]), and every request carries the [`PeerIdentity`] its connection
//! proved.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

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

    pub(crate) fn acceptor(&self) -> Option<TlsAcceptor> {
        self.current
            .read()
            .ok()
            .map(|c| TlsAcceptor::from(c.clone()))
    }

    pub(crate) fn identity(&self, peer: Option<&[CertificateDer<'_>]>) -> PeerIdentity {
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
