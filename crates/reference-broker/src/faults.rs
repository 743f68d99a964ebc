//! Fault injection, settable at run time through `/admin/faults`, so that tests of platforms can
//! make this broker slow, wrong, or gone on purpose.
//!
//! A fault targets one endpoint (or `*`), may add latency, may replace the answer (an error
//! status with an OSB error body, a malformed body, a raw body of any size and content type, or
//! a dropped connection), and may apply only to the next N calls.

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Fault targets are the client's [`Operation`]s: one list of OSB endpoints for both sides.
pub use osb_client::Operation as Endpoint;

/// Which endpoint a request is for; `None` for anything outside the OSB API.
pub fn classify(method: &Method, path: &str) -> Option<Endpoint> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["v2", "catalog"]) => Some(Endpoint::GetCatalog),
        (&Method::PUT, ["v2", "service_instances", _]) => Some(Endpoint::Provision),
        (&Method::PATCH, ["v2", "service_instances", _]) => Some(Endpoint::Update),
        (&Method::DELETE, ["v2", "service_instances", _]) => Some(Endpoint::Deprovision),
        (&Method::GET, ["v2", "service_instances", _]) => Some(Endpoint::FetchInstance),
        (&Method::GET, ["v2", "service_instances", _, "last_operation"]) => {
            Some(Endpoint::InstanceLastOperation)
        }
        (&Method::PUT, ["v2", "service_instances", _, "service_bindings", _]) => {
            Some(Endpoint::Bind)
        }
        (&Method::DELETE, ["v2", "service_instances", _, "service_bindings", _]) => {
            Some(Endpoint::Unbind)
        }
        (&Method::GET, ["v2", "service_instances", _, "service_bindings", _]) => {
            Some(Endpoint::FetchBinding)
        }
        (
            &Method::GET,
            [
                "v2",
                "service_instances",
                _,
                "service_bindings",
                _,
                "last_operation",
            ],
        ) => Some(Endpoint::BindingLastOperation),
        _ => None,
    }
}

/// Which endpoints a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Target {
    One(Endpoint),
    All(AllEndpoints),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllEndpoints {
    #[serde(rename = "*")]
    All,
}

/// What the broker answers instead of doing its job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultResponse {
    /// A status with an OSB error body.
    Error {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// A status (default 200) with a body that is not valid JSON but claims to be.
    Malformed {
        #[serde(default = "ok")]
        status: u16,
    },
    /// Anything: a status, a content type, a body, repeated to `size` bytes if given.
    Raw {
        #[serde(default = "ok")]
        status: u16,
        #[serde(default = "json_type")]
        content_type: String,
        #[serde(default)]
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<usize>,
    },
    /// The connection is closed without a complete response.
    Drop,
}

fn ok() -> u16 {
    200
}

