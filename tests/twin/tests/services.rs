//! In-cluster clients: Services get ClusterIPs from the twin's own loopback range, the cluster's
//! kube-proxy forwards `ClusterIP:port` to a ready endpoint (following a selector, or the
//! EndpointSlices of a selectorless Service, as they change), and the write probe counts what a
//! client writing through the ingress and through a ClusterIP got acknowledged, and what of it
//! the Vault still holds.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::{Kubectl, eventually};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use twin::httpc::Endpoint;
use twin::probe::{ProbePath, WriteProbe};
use twin::{ClusterPlan, Init, Scenario, ScenarioOptions};

fn one_vault() -> ScenarioOptions {
    ScenarioOptions::with_clusters(vec![ClusterPlan {
        replicas: 1,
        ..ClusterPlan::new("old", Init::WithData { secrets: 2 })
    }])
}

/// `kubectl get` prints the columns a real API server prints for Pods and Services (server-side
/// Tables): the ClusterIP and ports of a Service, the readiness, phase and restarts of a pod,
/// and label columns from each row's metadata; `kubectl logs` prints what the pod's process wrote.
#[tokio::test]
async fn kubectl_get_and_logs_show_what_a_real_server_shows() {
    let scenario = Scenario::start_async(one_vault())
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let kubectl = Kubectl::new(scenario.twin().kubeconfig_path());
    let get = |args: &[&str]| {
        let mut all = vec!["--context", "old", "-n", "vault", "get"];
        all.extend_from_slice(args);
        kubectl.run(&all)
    };
    let row = |table: &str, name: &str| -> Vec<String> {
        table
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name} in:\n{table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };

    let services = get(&["services"]);
    let header: Vec<&str> = services
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ],
        "{services}"
    );
    let active = row(&services, "vault-active");
    assert_eq!(active[1], "ClusterIP");
    assert_eq!(
        active[2],
        cluster_ip(&kubectl, "vault-active").to_string(),
        "{services}"
    );
    assert_eq!(active[4], "8200/TCP,8201/TCP");
    assert_eq!(row(&services, "vault-internal")[2], "None", "headless");
    let wide = get(&["services", "-o", "wide"]);
    assert!(
        row(&wide, "vault-active")
            .last()
            .is_some_and(|selector| selector.contains("vault-active=true")),
        "{wide}"
    );

    let pods = get(&["pods", "-L", "vault-active"]);
    let header: Vec<&str> = pods.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "VAULT-ACTIVE"],
        "{pods}"
    );
    let pod = row(&pods, "vault-0");
    assert_eq!(pod[1..4], ["1/1", "Running", "0"], "{pods}");
    assert_eq!(pod[5], "true", "the active pod's label: {pods}");
    let one = get(&["pod", "vault-0", "-o", "wide"]);
    let address = scenario
        .vault("old")
        .pod_address(0)
        .unwrap()
        .ip()
        .to_string();
    assert!(row(&one, "vault-0").contains(&address), "{one}");
    // `kubectl get -w` prints each change in the same columns: a deleted pod is Terminating
    // until its process has stopped, then it is recreated and shows READY 0/1 before it is
    // ready again.
    let mut watch = kubectl
        .command(&["--context", "old", "-n", "vault", "get", "pods", "-w"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl get -w starts");
    let stdout = watch.stdout.take().unwrap();
    let (sender, printed) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut wait_for = |wanted: &dyn Fn(&str) -> bool, what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match printed.recv_timeout(left) {
                Ok(line) => {
                    let found = wanted(&line);
                    lines.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!("kubectl get -w never printed {what}: {lines:?}"),
            }
        }
    };
    let columns = |line: &str, first: [&str; 2]| line.split_whitespace().take(2).eq(first);
    wait_for(&|l| columns(l, ["vault-0", "1/1"]), "the listed pod");
    kubectl.run(&[
        "--context",
        "old",
        "-n",
        "vault",
        "delete",
        "pod",
        "vault-0",
    ]);
    wait_for(
        &|l| l.starts_with("vault-0 ") && l.split_whitespace().nth(2) == Some("Terminating"),
        "the deleted pod Terminating while its process stops",
    );
    wait_for(
        &|l| columns(l, ["vault-0", "0/1"]) && !l.contains("Terminating"),
        "the recreated pod, not ready yet",
    );
    watch.kill().unwrap();
    let _ = watch.wait();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("NAME")).count(),
        1,
        "one header for the list and every change: {lines:?}"
    );
    // Kinds without columns of their own print as a plain list: NAME and AGE.
    let budgets = get(&["poddisruptionbudgets"]);
    assert!(budgets.starts_with("NAME"), "{budgets}");
    assert!(row(&budgets, "vault").len() == 2, "{budgets}");

    // The pod keeps logging: the tail is read first, and the whole log afterwards holds it.
    let last = kubectl.run(&[
        "--context",
        "old",
        "-n",
        "vault",
        "logs",
        "vault-0",
        "--tail=2",
    ]);
    let logs = kubectl.run(&["--context", "old", "-n", "vault", "logs", "vault-0"]);
    assert!(
        logs.contains("core: vault is unsealed"),
        "the OpenBao process's own log: {logs}"
    );
    assert_eq!(last.lines().count(), 2, "{last}");
    assert!(logs.contains(&last), "two lines of the log: {last}");
    assert!(
        logs.lines().count() > 2,
        "the whole log is more than its tail: {logs}"
    );
    let missing = kubectl.fail(&["--context", "old", "-n", "vault", "logs", "vault-9"]);
    assert!(missing.contains("not found"), "{missing}");
    let wrong = kubectl.fail(&[
        "--context",
        "old",
        "-n",
        "vault",
        "logs",
        "vault-0",
        "-c",
        "nope",
    ]);
    assert!(wrong.contains("container nope is not valid"), "{wrong}");
}

