//! The Helm chart with the real helm and kubectl against the test control plane: lint and schema,
//! rendered manifests accepted by the API server (server-side dry run), install, upgrade (the
//! serving certificate is kept), uninstall; and the Argo CD health check under a real Lua.

#![allow(clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use support::{Cluster, cluster, ok, root};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());

fn chart() -> PathBuf {
    root().join("charts/cost-analysis-operator")
}

fn helm(c: &Cluster, args: &[&str]) -> Output {
    Command::new(c.bin.join("helm"))
        .args(args)
        .env("KUBECONFIG", &c.kubeconfig)
        .env("HELM_CACHE_HOME", c.dir.join("helm/cache"))
        .env("HELM_CONFIG_HOME", c.dir.join("helm/config"))
        .env("HELM_DATA_HOME", c.dir.join("helm/data"))
        .output()
        .expect("run helm")
}

#[test]
fn chart_crds_are_the_generated_ones() {
    for file in ["costanalysisjob.yaml", "costanalysisjobtask.yaml"] {
        let generated = std::fs::read_to_string(root().join("crds").join(file)).unwrap_or_default();
        let shipped = std::fs::read_to_string(chart().join("crds").join(file)).unwrap_or_default();
        assert!(
            !generated.is_empty() && generated == shipped,
            "charts/cost-analysis-operator/crds/{file} differs from crds/{file}"
        );
    }
}

