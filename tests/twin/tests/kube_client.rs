//! The kube-rs client against the twin: every verb, conflicts, patches, selectors, subresources,
//! watches and the `Status` bodies of errors.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{client, raw, status_of};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent,
    WatchParams,
};
use kube::runtime::watcher;
use serde_json::{Value, json};
use twin::{Fault, Twin, TwinOptions, Verb};

fn configmap(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        },
        "data": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    }))
    .unwrap()
}

fn statefulset(name: &str, replicas: i32) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "serviceName": format!("{name}-internal"),
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [
                    {"name": "vault", "image": "hashicorp/vault:1.14", "args": ["server"],
                     "env": [{"name": "A", "value": "1"}]},
                    {"name": "sidecar", "image": "busybox"}
                ]}
            }
        }
    }))
    .unwrap()
}

fn resource_version(object: &impl kube::Resource) -> u64 {
    object
        .meta()
        .resource_version
        .as_deref()
        .expect("objects carry a resourceVersion")
        .parse()
        .expect("resourceVersions are decimal")
}

#[tokio::test]
async fn create_get_list_replace_delete_keep_server_metadata() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&twin, "old").await, "default");

    let created = api
        .create(&PostParams::default(), &configmap("a", &[], &[("k", "v")]))
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    assert_eq!(uid.len(), 36, "uid is a UUID: {uid}");
    assert_eq!(&uid[14..15], "4", "uid is a version 4 UUID: {uid}");
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(
        created.metadata.generation, None,
        "ConfigMaps have no generation"
    );

    let again = status_of(
        api.create(&PostParams::default(), &configmap("a", &[], &[]))
            .await,
    );
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(again.message, "configmaps \"a\" already exists");

    let fetched = api.get("a").await.unwrap();
    assert_eq!(fetched.data, created.data);
    assert_eq!(fetched.metadata.uid, created.metadata.uid);

    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let list_version: u64 = list
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(list_version >= resource_version(&created));

    let mut changed = fetched.clone();
    changed.data = Some(BTreeMap::from([("k".to_string(), "v2".to_string())]));
    let replaced = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert!(resource_version(&replaced) > resource_version(&created));
    assert_eq!(replaced.metadata.uid, created.metadata.uid);
    assert_eq!(
        replaced.metadata.creation_timestamp,
        created.metadata.creation_timestamp
    );

    let stale = status_of(api.replace("a", &PostParams::default(), &changed).await);
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(
        stale.message.contains("the object has been modified"),
        "{}",
        stale.message
    );

    let unchanged = api
        .replace("a", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(
        unchanged.metadata.resource_version, replaced.metadata.resource_version,
        "a no-op update keeps the resourceVersion"
    );

    let deleted = api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_left(), "delete answers the deleted object");
    let missing = status_of(api.get("a").await);
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"a\" not found");
    let details = missing.details.expect("NotFound carries details");
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("a", "configmaps")
    );
}