/// The ClusterIP of Service `vault/name`, as `kubectl` shows it.
fn cluster_ip(kubectl: &Kubectl, name: &str) -> IpAddr {
    let shown = kubectl.run(&[
        "--context",
        "old",
        "-n",
        "vault",
        "get",
        "service",
        name,
        "-o",
        "custom-columns=NAME:.metadata.name,CLUSTER-IP:.spec.clusterIP",
        "--no-headers",
    ]);
    let address = shown.split_whitespace().nth(1).unwrap_or_default();
    address
        .parse()
        .unwrap_or_else(|_| panic!("kubectl shows no ClusterIP for {name}: {shown:?}"))
}

/// Put `selector` on Service `vault-active` (`None` takes it off, as a cutover does).
async fn set_selector(
    services: &Api<Service>,
    selector: Option<std::collections::BTreeMap<String, String>>,
) {
    services
        .patch(
            "vault-active",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"selector": selector}})),
        )
        .await
        .unwrap();
}

/// A condition for `eventually`.
fn yes(holds: bool) -> Result<(), String> {
    if holds {
        Ok(())
    } else {
        Err("not yet".to_string())
    }
}

/// Whether `sys/health` answers through `address` (the Vault is unsealed and active).
async fn answers(address: SocketAddr) -> bool {
    let mut endpoint = Endpoint::plain(address);
    endpoint.timeout = Duration::from_secs(2);
    matches!(
        endpoint.json("GET", "/v1/sys/health", None, None).await,
        Ok((200, _))
    )
}

