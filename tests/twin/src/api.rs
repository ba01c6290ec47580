//! Request routing and the verbs of the Kubernetes REST API: URL parsing, query parameters,
//! bodies, and each verb mapped onto the store (get, list, create, replace, patch, delete,
//! deletecollection, the `status` and `scale` subresources), plus discovery and OpenAPI routes.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{Value, json};

use crate::catalog::{self, ResourceType, Subresource};
use crate::clock::now_rfc3339;
use crate::discovery;
use crate::faults::Verb;
use crate::patch::{self, PatchType};
use crate::protobuf;
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::{ClusterState, ResponseBody, error_response, json_response};
use crate::status::ApiError;
use crate::store::{Deleted, Preconditions, UpdateMode, WriteOptions};
use crate::watch;

/// What a URL names.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    ResourceList(String, String),
    OpenApiV2,
    OpenApiV3Index,
    OpenApiV3(String, String),
    /// A collection: one namespace, or every namespace (and cluster-scoped types) when `None`.
    Collection {
        resource: &'static ResourceType,
        namespace: Option<String>,
    },
    /// One object ("" namespace for cluster-scoped types), or one of its subresources.
    Object {
        resource: &'static ResourceType,
        namespace: String,
        name: String,
        subresource: Option<Subresource>,
    },
}

/// Parses a URL path into a route; 404 for anything the twin does not serve.
pub fn parse_route(path: &str) -> Result<Route, ApiError> {
    let segments: Vec<String> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let not_found = || ApiError::no_route(path);
    let route = match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz"] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["api", version] => Route::ResourceList(String::new(), version.to_string()),
        ["apis", group, version] => Route::ResourceList(group.to_string(), version.to_string()),
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", "api", version] => Route::OpenApiV3(String::new(), version.to_string()),
        ["openapi", "v3", "apis", group, version] => {
            Route::OpenApiV3(group.to_string(), version.to_string())
        }
        ["api", version, rest @ ..] => resource_route("", version, rest).ok_or_else(not_found)?,
        ["apis", group, version, rest @ ..] => {
            resource_route(group, version, rest).ok_or_else(not_found)?
        }
        _ => return Err(not_found()),
    };
    Ok(route)
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Option<Route> {
    let find = |plural: &str| catalog::find(group, version, plural);
    let subresource_of = |resource: &ResourceType, name: &str| {
        resource
            .subresources
            .iter()
            .copied()
            .find(|s| s.name() == name)
    };
    match rest {
        ["namespaces", namespace, plural, rest @ ..]
            if find(plural).is_some_and(|r| r.namespaced) =>
        {
            let resource = find(plural)?;
            match rest {
                [] => Some(Route::Collection {
                    resource,
                    namespace: Some(namespace.to_string()),
                }),
                [name] => Some(Route::Object {
                    resource,
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    subresource: None,
                }),
                [name, subresource] => Some(Route::Object {
                    resource,
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    subresource: Some(subresource_of(resource, subresource)?),
                }),
                _ => None,
            }
        }
        [plural] => Some(Route::Collection {
            resource: find(plural)?,
            namespace: None,
        }),
        [plural, name] => {
            let resource = find(plural).filter(|r| !r.namespaced)?;
            Some(Route::Object {
                resource,
                namespace: String::new(),
                name: name.to_string(),
                subresource: None,
            })
        }
        [plural, name, subresource] => {
            let resource = find(plural).filter(|r| !r.namespaced)?;
            Some(Route::Object {
                resource,
                namespace: String::new(),
                name: name.to_string(),
                subresource: Some(subresource_of(resource, subresource)?),
            })
        }
        _ => None,
    }
}

