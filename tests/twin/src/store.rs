//! The in-memory object store of one cluster: objects, the global resourceVersion, metadata the
//! server owns (uid, generation, timestamps), defaults, preconditions and the bounded event
//! history that watches replay.
//!
//! Controllers run in-process against this same store (`Cluster::store`): they `list`, `watch`
//! (through `subscribe` and `events_since`) and write with `update` in `UpdateMode::Status`, exactly
//! like the HTTP layer does.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::catalog::{self, ResourceType};
use crate::clock::now_rfc3339;
use crate::status::ApiError;

/// What a watch event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history.
#[derive(Debug)]
pub struct StoredEvent {
    pub resource_version: u64,
    pub resource: &'static ResourceType,
    pub event_type: EventType,
    /// The object after the change (for `Deleted`: its last state, with the deletion's version).
    pub object: Value,
    /// The object before the change, for `Modified` (lets selective watches turn a change that
    /// leaves or enters their selection into `DELETED` or `ADDED`).
    pub previous: Option<Value>,
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// Everything but `status` (for types with a status subresource) and server-owned metadata.
    Main,
    /// Only `status`.
    Status,
}

/// Options shared by writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
}

/// `DeleteOptions`: its preconditions and grace period.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// `gracePeriodSeconds`: for a pod of a cluster that runs workloads, how long it may stay
    /// `Terminating` (`None`: the pod's `terminationGracePeriodSeconds`; 0: removed at once).
    pub grace_period_seconds: Option<u64>,
}

/// Result of a delete: gone at once, or kept until its finalizers are removed.
#[derive(Debug, Clone)]
pub enum Deleted {
    Gone(Value),
    Finalizing(Value),
}

/// Namespaces every cluster starts with.
pub const INITIAL_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Events kept for watches from an older resourceVersion, unless configured otherwise.
pub const DEFAULT_HISTORY_CAPACITY: usize = 4096;

type ObjectKey = (String, String);

struct State {
    resource_version: u64,
    objects: HashMap<(&'static str, &'static str), BTreeMap<ObjectKey, Value>>,
    history: VecDeque<Arc<StoredEvent>>,
    history_capacity: usize,
    /// The first three octets of the ClusterIPs this cluster hands out (`A.B.C.1`-`A.B.C.254`).
    cluster_ip_prefix: [u8; 3],
    /// A kubelet stops deleted pods: a deleted pod stays `Terminating` until it removes it.
    graceful_pod_deletion: bool,
}

/// Where a store without a twin's slot takes ClusterIPs from: loopback, outside every slot.
pub const DEFAULT_CLUSTER_IP_PREFIX: [u8; 3] = [127, 254, 14];

/// The objects of one cluster.
pub struct Store {
    state: Mutex<State>,
    changes: watch::Sender<u64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("resource_version", &self.resource_version())
            .finish_non_exhaustive()
    }
}

fn table_key(resource: &'static ResourceType) -> (&'static str, &'static str) {
    (resource.group, resource.plural)
}