#[tokio::test]
async fn a_cluster_ip_reaches_a_ready_pod_and_follows_selectors_and_slices() {
    let scenario = Scenario::start_async(one_vault())
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let twin = scenario.twin();
    let kubectl = Kubectl::new(twin.kubeconfig_path());
    let old = scenario.vault("old");
    let pod = old.pod_address(0).unwrap();

    let active = cluster_ip(&kubectl, "vault-active");
    let IpAddr::V4(v4) = active else {
        panic!("an IPv4 ClusterIP, not {active}")
    };
    assert!(v4.is_loopback(), "ClusterIPs stay on loopback: {v4}");
    assert_eq!(
        v4.octets()[1],
        pod.ip()
            .to_string()
            .split('.')
            .nth(1)
            .unwrap()
            .parse::<u8>()
            .unwrap(),
        "the ClusterIP is in the twin's own slot, as its pods are"
    );
    let active = SocketAddr::new(active, 8200);
    eventually(
        "vault-active to answer through its ClusterIP",
        Duration::from_secs(30),
        || async { yes(answers(active).await) },
    )
    .await;

    // Taking the selector off leaves the Service without endpoints: connections are refused.
    let client = common::client(twin, "old").await;
    let services: Api<Service> = Api::namespaced(client.clone(), "vault");
    let selector = services
        .get("vault-active")
        .await
        .unwrap()
        .spec
        .unwrap()
        .selector;
    set_selector(&services, None).await;
    eventually(
        "the ClusterIP to refuse once the selector is off",
        Duration::from_secs(10),
        || async { yes(!answers(active).await) },
    )
    .await;
    set_selector(&services, selector.clone()).await;
    eventually(
        "the ClusterIP to answer with the selector back",
        Duration::from_secs(10),
        || async { yes(answers(active).await) },
    )
    .await;

    // A selectorless Service goes where its EndpointSlice says, and follows it when it moves.
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "vault-by-slice"},
        "spec": {"ports": [{"name": "http", "port": 8300, "targetPort": 8200}]},
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let by_slice = SocketAddr::new(cluster_ip(&kubectl, "vault-by-slice"), 8300);
    assert_ne!(
        by_slice.ip(),
        active.ip(),
        "each Service has its own ClusterIP"
    );
    let slices: Api<EndpointSlice> = Api::namespaced(client, "vault");
    let slice = |address: String| -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {
                "name": "vault-by-slice-1",
                "labels": {"kubernetes.io/service-name": "vault-by-slice"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8200, "protocol": "TCP"}],
            "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
        }))
        .unwrap()
    };
    slices
        .create(&PostParams::default(), &slice(pod.ip().to_string()))
        .await
        .unwrap();
    eventually(
        "the selectorless Service to reach the pod",
        Duration::from_secs(10),
        || async { yes(answers(by_slice).await) },
    )
    .await;
    // An address of the twin's range where nothing listens on the slice's port.
    let nowhere = by_slice.ip().to_string();
    slices
        .patch(
            "vault-by-slice-1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"endpoints": [{"addresses": [nowhere], "conditions": {"ready": true}}]}),
            ),
        )
        .await
        .unwrap();
    eventually(
        "the Service to follow its EndpointSlice away from the pod",
        Duration::from_secs(10),
        || async { yes(!answers(by_slice).await) },
    )
    .await;

    let log = std::fs::read_to_string(twin.dir().join("old").join("kube-proxy.log")).unwrap();
    assert!(
        log.contains(&format!("listening for {active}")),
        "kube-proxy.log says what it listens on:\n{log}"
    );
}