/// Decoded query parameters, in order (repeated names keep every value).
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: &str) -> Query {
        Query(
            query
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(name), percent_decode(value))
                })
                .collect(),
        )
    }

    /// The last value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// `true`/`1` (and a bare `name`) count as set.
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1" | ""))
    }

    fn write_options(&self) -> WriteOptions {
        WriteOptions {
            dry_run: self.get("dryRun").is_some_and(|v| v == "All"),
        }
    }

    fn label_selector(&self) -> Result<LabelSelector, ApiError> {
        LabelSelector::parse(self.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid labelSelector: {e}")))
    }

    fn field_selector(&self) -> Result<FieldSelector, ApiError> {
        FieldSelector::parse(self.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid fieldSelector: {e}")))
    }
}

/// Decodes `%XX` escapes and `+` (as a space); invalid escapes are kept as they are.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        decoded.push(byte);
                        index += 3;
                    }
                    None => {
                        decoded.push(b'%');
                        index += 1;
                    }
                }
            }
            b'+' => {
                decoded.push(b' ');
                index += 1;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The verb of a request, for fault rules.
pub fn verb_of(method: &Method, route: Option<&Route>, query: &Query) -> Verb {
    let collection = matches!(route, Some(Route::Collection { .. }));
    match *method {
        Method::GET if query.flag("watch") => Verb::Watch,
        Method::GET if collection => Verb::List,
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH => Verb::Patch,
        Method::DELETE if collection => Verb::DeleteCollection,
        Method::DELETE => Verb::Delete,
        _ => Verb::Get,
    }
}

/// Whether a protobuf body is one the twin decodes: the creation of a Namespace, ConfigMap or
/// Secret (what `kubectl create namespace|configmap|secret` sends).
fn protobuf_decodable(method: &Method, route: &Route, content_type: &str) -> bool {
    *method == Method::POST
        && protobuf::is_protobuf(content_type)
        && matches!(route, Route::Collection { resource, .. } if protobuf::DECODED_KINDS.contains(&resource.kind))
}

/// Answers one request.
pub async fn handle(
    state: Arc<ClusterState>,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let path = request.uri().path().to_string();
    let query = Query::parse(request.uri().query().unwrap_or(""));
    let route = parse_route(&path);
    let effect = state.faults.take(
        verb_of(request.method(), route.as_ref().ok(), &query),
        &path,
    );
    if !effect.delay.is_zero() {
        tokio::time::sleep(effect.delay).await;
    }
    if let Some(error) = effect.error {
        return error_response(&error);
    }
    let route = match route {
        Ok(route) => route,
        Err(error) => return error_response(&error),
    };
    if let Some(content_type) = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        && (content_type.contains("protobuf") || content_type.contains("cbor"))
        && !protobuf_decodable(request.method(), &route, content_type)
    {
        return error_response(&ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the twin reads JSON bodies (and protobuf only for creating {:?}); got {content_type:?}: send JSON, e.g. with kubectl apply -f or kubectl create -f",
                protobuf::DECODED_KINDS
            ),
        ));
    }
    match dispatch(&state, route, request, &query).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

async fn read_body(state: &ClusterState, body: Incoming) -> Result<Bytes, ApiError> {
    Limited::new(body, state.settings.max_body_bytes)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|error| {
            ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("the request body could not be read: {error}"),
            )
        })
}

/// A JSON body; for apply patches also YAML.
fn parse_body(bytes: &[u8], yaml_allowed: bool) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => Ok(value),
        Err(json_error) if yaml_allowed => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
            serde_saphyr::from_str::<Value>(text).map_err(|yaml_error| {
                ApiError::bad_request(format!(
                    "the body is neither JSON ({json_error}) nor YAML ({yaml_error})"
                ))
            })
        }
        Err(error) => Err(ApiError::bad_request(format!(
            "the body is not valid JSON: {error}"
        ))),
    }
}

fn method_not_allowed(method: &Method, what: &str) -> ApiError {
    ApiError::method_not_allowed(format!(
        "the server does not allow this method on the requested resource ({method} {what})"
    ))
}

