//! Integration-test harness: a real etcd + kube-apiserver + kube-controller-manager (started by
//! `hack/cluster.sh`), the CRDs, and the operator binary as a child process.
//!
//! `hack/test.sh` starts one control plane for the whole suite and exports
//! `COST_ANALYSIS_CLUSTER_DIR`; a test binary run on its own (plain `cargo test`) starts a private
//! one under `target/` and a watchdog stops it when the test process exits.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// The control plane with a real node, and the commands its tests run against it.
pub mod node;
/// The API shim registered as the APIService, and its clients (REST and aggregated-API tests).
pub mod shim;

pub const LEASE_NAME: &str = "cost-analysis-operator-test";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A test tool built from its Go module by hack/observability-bin.sh (promtool, prometheus,
/// jaeger; cached outside the checkout).
pub fn observability_tool(name: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("hack/observability-bin.sh"))
        .arg(name)
        .output()
        .expect("run hack/observability-bin.sh");
    assert!(
        out.status.success(),
        "hack/observability-bin.sh {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join(name)
}

pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub bin: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The control plane for this test process, with the CRDs installed.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let dir = match std::env::var_os("COST_ANALYSIS_CLUSTER_DIR") {
            Some(d) => PathBuf::from(d),
            None => start_private_cluster(),
        };
        let env = std::fs::read_to_string(dir.join("env"))
            .unwrap_or_else(|e| panic!("no control plane env in {}: {e}", dir.display()));
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(|v| v.trim_matches(|c| c == '"' || c == '\''))
                .unwrap_or_else(|| panic!("{name} missing from {}", dir.join("env").display()))
                .to_string()
        };
        let c = Cluster {
            kubeconfig: PathBuf::from(var("KUBECONFIG")),
            bin: PathBuf::from(var("BIN")),
            dir,
        };
        c.kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &root().join("crds").to_string_lossy(),
        ]);
        c.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/costanalysisjobs.cost-analysis.spaceone.dev",
            "crd/costanalysisjobtasks.cost-analysis.spaceone.dev",
        ]);
        c
    })
}

fn start_private_cluster() -> PathBuf {
    let dir = root()
        .join("target")
        .join(format!("test-cluster-{}", std::process::id()));
    let status = Command::new("bash")
        .arg(root().join("hack/cluster.sh"))
        .arg("up")
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .expect("run hack/cluster.sh");
    assert!(
        status.success(),
        "hack/cluster.sh up failed; logs in {}",
        dir.display()
    );
    watchdog(&format!(
        "bash {} down {} >/dev/null 2>&1",
        root().join("hack/cluster.sh").display(),
        dir.display()
    ));
    dir
}

/// Runs `cleanup` (a shell command) once this test process has exited.
pub fn watchdog(cleanup: &str) {
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 0.3; done; {cleanup}",
        std::process::id()
    );
    let _ = Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

impl Cluster {
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("kubeconfig");
        Client::try_from(config).expect("client")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("kubectl"))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl, feeding `stdin`.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.args(args).env("KUBECONFIG", &self.kubeconfig);
        output_with_stdin(cmd, stdin)
    }

    /// A ServiceAccount `sa` in `ns` (created if missing) and a two-hour token of it.
    pub fn account(&self, ns: &str, sa: &str) -> String {
        let _ = self.kubectl(&["create", "serviceaccount", sa, "-n", ns]);
        self.kubectl_ok(&["create", "token", sa, "-n", ns, "--duration", "2h"])
            .trim()
            .to_string()
    }

    /// [`Cluster::account`] allowed `verbs` ("get", "get, cancel") on `domains`, the per-domain
    /// authorization of the SpaceONE surfaces: a ClusterRole on `domains/<id>` and its binding,
    /// both named `<ns>-<sa>`.
    pub fn domain_account(&self, ns: &str, sa: &str, domains: &[&str], verbs: &str) -> String {
        let rbac = format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {ns}-{sa}}}\nrules:\n- apiGroups: [query.cost-analysis.spaceone.dev]\n  resources: [domains]\n  resourceNames: [{}]\n  verbs: [{verbs}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {ns}-{sa}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}-{sa}}}\nsubjects: [{{kind: ServiceAccount, name: {sa}, namespace: {ns}}}]\n",
            domains.join(", ")
        );
        let out = self.kubectl_stdin(&["apply", "-f", "-"], &rbac);
        assert!(
            out.status.success(),
            "RBAC of {sa}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.account(ns, sa)
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        ok(self.kubectl(args), &format!("kubectl {args:?}"))
    }

    pub fn apply_yaml(&self, namespace: &str, yaml: &str) -> Output {
        self.kubectl_stdin(&["apply", "-n", namespace, "-f", "-"], yaml)
    }

    /// Creates a fresh namespace for one test.
    pub fn namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{:06x}", rand_suffix());
        self.kubectl_ok(&["create", "namespace", &name]);
        name
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (t ^ (std::process::id() << 8) ^ N.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919))
        & 0xff_ffff
}