impl Store {
    /// A store with the initial namespaces and a history of `history_capacity` events.
    pub fn new(history_capacity: usize) -> Store {
        let (changes, _) = watch::channel(0);
        let store = Store {
            state: Mutex::new(State {
                resource_version: 0,
                objects: HashMap::new(),
                history: VecDeque::new(),
                history_capacity: history_capacity.max(1),
                cluster_ip_prefix: DEFAULT_CLUSTER_IP_PREFIX,
                graceful_pod_deletion: false,
            }),
            changes,
        };
        for namespace in INITIAL_NAMESPACES {
            store
                .create(
                    catalog::namespaces(),
                    "",
                    json!({"metadata": {"name": namespace}}),
                    &WriteOptions::default(),
                )
                .expect("the initial namespaces are valid");
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-written (every write is a
        // single insert or remove), so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().resource_version
    }

    /// A receiver that changes whenever the resourceVersion moves.
    /// Hand out ClusterIPs as `A.B.C.n` from now on (a twin gives each cluster its own loopback
    /// range, which its kube-proxy listens on).
    pub fn set_cluster_ip_prefix(&self, prefix: [u8; 3]) {
        self.lock().cluster_ip_prefix = prefix;
    }

    /// From now on a deleted pod is marked (`deletionTimestamp`) and stays until the kubelet,
    /// having stopped its containers, deletes it again with no grace period.
    pub fn set_graceful_pod_deletion(&self) {
        self.lock().graceful_pod_deletion = true;
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Events newer than `resource_version`, oldest first; `Err(oldest kept)` when the history no
    /// longer reaches back that far.
    pub fn events_since(&self, resource_version: u64) -> Result<Vec<Arc<StoredEvent>>, u64> {
        let state = self.lock();
        if let Some(oldest) = state.history.front()
            && resource_version + 1 < oldest.resource_version
        {
            return Err(oldest.resource_version);
        }
        let start = state
            .history
            .partition_point(|event| event.resource_version <= resource_version);
        Ok(state.history.range(start..).cloned().collect())
    }

    pub fn get(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let state = self.lock();
        state
            .objects
            .get(&table_key(resource))
            .and_then(|table| table.get(&(namespace.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    /// Objects of `resource` in `namespace` (all namespaces when `None`) for which `keep` is true,
    /// sorted by namespace and name, with the resourceVersion of the snapshot.
    pub fn list(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        keep: &dyn Fn(&Value) -> bool,
    ) -> (Vec<Value>, u64) {
        let state = self.lock();
        let items = state
            .objects
            .get(&table_key(resource))
            .map(|table| {
                table
                    .iter()
                    .filter(|((object_namespace, _), _)| {
                        namespace.is_none_or(|n| n == object_namespace)
                    })
                    .map(|(_, object)| object)
                    .filter(|object| keep(object))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        (items, state.resource_version)
    }

    /// Creates `object` in `namespace` ("" for cluster-scoped types).
    pub fn create(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        object: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        self.create_locked(&mut state, resource, namespace, object, options)
    }

    /// Reads, changes and writes one object atomically. `change` gets the current object (`None`
    /// when it does not exist; return `Err` for NotFound, or an object to create it) and returns
    /// the desired object. A `metadata.resourceVersion` in the desired object is a precondition.
    pub fn update(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        mode: UpdateMode,
        options: &WriteOptions,
        change: impl FnOnce(Option<&Value>) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut state = self.lock();
        let key = (namespace.to_string(), name.to_string());
        let current = state
            .objects
            .get(&table_key(resource))
            .and_then(|table| table.get(&key))
            .cloned();
        let Some(current) = current else {
            let mut desired = change(None)?;
            check_identity(resource, namespace, name, &mut desired)?;
            return self.create_locked(&mut state, resource, namespace, desired, options);
        };
        let mut desired = change(Some(&current))?;
        check_identity(resource, namespace, name, &mut desired)?;
        check_preconditions(resource, name, &current, &desired)?;
        let mut next = match mode {
            UpdateMode::Main => {
                let mut next = desired;
                if resource.has_subresource(catalog::Subresource::Status) {
                    match current.get("status") {
                        Some(status) => next["status"] = status.clone(),
                        None => remove_field(&mut next, "status"),
                    }
                }
                next
            }
            UpdateMode::Status => {
                let mut next = current.clone();
                match desired.get("status") {
                    Some(status) => next["status"] = status.clone(),
                    None => remove_field(&mut next, "status"),
                }
                next
            }
        };
        keep_server_metadata(resource, &current, &mut next);
        keep_allocated_values(resource, &current, &mut next);
        normalise(resource, &mut next);
        validate(resource, &next)?;
        if without_resource_version(&next) == without_resource_version(&current) {
            return Ok(current);
        }
        if options.dry_run {
            return Ok(next);
        }
        let finalized = next.pointer("/metadata/deletionTimestamp").is_some()
            && next
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        let resource_version = state.resource_version + 1;
        set_resource_version(&mut next, resource_version);
        if finalized {
            self.remove_locked(&mut state, resource, &key, next.clone());
        } else {
            self.commit(
                &mut state,
                resource,
                key,
                next.clone(),
                EventType::Modified,
                Some(current),
            );
        }
        Ok(next)
    }

    /// Deletes one object, checking `preconditions`; an object with finalizers is only marked.
    pub fn delete(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        preconditions: &Preconditions,
        options: &WriteOptions,
    ) -> Result<Deleted, ApiError> {
        let mut state = self.lock();
        self.delete_locked(
            &mut state,
            resource,
            namespace,
            name,
            preconditions,
            options,
        )
    }

    /// Deletes every object of `resource` in `namespace` (all when `None`) for which `keep` is true.
    pub fn delete_collection(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        keep: &dyn Fn(&Value) -> bool,
        options: &WriteOptions,
    ) -> Result<Vec<Value>, ApiError> {
        let mut state = self.lock();
        let keys: Vec<ObjectKey> = state
            .objects
            .get(&table_key(resource))
            .map(|table| {
                table
                    .iter()
                    .filter(|((object_namespace, _), _)| {
                        namespace.is_none_or(|n| n == object_namespace)
                    })
                    .filter(|(_, object)| keep(object))
                    .map(|(key, _)| key.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut deleted = Vec::new();
        for (object_namespace, name) in keys {
            match self.delete_locked(
                &mut state,
                resource,
                &object_namespace,
                &name,
                &Preconditions::default(),
                options,
            )? {
                Deleted::Gone(object) | Deleted::Finalizing(object) => deleted.push(object),
            }
        }
        Ok(deleted)
    }

    fn create_locked(
        &self,
        state: &mut State,
        resource: &'static ResourceType,
        namespace: &str,
        mut object: Value,
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let Some(fields) = object.as_object_mut() else {
            return Err(ApiError::bad_request(format!(
                "the body of a {} must be a JSON object",
                resource.kind
            )));
        };
        check_type(resource, fields)?;
        fields.insert("apiVersion".to_string(), json!(resource.api_version()));
        fields.insert("kind".to_string(), json!(resource.kind));
        let metadata = fields
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(metadata) = metadata.as_object_mut() else {
            return Err(ApiError::bad_request("metadata must be a JSON object"));
        };
        let name = match metadata
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(name) => name.to_string(),
            None => match metadata.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}{}", random_suffix()),
                _ => {
                    return Err(ApiError::invalid(
                        resource,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ));
                }
            },
        };
        metadata.insert("name".to_string(), json!(name));
        if resource.namespaced {
            match metadata.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != namespace => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    metadata.insert("namespace".to_string(), json!(namespace));
                }
            }
        } else {
            metadata.remove("namespace");
        }
        for server_owned in [
            "uid",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            metadata.remove(server_owned);
        }
        metadata.insert("uid".to_string(), json!(uuid::Uuid::new_v4().to_string()));
        metadata.insert("creationTimestamp".to_string(), json!(now_rfc3339()));
        if resource.has_generation {
            metadata.insert("generation".to_string(), json!(1));
        } else {
            metadata.remove("generation");
        }
        validate(resource, &object)?;
        if resource.namespaced && !object_exists(state, catalog::namespaces(), "", namespace) {
            return Err(ApiError::not_found(catalog::namespaces(), namespace));
        }
        if object_exists(state, resource, namespace, &name) {
            return Err(ApiError::already_exists(resource, &name));
        }
        apply_create_defaults(state, resource, &mut object)?;
        normalise(resource, &mut object);
        if options.dry_run {
            return Ok(object);
        }
        set_resource_version(&mut object, state.resource_version + 1);
        let key = (namespace.to_string(), name);
        self.commit(state, resource, key, object.clone(), EventType::Added, None);
        Ok(object)
    }

    fn delete_locked(
        &self,
        state: &mut State,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        preconditions: &Preconditions,
        options: &WriteOptions,
    ) -> Result<Deleted, ApiError> {
        let key = (namespace.to_string(), name.to_string());
        let current = state
            .objects
            .get(&table_key(resource))
            .and_then(|table| table.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        let current_uid = current
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(uid) = &preconditions.uid
            && uid != current_uid
        {
            return Err(ApiError::conflict(
                resource,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {current_uid}"
                ),
            ));
        }
        let current_version = current
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(version) = &preconditions.resource_version
            && version != current_version
        {
            return Err(ApiError::conflict(
                resource,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {version}, ResourceVersion in object meta: {current_version}"
                ),
            ));
        }
        if *resource == *catalog::namespaces() && INITIAL_NAMESPACES.contains(&name) {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted"),
            ));
        }
        if options.dry_run {
            return Ok(Deleted::Gone(current));
        }
        let has_finalizers = current
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|finalizers| !finalizers.is_empty());
        if has_finalizers {
            return Ok(self.mark_deleting(state, resource, key, current, 0));
        }
        if state.graceful_pod_deletion && resource.plural == "pods" && resource.group.is_empty() {
            let grace = preconditions.grace_period_seconds.unwrap_or_else(|| {
                current
                    .pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_u64)
                    .unwrap_or(30)
            });
            if grace > 0 {
                return Ok(self.mark_deleting(state, resource, key, current, grace));
            }
        }
        if *resource == *catalog::namespaces() {
            self.delete_namespace_contents(state, name);
        }
        let mut gone = current;
        set_resource_version(&mut gone, state.resource_version + 1);
        self.remove_locked(state, resource, &key, gone.clone());
        Ok(Deleted::Gone(gone))
    }

    /// Mark `current` as being deleted (`deletionTimestamp` `grace` seconds from now) unless it
    /// already is; it stays until its finalizers or its kubelet let it go.
    fn mark_deleting(
        &self,
        state: &mut State,
        resource: &'static ResourceType,
        key: ObjectKey,
        current: Value,
        grace: u64,
    ) -> Deleted {
        if current.pointer("/metadata/deletionTimestamp").is_some() {
            return Deleted::Finalizing(current);
        }
        let mut marked = current.clone();
        marked["metadata"]["deletionTimestamp"] = json!(if grace == 0 {
            now_rfc3339()
        } else {
            crate::clock::rfc3339(crate::identity::unix_now() + grace)
        });
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        set_resource_version(&mut marked, state.resource_version + 1);
        self.commit(
            state,
            resource,
            key,
            marked.clone(),
            EventType::Modified,
            Some(current),
        );
        Deleted::Finalizing(marked)
    }

    fn delete_namespace_contents(&self, state: &mut State, namespace: &str) {
        for resource in catalog::CATALOG.iter().filter(|r| r.namespaced) {
            let keys: Vec<ObjectKey> = state
                .objects
                .get(&table_key(resource))
                .map(|table| {
                    table
                        .keys()
                        .filter(|(n, _)| n == namespace)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            for key in keys {
                if let Some(mut object) = state
                    .objects
                    .get(&table_key(resource))
                    .and_then(|t| t.get(&key))
                    .cloned()
                {
                    set_resource_version(&mut object, state.resource_version + 1);
                    self.remove_locked(state, resource, &key, object);
                }
            }
        }
    }

    fn commit(
        &self,
        state: &mut State,
        resource: &'static ResourceType,
        key: ObjectKey,
        object: Value,
        event_type: EventType,
        previous: Option<Value>,
    ) {
        state.resource_version += 1;
        let resource_version = state.resource_version;
        state
            .objects
            .entry(table_key(resource))
            .or_default()
            .insert(key, object.clone());
        self.record(
            state,
            resource,
            event_type,
            object,
            previous,
            resource_version,
        );
    }

    fn remove_locked(
        &self,
        state: &mut State,
        resource: &'static ResourceType,
        key: &ObjectKey,
        object: Value,
    ) {
        state.resource_version += 1;
        let resource_version = state.resource_version;
        if let Some(table) = state.objects.get_mut(&table_key(resource)) {
            table.remove(key);
        }
        self.record(
            state,
            resource,
            EventType::Deleted,
            object,
            None,
            resource_version,
        );
    }

    fn record(
        &self,
        state: &mut State,
        resource: &'static ResourceType,
        event_type: EventType,
        object: Value,
        previous: Option<Value>,
        resource_version: u64,
    ) {
        state.history.push_back(Arc::new(StoredEvent {
            resource_version,
            resource,
            event_type,
            object,
            previous,
        }));
        while state.history.len() > state.history_capacity {
            state.history.pop_front();
        }
        self.changes.send_replace(resource_version);
    }
}

fn object_exists(
    state: &State,
    resource: &'static ResourceType,
    namespace: &str,
    name: &str,
) -> bool {
    state
        .objects
        .get(&table_key(resource))
        .is_some_and(|table| table.contains_key(&(namespace.to_string(), name.to_string())))
}

fn remove_field(object: &mut Value, field: &str) {
    if let Some(fields) = object.as_object_mut() {
        fields.remove(field);
    }
}

fn set_resource_version(object: &mut Value, resource_version: u64) {
    object["metadata"]["resourceVersion"] = json!(resource_version.to_string());
}

fn without_resource_version(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    copy
}

/// `apiVersion` and `kind`, when given, must name this resource type.
fn check_type(resource: &ResourceType, fields: &Map<String, Value>) -> Result<(), ApiError> {
    if let Some(kind) = fields.get("kind")
        && kind.as_str() != Some(resource.kind)
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({}) does not match the resource ({})",
            kind, resource.kind
        )));
    }
    if let Some(api_version) = fields.get("apiVersion")
        && api_version.as_str() != Some(resource.api_version().as_str())
    {
        return Err(ApiError::bad_request(format!(
            "the apiVersion of the object ({}) does not match the resource ({})",
            api_version,
            resource.api_version()
        )));
    }
    Ok(())
}

