//! Kubernetes `Status` errors: every non-2xx answer is one, with the reason and code clients
//! switch on (`k8s-api-compat.md` R13) and, for validation, causes naming the field.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use storage::StorageError;

/// One reason a request was invalid, pointing at the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueForbidden`, ...
    pub reason: &'static str,
    pub message: String,
    /// The field path, e.g. `metadata.name`.
    pub field: String,
}

impl Cause {
    pub fn required(field: &str) -> Self {
        Self {
            reason: "FieldValueRequired",
            message: "Required value".into(),
            field: field.into(),
        }
    }

    /// A required field, with why it is needed.
    pub fn required_because(field: &str, why: &str) -> Self {
        Self {
            reason: "FieldValueRequired",
            message: format!("Required value: {why}"),
            field: field.into(),
        }
    }

    pub fn unsupported(field: &str, value: &str, supported: &[&str]) -> Self {
        let supported = supported
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            reason: "FieldValueNotSupported",
            message: format!("Unsupported value: {value:?}: supported values: {supported}"),
            field: field.into(),
        }
    }

    pub fn invalid(field: &str, value: &str, why: &str) -> Self {
        Self {
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {value:?}: {why}"),
            field: field.into(),
        }
    }

    pub fn forbidden(field: &str, why: &str) -> Self {
        Self {
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {why}"),
            field: field.into(),
        }
    }
}

/// What the object was, for `details`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub group: String,
    /// The plural resource name, as kube-apiserver puts it in `details.kind`.
    pub resource: String,
    pub name: String,
}

impl Subject {
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub subject: Option<Subject>,
    pub causes: Vec<Cause>,
    /// For an expired continue token: a fresh token to carry on (inconsistently) from.
    pub continue_token: Option<String>,
}

impl ApiError {
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            subject: None,
            causes: Vec::new(),
            continue_token: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn not_found(subject: Subject) -> Self {
        let message = format!("{} {:?} not found", subject.qualified(), subject.name);
        Self {
            subject: Some(subject),
            ..Self::new(StatusCode::NOT_FOUND, "NotFound", message)
        }
    }

    pub fn already_exists(subject: Subject) -> Self {
        let message = format!("{} {:?} already exists", subject.qualified(), subject.name);
        Self {
            subject: Some(subject),
            ..Self::new(StatusCode::CONFLICT, "AlreadyExists", message)
        }
    }

    pub fn conflict(subject: Subject) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply your changes to the latest version and try again",
            subject.qualified(),
            subject.name
        );
        Self {
            subject: Some(subject),
            ..Self::new(StatusCode::CONFLICT, "Conflict", message)
        }
    }

    /// 422 with the causes listed in the message, as kube-apiserver words it.
    pub fn invalid(kind: &str, subject: Subject, causes: Vec<Cause>) -> Self {
        let list = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect::<Vec<_>>()
            .join(", ");
        let message = format!("{kind} {:?} is invalid: {list}", subject.name);
        // kube-apiserver names the kind (not the resource) in an Invalid status's details, so
        // kubectl says `The ServiceInstance "x" is invalid: ...`.
        let subject = Subject {
            resource: kind.to_owned(),
            ..subject
        };
        Self {
            subject: Some(subject),
            causes,
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
        }
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    pub fn with_subject(mut self, subject: Subject) -> Self {
        self.subject = Some(subject);
        self
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(token) = &self.continue_token {
            status["metadata"] = json!({"continue": token});
        }
        if self.subject.is_some() || !self.causes.is_empty() {
            let mut details = serde_json::Map::new();
            if let Some(subject) = &self.subject {
                // Empty fields are omitted, as Kubernetes' `omitempty` does.
                for (field, value) in [
                    ("name", &subject.name),
                    ("group", &subject.group),
                    ("kind", &subject.resource),
                ] {
                    if !value.is_empty() {
                        details.insert(field.into(), json!(value));
                    }
                }
            }
            if !self.causes.is_empty() {
                let causes: Vec<Value> = self
                    .causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect();
                details.insert("causes".into(), json!(causes));
            }
            status["details"] = Value::Object(details);
        }
        status
    }

    /// Maps a storage failure on `subject`.
    pub fn from_storage(error: StorageError, subject: Subject) -> Self {
        match error {
            StorageError::KeyExists { .. } => Self::already_exists(subject),
            StorageError::RevisionMismatch { .. } => Self::conflict(subject),
            StorageError::NotFound { .. } => Self::not_found(subject),
            StorageError::Compacted {
                requested,
                compact_revision,
            } => Self::expired(format!(
                "too old resource version: {requested} ({compact_revision})"
            )),
            StorageError::FutureRevision { requested, current } => {
                let mut error = Self::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Timeout",
                    format!("Too large resource version: {requested}, current: {current}"),
                );
                error.causes.push(Cause {
                    reason: "ResourceVersionTooLarge",
                    message: "Too large resource version".into(),
                    field: String::new(),
                });
                error
            }
            StorageError::WatchClosed { reason } => Self::expired(reason),
            StorageError::TooLarge(message) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!("Request entity too large for the store: {message}"),
            ),
            StorageError::Unavailable(message) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                format!("storage unavailable: {message}"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, axum::Json(self.to_status())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_name_the_plural_resource_like_kube_apiserver() {
        let error = ApiError::conflict(Subject {
            group: "servicecatalog.k8s.io".into(),
            resource: "serviceinstances".into(),
            name: "x".into(),
        });
        let status = error.to_status();
        assert_eq!(status["code"], 409);
        assert_eq!(status["reason"], "Conflict");
        assert_eq!(status["details"]["kind"], "serviceinstances");
        assert!(status["message"].as_str().is_some_and(|m| m.starts_with(
            "Operation cannot be fulfilled on serviceinstances.servicecatalog.k8s.io \"x\""
        )));
    }

    #[test]
    fn invalid_lists_each_cause_with_its_field() {
        let error = ApiError::invalid(
            "Secret",
            Subject::default(),
            vec![Cause::required("metadata.name")],
        );
        let status = error.to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "FieldValueRequired"
        );
    }
}