#[tokio::test]
async fn all_namespace_lists_and_namespace_lifecycle() {
    let twin = Twin::start(&["old"]).unwrap();
    let client = client(&twin, "old").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"default".to_string()), "{names:?}");

    let in_missing: Api<ConfigMap> = Api::namespaced(client.clone(), "vault");
    let error = status_of(
        in_missing
            .create(&PostParams::default(), &configmap("x", &[], &[]))
            .await,
    );
    assert_eq!((error.code, error.reason.as_str()), (404, "NotFound"));
    assert_eq!(error.message, "namespaces \"vault\" not found");

    let created = namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "vault"}})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Active"));
    in_missing
        .create(&PostParams::default(), &configmap("x", &[], &[]))
        .await
        .unwrap();
    Api::<ConfigMap>::default_namespaced(client.clone())
        .create(&PostParams::default(), &configmap("y", &[], &[]))
        .await
        .unwrap();

    let everywhere: Api<ConfigMap> = Api::all(client.clone());
    let mut found: Vec<(String, String)> = everywhere
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| (c.metadata.namespace.unwrap(), c.metadata.name.unwrap()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![("default".into(), "y".into()), ("vault".into(), "x".into())]
    );

    namespaces
        .delete("vault", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        in_missing.get_opt("x").await.unwrap().is_none(),
        "deleting a namespace deletes its objects"
    );
    let forbidden = status_of(namespaces.delete("default", &DeleteParams::default()).await);
    assert_eq!(
        (forbidden.code, forbidden.reason.as_str()),
        (403, "Forbidden")
    );
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    for (name, labels) in [
        ("a", vec![("app", "vault"), ("tier", "db")]),
        ("b", vec![("app", "vault"), ("tier", "web")]),
        ("c", vec![("app", "consul")]),
        ("d", vec![]),
    ] {
        api.create(&PostParams::default(), &configmap(name, &labels, &[]))
            .await
            .unwrap();
    }
    let names = |selector: &'static str| {
        let api = api.clone();
        async move {
            api.list(&ListParams::default().labels(selector))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| c.metadata.name.unwrap())
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    assert_eq!(names("app=vault").await, "a,b");
    assert_eq!(names("app==vault").await, "a,b");
    assert_eq!(names("app!=vault").await, "c,d");
    assert_eq!(names("tier in (db,cache)").await, "a");
    assert_eq!(names("tier notin (db)").await, "b,c,d");
    assert_eq!(names("tier").await, "a,b");
    assert_eq!(names("!tier").await, "c,d");
    assert_eq!(names("app=vault,tier!=db").await, "b");
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=c"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);

    let bad = status_of(
        api.list(&ListParams::default().labels("app in vault"))
            .await,
    );
    assert_eq!((bad.code, bad.reason.as_str()), (400, "BadRequest"));
}

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let twin = Twin::start(&["old"]).unwrap();
    let client = client(&twin, "old").await;
    let configmaps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    configmaps
        .create(
            &PostParams::default(),
            &configmap("c", &[], &[("a", "1"), ("b", "2")]),
        )
        .await
        .unwrap();

    let merged = configmaps
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.data.unwrap(),
        BTreeMap::from([("b".into(), "2".into()), ("c".into(), "3".into())])
    );

    let json_patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/b", "value": "2"},
        {"op": "replace", "path": "/data/b", "value": "20"}
    ]))
    .unwrap();
    let patched = configmaps
        .patch("c", &PatchParams::default(), &Patch::Json::<()>(json_patch))
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["b"], "20");
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/b", "value": "2"}])).unwrap();
    let failed = status_of(
        configmaps
            .patch("c", &PatchParams::default(), &Patch::Json::<()>(failing))
            .await,
    );
    assert_eq!((failed.code, failed.reason.as_str()), (422, "Invalid"));

    let stale = status_of(
        configmaps
            .patch(
                "c",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"x": "1"}})),
            )
            .await,
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));

    let statefulsets: Api<StatefulSet> = Api::default_namespaced(client);
    let created = statefulsets
        .create(&PostParams::default(), &statefulset("vault", 3))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let patched = statefulsets
        .patch(
            "vault",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "vault", "args": ["sleep", "infinity"], "env": [{"name": "B", "value": "2"}]}
            ]}}}})),
        )
        .await
        .unwrap();
    let containers = patched
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers
        .clone();
    assert_eq!(containers.len(), 2, "containers merge by name");
    assert_eq!(
        containers[0].args.as_deref(),
        Some(&["sleep".to_string(), "infinity".to_string()][..])
    );
    assert_eq!(containers[0].image.as_deref(), Some("hashicorp/vault:1.14"));
    let env: Vec<&str> = containers[0]
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["A", "B"], "env merges by name");
    assert_eq!(
        patched.metadata.generation,
        Some(2),
        "a spec change bumps the generation"
    );

    let labelled = statefulsets
        .patch(
            "vault",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(2),
        "a metadata change keeps the generation"
    );
}

