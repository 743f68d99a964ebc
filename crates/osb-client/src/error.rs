//! Typed client errors, classified the way the spec tells a platform to act on them.
//!
//! Two questions decide what a platform does after a failed call, and each has one answer here:
//! [`Error::requires_orphan_mitigation`] (the spec's orphan-mitigation table) and
//! [`Error::is_retriable`] (whether the same request may succeed later).

use std::fmt;
use std::time::Duration;

use crate::validate::CatalogProblems;

/// The OSB operation a request performed; errors carry it because the spec's rules depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    GetCatalog,
    Provision,
    Update,
    Deprovision,
    FetchInstance,
    InstanceLastOperation,
    Bind,
    Unbind,
    FetchBinding,
    BindingLastOperation,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GetCatalog => "get catalog",
            Self::Provision => "provision",
            Self::Update => "update",
            Self::Deprovision => "deprovision",
            Self::FetchInstance => "fetch instance",
            Self::InstanceLastOperation => "poll instance last operation",
            Self::Bind => "bind",
            Self::Unbind => "unbind",
            Self::FetchBinding => "fetch binding",
            Self::BindingLastOperation => "poll binding last operation",
        }
    }

    /// Operations that may leave a resource at the broker the platform does not know about.
    fn creates_or_deletes(self) -> bool {
        matches!(
            self,
            Self::Provision | Self::Deprovision | Self::Bind | Self::Unbind
        )
    }

    /// Operations whose timeout or malformed answer may hide a created resource.
    fn creates(self) -> bool {
        matches!(self, Self::Provision | Self::Bind)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` codes the spec defines, and any other a broker sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerErrorCode {
    /// The broker can only do this asynchronously; retry with `accepts_incomplete=true`.
    AsyncRequired,
    /// Another operation on the same resource is in progress; retry later.
    ConcurrencyError,
    /// The binding needs an application (`app_guid`).
    RequiresApp,
    /// The `maintenance_info.version` sent does not match the broker's catalog.
    MaintenanceInfoConflict,
    Other(String),
}

impl BrokerErrorCode {
    pub fn parse(code: &str) -> Self {
        match code {
            "AsyncRequired" => Self::AsyncRequired,
            "ConcurrencyError" => Self::ConcurrencyError,
            "RequiresApp" => Self::RequiresApp,
            "MaintenanceInfoConflict" => Self::MaintenanceInfoConflict,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::AsyncRequired => "AsyncRequired",
            Self::ConcurrencyError => "ConcurrencyError",
            Self::RequiresApp => "RequiresApp",
            Self::MaintenanceInfoConflict => "MaintenanceInfoConflict",
            Self::Other(code) => code,
        }
    }
}

/// A response the broker sent with a status the operation does not treat as success.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerError {
    pub operation: Operation,
    pub status: u16,
    pub code: Option<BrokerErrorCode>,
    pub description: Option<String>,
    pub instance_usable: Option<bool>,
    pub update_repeatable: Option<bool>,
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: the broker answered {}", self.operation, self.status)?;
        if let Some(code) = &self.code {
            write!(f, " ({})", code.as_str())?;
        }
        if let Some(description) = &self.description {
            write!(f, ": {description}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid broker client configuration: {0}")]
    Config(String),
    /// The request never reached the broker: connection refused, DNS failure, TLS handshake
    /// failure (e.g. a certificate from an unknown CA).
    #[error("{operation}: could not connect to the broker at {url}: {message}")]
    Connection {
        operation: Operation,
        url: String,
        message: String,
    },
    /// The request was sent but the answer was cut off (connection dropped mid-response): the
    /// broker may have acted on it, as after a timeout.
    #[error(
        "{operation}: the connection to the broker at {url} broke before a full answer: {message}"
    )]
    Interrupted {
        operation: Operation,
        url: String,
        message: String,
    },
    #[error("{operation}: the broker at {url} did not answer within {timeout:?}")]
    Timeout {
        operation: Operation,
        url: String,
        timeout: Duration,
    },
    #[error("{0}")]
    Broker(BrokerError),
    /// A status the operation accepts, but a body that is not what the spec says it must be.
    #[error("{operation}: the broker's {status} response is malformed: {reason}")]
    MalformedResponse {
        operation: Operation,
        status: u16,
        reason: String,
    },
    #[error("{operation}: the broker's {status} response is larger than the {limit}-byte limit")]
    ResponseTooLarge {
        operation: Operation,
        status: u16,
        limit: usize,
    },
    #[error("the broker's catalog is invalid: {0}")]
    InvalidCatalog(CatalogProblems),
}

impl Error {
    /// The operation that failed, when the failure came from a request.
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Self::Connection { operation, .. }
            | Self::Interrupted { operation, .. }
            | Self::Timeout { operation, .. }
            | Self::MalformedResponse { operation, .. }
            | Self::ResponseTooLarge { operation, .. } => Some(*operation),
            Self::Broker(e) => Some(e.operation),
            Self::InvalidCatalog(_) => Some(Operation::GetCatalog),
            Self::Config(_) => None,
        }
    }

    /// The HTTP status the broker answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Broker(e) => Some(e.status),
            Self::MalformedResponse { status, .. } | Self::ResponseTooLarge { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The broker's `error` code, if it sent one.
    pub fn broker_code(&self) -> Option<&BrokerErrorCode> {
        match self {
            Self::Broker(e) => e.code.as_ref(),
            _ => None,
        }
    }

    /// `410 Gone`: for deprovision, unbind and their last_operation polls this means success.
    pub fn is_gone(&self) -> bool {
        self.status() == Some(410)
    }

    pub fn is_async_required(&self) -> bool {
        self.broker_code() == Some(&BrokerErrorCode::AsyncRequired)
    }

    pub fn is_concurrency_error(&self) -> bool {
        self.broker_code() == Some(&BrokerErrorCode::ConcurrencyError)
    }

    /// The spec's orphan-mitigation table: must the platform now delete what it asked for (and
    /// keep deleting until the broker confirms), because the broker may have created it?
    ///
    /// Yes for provision and bind on a timeout (or an answer cut off, which leaves the platform
    /// just as unsure) or a 201/202 with a malformed body; yes for
    /// provision, deprovision, bind and unbind on a 5xx or an unexpected 2xx. Never for a 200
    /// (even malformed), a 408 or any other 4xx, and never for updates or reads.
    pub fn requires_orphan_mitigation(&self) -> bool {
        match self {
            Self::Timeout { operation, .. } | Self::Interrupted { operation, .. } => {
                operation.creates()
            }
            Self::Broker(e) => {
                e.operation.creates_or_deletes()
                    && ((500..=599).contains(&e.status) || (200..=299).contains(&e.status))
            }
            Self::MalformedResponse {
                operation, status, ..
            }
            | Self::ResponseTooLarge {
                operation, status, ..
            } => operation.creates() && matches!(status, 201 | 202),
            Self::Connection { .. } | Self::Config(_) | Self::InvalidCatalog(_) => false,
        }
    }

    /// Whether the same request may succeed if sent again later (after a backoff).
    ///
    /// Timeouts, connection failures, 5xx, 408, 429 and `ConcurrencyError` are transient. Other
    /// 4xx answers (`400`, `409`, `422` with any other code, ...) are the broker's final word on
    /// this request: the platform must change the request, not repeat it. `AsyncRequired` is
    /// retriable only with `accepts_incomplete=true`, so it is not retriable as is.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Connection { .. } | Self::Interrupted { .. } | Self::Timeout { .. } => true,
            Self::Broker(e) => match e.status {
                408 | 429 => true,
                500..=599 => true,
                _ => e.code == Some(BrokerErrorCode::ConcurrencyError),
            },
            // A malformed or oversized body is a broker bug; trying again may hit a fixed broker.
            Self::MalformedResponse { .. } | Self::ResponseTooLarge { .. } => true,
            Self::InvalidCatalog(_) => true,
            Self::Config(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(operation: Operation, status: u16, code: Option<&str>) -> Error {
        Error::Broker(BrokerError {
            operation,
            status,
            code: code.map(BrokerErrorCode::parse),
            description: None,
            instance_usable: None,
            update_repeatable: None,
        })
    }

    fn malformed(operation: Operation, status: u16) -> Error {
        Error::MalformedResponse {
            operation,
            status,
            reason: "x".into(),
        }
    }

    fn timeout(operation: Operation) -> Error {
        Error::Timeout {
            operation,
            url: "u".into(),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn orphan_mitigation_follows_the_spec_table() {
        use Operation::*;
        // Rows that require it.
        for (error, why) in [
            (timeout(Provision), "provision timeout"),
            (timeout(Bind), "bind timeout"),
            (
                Error::Interrupted {
                    operation: Provision,
                    url: "u".into(),
                    message: "reset".into(),
                },
                "provision cut off",
            ),
            (malformed(Provision, 201), "provision 201 malformed"),
            (malformed(Provision, 202), "provision 202 malformed"),
            (malformed(Bind, 201), "bind 201 malformed"),
            (malformed(Bind, 202), "bind 202 malformed"),
            (broker(Provision, 500, None), "provision 5xx"),
            (broker(Deprovision, 503, None), "deprovision 5xx"),
            (broker(Bind, 502, None), "bind 5xx"),
            (broker(Unbind, 500, None), "unbind 5xx"),
            (broker(Provision, 204, None), "provision other 2xx"),
            (broker(Unbind, 204, None), "unbind other 2xx"),
        ] {
            assert!(error.requires_orphan_mitigation(), "{why}");
        }
        // Rows that do not.
        for (error, why) in [
            (malformed(Provision, 200), "200 malformed"),
            (malformed(Bind, 200), "bind 200 malformed"),
            (broker(Provision, 408, None), "408"),
            (broker(Provision, 400, None), "other 4xx"),
            (broker(Provision, 409, None), "conflict"),
            (broker(Update, 500, None), "update 5xx"),
            (broker(Update, 204, None), "update other 2xx"),
            (timeout(Update), "update timeout"),
            (timeout(Deprovision), "deprovision timeout"),
            (timeout(Unbind), "unbind timeout"),
            (malformed(Update, 202), "update 202 malformed"),
            (broker(GetCatalog, 500, None), "catalog 5xx"),
            (
                Error::Connection {
                    operation: Provision,
                    url: "u".into(),
                    message: "refused".into(),
                },
                "never reached the broker",
            ),
        ] {
            assert!(!error.requires_orphan_mitigation(), "{why}");
        }
    }

    #[test]
    fn only_transient_failures_are_retriable() {
        use Operation::*;
        assert!(broker(Provision, 503, None).is_retriable());
        assert!(broker(Provision, 422, Some("ConcurrencyError")).is_retriable());
        assert!(broker(Provision, 429, None).is_retriable());
        assert!(!broker(Provision, 400, None).is_retriable());
        assert!(!broker(Provision, 409, None).is_retriable());
        assert!(!broker(Provision, 422, Some("MaintenanceInfoConflict")).is_retriable());
        assert!(!broker(Provision, 422, Some("AsyncRequired")).is_retriable());
        assert!(timeout(Provision).is_retriable());
    }

    #[test]
    fn codes_are_recognised_and_gone_is_visible() {
        let e = broker(Operation::Provision, 422, Some("AsyncRequired"));
        assert!(e.is_async_required() && !e.is_concurrency_error());
        assert!(broker(Operation::Deprovision, 410, None).is_gone());
        assert_eq!(
            BrokerErrorCode::parse("Custom"),
            BrokerErrorCode::Other("Custom".into())
        );
        assert_eq!(
            broker(Operation::Bind, 409, Some("Custom")).to_string(),
            "bind: the broker answered 409 (Custom)"
        );
    }
}