async fn dispatch(
    state: &Arc<ClusterState>,
    route: Route,
    request: Request<Incoming>,
    query: &Query,
) -> Result<Response<ResponseBody>, ApiError> {
    let method = request.method().clone();
    let read_only = |document: Option<Value>| -> Result<Response<ResponseBody>, ApiError> {
        if method != Method::GET {
            return Err(method_not_allowed(&method, request.uri().path()));
        }
        document
            .map(|d| json_response(200, &d))
            .ok_or_else(|| ApiError::no_route(request.uri().path()))
    };
    match route {
        Route::Version => read_only(Some(discovery::version())),
        Route::Health => {
            if method != Method::GET {
                return Err(method_not_allowed(&method, request.uri().path()));
            }
            Ok(Response::builder()
                .status(200)
                .header("Content-Type", "text/plain")
                .body(ResponseBody::Whole(Some(Bytes::from_static(b"ok"))))
                .unwrap_or_else(|_| Response::new(ResponseBody::Whole(None))))
        }
        Route::CoreVersions => {
            read_only(Some(discovery::core_versions(&state.address.to_string())))
        }
        Route::Groups => read_only(Some(discovery::group_list())),
        Route::Group(group) => read_only(discovery::group(&group)),
        Route::ResourceList(group, version) => {
            read_only(discovery::resource_list(&group, &version))
        }
        Route::OpenApiV2 => read_only(None),
        Route::OpenApiV3Index => read_only(Some(discovery::openapi_v3_index())),
        Route::OpenApiV3(group, version) => {
            read_only(discovery::openapi_v3_document(&group, &version))
        }
        Route::Collection {
            resource,
            namespace,
        } => collection(state, resource, namespace, request, query).await,
        Route::Object {
            resource,
            namespace,
            name,
            subresource: Some(Subresource::PortForward),
        } => crate::portforward::handle(state, resource, &namespace, &name, request, query).await,
        Route::Object {
            resource,
            namespace,
            name,
            subresource: Some(Subresource::Exec),
        } => crate::exec::handle(state, resource, &namespace, &name, request, query).await,
        Route::Object {
            resource,
            namespace,
            name,
            subresource: Some(Subresource::Log),
        } if request.method() == Method::GET => {
            crate::podlog::handle(state, resource, &namespace, &name, query)
        }
        Route::Object {
            resource,
            namespace,
            name,
            subresource,
        } => {
            object(
                state,
                resource,
                &namespace,
                &name,
                subresource,
                request,
                query,
            )
            .await
        }
    }
}

/// Whether `kubectl get` asked for a Table.
fn wants_table(request: &Request<Incoming>) -> bool {
    crate::table::wanted(
        request
            .headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    )
}

/// A list body with items stripped of `kind`/`apiVersion`, as real servers answer.
fn list_document(resource: &ResourceType, items: Vec<Value>, resource_version: u64) -> Value {
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut item| {
            if let Some(fields) = item.as_object_mut() {
                fields.remove("kind");
                fields.remove("apiVersion");
            }
            item
        })
        .collect();
    json!({
        "kind": resource.list_kind(),
        "apiVersion": resource.api_version(),
        "metadata": {"resourceVersion": resource_version.to_string()},
        "items": items,
    })
}