#[tokio::test]
async fn the_write_probe_counts_refusals_windows_and_lost_writes() {
    let scenario = Scenario::start_async(one_vault())
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let twin = scenario.twin();
    let kubectl = Kubectl::new(twin.kubeconfig_path());
    let old = scenario.vault("old");
    let token = old.root_token().unwrap();
    let active = SocketAddr::new(cluster_ip(&kubectl, "vault-active"), 8200);
    eventually(
        "vault-active to answer",
        Duration::from_secs(30),
        || async { yes(answers(active).await) },
    )
    .await;

    let probe = WriteProbe::start(
        vec![
            ProbePath {
                name: "domain".into(),
                endpoint: old.ingress_endpoint("https").unwrap(),
            },
            ProbePath {
                name: "vault-active".into(),
                endpoint: Endpoint::plain(active),
            },
        ],
        token,
        Duration::from_millis(50),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    // In-cluster clients blocked for a while, as a cutover does.
    let services: Api<Service> = Api::namespaced(common::client(twin, "old").await, "vault");
    let selector = services
        .get("vault-active")
        .await
        .unwrap()
        .spec
        .unwrap()
        .selector;
    set_selector(&services, None).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    set_selector(&services, selector.clone()).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let logs = probe.stop().await;

    let vault = old.pod_endpoint(0).unwrap();
    let reports = twin::probe::check(&logs, &vault, token).await;
    for report in &reports {
        println!("{report}");
    }
    let [domain, in_cluster] = reports.as_slice() else {
        panic!("one report per path: {reports:?}")
    };
    assert!(
        domain.acknowledged > 0 && in_cluster.acknowledged > 0,
        "{reports:?}"
    );
    assert!(
        domain.lost.is_empty() && in_cluster.lost.is_empty(),
        "{reports:?}"
    );
    assert!(
        in_cluster.refused > 0,
        "writes through the blocked Service were refused: {in_cluster}"
    );
    // The longest window covers the refused writes.
    let log = logs.iter().find(|l| l.name == "vault-active").unwrap();
    let refused: Vec<_> = log
        .attempts
        .iter()
        .filter(|a| a.refused.is_some())
        .collect();
    let (first, last) = (refused.first().unwrap(), refused.last().unwrap());
    assert!(
        in_cluster.window_from <= first.sent
            && in_cluster.window_from + in_cluster.longest_window >= last.answered,
        "{in_cluster}"
    );

    // An acknowledged write the Vault no longer holds is reported lost.
    let gone = log
        .attempts
        .iter()
        .find(|a| a.refused.is_none())
        .unwrap()
        .key
        .clone();
    let (code, _) = vault
        .json(
            "DELETE",
            &format!("/v1/secret/metadata/{gone}"),
            Some(token),
            None,
        )
        .await
        .unwrap();
    assert_eq!(code, 204);
    let reports = twin::probe::check(&logs, &vault, token).await;
    assert_eq!(reports[1].lost, vec![gone], "{}", reports[1]);
    assert!(reports[0].lost.is_empty(), "{}", reports[0]);
}

/// `kubectl exec POD -- nc -z -w N HOST PORT` runs the reachability probe from the pod's address
/// with the real kubectl (WebSocket): a listening port connects, a closed one is refused with
/// nc's message and exit code 1, a pod cut off the other clusters still reaches its own, and a
/// command the twin does not run exits 126.
#[tokio::test]
async fn kubectl_exec_runs_the_reachability_probe_from_the_pod() {
    let scenario = Scenario::start_async(one_vault())
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let kubectl = Kubectl::new(scenario.twin().kubeconfig_path());
    let pod_ip = kubectl.run(&[
        "--context",
        "old",
        "-n",
        "vault",
        "get",
        "pod",
        "vault-0",
        "-o",
        "jsonpath={.status.podIP}",
    ]);
    let exec = |args: &[&str]| {
        let mut all = vec![
            "--context",
            "old",
            "-n",
            "vault",
            "exec",
            "vault-0",
            "-c",
            "vault",
            "--",
        ];
        all.extend_from_slice(args);
        kubectl.output(&all)
    };
    let open = exec(&["nc", "-z", "-w", "2", &pod_ip, "8200"]);
    assert!(open.status.success(), "{open:?}");
    // The API server listens on loopback outside the pods' addresses: reached until the cut.
    let api = scenario.twin().cluster("old").url();
    let api_port = api
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let outside = exec(&["nc", "-z", "-w", "2", "127.0.0.1", &api_port]);
    assert!(outside.status.success(), "{outside:?}");
    let closed = exec(&["nc", "-z", "-w", "2", &pod_ip, "1"]);
    assert_eq!(closed.status.code(), Some(1), "{closed:?}");
    assert!(
        String::from_utf8_lossy(&closed.stderr).contains("Connection refused"),
        "{closed:?}"
    );
    scenario
        .twin()
        .cluster("old")
        .cut_pod_from_other_clusters("vault", "vault-0");
    let own = exec(&["nc", "-z", "-w", "2", &pod_ip, "8200"]);
    assert!(
        own.status.success(),
        "its own cluster's pods stay reachable: {own:?}"
    );
    let elsewhere = exec(&["nc", "-z", "-w", "1", "127.0.0.1", &api_port]);
    assert_eq!(elsewhere.status.code(), Some(1), "{elsewhere:?}");
    assert!(
        String::from_utf8_lossy(&elsewhere.stderr).contains("timed out"),
        "{elsewhere:?}"
    );
    let other = exec(&["ls", "/"]);
    assert_eq!(other.status.code(), Some(126), "{other:?}");
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("exec runs only `nc -z"),
        "{other:?}"
    );
}

