//! The ingress path of chapters 12 to 14: a proxy Service and EndpointSlice in OLD pointing at
//! NEW's gateway, OLD's Ingress rewritten by hand through kube-rs, and the OLD domain then
//! serving the NEW Vault (OpenBao), over HTTP and over HTTPS with the twin's CA.

mod common;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, PostParams};
use serde_json::json;
use twin::{ClusterPlan, Init, Scenario, ScenarioOptions};

#[tokio::test]
async fn the_old_domain_reaches_the_new_vault_through_the_proxy() {
    let scenario = Scenario::start_async(ScenarioOptions::with_clusters(vec![
        ClusterPlan {
            replicas: 1,
            ..ClusterPlan::new("old", Init::None)
        },
        ClusterPlan {
            replicas: 1,
            ..ClusterPlan::new("new", Init::WithData { secrets: 3 })
        },
    ]))
    .await
    .unwrap_or_else(|why| panic!("{why}"));
    let old = scenario.vault("old");
    let new = scenario.vault("new");
    let new_token = new.root_token().unwrap();
    let old_domain = old.ingress_endpoint("http").unwrap();
    assert_eq!(old_domain.host, "vault.old.test");
    let (code, answer) = old_domain
        .json("GET", "/v1/sys/health", None, None)
        .await
        .unwrap();
    assert_eq!(code, 503, "OLD's only pod is sealed, so NotReady: {answer}");
    let (_, new_status) = new
        .ingress_endpoint("http")
        .unwrap()
        .json("GET", "/v1/sys/seal-status", None, None)
        .await
        .unwrap();
    let new_cluster_id = new_status["cluster_id"].as_str().unwrap().to_string();

    // Chapter 12: a selectorless Service and its EndpointSlice, pointing at NEW's gateway.
    let client = common::client(scenario.twin(), "old").await;
    let gateway = new.gateway().unwrap().https;
    let services: Api<Service> = Api::namespaced(client.clone(), "vault");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "vault-migration-proxy"},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": gateway.port()}]},
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "vault");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {
            "name": "vault-migration-proxy-1",
            "labels": {"kubernetes.io/service-name": "vault-migration-proxy"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "https", "port": gateway.port(), "protocol": "TCP"}],
        "endpoints": [{"addresses": [gateway.ip().to_string()], "conditions": {"ready": true}}],
    }))
    .unwrap();
    slices.create(&PostParams::default(), &slice).await.unwrap();

    // Chapter 13: the Ingress goes to the proxy over HTTPS with the new host.
    let ingresses: Api<Ingress> = Api::namespaced(client, "vault");
    let mut ingress = ingresses.get("vault").await.unwrap();
    let annotations = ingress
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(
        "nginx.ingress.kubernetes.io/backend-protocol".to_string(),
        "HTTPS".to_string(),
    );
    annotations.insert(
        "nginx.ingress.kubernetes.io/upstream-vhost".to_string(),
        "vault.new.test".to_string(),
    );
    let rule = &mut ingress.spec.as_mut().unwrap().rules.as_mut().unwrap()[0];
    let backend = &mut rule.http.as_mut().unwrap().paths[0].backend;
    *backend = serde_json::from_value(json!({
        "service": {"name": "vault-migration-proxy", "port": {"number": 443}},
    }))
    .unwrap();
    ingresses
        .replace("vault", &PostParams::default(), &ingress)
        .await
        .unwrap();

    // Chapter 14: the old domain serves the new Vault, over HTTP and HTTPS.
    for scheme in ["http", "https"] {
        let endpoint = old.ingress_endpoint(scheme).unwrap();
        let (code, status) = endpoint
            .json("GET", "/v1/sys/seal-status", None, None)
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e}"));
        assert_eq!(code, 200, "{scheme}: {status}");
        assert_eq!(status["cluster_id"], new_cluster_id.as_str(), "{scheme}");
        let (code, secret) = endpoint
            .json("GET", "/v1/secret/data/app/s001", Some(new_token), None)
            .await
            .unwrap();
        assert_eq!(code, 200, "{scheme}: {secret}");
        assert_eq!(secret["data"]["data"]["value"], "v-001");
    }

    // ssl-redirect as ingress-nginx reads it: without a `tls` entry for the host it does
    // nothing; with one, plain HTTP gets 308 to HTTPS unless it is "false";
    // force-ssl-redirect redirects without TLS. HTTPS is never redirected.
    let gateway_http = old.gateway().unwrap().http;
    let redirect = || {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
            ])
            .args(["--noproxy", "*", "--connect-to"])
            .arg(format!(
                "vault.old.test:80:{}:{}",
                gateway_http.ip(),
                gateway_http.port()
            ))
            .arg("http://vault.old.test/v1/sys/seal-status?x=1")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let set = |annotations: serde_json::Value, tls: bool| {
        let ingresses = ingresses.clone();
        async move {
            let mut ingress = ingresses.get("vault").await.unwrap();
            let map = ingress
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            for (name, value) in annotations.as_object().unwrap() {
                match value.as_str() {
                    Some(value) => map.insert(name.clone(), value.to_string()),
                    None => map.remove(name),
                };
            }
            ingress.spec.as_mut().unwrap().tls = tls.then(|| {
                serde_json::from_value(
                    json!([{"hosts": ["vault.old.test"], "secretName": "vault-tls"}]),
                )
                .unwrap()
            });
            ingresses
                .replace("vault", &PostParams::default(), &ingress)
                .await
                .unwrap();
        }
    };
    let ssl = "nginx.ingress.kubernetes.io/ssl-redirect";
    let force = "nginx.ingress.kubernetes.io/force-ssl-redirect";
    set(json!({ssl: "true"}), false).await;
    assert!(
        redirect().starts_with("200"),
        "no TLS, no redirect: {}",
        redirect()
    );
    set(json!({ssl: null}), true).await;
    assert_eq!(
        redirect(),
        "308 https://vault.old.test/v1/sys/seal-status?x=1",
        "TLS for the host redirects by default"
    );
    let (code, _) = old
        .ingress_endpoint("https")
        .unwrap()
        .json("GET", "/v1/sys/seal-status", None, None)
        .await
        .unwrap();
    assert_eq!(code, 200, "HTTPS is served");
    set(json!({ssl: "false"}), true).await;
    assert!(redirect().starts_with("200"), "{}", redirect());
    set(json!({ssl: null, force: "true"}), false).await;
    assert!(redirect().starts_with("308 https://"), "{}", redirect());

    // A host no Ingress names gets the default backend's 404.
    let mut unknown = old.ingress_endpoint("http").unwrap();
    unknown.host = "nobody.test".to_string();
    let (code, _) = unknown.bytes("GET", "/", None, None).await.unwrap();
    assert_eq!(code, 404);
}