/// Fills name, namespace, kind and apiVersion of an object written to a known name, refusing
/// mismatches.
fn check_identity(
    resource: &ResourceType,
    namespace: &str,
    name: &str,
    object: &mut Value,
) -> Result<(), ApiError> {
    let Some(fields) = object.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "the body of a {} must be a JSON object",
            resource.kind
        )));
    };
    check_type(resource, fields)?;
    fields.insert("apiVersion".to_string(), json!(resource.api_version()));
    fields.insert("kind".to_string(), json!(resource.kind));
    let metadata = fields
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(metadata) = metadata.as_object_mut() else {
        return Err(ApiError::bad_request("metadata must be a JSON object"));
    };
    match metadata.get("name").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        _ => {
            metadata.insert("name".to_string(), json!(name));
        }
    }
    if resource.namespaced {
        match metadata.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                metadata.insert("namespace".to_string(), json!(namespace));
            }
        }
    }
    Ok(())
}

fn check_preconditions(
    resource: &ResourceType,
    name: &str,
    current: &Value,
    desired: &Value,
) -> Result<(), ApiError> {
    if let Some(version) = desired
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        && Some(version)
            != current
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
    {
        return Err(ApiError::stale(resource, name));
    }
    let current_uid = current
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(uid) = desired
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        && uid != current_uid
    {
        return Err(ApiError::conflict(
            resource,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {current_uid}"
            ),
        ));
    }
    Ok(())
}