/// `kubectl auth can-i` asks the twin (SelfSubjectAccessReview): yes by default, no for what a
/// fault denies.
#[tokio::test]
async fn kubectl_auth_can_i_answers_yes_unless_a_fault_denies() {
    let twin = twin::Twin::start(&["old"]).unwrap();
    let kubectl = Kubectl::new(twin.kubeconfig_path());
    let can_i = |args: &[&str]| {
        let mut all = vec!["--context", "old", "-n", "vault", "auth", "can-i"];
        all.extend_from_slice(args);
        kubectl.output(&all)
    };
    let yes = can_i(&["create", "pods", "--subresource=exec"]);
    assert!(yes.status.success(), "{yes:?}");
    assert_eq!(String::from_utf8_lossy(&yes.stdout).trim(), "yes");
    twin.cluster("old").deny("create", "pods/exec");
    twin.cluster("old").deny("update", "apps/statefulsets");
    for args in [
        &["create", "pods", "--subresource=exec"][..],
        &["update", "statefulsets.apps"][..],
    ] {
        let no = can_i(args);
        assert_eq!(no.status.code(), Some(1), "{args:?}: {no:?}");
        let answer = String::from_utf8_lossy(&no.stdout).to_string();
        assert!(
            answer.starts_with("no - the twin denies"),
            "{args:?}: {answer}"
        );
    }
    let other = can_i(&["delete", "pods"]);
    assert!(other.status.success(), "{other:?}");
}

/// `kubectl get` prints the server-side columns of the other kinds a rehearsal shows:
/// StatefulSets, ConfigMaps, Ingresses, EndpointSlices and Leases.
#[tokio::test]
async fn kubectl_get_prints_the_columns_of_the_other_kinds_a_rehearsal_shows() {
    let scenario = Scenario::start_async(one_vault())
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let kubectl = Kubectl::new(scenario.twin().kubeconfig_path());
    let get = |args: &[&str]| {
        let mut all = vec!["--context", "old", "-n", "vault", "get"];
        all.extend_from_slice(args);
        kubectl.run(&all)
    };
    let table = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .map(|line| line.split_whitespace().map(str::to_string).collect())
            .collect()
    };
    let statefulsets = table(&get(&["statefulsets", "-o", "wide"]));
    assert_eq!(
        statefulsets[0],
        ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"],
        "{statefulsets:?}"
    );
    assert_eq!(statefulsets[1][..2], ["vault", "1/1"], "{statefulsets:?}");
    assert_eq!(statefulsets[1][3], "vault", "{statefulsets:?}");
    let configmaps = table(&get(&["configmaps", "vault-config"]));
    assert_eq!(configmaps[0], ["NAME", "DATA", "AGE"]);
    assert_eq!(configmaps[1][..2], ["vault-config", "1"]);
    let ingresses = table(&get(&["ingresses"]));
    assert_eq!(
        ingresses[0],
        ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    );
    assert_eq!(ingresses[1][..3], ["vault", "nginx", "vault.old.test"]);
    assert_eq!(
        ingresses[1][3], "80",
        "no address: the PORTS column moves left"
    );
    let create = |object: serde_json::Value| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), object.to_string()).unwrap();
        kubectl.run(&[
            "--context",
            "old",
            "create",
            "-f",
            file.path().to_str().unwrap(),
        ]);
    };
    create(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "proxy", "namespace": "vault",
                     "labels": {"kubernetes.io/service-name": "proxy"}},
        "addressType": "IPv4",
        "ports": [{"name": "https", "port": 443, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["127.0.0.11"]}, {"addresses": ["127.0.0.12"]},
            {"addresses": ["127.0.0.13"]}, {"addresses": ["127.0.0.14"]},
        ],
    }));
    let slices = table(&get(&["endpointslices"]));
    assert_eq!(
        slices[0],
        ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
        "{slices:?}"
    );
    assert_eq!(
        slices[1][..6],
        [
            "proxy",
            "IPv4",
            "443",
            "127.0.0.11,127.0.0.12,127.0.0.13",
            "+",
            "1"
        ],
        "three addresses, then how many more: {slices:?}"
    );
    create(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "planx-run", "namespace": "vault"},
        "spec": {"holderIdentity": "run-1"},
    }));
    let leases = table(&get(&["leases"]));
    assert_eq!(leases[0], ["NAME", "HOLDER", "AGE"]);
    assert_eq!(leases[1][..2], ["planx-run", "run-1"]);
}

