//! API errors and the `Status` bodies real API servers answer with.

use serde_json::{Value, json};

use crate::catalog::ResourceType;

/// An error answered as a `kind: Status` body with the matching HTTP code.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `BadRequest`, `Invalid`, ...
    pub reason: String,
    pub message: String,
    /// `details.name`, `details.group` and `details.kind` (the plural resource name).
    pub details: Option<Box<ErrorDetails>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ErrorDetails {
    pub name: String,
    pub group: String,
    pub kind: String,
}

impl ErrorDetails {
    fn of(resource: &ResourceType, name: &str) -> ErrorDetails {
        ErrorDetails {
            name: name.to_string(),
            group: resource.group.to_string(),
            kind: resource.plural.to_string(),
        }
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(resource: &ResourceType, name: &str) -> ApiError {
        ApiError {
            details: Some(Box::new(ErrorDetails::of(resource, name))),
            ..ApiError::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", resource.qualified_plural()),
            )
        }
    }

    pub fn already_exists(resource: &ResourceType, name: &str) -> ApiError {
        ApiError {
            details: Some(Box::new(ErrorDetails::of(resource, name))),
            ..ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", resource.qualified_plural()),
            )
        }
    }

    /// 409 Conflict: `Operation cannot be fulfilled on <resource> "<name>": <why>`.
    pub fn conflict(resource: &ResourceType, name: &str, why: &str) -> ApiError {
        ApiError {
            details: Some(Box::new(ErrorDetails::of(resource, name))),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    resource.qualified_plural()
                ),
            )
        }
    }

    /// 409 Conflict for a stale `resourceVersion`.
    pub fn stale(resource: &ResourceType, name: &str) -> ApiError {
        ApiError::conflict(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid: `<Kind> "<name>" is invalid: <field>: <why>`.
    pub fn invalid(resource: &ResourceType, name: &str, field_error: &str) -> ApiError {
        ApiError {
            details: Some(Box::new(ErrorDetails::of(resource, name))),
            ..ApiError::new(
                422,
                "Invalid",
                format!("{} \"{name}\" is invalid: {field_error}", resource.kind),
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    /// 404 for a URL that names no resource the twin serves.
    pub fn no_route(path: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    /// The `Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            let mut details_json = json!({ "name": details.name, "kind": details.kind });
            if !details.group.is_empty() {
                details_json["group"] = json!(details.group);
            }
            status["details"] = details_json;
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// A `Status` body for a successful operation (answered by some deletes).
pub fn success_status(resource: &ResourceType, name: &str, uid: &str) -> Value {
    let mut details = json!({ "name": name, "kind": resource.plural, "uid": uid });
    if !resource.group.is_empty() {
        details["group"] = json!(resource.group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