fn json_type() -> String {
    "application/json".into()
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub endpoint: Target,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<FaultResponse>,
    /// Apply to the next `times` calls only; forever when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

/// The largest raw body a fault may ask for (enough for "a 50 MiB body").
pub const MAX_FAULT_BODY: usize = 256 * 1024 * 1024;

impl Fault {
    /// Rejects faults that could not be applied, with the reason.
    pub fn check(&self) -> Result<(), String> {
        match &self.response {
            Some(
                FaultResponse::Error { status, .. }
                | FaultResponse::Malformed { status }
                | FaultResponse::Raw { status, .. },
            ) if StatusCode::from_u16(*status).is_err() || *status < 200 => {
                Err(format!("status {status} is not a valid final HTTP status"))
            }
            Some(FaultResponse::Raw {
                size: Some(size), ..
            }) if *size > MAX_FAULT_BODY => Err(format!(
                "size {size} is larger than the {MAX_FAULT_BODY}-byte maximum"
            )),
            Some(FaultResponse::Raw { content_type, .. })
                if header::HeaderValue::from_str(content_type).is_err() =>
            {
                Err(format!(
                    "content type {content_type:?} is not a valid header value"
                ))
            }
            _ if self.times == Some(0) => Err("times must be at least 1".into()),
            _ => Ok(()),
        }
    }

    fn applies_to(&self, endpoint: Endpoint) -> bool {
        match self.endpoint {
            Target::All(_) => true,
            Target::One(target) => target == endpoint,
        }
    }
}

/// What to do with one request, decided by the faults in force.
#[derive(Debug, Default)]
pub struct Decision {
    pub latency: Option<Duration>,
    pub response: Option<FaultResponse>,
}

/// The faults in force, first match wins.
#[derive(Debug, Default)]
pub struct Faults {
    faults: Mutex<Vec<Fault>>,
}

impl Faults {
    pub fn add(&self, fault: Fault) {
        self.lock().push(fault);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn list(&self) -> Vec<Fault> {
        self.lock().clone()
    }

    /// Consumes one use of the first fault that applies to `endpoint`.
    pub fn decide(&self, endpoint: Endpoint) -> Decision {
        let mut faults = self.lock();
        let Some(index) = faults.iter().position(|f| f.applies_to(endpoint)) else {
            return Decision::default();
        };
        let fault = faults[index].clone();
        if let Some(times) = &mut faults[index].times {
            *times -= 1;
            if *times == 0 {
                faults.remove(index);
            }
        }
        Decision {
            latency: fault.latency_ms.map(Duration::from_millis),
            response: fault.response,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
        // The list stays consistent even if a holder panicked: every change is one push/remove.
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FaultResponse {
    pub fn into_response(self) -> Response {
        let status_of = |code: u16| StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        match self {
            Self::Error {
                status,
                error,
                description,
            } => {
                let mut body = serde_json::Map::new();
                if let Some(error) = error {
                    body.insert("error".into(), json!(error));
                }
                body.insert(
                    "description".into(),
                    json!(description.unwrap_or_else(|| "injected fault".into())),
                );
                (status_of(status), axum::Json(body)).into_response()
            }
            Self::Malformed { status } => (
                status_of(status),
                [(header::CONTENT_TYPE, "application/json")],
                "{\"operation\": \"op-1\", \"credentials\": {",
            )
                .into_response(),
            Self::Raw {
                status,
                content_type,
                body,
                size,
            } => {
                let body = match size {
                    Some(size) if !body.is_empty() => body.repeat(size.div_ceil(body.len())),
                    Some(size) => " ".repeat(size),
                    None => body,
                };
                (
                    status_of(status),
                    [(header::CONTENT_TYPE, content_type)],
                    body,
                )
                    .into_response()
            }
            // A body that fails at once: hyper aborts the connection mid-response, which is what
            // a client sees when a broker process dies or a proxy drops the connection.
            Self::Drop => {
                let failing = futures_util::stream::once(async {
                    Err::<axum::body::Bytes, _>(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "injected dropped connection",
                    ))
                });
                (StatusCode::OK, Body::from_stream(failing)).into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_by_method_and_path() {
        let id = "/v2/service_instances/i1";
        assert_eq!(classify(&Method::PUT, id), Some(Endpoint::Provision));
        assert_eq!(classify(&Method::PATCH, id), Some(Endpoint::Update));
        assert_eq!(
            classify(
                &Method::GET,
                "/v2/service_instances/i/service_bindings/b/last_operation"
            ),
            Some(Endpoint::BindingLastOperation)
        );
        assert_eq!(classify(&Method::GET, "/admin/faults"), None);
    }

    #[test]
    fn a_counted_fault_expires_and_the_first_match_wins() -> Result<(), serde_json::Error> {
        let faults = Faults::default();
        faults.add(serde_json::from_value(json!({
            "endpoint": "provision", "times": 2,
            "response": {"kind": "error", "status": 500}
        }))?);
        faults.add(serde_json::from_value(
            json!({"endpoint": "*", "latency_ms": 5}),
        )?);
        assert!(faults.decide(Endpoint::Provision).response.is_some());
        assert!(faults.decide(Endpoint::Provision).response.is_some());
        let third = faults.decide(Endpoint::Provision);
        assert!(third.response.is_none());
        assert_eq!(third.latency, Some(Duration::from_millis(5)));
        assert_eq!(faults.list().len(), 1);
        Ok(())
    }

    #[test]
    fn impossible_faults_are_refused() -> Result<(), serde_json::Error> {
        let bad_status: Fault = serde_json::from_value(json!({
            "endpoint": "bind", "response": {"kind": "error", "status": 99}}))?;
        assert!(bad_status.check().is_err());
        let zero: Fault = serde_json::from_value(json!({"endpoint": "bind", "times": 0}))?;
        assert!(zero.check().is_err());
        assert!(
            serde_json::from_value::<Fault>(json!({"endpoint": "bind", "latncy_ms": 1})).is_err()
        );
        assert!(serde_json::from_value::<Fault>(json!({"endpoint": "nope"})).is_err());
        Ok(())
    }
}