async fn collection(
    state: &Arc<ClusterState>,
    resource: &'static ResourceType,
    namespace: Option<String>,
    request: Request<Incoming>,
    query: &Query,
) -> Result<Response<ResponseBody>, ApiError> {
    let method = request.method().clone();
    match method {
        Method::GET => {
            let labels = query.label_selector()?;
            let fields = query.field_selector()?;
            if query.flag("watch") {
                let table = wants_table(&request);
                return watch::start(state, resource, namespace, labels, fields, query, table);
            }
            let (items, resource_version) =
                state.store.list(resource, namespace.as_deref(), &|object| {
                    labels.matches_object(object) && fields.matches_object(object)
                });
            if wants_table(&request)
                && let Some(table) = crate::table::of(resource, &items, resource_version)
            {
                return Ok(json_response(200, &table));
            }
            Ok(json_response(
                200,
                &list_document(resource, items, resource_version),
            ))
        }
        Method::POST if resource.kind == "SelfSubjectAccessReview" => {
            let protobuf_body = request
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(protobuf::is_protobuf);
            let body = read_body(state, request.into_body()).await?;
            let review = if protobuf_body {
                protobuf::decode(resource.kind, &body).map_err(|error| {
                    ApiError::bad_request(format!(
                        "the protobuf body could not be decoded: {error}"
                    ))
                })?
            } else {
                parse_body(&body, false)?
            };
            Ok(json_response(201, &state.faults.review_access(review)))
        }
        Method::POST => {
            let namespace = match (resource.namespaced, namespace) {
                (true, Some(namespace)) => namespace,
                (false, None) => String::new(),
                _ => return Err(method_not_allowed(&method, request.uri().path())),
            };
            let protobuf_body = request
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(protobuf::is_protobuf);
            let body = read_body(state, request.into_body()).await?;
            let object = if protobuf_body {
                protobuf::decode(resource.kind, &body).map_err(|error| {
                    ApiError::bad_request(format!(
                        "the protobuf body could not be decoded: {error}"
                    ))
                })?
            } else {
                parse_body(&body, false)?
            };
            let created =
                state
                    .store
                    .create(resource, &namespace, object, &query.write_options())?;
            Ok(json_response(201, &created))
        }
        Method::DELETE => {
            if !resource.namespaced {
                return Err(method_not_allowed(&method, request.uri().path()));
            }
            let labels = query.label_selector()?;
            let fields = query.field_selector()?;
            let deleted = state.store.delete_collection(
                resource,
                namespace.as_deref(),
                &|object| labels.matches_object(object) && fields.matches_object(object),
                &query.write_options(),
            )?;
            let resource_version = state.store.resource_version();
            Ok(json_response(
                200,
                &list_document(resource, deleted, resource_version),
            ))
        }
        _ => Err(method_not_allowed(&method, request.uri().path())),
    }
}

async fn object(
    state: &Arc<ClusterState>,
    resource: &'static ResourceType,
    namespace: &str,
    name: &str,
    subresource: Option<Subresource>,
    request: Request<Incoming>,
    query: &Query,
) -> Result<Response<ResponseBody>, ApiError> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let options = query.write_options();
    let store = &state.store;
    let mode = if subresource == Some(Subresource::Status) {
        UpdateMode::Status
    } else {
        UpdateMode::Main
    };
    if subresource == Some(Subresource::Scale) {
        return scale(state, resource, namespace, name, request, query).await;
    }
    match method {
        Method::GET if query.flag("watch") && subresource.is_none() => {
            let fields = FieldSelector::parse(&format!("metadata.name={name}"))
                .map_err(ApiError::bad_request)?;
            let namespace = resource.namespaced.then(|| namespace.to_string());
            watch::start(
                state,
                resource,
                namespace,
                query.label_selector()?,
                fields,
                query,
                wants_table(&request),
            )
        }
        Method::GET => {
            let found = store.get(resource, namespace, name)?;
            if subresource.is_none() && wants_table(&request) {
                let resource_version = store.resource_version();
                if let Some(table) =
                    crate::table::of(resource, std::slice::from_ref(&found), resource_version)
                {
                    return Ok(json_response(200, &table));
                }
            }
            Ok(json_response(200, &found))
        }
        Method::PUT => {
            let body = read_body(state, request.into_body()).await?;
            let desired = parse_body(&body, false)?;
            let updated = store.update(resource, namespace, name, mode, &options, |current| {
                current.ok_or_else(|| ApiError::not_found(resource, name))?;
                Ok(desired)
            })?;
            Ok(json_response(200, &updated))
        }
        Method::PATCH => {
            let patch_type = PatchType::from_content_type(&content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
            let body = read_body(state, request.into_body()).await?;
            let patch_body = parse_body(&body, patch_type == PatchType::Apply)?;
            let field_manager = query.get("fieldManager").map(str::to_string);
            let existed = store.get(resource, namespace, name).is_ok();
            let patched = store.update(resource, namespace, name, mode, &options, |current| {
                patch_object(
                    resource,
                    name,
                    current,
                    &patch_body,
                    patch_type,
                    mode,
                    field_manager.as_deref(),
                )
            })?;
            Ok(json_response(if existed { 200 } else { 201 }, &patched))
        }
        Method::DELETE if subresource.is_none() => {
            let body = read_body(state, request.into_body()).await?;
            let mut preconditions = delete_preconditions(&body)?;
            if let Some(grace) = query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()) {
                preconditions.grace_period_seconds = Some(grace);
            }
            match store.delete(resource, namespace, name, &preconditions, &options)? {
                Deleted::Gone(object) | Deleted::Finalizing(object) => {
                    Ok(json_response(200, &object))
                }
            }
        }
        _ => Err(method_not_allowed(&method, &path)),
    }
}