/// The operator binary running `controller` as a child process.
pub struct Operator {
    pub child: Child,
    pub metrics_addr: String,
    pub identity: String,
    pub log: PathBuf,
}

/// A self-signed serving certificate for an API shim registered as the aggregated API: valid for
/// the Service name kube-apiserver verifies (`api.<namespace>.svc`) and for loopback, written as
/// `<stem>.crt` / `<stem>.key` into `dir`.
pub struct ServingCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub pem: String,
    pub der: Vec<u8>,
}

pub fn serving_cert(dir: &Path, stem: &str, namespace: &str) -> ServingCert {
    let names = vec![
        format!("api.{namespace}.svc"),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    let ck = rcgen::generate_simple_self_signed(names).expect("certificate");
    let (cert, key) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    ServingCert {
        cert,
        key,
        pem: ck.cert.pem(),
        der: ck.cert.der().to_vec(),
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Operator {
    pub fn start(cluster: &Cluster, identity: &str, extra: &[&str]) -> Operator {
        Self::start_command(cluster, "controller", identity, extra)
    }

    /// `command` is `controller` or `run` (controller and API shim in one process).
    pub fn start_command(
        cluster: &Cluster,
        command: &str,
        identity: &str,
        extra: &[&str],
    ) -> Operator {
        let port = free_port();
        let metrics_addr = format!("127.0.0.1:{port}");
        let log = cluster.dir.join(format!("operator-{identity}.log"));
        let file = std::fs::File::create(&log).expect("operator log");
        // OPERATOR_BIN runs another build (a before-and-after figure).
        let bin = std::env::var("OPERATOR_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_cost-analysis-operator").to_string());
        let child = Command::new(bin)
            .args([
                command,
                "--metrics-addr",
                &metrics_addr,
                "--identity",
                identity,
            ])
            .args(["--lease-name", LEASE_NAME, "--lease-duration", "3"])
            .args(extra)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("OPERATOR_LOG")
                    .unwrap_or_else(|_| "info,cost_analysis_operator=debug".into()),
            )
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start operator");
        // SIGTERM once the test process is gone, so the lease is released for the next binary.
        watchdog(&format!("kill -TERM {} 2>/dev/null", child.id()));
        Operator {
            child,
            metrics_addr,
            identity: identity.into(),
            log,
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    pub fn metrics(&self) -> String {
        http_get(&self.metrics_addr, "/metrics")
    }
}

impl Drop for Operator {
    /// A test that fails half-way must not leave its controller holding the lease.
    fn drop(&mut self) {
        self.kill();
    }
}

/// Minimal HTTP/1.0 GET over loopback (the tests need no HTTP client dependency for this).
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The shared operator of this test binary, holding the lease once this returns.
pub fn shared_operator() -> &'static Operator {
    static OP: OnceLock<Operator> = OnceLock::new();
    OP.get_or_init(|| {
        let c = cluster();
        let identity = format!("shared-{}", std::process::id());
        let op = Operator::start(c, &identity, &[]);
        wait_for_leader(c, &identity, Duration::from_secs(60));
        op
    })
}

/// Runs `cmd` with `stdin` written to it; its output.
pub fn output_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("output")
}

/// A command's stdout, once it succeeded (its output in the failure otherwise).
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Who holds the test controllers' lease.
pub fn lease_holder(c: &Cluster) -> Option<String> {
    lease_holder_of(c, LEASE_NAME)
}

/// Who holds the lease `lease` (in `default`), once it exists.
pub fn lease_holder_of(c: &Cluster, lease: &str) -> Option<String> {
    let out = c.kubectl(&[
        "get",
        "lease",
        lease,
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn wait_for_leader(c: &Cluster, identity: &str, timeout: Duration) {
    wait_for_leader_of(c, LEASE_NAME, identity, timeout);
}

/// Waits until `identity` holds the lease `lease`.
pub fn wait_for_leader_of(c: &Cluster, lease: &str, identity: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if lease_holder_of(c, lease).as_deref() == Some(identity) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{identity} did not acquire the lease {lease} within {timeout:?}; holder = {:?}",
        lease_holder_of(c, lease)
    );
}

/// Polls `f` until it returns Some, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A memory figure of a process from /proc (`VmRSS`, `VmHWM`), in bytes; 0 once the process is
/// gone (or reaped).
pub fn proc_memory(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib.saturating_mul(1024))
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A CostAnalysisJob manifest in domain-1 / ds-1 with the given task ids and extra spec lines.
pub fn job_yaml(name: &str, tasks: &[&str], extra_spec: &str) -> String {
    job_manifest(name, "domain-1", &[], tasks, extra_spec)
}

/// A CostAnalysisJob manifest (data source ds-1): the one builder every test uses.
pub fn job_manifest(
    name: &str,
    domain: &str,
    labels: &[(&str, &str)],
    tasks: &[&str],
    extra_spec: &str,
) -> String {
    let items: String = tasks.iter().map(|t| format!("\n  - id: {t}")).collect();
    let tasks = if tasks.is_empty() {
        String::new()
    } else {
        format!("  tasks:{items}\n")
    };
    let labels = if labels.is_empty() {
        String::new()
    } else {
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("\n  labels: {{{}}}", pairs.join(", "))
    };
    format!(
        "apiVersion: cost-analysis.spaceone.dev/v1\nkind: CostAnalysisJob\nmetadata:\n  name: {name}{labels}\nspec:\n  domainId: {domain}\n  dataSourceId: ds-1\n{tasks}{extra_spec}"
    )
}

/// Applies a manifest into `ns`, failing the test with kubectl's message.
pub fn create(c: &Cluster, ns: &str, yaml: &str) {
    let out = c.apply_yaml(ns, yaml);
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test worker: reports a task's outcome the way a real worker does (status subresource).
pub fn report(c: &Cluster, ns: &str, task: &str, state: &str) {
    let now = cost_analysis_operator::timestamp::format(&chrono::Utc::now());
    let patch =
        format!(r#"{{"status":{{"status":"{state}","finishedAt":"{now}","createdCount":10}}}}"#);
    c.kubectl_ok(&[
        "patch",
        "cajt",
        task,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

impl Cluster {
    /// Stops kube-apiserver (SIGKILL, then waits for it to exit), keeps it down for `down`, and
    /// starts it again with the same arguments, as an operator restarting a control-plane node
    /// would; returns once it is ready again.
    pub fn restart_apiserver(&self, down: Duration) {
        let pid_file = self.dir.join("apiserver.pid");
        let pid = read(&pid_file).trim().to_string();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("apiserver cmdline");
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // SIGKILL, as a crashed node: a SIGTERM'd kube-apiserver keeps serving the connections
        // it has (watches included) for a long graceful shutdown.
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        let alive = || {
            read(Path::new(&format!("/proc/{pid}/stat")))
                .rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z') && !rest.is_empty())
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(down);
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("apiserver.log"))
            .expect("apiserver log");
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start kube-apiserver again");
        std::fs::write(&pid_file, child.id().to_string()).expect("pid file");
        // Not waited for: it outlives this test process, and `hack/cluster.sh down` stops it.
        std::mem::forget(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = self.kubectl(&["get", "--raw", "/readyz"]);
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver did not come back"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Waits (up to `max`) until etcd, kube-apiserver and kube-controller-manager of the cluster in
/// `dir` together use less than a fifth of a core, so that a measured part starts on a quiet
/// control plane (after a load it keeps compacting and garbage-collecting for a while, and an
/// earlier run's namespace may still be being deleted). Returns how long it waited and the clock
/// ticks of the last 2 s.
pub async fn settle(dir: &Path, max: std::time::Duration) -> (std::time::Duration, u64) {
    fn cpu_ticks(dir: &Path) -> u64 {
        ["etcd", "apiserver", "controller-manager"]
            .iter()
            .filter_map(|name| std::fs::read_to_string(dir.join(format!("{name}.pid"))).ok())
            .map(|pid| process_cpu_ticks(pid.trim()))
            .sum()
    }
    let start = std::time::Instant::now();
    loop {
        let before = cpu_ticks(dir);
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        // Clock ticks are 1/100 s: under 40 ticks in 2 s is under a fifth of a core.
        let used = cpu_ticks(dir).saturating_sub(before);
        if used < 40 || start.elapsed() > max {
            return (start.elapsed(), used);
        }
    }
}

/// CPU time a process has used (user + system), in clock ticks (1/100 s); 0 if it is gone.
pub fn process_cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // utime and stime: fields 14 and 15, counted after the parenthesized name.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}