/// Server-owned metadata survives every update; `generation` moves when `spec` changes.
fn keep_server_metadata(resource: &ResourceType, current: &Value, next: &mut Value) {
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match current.pointer(&format!("/metadata/{field}")) {
            Some(value) => next["metadata"][field] = value.clone(),
            None => {
                if let Some(metadata) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                    metadata.remove(field);
                }
            }
        }
    }
    if let Some(metadata) = next.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("selfLink");
        if !resource.has_generation {
            metadata.remove("generation");
        }
    }
    if resource.has_generation {
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let spec_changed = current.get("spec") != next.get("spec");
        next["metadata"]["generation"] = json!(generation + i64::from(spec_changed));
    }
}

/// Checks a created or updated object could be stored by a real server: names, label maps.
fn validate(resource: &ResourceType, object: &Value) -> Result<(), ApiError> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let label_name = matches!(resource.kind, "Namespace" | "Service");
    let problem = if label_name {
        dns_label_problem(name)
    } else {
        dns_subdomain_problem(name)
    };
    if let Some(problem) = problem {
        return Err(ApiError::invalid(
            resource,
            name,
            &format!("metadata.name: Invalid value: {name:?}: {problem}"),
        ));
    }
    for field in ["labels", "annotations"] {
        match object.pointer(&format!("/metadata/{field}")) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                if let Some((key, _)) = map.iter().find(|(_, v)| !v.is_string()) {
                    return Err(ApiError::bad_request(format!(
                        "metadata.{field}.{key}: the value must be a string"
                    )));
                }
            }
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "metadata.{field} must be a map of strings"
                )));
            }
        }
    }
    for field in ["spec", "status", "data"] {
        if let Some(value) = object.get(field)
            && !value.is_object()
            && !value.is_null()
        {
            return Err(ApiError::bad_request(format!(
                "{field} must be a JSON object"
            )));
        }
    }
    Ok(())
}