/// The desired object after applying a patch of `patch_type` to `current`.
fn patch_object(
    resource: &'static ResourceType,
    name: &str,
    current: Option<&Value>,
    patch_body: &Value,
    patch_type: PatchType,
    mode: UpdateMode,
    field_manager: Option<&str>,
) -> Result<Value, ApiError> {
    let Some(current) = current else {
        if patch_type != PatchType::Apply || mode == UpdateMode::Status {
            return Err(ApiError::not_found(resource, name));
        }
        let manager = apply_field_manager(field_manager)?;
        let mut created = patch::without_directives(patch_body);
        record_apply(&mut created, patch_body, resource, manager);
        return Ok(created);
    };
    let mut next = current.clone();
    match patch_type {
        PatchType::Merge => {
            if !patch_body.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            patch::merge_patch(&mut next, patch_body);
        }
        PatchType::Json => patch::json_patch(&mut next, patch_body)
            .map_err(|error| ApiError::new(422, "Invalid", error))?,
        PatchType::StrategicMerge => {
            patch::strategic_merge_patch(&mut next, patch_body, resource.kind)
                .map_err(ApiError::bad_request)?
        }
        PatchType::Apply => {
            let manager = apply_field_manager(field_manager)?;
            if !patch_body.is_object() {
                return Err(ApiError::bad_request(
                    "an applied configuration must be an object",
                ));
            }
            for (field, expected) in [
                ("apiVersion", resource.api_version()),
                ("kind", resource.kind.to_string()),
            ] {
                if patch_body.get(field).and_then(Value::as_str) != Some(expected.as_str()) {
                    return Err(ApiError::bad_request(format!(
                        "an applied configuration must set {field} to {expected:?}"
                    )));
                }
            }
            patch::strategic_merge_patch(&mut next, patch_body, resource.kind)
                .map_err(ApiError::bad_request)?;
            record_apply(&mut next, patch_body, resource, manager);
        }
    }
    Ok(next)
}

fn apply_field_manager(field_manager: Option<&str>) -> Result<&str, ApiError> {
    field_manager
        .filter(|manager| !manager.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("PATCH with an apply patch requires the fieldManager parameter")
        })
}

/// Records (replaces) the `Apply` entry of `manager` in `metadata.managedFields`.
fn record_apply(object: &mut Value, applied: &Value, resource: &ResourceType, manager: &str) {
    let entry = json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": resource.api_version(),
        "time": now_rfc3339(),
        "fieldsType": "FieldsV1",
        "fieldsV1": patch::fields_v1(applied, resource.kind),
    });
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    let managed = &mut object["metadata"]["managedFields"];
    if !managed.is_array() {
        *managed = json!([]);
    }
    if let Some(entries) = managed.as_array_mut() {
        entries.retain(|e| {
            !(e.get("manager").and_then(Value::as_str) == Some(manager)
                && e.get("operation").and_then(Value::as_str) == Some("Apply"))
        });
        entries.push(entry);
    }
}

fn delete_preconditions(body: &[u8]) -> Result<Preconditions, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Preconditions::default());
    }
    let options = parse_body(body, false)?;
    let text = |pointer: &str| {
        options
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(Preconditions {
        uid: text("/preconditions/uid"),
        resource_version: text("/preconditions/resourceVersion"),
        grace_period_seconds: options
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .map(|g| g.max(0) as u64),
    })
}

/// The `autoscaling/v1` `Scale` view of a StatefulSet.
fn scale_view(object: &Value) -> Value {
    let metadata = &object["metadata"];
    let selector = object
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
            "resourceVersion": metadata["resourceVersion"],
            "creationTimestamp": metadata["creationTimestamp"],
        },
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