#[test]
fn lint_passes_and_the_schema_refuses_wrong_values() {
    let c = cluster();
    let chart = chart();
    let chart = chart.to_string_lossy();
    ok(helm(c, &["lint", &chart, "--strict"]), "helm lint");
    for (set, message) in [
        ("mode=sideways", "value must be one of 'split', 'combined'"),
        ("controller.replicas=0", "/controller/replicas"),
        ("api.port=70000", "/api/port"),
        ("domainRoles={Bad_Name}", "/domainRoles/0"),
        ("certificates.source=vault", "/certificates/source"),
        ("unknownKey=1", "unknownKey"),
    ] {
        let out = helm(c, &["lint", &chart, "--set", set]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{set} was accepted");
        assert!(
            text.contains(message),
            "{set}: expected {message:?} in {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rendered_manifests_are_accepted_by_the_api_server() {
    let _turn = SERIAL.lock().await;
    let c = cluster();
    let ns = c.namespace("chart-render");
    let chart = chart();
    let chart = chart.to_string_lossy();
    for extra in [
        vec![],
        vec![
            "--set",
            "mode=combined,networkPolicy.enabled=true,podDisruptionBudget.minAvailable=50%,controller.watchNamespace=team-a,apiService.enabled=false",
        ],
        vec![
            "--set",
            "domainRoles={domain-a,domain-b},controller.jobTimeout=120,api.replicas=3,grafanaDashboard.enabled=true,metrics.domainLabel=true,tracing.endpoint=http://otel:4317",
        ],
        // The task runner: Roles per namespace, the reporter role, the admission policy.
        vec![
            "--set",
            "taskRunner.enabled=true,taskRunner.namespaces={default,kube-public},taskRunner.admissionPolicy.enabled=true",
            "--set-json",
            r#"taskRunner.admissionPolicy.allowedImagePrefixes=["registry.example/"]"#,
        ],
        vec!["--set", "mode=combined,taskRunner.enabled=true"],
        // The plaintext gRPC port: flag, container and Service port, gRPC probe, NetworkPolicy.
        vec![
            "--set",
            "api.grpc.plaintext.enabled=true,networkPolicy.enabled=true",
            "--set-json",
            r#"api.grpc.plaintext.allowFrom=[{"podSelector":{"matchLabels":{"app":"spaceone"}}}]"#,
        ],
    ] {
        let mut args = vec![
            "template",
            "dry",
            &chart,
            "-n",
            &ns,
            "--kube-version",
            "1.36.3",
        ];
        args.extend(extra.iter().copied());
        let rendered = ok(helm(c, &args), "helm template");
        let out = c.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &rendered);
        ok(out, &format!("server-side dry run of {extra:?}"));
        for kind in ["kind: Deployment", "kind: Service", "kind: ClusterRole"] {
            assert!(rendered.contains(kind), "{kind} missing for {extra:?}");
        }
        // Trace export only when an endpoint is given.
        let tracing = extra.iter().any(|a| a.contains("tracing.endpoint"));
        assert_eq!(
            rendered.contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
            tracing,
            "OTEL_* for {extra:?}"
        );
        // Every pod runs as non-root, read-only, without capabilities, under RuntimeDefault seccomp.
        for needle in [
            "runAsNonRoot: true",
            "readOnlyRootFilesystem: true",
            "- ALL",
            "type: RuntimeDefault",
        ] {
            assert!(rendered.contains(needle), "{needle} missing for {extra:?}");
        }
    }
    let cm = ok(
        helm(
            c,
            &[
                "template",
                "cm",
                &chart,
                "-n",
                &ns,
                "--kube-version",
                "1.36.3",
                "--set",
                "certificates.source=cert-manager,serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true",
            ],
        ),
        "helm template cert-manager",
    );
    for kind in [
        "kind: Certificate",
        "kind: Issuer",
        "cert-manager.io/inject-ca-from",
        "kind: ServiceMonitor",
        "kind: PrometheusRule",
        "grafana_dashboard: \"1\"",
    ] {
        assert!(cm.contains(kind), "{kind} missing with cert-manager");
    }
    // The PrometheusRule carries files/alerts.yaml as it is (the file promtool tests), and the
    // dashboard ConfigMap files/dashboard.json.
    let files = root().join("charts/cost-analysis-operator/files");
    let docs: Vec<serde_yaml::Value> = cm
        .split("\n---")
        .filter_map(|d| serde_yaml::from_str(d).ok())
        .collect();
    let kind = |k: &str| {
        docs.iter()
            .find(|d| {
                d["kind"].as_str() == Some(k)
                    && (k != "ConfigMap" || d["data"]["cost-analysis-operator.json"].is_string())
            })
            .unwrap_or_else(|| panic!("no {k}"))
            .clone()
    };
    let alerts: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(files.join("alerts.yaml")).unwrap()).unwrap();
    assert_eq!(kind("PrometheusRule")["spec"], alerts);
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(files.join("dashboard.json")).unwrap())
            .unwrap();
    let shipped: serde_json::Value = serde_json::from_str(
        kind("ConfigMap")["data"]["cost-analysis-operator.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(shipped, dashboard);
    assert!(
        !cm.contains("kind: Secret"),
        "the chart must not generate a certificate when cert-manager does"
    );
}

/// Users reach the operator's resources through Kubernetes' own roles: the chart's view and edit
/// ClusterRoles aggregate into `view`, `edit` and `admin` (by the real clusterrole-aggregation
/// controller), and an external worker's ServiceAccount bound to `<release>-task-worker` may find,
/// claim and report tasks, and nothing more.
#[tokio::test(flavor = "multi_thread")]
async fn the_chart_roles_aggregate_into_view_and_edit_and_a_worker_role_is_least_privilege() {
    let _turn = SERIAL.lock().await;
    let c = cluster();
    let ns = c.namespace("chart-roles");
    let chart = chart();
    let rendered = ok(
        helm(
            c,
            &[
                "template",
                "roles",
                &chart.to_string_lossy(),
                "-n",
                &ns,
                "--kube-version",
                "1.36.3",
            ],
        ),
        "helm template",
    );
    // Only the ClusterRoles: the rest needs the install test's namespace and certificates.
    let roles: Vec<&str> = rendered
        .split("\n---")
        .filter(|d| d.contains("\nkind: ClusterRole\n"))
        .collect();
    assert!(
        roles
            .iter()
            .any(|r| r.contains("name: roles-cost-analysis-operator-view")),
        "no view role in {} ClusterRoles",
        roles.len()
    );
    ok(
        c.kubectl_stdin(&["apply", "-f", "-"], &roles.join("\n---\n")),
        "apply the ClusterRoles",
    );
    let bind = |name: &str, role: &str, subject: &str| {
        c.kubectl_ok(&[
            "create",
            "rolebinding",
            name,
            "-n",
            &ns,
            &format!("--clusterrole={role}"),
            subject,
        ]);
    };
    bind("alice-view", "view", "--user=alice");
    bind("bob-edit", "edit", "--user=bob");
    bind(
        "worker",
        "roles-cost-analysis-operator-task-worker",
        &format!("--serviceaccount={ns}:worker"),
    );
    // A SubjectAccessReview, as the API server itself decides (kubectl auth can-i would first
    // look the aggregated resources up in discovery, where no APIService serves them here).
    let can = |who: &str, verb: &str, what: &str| -> bool {
        let (what, sub) = what.split_once('/').unwrap_or((what, ""));
        let (resource, group) = what.split_once('.').unwrap();
        let review = serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": who,
                "resourceAttributes": {
                    "namespace": ns, "verb": verb, "group": group,
                    "resource": resource, "subresource": sub,
                },
            },
        });
        let out = ok(
            c.kubectl_stdin(&["create", "-o", "json", "-f", "-"], &review.to_string()),
            "a SubjectAccessReview",
        );
        let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
        answer["status"]["allowed"] == true
    };
    // The aggregation controller adds the rules to `view` shortly after the roles exist.
    support::eventually(
        std::time::Duration::from_secs(30),
        "the view role to include costanalysisjobs",
        || async {
            can(
                "alice",
                "list",
                "costanalysisjobs.cost-analysis.spaceone.dev",
            )
            .then_some(())
        },
    )
    .await;
    let worker = format!("system:serviceaccount:{ns}:worker");
    let cases: &[(&str, &str, &str, bool)] = &[
        (
            "alice",
            "watch",
            "costanalysisjobtasks.cost-analysis.spaceone.dev",
            true,
        ),
        (
            "alice",
            "list",
            "jobs.query.cost-analysis.spaceone.dev",
            true,
        ),
        (
            "alice",
            "list",
            "jobtasks.query.cost-analysis.spaceone.dev",
            true,
        ),
        (
            "alice",
            "create",
            "jobstats.query.cost-analysis.spaceone.dev",
            true,
        ),
        (
            "alice",
            "create",
            "costanalysisjobs.cost-analysis.spaceone.dev",
            false,
        ),
        (
            "alice",
            "patch",
            "costanalysisjobs.cost-analysis.spaceone.dev",
            false,
        ),
        (
            "bob",
            "create",
            "costanalysisjobs.cost-analysis.spaceone.dev",
            true,
        ),
        (
            "bob",
            "delete",
            "costanalysisjobs.cost-analysis.spaceone.dev",
            true,
        ),
        ("bob", "list", "jobs.query.cost-analysis.spaceone.dev", true),
        // Task objects are the controller's: users never create or patch them.
        (
            "bob",
            "create",
            "costanalysisjobtasks.cost-analysis.spaceone.dev",
            false,
        ),
        (
            &worker,
            "list",
            "costanalysisjobtasks.cost-analysis.spaceone.dev",
            true,
        ),
        (
            &worker,
            "watch",
            "costanalysisjobtasks.cost-analysis.spaceone.dev",
            true,
        ),
        (
            &worker,
            "patch",
            "costanalysisjobtasks.cost-analysis.spaceone.dev/status",
            true,
        ),
        (
            &worker,
            "patch",
            "costanalysisjobtasks.cost-analysis.spaceone.dev",
            false,
        ),
        // It reads its job (a worker stops once the job is no longer IN_PROGRESS), never writes it.
        (
            &worker,
            "watch",
            "costanalysisjobs.cost-analysis.spaceone.dev",
            true,
        ),
        (
            &worker,
            "patch",
            "costanalysisjobs.cost-analysis.spaceone.dev",
            false,
        ),
        (
            &worker,
            "patch",
            "costanalysisjobs.cost-analysis.spaceone.dev/status",
            false,
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(who, verb, what, want)| can(who, verb, what) != *want)
        .map(|(who, verb, what, want)| format!("{who} {verb} {what}: want {want}"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    let names: Vec<&str> = roles
        .iter()
        .filter_map(|r| r.lines().find_map(|l| l.trim().strip_prefix("name: ")))
        .collect();
    let mut args = vec!["delete", "clusterrole", "--ignore-not-found"];
    args.extend(names.iter().copied());
    c.kubectl_ok(&args);
}

#[tokio::test(flavor = "multi_thread")]
async fn install_upgrade_keeps_the_certificate_and_uninstall_removes_everything() {
    let _turn = SERIAL.lock().await;
    let c = cluster();
    let ns = c.namespace("chart");
    let chart = chart();
    let chart = chart.to_string_lossy();
    // Another test binary may have registered the APIService by hand.
    c.kubectl(&[
        "delete",
        "apiservice",
        "v1.query.cost-analysis.spaceone.dev",
        "--ignore-not-found",
    ]);
    let notes = ok(
        helm(c, &["install", "cao", &chart, "-n", &ns]),
        "helm install",
    );
    assert!(
        notes.contains("kubectl get apiservice v1.query.cost-analysis.spaceone.dev"),
        "{notes}"
    );
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/costanalysisjobs.cost-analysis.spaceone.dev",
    ]);
    let deployments = c.kubectl_ok(&["get", "deploy", "-n", &ns, "-o", "name"]);
    assert!(
        deployments.contains("cao-cost-analysis-operator-controller")
            && deployments.contains("cao-cost-analysis-operator-api"),
        "{deployments}"
    );
    let ca_of = || {
        c.kubectl_ok(&[
            "get",
            "apiservice",
            "v1.query.cost-analysis.spaceone.dev",
            "-o",
            "jsonpath={.spec.caBundle}",
        ])
    };
    let cert_of = || {
        c.kubectl_ok(&[
            "get",
            "secret",
            "cao-cost-analysis-operator-serving",
            "-n",
            &ns,
            "-o",
            "jsonpath={.data.tls\\.crt}",
        ])
    };
    let (ca, cert) = (ca_of(), cert_of());
    assert!(!ca.is_empty() && !cert.is_empty());

    ok(
        helm(
            c,
            &[
                "upgrade",
                "cao",
                &chart,
                "-n",
                &ns,
                "--set",
                "controller.jobTimeout=300",
            ],
        ),
        "helm upgrade",
    );
    assert_eq!(ca_of(), ca, "the upgrade replaced the CA");
    assert_eq!(
        cert_of(),
        cert,
        "the upgrade replaced the serving certificate"
    );
    let args = c.kubectl_ok(&[
        "get",
        "deploy",
        "cao-cost-analysis-operator-controller",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].args}",
    ]);
    assert!(args.contains("--job-timeout=300"), "{args}");

    ok(helm(c, &["uninstall", "cao", "-n", &ns]), "helm uninstall");
    let left = c.kubectl_ok(&[
        "get",
        "deploy,svc,secret,sa,pdb,role,rolebinding",
        "-n",
        &ns,
        "-l",
        "app.kubernetes.io/instance=cao",
        "-o",
        "name",
    ]);
    assert!(left.trim().is_empty(), "left behind: {left}");
    assert!(
        !c.kubectl(&["get", "apiservice", "v1.query.cost-analysis.spaceone.dev"])
            .status
            .success()
    );
    assert!(
        !c.kubectl(&[
            "get",
            "clusterrole",
            "cao-cost-analysis-operator-controller"
        ])
        .status
        .success()
    );
    // CRDs stay (Helm never deletes crds/), so existing jobs are not lost by an uninstall.
    assert!(
        c.kubectl(&["get", "crd", "costanalysisjobs.cost-analysis.spaceone.dev"])
            .status
            .success()
    );
}

#[test]
fn argo_cd_health_check_maps_every_state() {
    let out = Command::new("lua5.4")
        .arg(root().join("deploy/argocd/health_test.lua"))
        .output()
        .expect("lua5.4 (hack/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("9 passed, 0 failed"),
        "{text}"
    );
}
