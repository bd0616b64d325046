//! Deployment manifests (`knative/`, `func.yaml`): everything parses, the kustomization lists
//! every file, and the cross-references hold — Trigger -> Broker and Service, subscriber URI ->
//! a real POST route, probe paths -> real routes, Secret keys, service accounts, role
//! bindings, and func.yaml agreeing with the Knative Service.

use crate::common::TestApp;
use application_quality_api::config::Config;
use serde::Deserialize;
use serde_yaml::Value;
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The Trigger filter prefixes the service must receive: its own probes and events (both
/// spellings in use), and the GitHub/GitLab webhook relays.
const EXPECTED_PREFIXES: &[&str] = &[
    "org.eoepca.application-quality.probes.",
    "org.eoepca.application-quality.events.",
    "org.eoepca.application-quality.event.",
    "org.eoepca.webhook.github.",
    "org.eoepca.webhook.gitlab.",
];

const SERVICE: &str = "application-quality-api";
const NAMESPACE: &str = "application-quality";

/// Kinds without a namespace.
const CLUSTER_KINDS: &[&str] = &[
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} is listed but unreadable: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn s<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    let mut cur = v;
    for key in path.split('.') {
        cur = cur.get(key)?;
    }
    cur.as_str()
}

/// Every object of the kustomization, keyed by (kind, namespace, name), plus its file.
struct Objects(BTreeMap<(String, String, String), (Value, String)>);

impl Objects {
    fn get(&self, kind: &str, ns: &str, name: &str) -> Option<&Value> {
        self.0
            .get(&(kind.to_string(), ns.to_string(), name.to_string()))
            .map(|(v, _)| v)
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.0
            .iter()
            .filter(move |((k, _, _), _)| k == kind)
            .map(|((_, ns, _), (v, _))| (ns.as_str(), v))
    }

    fn require(&self, kind: &str, ns: &str, name: &str, from: &str) -> &Value {
        self.get(kind, ns, name).unwrap_or_else(|| {
            panic!("{from} refers to {kind} {ns}/{name}, which no manifest defines")
        })
    }
}

fn load_kustomization() -> Objects {
    let dir = root().join("knative");
    let k = &read_docs(&dir.join("kustomization.yaml"))[0];
    assert_eq!(s(k, "kind"), Some("Kustomization"));
    assert!(
        k.get("namespace").is_none(),
        "a kustomize `namespace:` would move the objects that belong in the runs namespace"
    );
    let listed: Vec<String> = k["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| (n.ends_with(".yaml") || n.ends_with(".yml")) && n != "kustomization.yaml")
        .collect();
    let listed_set: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(listed_set.len(), listed.len(), "a file is listed twice");
    let missing: Vec<_> = listed_set.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "kustomization.yaml lists files that do not exist: {missing:?}"
    );
    let unlisted: Vec<_> = on_disk.difference(&listed_set).collect();
    assert!(
        unlisted.is_empty(),
        "files in knative/ not listed in kustomization.yaml: {unlisted:?}"
    );

    let mut objects = BTreeMap::new();
    for file in &listed {
        for doc in read_docs(&dir.join(file)) {
            let kind = s(&doc, "kind")
                .unwrap_or_else(|| panic!("{file}: object without kind"))
                .to_string();
            let kind = kind.as_str();
            assert!(
                s(&doc, "apiVersion").is_some(),
                "{file}: {kind} without apiVersion"
            );
            let name = s(&doc, "metadata.name")
                .unwrap_or_else(|| panic!("{file}: {kind} without metadata.name"))
                .to_string();
            let ns = match s(&doc, "metadata.namespace") {
                Some(ns) => {
                    assert!(
                        !CLUSTER_KINDS.contains(&kind),
                        "{file}: cluster-scoped {kind} {name} has a namespace"
                    );
                    ns.to_string()
                }
                None => {
                    assert!(
                        CLUSTER_KINDS.contains(&kind),
                        "{file}: {kind} {name} must name its namespace explicitly"
                    );
                    String::new()
                }
            };
            let key = (kind.to_string(), ns.clone(), name.clone());
            if let Some((_, other)) = objects.insert(key, (doc, file.clone())) {
                panic!("{kind} {ns}/{name} is defined in both {other} and {file}");
            }
        }
    }
    let objects = Objects(objects);
    // Every namespace used is created by the manifests.
    for ((kind, ns, name), (_, file)) in &objects.0 {
        if !ns.is_empty() {
            objects.require("Namespace", "", ns, &format!("{file}: {kind} {name}"));
        }
    }
    objects
}