async fn scale(
    state: &Arc<ClusterState>,
    resource: &'static ResourceType,
    namespace: &str,
    name: &str,
    request: Request<Incoming>,
    query: &Query,
) -> Result<Response<ResponseBody>, ApiError> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let store = &state.store;
    let patch_type = match method {
        Method::GET => {
            return Ok(json_response(
                200,
                &scale_view(&store.get(resource, namespace, name)?),
            ));
        }
        Method::PUT => None,
        Method::PATCH => Some(
            PatchType::from_content_type(&content_type)
                .filter(|t| *t != PatchType::Apply)
                .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?,
        ),
        _ => return Err(method_not_allowed(&method, &path)),
    };
    let body = read_body(state, request.into_body()).await?;
    let body = parse_body(&body, false)?;
    let updated = store.update(
        resource,
        namespace,
        name,
        UpdateMode::Main,
        &query.write_options(),
        |current| {
            let current = current.ok_or_else(|| ApiError::not_found(resource, name))?;
            let mut desired_scale = scale_view(current);
            match patch_type {
                None => desired_scale = body.clone(),
                Some(PatchType::Merge) => patch::merge_patch(&mut desired_scale, &body),
                Some(PatchType::Json) => patch::json_patch(&mut desired_scale, &body)
                    .map_err(|error| ApiError::new(422, "Invalid", error))?,
                Some(_) => patch::strategic_merge_patch(&mut desired_scale, &body, "Scale")
                    .map_err(ApiError::bad_request)?,
            }
            let replicas = desired_scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .filter(|replicas| (0..=i64::from(i32::MAX)).contains(replicas))
                .ok_or_else(|| {
                    ApiError::invalid(
                        resource,
                        name,
                        "spec.replicas: Invalid value: must be a non-negative integer",
                    )
                })?;
            let mut next = current.clone();
            next["spec"]["replicas"] = json!(replicas);
            match desired_scale
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
            {
                Some(version) if !version.is_empty() => {
                    next["metadata"]["resourceVersion"] = json!(version)
                }
                _ => {}
            }
            Ok(next)
        },
    )?;
    Ok(json_response(200, &scale_view(&updated)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_collections_objects_and_subresources() {
        let route = parse_route("/api/v1/namespaces/default/configmaps").unwrap();
        assert!(
            matches!(route, Route::Collection { resource, namespace: Some(ref n) } if resource.kind == "ConfigMap" && n == "default")
        );
        let route = parse_route("/apis/apps/v1/namespaces/ns/statefulsets/vault/scale").unwrap();
        assert!(matches!(
            route,
            Route::Object {
                subresource: Some(Subresource::Scale),
                ..
            }
        ));
        let route = parse_route("/api/v1/namespaces/ns/status").unwrap();
        assert!(
            matches!(route, Route::Object { resource, subresource: Some(Subresource::Status), .. } if resource.kind == "Namespace")
        );
        let route = parse_route("/api/v1/namespaces/ns").unwrap();
        assert!(
            matches!(route, Route::Object { resource, ref name, .. } if resource.kind == "Namespace" && name == "ns")
        );
        assert!(matches!(
            parse_route("/api/v1/configmaps").unwrap(),
            Route::Collection {
                namespace: None,
                ..
            }
        ));
        for missing in [
            "/api/v1/configmaps/x",
            "/apis/apps/v1/namespaces/a/deployments",
            "/api/v1/namespaces/a/configmaps/x/scale",
            "/nope",
        ] {
            assert_eq!(parse_route(missing).unwrap_err().code, 404, "{missing}");
        }
    }

    #[test]
    fn queries_decode_escapes() {
        let query = Query::parse("labelSelector=app%3Dvault%2Ctier+in+%28a%29&watch=1&x=%zz");
        assert_eq!(query.get("labelSelector"), Some("app=vault,tier in (a)"));
        assert!(query.flag("watch"));
        assert_eq!(query.get("x"), Some("%zz"));
    }
}