fn dns_label_problem(name: &str) -> Option<&'static str> {
    if name.len() > 63 {
        return Some("must be no more than 63 characters");
    }
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    (!valid).then_some(
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
    )
}

fn dns_subdomain_problem(name: &str) -> Option<&'static str> {
    if name.len() > 253 {
        return Some("must be no more than 253 characters");
    }
    let valid = !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    (!valid).then_some(
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
    )
}

/// Five characters from the alphabet Kubernetes uses for `generateName`.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|byte| ALPHABET[usize::from(*byte) % ALPHABET.len()] as char)
        .collect()
}

/// Defaults and status a real server sets when an object is created.
fn apply_create_defaults(
    state: &State,
    resource: &ResourceType,
    object: &mut Value,
) -> Result<(), ApiError> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match resource.kind {
        "Namespace" => {
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
        }
        "Pod" => {
            object["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            if object.pointer("/spec/restartPolicy").is_none() && object.get("spec").is_some() {
                object["spec"]["restartPolicy"] = json!("Always");
            }
        }
        "Service" => {
            if object.get("spec").is_none() {
                object["spec"] = json!({});
            }
            let spec = &mut object["spec"];
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            if spec.get("sessionAffinity").is_none() {
                spec["sessionAffinity"] = json!("None");
            }
            let cluster_ip = match spec.get("clusterIP").and_then(Value::as_str) {
                Some(given) if !given.is_empty() => given.to_string(),
                _ => free_cluster_ip(state).ok_or_else(|| {
                    ApiError::new(
                        500,
                        "InternalError",
                        format!(
                            "no ClusterIP is free in the twin's range {}.0/24",
                            prefix_text(state.cluster_ip_prefix)
                        ),
                    )
                })?,
            };
            spec["clusterIP"] = json!(cluster_ip);
            spec["clusterIPs"] = json!([cluster_ip]);
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for port in ports.iter_mut().filter(|port| port.is_object()) {
                    if port.get("protocol").is_none() {
                        port["protocol"] = json!("TCP");
                    }
                    if port.get("targetPort").is_none()
                        && let Some(number) = port.get("port").cloned()
                    {
                        port["targetPort"] = number;
                    }
                }
            }
            object["status"] = json!({"loadBalancer": {}});
        }
        "Secret" if object.get("type").is_none() => object["type"] = json!("Opaque"),
        "StatefulSet" => {
            if object.get("spec").is_none() {
                object["spec"] = json!({});
            }
            let spec = &mut object["spec"];
            for (field, default) in [
                ("replicas", json!(1)),
                ("podManagementPolicy", json!("OrderedReady")),
                ("revisionHistoryLimit", json!(10)),
                (
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                ),
            ] {
                if spec.get(field).is_none() {
                    spec[field] = default;
                }
            }
            object["status"] = json!({"replicas": 0, "availableReplicas": 0});
        }
        "Ingress" => object["status"] = json!({"loadBalancer": {}}),
        "PodDisruptionBudget" => {
            object["status"] = json!({
                "currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0
            });
        }
        _ => {}
    }
    Ok(())
}