#[tokio::test]
async fn server_side_apply_creates_then_merges_and_records_the_manager() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    let params = PatchParams::apply("planx");
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}});
    let created = api
        .patch("cfg", &params, &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(created.data.as_ref().unwrap()["a"], "1");
    let managed = created.metadata.managed_fields.unwrap();
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0].manager.as_deref(), Some("planx"));
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));

    let again = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"b": "2"}});
    let merged = api
        .patch("cfg", &params, &Patch::Apply(&again))
        .await
        .unwrap();
    assert_eq!(
        merged.data.unwrap().len(),
        2,
        "apply merges into the live object"
    );
    assert_eq!(
        merged.metadata.managed_fields.unwrap().len(),
        1,
        "one entry per manager"
    );

    let no_manager = status_of(
        api.patch("cfg", &PatchParams::default(), &Patch::Apply(&again))
            .await,
    );
    assert_eq!(no_manager.code, 400);
}

#[tokio::test]
async fn status_subresource_is_separate_from_the_main_resource() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<StatefulSet> = Api::default_namespaced(client(&twin, "old").await);
    let mut with_status = statefulset("vault", 3);
    with_status.status = Some(serde_json::from_value(json!({"replicas": 7})).unwrap());
    let created = api
        .create(&PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(
        created.status.as_ref().unwrap().replicas,
        0,
        "create resets status"
    );

    let patched = api
        .patch_status(
            "vault",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 3, "readyReplicas": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.status.as_ref().unwrap().ready_replicas, Some(2));
    assert_eq!(
        patched.metadata.generation,
        Some(1),
        "status changes keep the generation"
    );

    let mut main_update = api.get("vault").await.unwrap();
    main_update.status.as_mut().unwrap().ready_replicas = Some(0);
    main_update.spec.as_mut().unwrap().replicas = Some(4);
    let updated = api
        .replace("vault", &PostParams::default(), &main_update)
        .await
        .unwrap();
    assert_eq!(
        updated.status.as_ref().unwrap().ready_replicas,
        Some(2),
        "the main resource ignores status"
    );
    assert_eq!(updated.spec.as_ref().unwrap().replicas, Some(4));

    let mut status_update = api.get_status("vault").await.unwrap();
    status_update.status.as_mut().unwrap().ready_replicas = Some(3);
    status_update.spec.as_mut().unwrap().replicas = Some(9);
    let replaced = api
        .replace_status("vault", &PostParams::default(), &status_update)
        .await
        .unwrap();
    assert_eq!(replaced.status.as_ref().unwrap().ready_replicas, Some(3));
    assert_eq!(
        replaced.spec.as_ref().unwrap().replicas,
        Some(4),
        "status updates ignore spec"
    );
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_replicas() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<StatefulSet> = Api::default_namespaced(client(&twin, "old").await);
    api.create(&PostParams::default(), &statefulset("vault", 3))
        .await
        .unwrap();
    let scale = api.get_scale("vault").await.unwrap();
    assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(
        scale.status.as_ref().unwrap().selector.as_deref(),
        Some("app=vault")
    );

    let patched = api
        .patch_scale(
            "vault",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(5));
    assert_eq!(
        api.get("vault").await.unwrap().spec.unwrap().replicas,
        Some(5)
    );

    let mut replacement = api.get_scale("vault").await.unwrap();
    replacement.spec.as_mut().unwrap().replicas = Some(1);
    let replaced = api
        .replace_scale("vault", &PostParams::default(), &replacement)
        .await
        .unwrap();
    assert_eq!(replaced.spec.unwrap().replicas, Some(1));
    let stale = status_of(
        api.replace_scale("vault", &PostParams::default(), &replacement)
            .await,
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
}

#[tokio::test]
async fn delete_preconditions_and_delete_collection() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    let created = api
        .create(&PostParams::default(), &configmap("p", &[], &[]))
        .await
        .unwrap();
    let wrong_uid = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let conflict = status_of(api.delete("p", &wrong_uid).await);
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert!(
        conflict
            .message
            .contains("Precondition failed: UID in precondition: not-the-uid"),
        "{}",
        conflict.message
    );
    let wrong_version = DeleteParams {
        preconditions: Some(Preconditions {
            uid: None,
            resource_version: Some("1".into()),
        }),
        ..DeleteParams::default()
    };
    assert_eq!(status_of(api.delete("p", &wrong_version).await).code, 409);
    let right = DeleteParams {
        preconditions: Some(Preconditions {
            uid: created.metadata.uid.clone(),
            resource_version: created.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    api.delete("p", &right).await.unwrap();
    assert!(api.get_opt("p").await.unwrap().is_none());

    for (name, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
        api.create(
            &PostParams::default(),
            &configmap(name, &[("app", app)], &[]),
        )
        .await
        .unwrap();
    }
    let deleted = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=x"),
        )
        .await
        .unwrap();
    let deleted_names: Vec<String> = deleted
        .left()
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(deleted_names, ["a", "b"]);
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(left, ["c"]);
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    let mut held = configmap("held", &[], &[]);
    held.metadata.finalizers = Some(vec!["twin.test/hold".into()]);
    api.create(&PostParams::default(), &held).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = api.get("held").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        api.get_opt("held").await.unwrap().is_none(),
        "removing the last finalizer deletes"
    );
}

#[tokio::test]
async fn watch_reports_changes_in_order_from_a_resource_version() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(&PostParams::default(), &configmap("w", &[], &[("k", "1")]))
        .await
        .unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();

    let stream = api
        .watch(&WatchParams::default().timeout(30), &start)
        .await
        .unwrap();
    let events: Vec<WatchEvent<ConfigMap>> = stream.take(3).try_collect().await.unwrap();
    let summary: Vec<(String, u64)> = events
        .iter()
        .map(|event| match event {
            WatchEvent::Added(c) => ("ADDED".to_string(), resource_version(c)),
            WatchEvent::Modified(c) => ("MODIFIED".to_string(), resource_version(c)),
            WatchEvent::Deleted(c) => ("DELETED".to_string(), resource_version(c)),
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    assert_eq!(
        summary.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["ADDED", "MODIFIED", "DELETED"]
    );
    assert!(
        summary.windows(2).all(|pair| pair[0].1 < pair[1].1),
        "resourceVersions increase: {summary:?}"
    );
}

#[tokio::test]
async fn watch_from_now_sends_existing_objects_then_live_changes() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    api.create(&PostParams::default(), &configmap("before", &[], &[]))
        .await
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(30), "0")
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(c) => assert_eq!(c.metadata.name.as_deref(), Some("before")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    api.create(&PostParams::default(), &configmap("after", &[], &[]))
        .await
        .unwrap();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(c) => assert_eq!(c.metadata.name.as_deref(), Some("after")),
        other => panic!("expected ADDED, got {other:?}"),
    }
}

