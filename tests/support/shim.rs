//! The API shim the REST and aggregated-API tests share: one `run` process (controller + API shim)
//! per test binary, registered as the APIService `v1.query.cost-analysis.spaceone.dev` (test
//! binaries run one after another, so each registers its own), clients of it (curl, an in-process
//! HTTPS client, a raw TLS connector), a namespace with jobs in two domains and per-domain RBAC,
//! and shims of their own with tight connection limits.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use cost_analysis_operator::resources::CostAnalysisJob;
use kube::Api;
use serde_json::{Value, json};

use super::{Operator, cluster, eventually, free_port};

pub const WAIT: Duration = Duration::from_secs(40);
pub const SHIM_NS: &str = "cost-analysis-system";

pub struct Shim {
    pub op: Operator,
    pub port: u16,
    pub tls: super::ServingCert,
}

/// One `run` process (controller + API shim) for this test binary, registered as the APIService.
pub fn shim() -> &'static Shim {
    static SHIM: OnceLock<Shim> = OnceLock::new();
    SHIM.get_or_init(|| {
        let c = cluster();
        let port = free_port();
        // A serving certificate for the Service name the aggregator verifies, and for curl.
        let tls = super::serving_cert(&c.dir, "shim", SHIM_NS);
        let addr = format!("127.0.0.1:{port}");
        let identity = format!("api-{}", std::process::id());
        let op = Operator::start_command(
            c,
            "run",
            &identity,
            &[
                "--api-addr",
                &addr,
                "--tls-cert-file",
                &tls.cert.to_string_lossy(),
                "--tls-key-file",
                &tls.key.to_string_lossy(),
            ],
        );
        super::wait_for_leader(c, &identity, Duration::from_secs(60));
        let ca_bundle = base64_std(tls.pem.as_bytes());
        let manifest = format!(
            r#"apiVersion: v1
kind: Namespace
metadata: {{name: {SHIM_NS}}}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: {SHIM_NS}}}
spec: {{type: ExternalName, externalName: 127.0.0.1}}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: v1.query.cost-analysis.spaceone.dev}}
spec:
  group: query.cost-analysis.spaceone.dev
  version: v1
  service: {{namespace: {SHIM_NS}, name: api, port: {port}}}
  caBundle: {ca_bundle}
  groupPriorityMinimum: 1000
  versionPriority: 15
"#
        );
        let out = c.kubectl_stdin(&["apply", "-f", "-"], &manifest);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        c.kubectl_ok(&[
            "wait",
            "--for=condition=Available",
            "--timeout=90s",
            "apiservice/v1.query.cost-analysis.spaceone.dev",
        ]);
        Shim { op, port, tls }
    })
}