/// `kubectl get events` shows what the StatefulSet controller and the kubelet did: pods created,
/// assigned, started, stopped when deleted, and backing off when their container fails.
#[tokio::test]
async fn kubectl_get_events_shows_pods_created_started_stopped_and_failing() {
    let scenario = Scenario::start_async(one_vault())
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let kubectl = Kubectl::new(scenario.twin().kubeconfig_path());
    let events = || kubectl.run(&["--context", "old", "-n", "vault", "get", "events"]);
    let has = |text: &str, kind: &str, reason: &str, object: &str| {
        text.lines().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.get(1) == Some(&kind)
                && words.get(2) == Some(&reason)
                && words.get(3) == Some(&object)
        })
    };
    let listed = events();
    let header: Vec<&str> = listed.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{listed}"
    );
    for (reason, object) in [
        ("SuccessfulCreate", "statefulset/vault"),
        ("Scheduled", "pod/vault-0"),
        ("Started", "pod/vault-0"),
    ] {
        assert!(
            has(&listed, "Normal", reason, object),
            "{reason} {object}:\n{listed}"
        );
    }
    scenario
        .twin()
        .cluster("old")
        .fail_pod_start("vault", "vault-0");
    kubectl.run(&[
        "--context",
        "old",
        "-n",
        "vault",
        "delete",
        "pod",
        "vault-0",
        "--wait=false",
    ]);
    eventually(
        "the stop and the back-off to be recorded",
        Duration::from_secs(60),
        || async {
            let listed = events();
            let recorded = has(&listed, "Normal", "Killing", "pod/vault-0")
                && has(&listed, "Warning", "BackOff", "pod/vault-0");
            if recorded { Ok(()) } else { Err(listed) }
        },
    )
    .await;
}

/// `kubectl logs` shows the current container's log; after the container died and restarted in
/// the same pod, `--previous` shows the one before (refused before any restart); `-f` streams
/// what the container writes next.
#[tokio::test]
async fn kubectl_logs_previous_and_follow() {
    let scenario = Scenario::start_async(one_vault())
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let kubectl = Kubectl::new(scenario.twin().kubeconfig_path());
    let logs = |args: &[&str]| {
        let mut all = vec!["--context", "old", "-n", "vault", "logs", "vault-0"];
        all.extend_from_slice(args);
        kubectl.output(&all)
    };
    let none = logs(&["--previous"]);
    assert!(!none.status.success(), "{none:?}");
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("previous terminated container"),
        "{none:?}"
    );
    // The container dies; the kubelet starts it again in the same pod.
    let cluster = scenario.twin().cluster("old");
    let pid = cluster
        .pod_runtime("vault", "vault-0")
        .unwrap()
        .pid
        .unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    eventually(
        "the container to run again",
        Duration::from_secs(60),
        || async {
            match cluster.pod_runtime("vault", "vault-0").and_then(|r| r.pid) {
                Some(now) if now != pid => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let previous = logs(&["--previous"]);
    let previous = String::from_utf8_lossy(&previous.stdout).to_string();
    assert!(
        previous.contains("(uid ") && previous.contains("container exited with code"),
        "the first container, to its end: {previous}"
    );
    let current = String::from_utf8_lossy(&logs(&[]).stdout).to_string();
    assert_eq!(
        current.matches("=== twin: starting container").count(),
        1,
        "only the current container: {current}"
    );
    assert!(!current.contains("container exited with code"), "{current}");
    // Follow: the stream stays open and carries what is written after it started.
    let mut follow = kubectl
        .command(&["--context", "old", "-n", "vault", "logs", "-f", "vault-0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .take_while(|line| !line.contains("planx-follow-marker"))
            .count()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let path = cluster.pod_runtime("vault", "vault-0").unwrap().log;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    use std::io::Write as _;
    writeln!(file, "planx-follow-marker").unwrap();
    eventually(
        "the followed log to carry the new line",
        Duration::from_secs(10),
        || async {
            if lines.is_finished() {
                Ok(())
            } else {
                Err("still waiting".to_string())
            }
        },
    )
    .await;
    let _ = follow.kill();
    let _ = follow.wait();
}