#[tokio::test]
async fn selective_watches_see_objects_leave_and_enter_their_selection() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(
        &PostParams::default(),
        &configmap("s", &[("app", "vault")], &[]),
    )
    .await
    .unwrap();
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "s",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "vault"}}})),
    )
    .await
    .unwrap();
    let stream = api
        .watch(
            &WatchParams::default().labels("app=vault").timeout(30),
            &start,
        )
        .await
        .unwrap();
    let events: Vec<WatchEvent<ConfigMap>> = stream.take(3).try_collect().await.unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            _ => "OTHER",
        })
        .collect();
    assert_eq!(kinds, ["ADDED", "DELETED", "ADDED"]);
}

#[tokio::test]
async fn watch_ends_at_its_timeout_with_a_bookmark() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    let start = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let began = Instant::now();
    let events: Vec<WatchEvent<ConfigMap>> = api
        .watch(&WatchParams::default().timeout(1), &start)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        began.elapsed() >= Duration::from_secs(1),
        "the watch lasted its timeout"
    );
    assert!(
        matches!(events.as_slice(), [WatchEvent::Bookmark(b)] if b.metadata.resource_version == start)
    );
}

#[tokio::test]
async fn watch_from_a_version_older_than_the_history_is_expired() {
    let mut options = TwinOptions::new(&["old"]);
    options.history_capacity = 2;
    let twin = Twin::start_with(options).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    for name in ["a", "b", "c", "d"] {
        api.create(&PostParams::default(), &configmap(name, &[], &[]))
            .await
            .unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default().timeout(30), "1")
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected a 410 error event, got {other:?}"),
    }
}