/// What the server allocated and an update may leave out: a Service's `clusterIP` and
/// `clusterIPs` are kept from the stored object, as the API server's `patchAllocatedValues`
/// does (a Service put back from a record without them keeps its address).
fn keep_allocated_values(resource: &ResourceType, current: &Value, next: &mut Value) {
    if resource.kind != "Service" {
        return;
    }
    for field in ["clusterIP", "clusterIPs"] {
        let given = next
            .pointer(&format!("/spec/{field}"))
            .is_some_and(|v| !v.is_null() && v != "");
        if let Some(allocated) = current.pointer(&format!("/spec/{field}"))
            && !given
            && next.get("spec").is_some_and(Value::is_object)
        {
            next["spec"][field] = allocated.clone();
        }
    }
}

/// `A.B.C` of a ClusterIP range.
fn prefix_text([a, b, c]: [u8; 3]) -> String {
    format!("{a}.{b}.{c}")
}

/// The lowest address of the cluster's ClusterIP range no Service holds.
fn free_cluster_ip(state: &State) -> Option<String> {
    let prefix = prefix_text(state.cluster_ip_prefix);
    let taken: std::collections::HashSet<&str> = state
        .objects
        .get(&table_key(catalog::find("", "v1", "services")?))
        .into_iter()
        .flat_map(|services| services.values())
        .filter_map(|service| service.pointer("/spec/clusterIP").and_then(Value::as_str))
        .collect();
    (1..=254u8)
        .map(|n| format!("{prefix}.{n}"))
        .find(|address| !taken.contains(address.as_str()))
}

