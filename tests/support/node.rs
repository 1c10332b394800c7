//! The control plane with a real node (`hack/cluster.sh up --node DIR`, exported by `hack/test.sh`
//! as `COST_ANALYSIS_NODE_CLUSTER_DIR`) and the commands its tests run against it: kubectl, helm,
//! bash, with its binaries, kubeconfig, containerd and Helm state.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use serde_json::Value;

use super::root;

pub struct Node {
    pub dir: PathBuf,
    env: BTreeMap<String, String>,
}

impl Node {
    /// The node cluster the environment names, if any.
    pub fn from_env() -> Option<Node> {
        let dir = PathBuf::from(std::env::var_os("COST_ANALYSIS_NODE_CLUSTER_DIR")?);
        let text = std::fs::read_to_string(dir.join("env"))
            .unwrap_or_else(|e| panic!("no node cluster env in {}: {e}", dir.display()));
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect::<BTreeMap<_, _>>();
        assert_eq!(
            env.get("NODE").map(String::as_str),
            Some("1"),
            "{} is not a node cluster (hack/cluster.sh up --node)",
            dir.display()
        );
        Some(Node { dir, env })
    }

    pub fn var(&self, k: &str) -> &str {
        self.env
            .get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{k} missing"))
    }

    /// A command with the cluster's KUBECONFIG, its binaries first on PATH, ctr pointed at its
    /// containerd, and Helm's state under the cluster directory.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        let path = format!(
            "{}:{}",
            self.var("BIN"),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.current_dir(root())
            .env("PATH", path)
            .env("KUBECONFIG", self.var("KUBECONFIG"))
            .env("CONTAINERD_ADDRESS", self.var("CONTAINERD_ADDRESS"))
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"));
        cmd
    }

    /// `program args`, stdin closed.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"))
    }

    /// `program args`, which must succeed; its stdout.
    pub fn ok(&self, program: &str, args: &[&str]) -> String {
        ok(self.run(program, args), &format!("{program} {args:?}"))
    }

    pub fn bash(&self, script: &str) -> Output {
        self.run("bash", &["-euo", "pipefail", "-c", script])
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.run("kubectl", args)
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.ok("kubectl", args)
    }

    pub fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&a)).expect("kubectl json")
    }

    /// kubectl, fed `stdin`.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = self.command("kubectl");
        cmd.args(args);
        super::output_with_stdin(cmd, stdin)
    }

    pub fn helm(&self, args: &[&str]) -> String {
        self.ok("helm", args)
    }
}

pub use super::ok;

/// A progress line of a long test: seconds since `t0`.
pub fn step(test: &str, t0: Instant, what: &str) {
    eprintln!("[{test} {:>6.1}s] {what}", t0.elapsed().as_secs_f64());
}