#[tokio::test]
async fn runtime_watcher_lists_then_follows() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    api.create(&PostParams::default(), &configmap("first", &[], &[]))
        .await
        .unwrap();
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut initial = Vec::new();
    loop {
        match events.try_next().await.unwrap().unwrap() {
            watcher::Event::Init => {}
            watcher::Event::InitApply(c) => initial.push(c.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?} before InitDone"),
        }
    }
    assert_eq!(initial, ["first"]);
    api.create(&PostParams::default(), &configmap("second", &[], &[]))
        .await
        .unwrap();
    api.delete("first", &DeleteParams::default()).await.unwrap();
    match events.try_next().await.unwrap().unwrap() {
        watcher::Event::Apply(c) => assert_eq!(c.metadata.name.as_deref(), Some("second")),
        other => panic!("expected Apply(second), got {other:?}"),
    }
    match events.try_next().await.unwrap().unwrap() {
        watcher::Event::Delete(c) => assert_eq!(c.metadata.name.as_deref(), Some("first")),
        other => panic!("expected Delete(first), got {other:?}"),
    }
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_then_a_bookmark() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    api.create(&PostParams::default(), &configmap("first", &[], &[]))
        .await
        .unwrap();
    let mut events = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = Vec::new();
    loop {
        match events.try_next().await.unwrap().unwrap() {
            watcher::Event::Init => {}
            watcher::Event::InitApply(c) => initial.push(c.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?} before InitDone"),
        }
    }
    assert_eq!(initial, ["first"]);
    api.create(&PostParams::default(), &configmap("second", &[], &[]))
        .await
        .unwrap();
    match events.try_next().await.unwrap().unwrap() {
        watcher::Event::Apply(c) => assert_eq!(c.metadata.name.as_deref(), Some("second")),
        other => panic!("expected Apply(second), got {other:?}"),
    }
}

#[tokio::test]
async fn every_served_kind_round_trips_through_typed_clients() {
    let twin = Twin::start(&["old"]).unwrap();
    let client = client(&twin, "old").await;
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "s"}, "stringData": {"token": "hello"}}),
    )
    .unwrap();
    let secret = Api::<Secret>::default_namespaced(client.clone())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    assert_eq!(
        secret.data.unwrap()["token"].0,
        b"hello",
        "stringData is stored as data"
    );
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));

    let service: Service = serde_json::from_value(json!({"metadata": {"name": "vault"}, "spec": {
        "selector": {"app": "vault"}, "ports": [{"name": "https", "port": 8200}]}}))
    .unwrap();
    let service = Api::<Service>::default_namespaced(client.clone())
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let spec = service.spec.unwrap();
    // A twin without workloads has no slot: ClusterIPs come from a loopback range outside
    // every slot, so nothing a test runs is ever pointed off loopback.
    assert_eq!(spec.cluster_ip.as_deref(), Some("127.254.14.1"));
    assert_eq!(
        spec.ports.clone().unwrap()[0].protocol.as_deref(),
        Some("TCP")
    );
    // A replacement that leaves the allocated address out keeps it (a Service put back from a
    // record), as the API server does.
    let services = Api::<Service>::default_namespaced(client.clone());
    let mut without_address: Service =
        serde_json::from_value(json!({"metadata": {"name": "vault"}, "spec": {
        "ports": [{"name": "https", "port": 8200}]}}))
        .unwrap();
    without_address.metadata.resource_version = service.metadata.resource_version.clone();
    let replaced = services
        .replace("vault", &PostParams::default(), &without_address)
        .await
        .unwrap();
    let replaced = replaced.spec.unwrap();
    assert_eq!(replaced.cluster_ip.as_deref(), Some("127.254.14.1"));
    assert_eq!(replaced.selector, None, "the rest is replaced");

    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "vault-0"}, "spec": {"containers": [{"name": "vault", "image": "v"}]}})).unwrap();
    let pod = Api::<Pod>::default_namespaced(client.clone())
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Pending"));

    let ingress: Ingress = serde_json::from_value(json!({"metadata": {"name": "vault"}, "spec": {"rules": [{"host": "vault.example", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "vault", "port": {"number": 8200}}}}]}}]}})).unwrap();
    Api::<Ingress>::default_namespaced(client.clone())
        .create(&PostParams::default(), &ingress)
        .await
        .unwrap();

    let slice: EndpointSlice = serde_json::from_value(json!({"metadata": {"name": "proxy", "labels": {"kubernetes.io/service-name": "proxy"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["127.0.2.1"]}], "ports": [{"name": "https", "port": 443}]})).unwrap();
    Api::<EndpointSlice>::default_namespaced(client.clone())
        .create(&PostParams::default(), &slice)
        .await
        .unwrap();

    let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "vault"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "vault"}}}})).unwrap();
    let pdb = Api::<PodDisruptionBudget>::default_namespaced(client.clone())
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap();
    assert_eq!(pdb.metadata.generation, Some(1));

    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "planx-lock"}, "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}})).unwrap();
    Api::<Lease>::default_namespaced(client.clone())
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();

    let generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "run-"}})).unwrap();
    let generated = Api::<ConfigMap>::default_namespaced(client.clone())
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = generated.metadata.name.unwrap();
    assert!(name.starts_with("run-") && name.len() == 9, "{name}");

    assert_eq!(
        Api::<Ingress>::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        Api::<EndpointSlice>::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        Api::<Lease>::all(client)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answered = api
        .create(&params, &configmap("dry", &[], &[]))
        .await
        .unwrap();
    assert_eq!(answered.metadata.name.as_deref(), Some("dry"));
    assert!(api.get_opt("dry").await.unwrap().is_none());
}