pub fn base64_std(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// A direct REST call (curl, as a SpaceONE client would make one).
pub fn rest(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    headers: &[&str],
) -> Reply {
    rest_at(shim().port, method, path, token, body, headers)
}

/// [`rest`] against a shim on `port` that serves the shared shim's certificate.
pub fn rest_at(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    headers: &[&str],
) -> Reply {
    let s = shim();
    let url = format!("https://127.0.0.1:{port}{path}");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&s.tls.cert)
        .args(["-X", method, "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    let mut file = None;
    if let Some(b) = body {
        let text = b.to_string();
        // Large bodies go through a file: the argument list has a size limit.
        let arg = if text.len() > 64 * 1024 {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let path = cluster().dir.join(format!(
                "body-{}-{}.json",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, &text).expect("body file");
            let arg = format!("@{}", path.display());
            file = Some(path);
            arg
        } else {
            text
        };
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &arg,
        ]);
    }
    let out = cmd.arg(&url).output().expect("curl");
    if let Some(path) = file {
        let _ = std::fs::remove_file(path);
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Reply {
        status: code.trim().parse().unwrap_or(0),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// An in-process HTTPS client of the shared shim, for many requests at once.
pub fn shim_client(token: &str) -> kube::Client {
    let s = shim();
    let url = format!("https://127.0.0.1:{}", s.port);
    let mut config = kube::Config::new(url.parse().expect("url"));
    config.root_cert = Some(vec![s.tls.der.clone()]);
    config.auth_info.token = Some(token.to_string().into());
    kube::Client::try_from(config).expect("shim client")
}

/// [`rest`] through `client`: status 0 when no answer came.
pub async fn rest_via(client: &kube::Client, method: &str, path: &str, body: &Value) -> Reply {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json")
        .body(kube::client::Body::from(body.to_string().into_bytes()))
        .expect("request");
    match client.send(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect_bytes().await.unwrap_or_default();
            Reply {
                status,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            }
        }
        Err(_) => Reply {
            status: 0,
            body: Value::Null,
        },
    }
}

/// Namespace with jobs in two domains and ServiceAccounts with per-domain RBAC.
pub struct World {
    pub ns: String,
    pub reader: String,
    pub canceler: String,
    pub nobody: String,
    pub jobs: Api<CostAnalysisJob>,
}

pub fn job(name: &str, domain: &str, tasks: &[&str]) -> String {
    format!(
        "---\n{}",
        super::job_manifest(name, domain, &[("team", domain)], tasks, "")
    )
}

pub async fn world(prefix: &str) -> World {
    let c = cluster();
    shim();
    let ns = c.namespace(prefix);
    let d1 = format!("{ns}-d1");
    let d2 = format!("{ns}-d2");
    let mut yaml = String::new();
    yaml += &job("job-a1", &d1, &["t"]);
    yaml += &job("job-a2", &d1, &[]);
    yaml += &job("job-b1", &d2, &[]);
    let out = c.apply_yaml(&ns, &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = c.domain_account(&ns, "reader", &[&d1], "get");
    let canceler = c.domain_account(&ns, "canceler", &[&d1], "get, cancel");
    let nobody = c.account(&ns, "nobody");
    let jobs: Api<CostAnalysisJob> = Api::namespaced(c.client().await, &ns);
    // The index has seen all three jobs once the admin can list them through the aggregator.
    World {
        reader,
        canceler,
        nobody,
        ns,
        jobs,
    }
}

pub fn d(w: &World, n: u8) -> String {
    format!("{}-d{n}", w.ns)
}

pub async fn wait_listed(w: &World, domain: &str, n: u64) {
    let token = w.reader.clone();
    let domain = domain.to_string();
    eventually(WAIT, "the index to hold the jobs", || {
        let (token, domain) = (token.clone(), domain.clone());
        async move {
            let r = rest(
                "POST",
                "/cost-analysis/v1/jobs/search",
                Some(&token),
                Some(&json!({"domain_id": domain})),
                &[],
            );
            (r.body["total_count"].as_u64() == Some(n)).then_some(())
        }
    })
    .await;
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A TLS client to the shim that trusts its certificate (for raw, misbehaving connections).
pub fn tls_connector() -> tokio_rustls::TlsConnector {
    let s = shim();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(s.tls.der.clone()))
        .expect("trust the shim's certificate");
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// Waits until the server closes `stream` (a read returns end of file or an error); false if it
/// is still open after `within`.
pub async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    within: Duration,
) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// An API shim of its own with tight connection limits.
pub struct TightShim {
    pub child: std::process::Child,
    pub port: u16,
    pub health: String,
}

impl Drop for TightShim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn tight_shim(extra: &[&str]) -> TightShim {
    let (c, s) = (cluster(), shim());
    let (port, metrics) = (free_port(), free_port());
    let log = std::fs::File::create(c.dir.join(format!("tight-{port}.log"))).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_cost-analysis-operator"))
        .arg("api")
        .args(["--api-addr", &format!("127.0.0.1:{port}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .arg("--tls-cert-file")
        .arg(&s.tls.cert)
        .arg("--tls-key-file")
        .arg(&s.tls.key)
        .args(extra)
        .env("KUBECONFIG", &c.kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start a shim");
    let health = format!("127.0.0.1:{metrics}");
    let shim = TightShim {
        child,
        port,
        health: health.clone(),
    };
    eventually(WAIT, "the shim to be ready", || {
        let health = health.clone();
        async move {
            super::http_get(&health, "/readyz")
                .contains("200 OK")
                .then_some(())
        }
    })
    .await;
    shim
}

pub fn shim_cert() -> std::path::PathBuf {
    shim().tls.cert.clone()
}