/// Rewrites that apply to every write: a Secret's `stringData` goes into `data` (base64).
fn normalise(resource: &ResourceType, object: &mut Value) {
    if resource.kind == "Secret"
        && let Some(Value::Object(string_data)) =
            object.as_object_mut().and_then(|o| o.remove("stringData"))
    {
        if !object.get("data").is_some_and(Value::is_object) {
            object["data"] = json!({});
        }
        for (key, value) in string_data {
            if let Some(text) = value.as_str() {
                object["data"][key] = json!(base64(text.as_bytes()));
            }
        }
    }
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Decodes standard base64 (padding optional, whitespace ignored); `None` for invalid input.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut buffer = 0u32;
    let mut bits = 0u32;
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for text in ["", "h", "hi", "hi!", "hello world"] {
            assert_eq!(
                base64_decode(&base64(text.as_bytes())).unwrap(),
                text.as_bytes()
            );
        }
        assert_eq!(base64_decode("aGk"), Some(b"hi".to_vec()));
        assert_eq!(base64_decode("a*b"), None);
    }

    fn configmaps() -> &'static ResourceType {
        catalog::find("", "v1", "configmaps").unwrap()
    }

    #[test]
    fn resource_versions_count_up_and_history_replays_newer_events() {
        let store = Store::new(16);
        let start = store.resource_version();
        let created = store
            .create(
                configmaps(),
                "default",
                json!({"metadata": {"name": "a"}}),
                &WriteOptions::default(),
            )
            .unwrap();
        assert_eq!(
            created["metadata"]["resourceVersion"],
            json!((start + 1).to_string())
        );
        let events = store.events_since(start).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, EventType::Added);
    }

    #[test]
    fn history_beyond_capacity_is_gone() {
        let store = Store::new(2);
        for name in ["a", "b", "c", "d"] {
            store
                .create(
                    configmaps(),
                    "default",
                    json!({"metadata": {"name": name}}),
                    &WriteOptions::default(),
                )
                .unwrap();
        }
        assert!(store.events_since(1).is_err());
        assert_eq!(
            store
                .events_since(store.resource_version() - 2)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn unchanged_updates_do_not_move_the_resource_version() {
        let store = Store::new(16);
        let created = store
            .create(
                configmaps(),
                "default",
                json!({"metadata": {"name": "a"}, "data": {"k": "v"}}),
                &WriteOptions::default(),
            )
            .unwrap();
        let same = store
            .update(
                configmaps(),
                "default",
                "a",
                UpdateMode::Main,
                &WriteOptions::default(),
                |current| Ok(current.unwrap().clone()),
            )
            .unwrap();
        assert_eq!(
            same["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
    }

    #[test]
    fn secrets_string_data_is_encoded() {
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(b"hi!"), "aGkh");
        assert_eq!(base64(b"h"), "aA==");
    }
}