#[tokio::test]
async fn clusters_are_independent() {
    let twin = Twin::start(&["old", "new"]).unwrap();
    let old: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    let new: Api<ConfigMap> = Api::default_namespaced(client(&twin, "new").await);
    old.create(&PostParams::default(), &configmap("only-old", &[], &[]))
        .await
        .unwrap();
    assert!(new.get_opt("only-old").await.unwrap().is_none());
    assert_ne!(twin.cluster("old").url(), twin.cluster("new").url());
}

#[tokio::test]
async fn bad_requests_get_status_bodies_not_panics() {
    let twin = Twin::start(&["old"]).unwrap();
    let url = twin.cluster("old").url();
    let collection = "/api/v1/namespaces/default/configmaps";
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, &str, u16, &str)] = &[
        ("POST", collection, "application/json", "{not json", 400, "BadRequest"),
        ("POST", collection, "application/json", "[1, 2]", 400, "BadRequest"),
        ("POST", collection, "application/json", r#"{"kind": "Secret", "metadata": {"name": "x"}}"#, 400, "BadRequest"),
        ("POST", collection, "application/json", r#"{"metadata": {"name": "Bad_Name"}}"#, 422, "Invalid"),
        ("POST", collection, "application/json", r#"{"metadata": {"labels": {"a": 1}, "name": "x"}}"#, 400, "BadRequest"),
        ("POST", collection, "application/vnd.kubernetes.protobuf", "k8s", 400, "BadRequest"),
        ("POST", "/api/v1/namespaces/default/pods", "application/vnd.kubernetes.protobuf", "k8s", 415, "UnsupportedMediaType"),
        ("PUT", "/api/v1/namespaces/default/configmaps/x", "application/vnd.kubernetes.protobuf", "k8s", 415, "UnsupportedMediaType"),
        ("POST", "/api/v1/namespaces/default/configmaps/x", "application/json", "{}", 405, "MethodNotAllowed"),
        ("PATCH", "/api/v1/namespaces/default/configmaps/x", "text/plain", "{}", 415, "UnsupportedMediaType"),
        ("GET", "/api/v1/namespaces/default/widgets", "application/json", "", 404, "NotFound"),
        ("GET", "/apis/apps/v1/namespaces/default/configmaps", "application/json", "", 404, "NotFound"),
        ("GET", "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=abc", "application/json", "", 400, "BadRequest"),
        ("GET", "/api/v1/namespaces/default/configmaps?fieldSelector=nonsense", "application/json", "", 400, "BadRequest"),
        ("GET", "/api/v1/namespaces/default/pods/p/portforward?ports=80", "", "", 404, "NotFound"),
    ];
    for (method, path, content_type, body, code, reason) in cases {
        let (got_code, status) = raw(&url, method, path, content_type, body);
        assert_eq!(
            (
                got_code,
                status["kind"].as_str(),
                status["reason"].as_str(),
                status["code"].as_u64()
            ),
            (*code, Some("Status"), Some(*reason), Some(u64::from(*code))),
            "{method} {path} {body}: {status}"
        );
    }
    let (code, _) = raw(&url, "GET", "/version", "application/json", "");
    assert_eq!(code, 200, "the server still serves after bad requests");
}

#[tokio::test]
async fn hostile_bodies_never_crash_the_server() {
    let twin = Twin::start(&["old"]).unwrap();
    let url = twin.cluster("old").url();
    let ns = "/api/v1/namespaces/default";
    let sts = "/apis/apps/v1/namespaces/default/statefulsets";
    let json = "application/json";
    let merge = "application/merge-patch+json";
    let strategic = "application/strategic-merge-patch+json";
    #[rustfmt::skip]
    let requests: &[(&str, String, &str, &str, u16)] = &[
        ("POST", format!("{ns}/configmaps"), json, r#"{"metadata": {"name": "x"}}"#, 201),
        ("POST", sts.to_string(), json, r#"{"metadata": {"name": "s"}, "spec": {"replicas": 1}}"#, 201),
        ("POST", format!("{ns}/services"), json, r#"{"metadata": {"name": "svc"}, "spec": {"ports": [5, {"port": 80}]}}"#, 201),
        ("POST", format!("{ns}/pods"), json, r#"{"metadata": {"name": "p"}, "spec": null}"#, 201),
        ("POST", sts.to_string(), json, r#"{"metadata": {"name": "t"}, "spec": "x"}"#, 400),
        ("PATCH", format!("{ns}/configmaps/x"), "application/json-patch+json", r#"[{"op": "replace", "path": "", "value": 5}]"#, 400),
        ("PATCH", format!("{ns}/configmaps/x"), "application/json-patch+json", r#"{"op": "nope"}"#, 422),
        ("PATCH", format!("{ns}/configmaps/x"), merge, r#"{"metadata": "x"}"#, 400),
        ("PATCH", format!("{ns}/configmaps/x"), merge, "5", 400),
        ("PATCH", format!("{ns}/configmaps/x"), strategic, r#"{"metadata": {"labels": "x"}}"#, 400),
        ("PATCH", format!("{ns}/configmaps/x"), strategic, "[1]", 400),
        ("PATCH", format!("{ns}/configmaps/x"), strategic, r#"{"data": {"$patch": "explode"}}"#, 400),
        ("PATCH", format!("{ns}/configmaps/x?fieldManager=m"), "application/apply-patch+yaml", "a: [", 400),
        ("PATCH", format!("{ns}/configmaps/x?fieldManager=m"), "application/apply-patch+yaml", "kind: Secret", 400),
        ("PUT", format!("{ns}/configmaps/x"), json, r#"{"metadata": {"name": "y"}}"#, 400),
        ("PATCH", format!("{sts}/s/scale"), merge, r#"{"spec": {"replicas": "x"}}"#, 422),
        ("PUT", format!("{sts}/s/scale"), json, "5", 422),
        ("DELETE", format!("{ns}/configmaps/x"), json, "garbage", 400),
        ("GET", format!("{ns}/configmaps?labelSelector=%ZZ"), json, "", 400),
        ("GET", format!("{ns}/configmaps?watch=1&timeoutSeconds=-1"), json, "", 400),
        ("PATCH", format!("{ns}/configmaps/x/status"), merge, "{}", 404),
        ("GET", format!("{ns}/pods/p/portforward?ports=0"), json, "", 400),
    ];
    for (method, path, content_type, body, code) in requests {
        let (got, answer) = raw(&url, method, path, content_type, body);
        assert_eq!(got, *code, "{method} {path} {body}: {answer}");
    }
    let (code, _) = raw(&url, "GET", "/version", "", "");
    assert_eq!(code, 200, "the server still serves");
}

#[tokio::test]
async fn discovery_documents_describe_the_served_resources() {
    let twin = Twin::start(&["old"]).unwrap();
    let url = twin.cluster("old").url();
    let (_, apps) = raw(&url, "GET", "/apis/apps/v1", "", "");
    let names: Vec<&str> = apps["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["statefulsets", "statefulsets/status", "statefulsets/scale"]
    );
    assert_eq!(apps["resources"][0]["shortNames"], json!(["sts"]));
    let (_, groups) = raw(&url, "GET", "/apis", "", "");
    let group_names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        group_names,
        [
            "apps",
            "networking.k8s.io",
            "discovery.k8s.io",
            "policy",
            "authorization.k8s.io",
            "coordination.k8s.io"
        ]
    );
    let (_, index) = raw(&url, "GET", "/openapi/v3", "", "");
    let apps_url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, document) = raw(&url, "GET", &apps_url, "", "");
    let patch =
        &document["paths"]["/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "StatefulSet"
    );
    assert_eq!(patch["parameters"][0]["name"], "fieldValidation");
    let value: Value = raw(&url, "GET", "/version", "", "").1;
    assert_eq!(value["major"], "1");
}

#[tokio::test]
async fn injected_faults_fail_the_chosen_requests_then_stop() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    api.create(&PostParams::default(), &configmap("f", &[], &[]))
        .await
        .unwrap();
    twin.cluster("old").inject(
        Fault::error(500, "InternalError")
            .on(Verb::Get)
            .path("/api/v1/namespaces/default/configmaps/f")
            .times(2),
    );
    assert!(
        api.list(&ListParams::default()).await.is_ok(),
        "other verbs are untouched"
    );
    for _ in 0..2 {
        let failure = status_of(api.get("f").await);
        assert_eq!(
            (failure.code, failure.reason.as_str()),
            (500, "InternalError")
        );
    }
    assert!(api.get("f").await.is_ok(), "the fault is used up");

    twin.cluster("old").inject(
        Fault::error(500, "InternalError")
            .on(Verb::Patch)
            .message("etcd is sad"),
    );
    let failure = status_of(
        api.patch("f", &PatchParams::default(), &Patch::Merge(json!({})))
            .await,
    );
    assert_eq!(
        (failure.code, failure.message.as_str()),
        (500, "etcd is sad")
    );
    twin.cluster("old").faults().clear();
    assert!(
        api.patch("f", &PatchParams::default(), &Patch::Merge(json!({})))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn kube_retries_unavailable_answers_by_itself() {
    // kube 5 clients retry 429, 503 and 504 (up to 15 times, backing off from 5 ms): a 503 fault
    // is invisible to callers unless it outlasts the retries.
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    api.create(&PostParams::default(), &configmap("r", &[], &[]))
        .await
        .unwrap();
    twin.cluster("old").inject(
        Fault::error(503, "ServiceUnavailable")
            .on(Verb::Get)
            .times(2),
    );
    assert!(api.get("r").await.is_ok());
    assert!(
        twin.cluster("old").faults().is_empty(),
        "both injected failures were served"
    );
}

#[tokio::test]
async fn injected_latency_delays_requests() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    twin.cluster("old")
        .inject(Fault::delay(Duration::from_millis(300)).on(Verb::List));
    let began = Instant::now();
    api.list(&ListParams::default()).await.unwrap();
    assert!(
        began.elapsed() >= Duration::from_millis(300),
        "the list waited for the injected delay"
    );
}

#[tokio::test]
async fn the_store_is_shared_with_in_process_code() {
    let twin = Twin::start(&["old"]).unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&twin, "old").await);
    let configmaps = twin::catalog::find("", "v1", "configmaps").unwrap();
    twin.cluster("old")
        .store()
        .create(
            configmaps,
            "default",
            json!({"metadata": {"name": "seeded"}}),
            &Default::default(),
        )
        .unwrap();
    assert!(api.get("seeded").await.is_ok());
}