#[tokio::test]
async fn manifests_cross_reference_each_other_and_the_routes() {
    let objects = load_kustomization();
    let app = TestApp::spawn().await;

    // --- The Knative Service.
    let svc = objects.require("Service", NAMESPACE, SERVICE, "the deployment");
    assert_eq!(s(svc, "apiVersion"), Some("serving.knative.dev/v1"));
    let template = &svc["spec"]["template"];
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(
        annotations["autoscaling.knative.dev/min-scale"].as_str(),
        Some("0"),
        "scale to zero"
    );
    let target: u32 = annotations["autoscaling.knative.dev/target"]
        .as_str()
        .expect("target concurrency")
        .parse()
        .unwrap();
    assert!((1..=1000).contains(&target));
    let sa = s(template, "spec.serviceAccountName").expect("serviceAccountName");
    objects.require("ServiceAccount", NAMESPACE, sa, "the Service");
    let containers = template["spec"]["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let port = c["ports"][0]["containerPort"].as_u64().unwrap();
    let default_port = Config::from_iter(Vec::<(String, String)>::new())
        .unwrap()
        .server
        .port;
    assert_eq!(
        port,
        u64::from(default_port),
        "container port = the service's default PORT"
    );
    assert!(c["resources"]["requests"].is_mapping() && c["resources"]["limits"].is_mapping());

    // Probes point at real routes.
    let mut probe_paths = BTreeMap::new();
    for probe in ["readinessProbe", "livenessProbe"] {
        let path = s(c, &format!("{probe}.httpGet.path")).unwrap_or_else(|| panic!("{probe}"));
        assert_eq!(
            c[probe]["httpGet"]["port"].as_u64(),
            Some(port),
            "{probe} port"
        );
        let (status, _) = app.get(path, None).await;
        assert_eq!(status, 200, "{probe} {path}");
        probe_paths.insert(probe, path.to_string());
    }

    // Environment: every variable is one the service reads; Secret keys exist.
    let env = c["env"].as_sequence().unwrap();
    let mut plain = BTreeMap::new();
    let mut secret_keys = BTreeSet::new();
    for e in env {
        let name = s(e, "name").unwrap();
        if let Some(v) = s(e, "value") {
            plain.insert(name.to_string(), v.to_string());
        } else {
            let secret = s(e, "valueFrom.secretKeyRef.name").expect("value or secretKeyRef");
            let key = s(e, "valueFrom.secretKeyRef.key").unwrap();
            let obj = objects.require("Secret", NAMESPACE, secret, "the Service env");
            assert!(
                obj["stringData"].get(key).is_some() || obj["data"].get(key).is_some(),
                "Secret {secret} has no key {key}"
            );
            secret_keys.insert((secret.to_string(), key.to_string()));
        }
    }
    assert!(secret_keys.contains(&(SERVICE.to_string(), "JWT_SECRET".to_string())));
    assert!(secret_keys.contains(&(SERVICE.to_string(), "DATABASE_URL".to_string())));
    assert_eq!(plain.get("KUBERNETES").map(String::as_str), Some("on"));
    assert_eq!(
        plain.get("BACKEND_SERVICE_HOST").cloned(),
        Some(format!("{SERVICE}.{NAMESPACE}.svc.cluster.local"))
    );
    // The plain values form a valid configuration (placeholders for the secrets).
    let mut vars: Vec<(String, String)> = plain.clone().into_iter().collect();
    vars.push(("JWT_SECRET".into(), "x".repeat(32)));
    vars.push(("DATABASE_URL".into(), "postgres://u@h/db".into()));
    let config = Config::from_iter(vars).expect("the Service's env is a valid configuration");
    // It listens beyond loopback, which `serve` allows only with authenticated events.
    assert_eq!(
        plain.get("BIND_ADDRESS").map(String::as_str),
        Some("0.0.0.0")
    );
    config
        .check_listener("0.0.0.0:8080".parse().unwrap())
        .expect("the Service may listen on 0.0.0.0");
    assert_eq!(
        config.callback_base_url(),
        format!("http://{SERVICE}.{NAMESPACE}.svc.cluster.local:80")
    );

    // --- Brokers and Triggers.
    for (ns, broker) in objects.of_kind("Broker") {
        if let Some(cfg) = broker["spec"].get("config") {
            let kind = s(cfg, "kind").unwrap();
            let cfg_ns = s(cfg, "namespace").unwrap_or(ns);
            objects.require(kind, cfg_ns, s(cfg, "name").unwrap(), "Broker spec.config");
        }
        assert!(broker["spec"]["delivery"]["retry"].as_u64().unwrap_or(0) > 0);
    }
    let mut ours = 0;
    for (ns, trigger) in objects.of_kind("Trigger") {
        let name = s(trigger, "metadata.name").unwrap();
        let broker = s(trigger, "spec.broker").expect("broker");
        objects.require("Broker", ns, broker, &format!("Trigger {name}"));
        let sub = &trigger["spec"]["subscriber"];
        let sref = &sub["ref"];
        if s(sref, "kind") != Some("Service") || s(sref, "name") != Some(SERVICE) {
            continue;
        }
        ours += 1;
        assert_eq!(
            s(sref, "apiVersion"),
            Some("serving.knative.dev/v1"),
            "{name}"
        );
        assert_eq!(s(sref, "namespace").unwrap_or(ns), NAMESPACE, "{name}");
        let uri = s(sub, "uri").expect("subscriber.uri");
        assert_eq!(uri, "/api/events/", "{name}");
        // The subscriber URI is a real POST route taking CloudEvents (binary mode, as
        // Knative delivers them).
        let r = app
            .client
            .post(app.url(uri))
            .header("ce-specversion", "1.0")
            .header("ce-id", format!("manifest-{name}"))
            .header("ce-source", "/tests/manifests")
            .header("ce-type", "org.eoepca.application-quality.probes.health")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(
            status != 404 && status != 405,
            "Trigger {name}: POST {uri} gave {status}"
        );
        assert!(
            (200..300).contains(&status),
            "Trigger {name}: a health event to {uri} gave {status}"
        );
    }
    assert!(ours >= 1, "no Trigger delivers to the Service");
    let main = objects.require("Trigger", NAMESPACE, SERVICE, "the event routing");
    let mut prefixes = BTreeSet::new();
    for f in main["spec"]["filters"].as_sequence().expect("spec.filters") {
        for alt in f["any"].as_sequence().expect("filters: any") {
            prefixes.insert(s(alt, "prefix.type").expect("prefix on type").to_string());
        }
    }
    let expected: BTreeSet<String> = EXPECTED_PREFIXES.iter().map(|p| p.to_string()).collect();
    assert_eq!(prefixes, expected);

    // --- Event sources sink into a defined Broker.
    for (ns, src) in objects.of_kind("ApiServerSource") {
        let sink = &src["spec"]["sink"]["ref"];
        let kind = s(sink, "kind").unwrap();
        objects.require(
            kind,
            s(sink, "namespace").unwrap_or(ns),
            s(sink, "name").unwrap(),
            "ApiServerSource sink",
        );
        if let Some(sa) = s(src, "spec.serviceAccountName") {
            objects.require("ServiceAccount", ns, sa, "ApiServerSource");
        }
    }

    // --- The wake-up: a PingSource sinks into a defined Broker, a Trigger of ours routes its
    // type to the Service, and the Service answers that type as a wake-up.
    let mut pings = 0;
    for (ns, src) in objects.of_kind("PingSource") {
        pings += 1;
        let sink = &src["spec"]["sink"]["ref"];
        objects.require(
            s(sink, "kind").unwrap(),
            s(sink, "namespace").unwrap_or(ns),
            s(sink, "name").unwrap(),
            "PingSource sink",
        );
        assert!(s(src, "spec.schedule").is_some());
    }
    assert_eq!(pings, 1, "one PingSource wakes the service");
    let wakeup = objects.require(
        "Trigger",
        NAMESPACE,
        "application-quality-api-wakeup",
        "the PingSource",
    );
    let ping_type = s(&wakeup["spec"]["filters"][0], "exact.type").unwrap();
    assert_eq!(ping_type, "dev.knative.sources.ping");
    let (status, body) = app
        .send(
            app.client
                .post(app.url("/api/events/"))
                .header("ce-specversion", "1.0")
                .header("ce-id", "manifest-ping")
                .header("ce-source", "/apis/v1/namespaces/application-quality/pingsources/application-quality-wakeup")
                .header("ce-type", ping_type)
                .header("content-type", "application/json")
                .body(s(&objects.require("PingSource", NAMESPACE, "application-quality-wakeup", "test")["spec"], "data").unwrap().to_string()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Commit statuses:"),
        "{body}"
    );

    // --- RBAC: bindings refer to defined roles and service accounts.
    for kind in ["RoleBinding", "ClusterRoleBinding"] {
        for (ns, b) in objects.of_kind(kind) {
            let name = s(b, "metadata.name").unwrap();
            let role_kind = s(b, "roleRef.kind").unwrap();
            let role_ns = if role_kind == "ClusterRole" { "" } else { ns };
            objects.require(role_kind, role_ns, s(b, "roleRef.name").unwrap(), name);
            for subject in b["subjects"].as_sequence().unwrap() {
                if s(subject, "kind") == Some("ServiceAccount") {
                    let sns = s(subject, "namespace").unwrap_or(ns);
                    objects.require("ServiceAccount", sns, s(subject, "name").unwrap(), name);
                }
            }
        }
    }

    // --- func.yaml agrees with the Service.
    let func = &read_docs(&root().join("func.yaml"))[0];
    assert_eq!(s(func, "specVersion"), Some("0.36.0"));
    assert_eq!(s(func, "name"), Some(SERVICE));
    assert_eq!(s(func, "runtime"), Some("rust"));
    assert_eq!(s(func, "invoke"), Some("cloudevent"));
    assert_eq!(s(func, "namespace"), Some(NAMESPACE));
    assert_eq!(s(func, "deploy.namespace"), Some(NAMESPACE));
    assert_eq!(s(func, "deploy.serviceAccountName"), Some(sa));
    assert_eq!(
        s(func, "deploy.healthEndpoints.readiness"),
        Some(probe_paths["readinessProbe"].as_str())
    );
    assert_eq!(
        s(func, "deploy.healthEndpoints.liveness"),
        Some(probe_paths["livenessProbe"].as_str())
    );
    assert_eq!(func["deploy"]["options"]["scale"]["min"].as_u64(), Some(0));
    assert_eq!(
        s(func, "deploy.annotations.autoscaling.knative.dev/min-scale"),
        None,
        "dotted keys are not paths"
    );
    assert_eq!(
        func["deploy"]["annotations"]["autoscaling.knative.dev/min-scale"].as_str(),
        Some("0")
    );
    assert_eq!(
        func["deploy"]["options"]["scale"]["target"].as_u64(),
        Some(u64::from(target))
    );
    let build_envs: BTreeMap<&str, &str> = func["build"]["buildEnvs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (s(e, "name").unwrap(), s(e, "value").unwrap()))
        .collect();
    assert_eq!(build_envs.get("BP_RUSTUP_ENABLED"), Some(&"true"));
    let mut func_secret_keys = BTreeSet::new();
    for e in func["run"]["envs"].as_sequence().unwrap() {
        let name = s(e, "name").unwrap();
        let value = s(e, "value").unwrap();
        if let Some(r) = value
            .strip_prefix("{{ secret:")
            .and_then(|r| r.strip_suffix(" }}"))
        {
            let (secret, key) = r.split_once(':').unwrap();
            assert_eq!(key, name, "func.yaml: {name} comes from key {key}");
            func_secret_keys.insert((secret.to_string(), key.to_string()));
        } else {
            assert_eq!(
                plain.get(name).map(String::as_str),
                Some(value),
                "func.yaml env {name} differs from the Service"
            );
        }
    }
    assert_eq!(
        func_secret_keys, secret_keys,
        "func.yaml and the Service read the same secrets"
    );
}

/// The runs namespace: Pod Security `baseline` enforced and `restricted` warned about and
/// audited; nothing may connect to its pods; they reach DNS, the service and addresses
/// outside the cluster only (no private, link-local or loopback range, so no metadata
/// address and no other in-cluster address); only the Calrissian pod (the Job's, selected
/// by the label the Job's pods carry) may also reach an API server port; step pods get no
/// API token.
#[test]
fn the_runs_namespace_is_locked_down() {
    use application_quality_api::k8s::objects;
    let objects = load_kustomization();
    let runs_ns = "application-quality-runs";
    let ns = objects.require("Namespace", "", runs_ns, "the runs");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].as_str(),
        Some("baseline")
    );
    for mode in ["warn", "audit"] {
        assert_eq!(
            ns["metadata"]["labels"][format!("pod-security.kubernetes.io/{mode}").as_str()]
                .as_str(),
            Some("restricted"),
            "{mode}"
        );
    }
    let default_sa = objects.require("ServiceAccount", runs_ns, "default", "the step pods");
    assert_eq!(
        default_sa["automountServiceAccountToken"].as_bool(),
        Some(false)
    );

    let policies: Vec<&Value> = objects
        .of_kind("NetworkPolicy")
        .filter(|(n, _)| *n == runs_ns)
        .map(|(_, p)| p)
        .collect();
    assert_eq!(policies.len(), 2, "the runs' policy and Calrissian's");
    for p in &policies {
        // Well-typed as the API's own types read them (ports, CIDRs, selectors).
        let typed: k8s_openapi::api::networking::v1::NetworkPolicy =
            serde_json::from_value(serde_json::to_value(p).unwrap()).unwrap();
        assert!(typed.spec.unwrap().policy_types.is_some());
    }
    let all = policies
        .iter()
        .find(|p| {
            p["spec"]["podSelector"]
                .as_mapping()
                .is_none_or(|m| m.is_empty())
        })
        .expect("a policy selecting every pod of the namespace");
    let types: Vec<&str> = all["spec"]["policyTypes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(types, ["Ingress", "Egress"]);
    assert!(
        all["spec"]["ingress"]
            .as_sequence()
            .is_some_and(|i| i.is_empty()),
        "no ingress"
    );
    let egress = all["spec"]["egress"].as_sequence().unwrap();
    let mut outside = Vec::new();
    let mut namespaces = BTreeSet::new();
    for rule in egress {
        for to in rule["to"].as_sequence().unwrap() {
            if let Some(block) = to.get("ipBlock") {
                let except: BTreeSet<&str> = block["except"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|e| e.as_str().unwrap())
                    .collect();
                outside.push((s(block, "cidr").unwrap(), except));
            } else {
                let name = to["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    .as_str()
                    .expect("in-cluster destinations are selected by namespace");
                namespaces.insert(name);
                if name == "kube-system" {
                    assert!(rule.get("ports").is_some(), "DNS only on its ports");
                    assert_eq!(
                        to["podSelector"]["matchLabels"]["k8s-app"].as_str(),
                        Some("kube-dns")
                    );
                }
            }
        }
    }
    assert_eq!(
        namespaces,
        BTreeSet::from([
            "kube-system",
            NAMESPACE,
            "knative-serving",
            "kourier-system"
        ])
    );
    let v4 = outside
        .iter()
        .find(|(cidr, _)| *cidr == "0.0.0.0/0")
        .expect("IPv4 outside the cluster");
    for private in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "127.0.0.0/8",
        "100.64.0.0/10",
    ] {
        assert!(v4.1.contains(private), "{private} must be excluded");
    }
    let v6 = outside
        .iter()
        .find(|(cidr, _)| *cidr == "::/0")
        .expect("IPv6 outside the cluster");
    for private in ["fc00::/7", "fe80::/10", "::1/128"] {
        assert!(v6.1.contains(private), "{private} must be excluded");
    }

    let calrissian = policies
        .iter()
        .find(|p| {
            p["spec"]["podSelector"]["matchLabels"][objects::MANAGED_BY_LABEL].as_str()
                == Some(objects::MANAGED_BY)
        })
        .expect("a policy for the Calrissian pods");
    let rules = calrissian["spec"]["egress"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
    assert!(rules[0].get("to").is_none());
    let ports: BTreeSet<u64> = rules[0]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, BTreeSet::from([443, 6443]));
}
