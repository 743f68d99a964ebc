//! The async OSB client: one method per spec endpoint.
//!
//! Every request carries `X-Broker-API-Version`, a fresh `X-Broker-API-Request-Identity` (also
//! logged, so a broker's logs can be matched with ours) and, when given, the originating
//! identity. Bodies are read with a size cap and under the request timeout, so a hostile or broken
//! broker yields a typed [`Error`], never a hang or an unbounded allocation.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{BrokerError, BrokerErrorCode, Error, Operation};
use crate::identity::OriginatingIdentity;
use crate::types::{
    AsyncOperationBody, BindRequest, BindingBody, Catalog, ErrorBody, FetchInstanceResponse,
    InstanceOperationBody, LastOperationBody, ProvisionRequest, RotateBindingRequest,
    UpdateRequest,
};
use crate::validate::validate_catalog;

pub const API_VERSION_HEADER: &str = "X-Broker-API-Version";
pub const REQUEST_IDENTITY_HEADER: &str = "X-Broker-API-Request-Identity";
pub const ORIGINATING_IDENTITY_HEADER: &str = "X-Broker-API-Originating-Identity";
/// The spec version this crate implements and sends unless told otherwise.
pub const DEFAULT_API_VERSION: &str = "2.17";
/// The default cap on a response body; catalogs of hundreds of plans stay well under it.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// How the client proves who it is to the broker.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    Basic { username: String, password: String },
    Bearer { token: String },
}

impl std::fmt::Debug for Auth {
    // Never print credentials, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Self::Bearer { .. } => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Everything needed to talk to one broker.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The broker's base URL; `/v2/...` is appended to its path.
    pub url: Url,
    /// Sent as `X-Broker-API-Version`; lower it for brokers that only speak an older 2.x.
    pub api_version: String,
    pub auth: Option<Auth>,
    /// PEM CA certificates to trust instead of the system roots.
    pub ca_bundle_pem: Option<Vec<u8>>,
    /// Accept any server certificate. Explicit, and never combined with `ca_bundle_pem`.
    pub insecure_skip_tls_verify: bool,
    pub connect_timeout: Duration,
    /// The whole request, including reading the body.
    pub request_timeout: Duration,
    pub max_response_bytes: usize,
}

impl ClientConfig {
    /// A config for the broker at `url` with the defaults: API 2.17, no auth, system roots,
    /// 10 s to connect, 60 s per request (the spec's typical platform timeout).
    pub fn new(url: &str) -> Result<Self, Error> {
        let url = Url::parse(url).map_err(|e| Error::Config(format!("broker URL {url:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "broker URL {url} must be http or https"
            )));
        }
        Ok(Self {
            url,
            api_version: DEFAULT_API_VERSION.to_owned(),
            auth: None,
            ca_bundle_pem: None,
            insecure_skip_tls_verify: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    pub fn with_api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    pub fn with_ca_bundle(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_bundle_pem = Some(pem.into());
        self
    }

    pub fn with_insecure_skip_tls_verify(mut self, skip: bool) -> Self {
        self.insecure_skip_tls_verify = skip;
        self
    }

    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    pub fn with_max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }
}

/// Per-call options: whether the platform accepts an asynchronous answer, and on whose behalf.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    pub accepts_incomplete: bool,
    pub originating_identity: Option<OriginatingIdentity>,
}

impl CallOptions {
    /// `accepts_incomplete=true`, no identity.
    pub fn asynchronous() -> Self {
        Self {
            accepts_incomplete: true,
            originating_identity: None,
        }
    }

    pub fn with_identity(mut self, identity: OriginatingIdentity) -> Self {
        self.originating_identity = Some(identity);
        self
    }
}

/// How a broker accepted a create or update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// `200`: it already existed identically (create), or the update is done.
    Ok,
    /// `201`: created now.
    Created,
    /// `202`: in progress; poll `last_operation` with the returned operation.
    Async,
}

/// How a broker accepted a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// `200`: deleted.
    Done,
    /// `410`: it was already gone — success, as the spec says.
    Gone,
    /// `202`: in progress.
    Async { operation: Option<String> },
}

/// The answer to a provision or update.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceResponse {
    pub accepted: Accepted,
    pub body: InstanceOperationBody,
}

/// The answer to a bind.
#[derive(Debug, Clone, PartialEq)]
pub struct BindResponse {
    pub accepted: Accepted,
    pub body: BindingBody,
}

/// Which operation to poll, and for which service and plan (all optional in the spec).
#[derive(Debug, Clone, Default)]
pub struct LastOperationRequest {
    pub service_id: Option<String>,
    pub plan_id: Option<String>,
    pub operation: Option<String>,
}

/// A `last_operation` answer with the broker's `Retry-After` hint.
#[derive(Debug, Clone, PartialEq)]
pub struct LastOperation {
    pub body: LastOperationBody,
    pub retry_after: Option<Duration>,
}

/// An OSB client for one broker. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    config: Arc<ClientConfig>,
}

/// A response whose body has been read (within the limit).
struct RawResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        if config.insecure_skip_tls_verify && config.ca_bundle_pem.is_some() {
            return Err(Error::Config(
                "a CA bundle and insecure-skip-TLS-verify cannot be used together".into(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            // A broker answering with a redirect is a misconfiguration; following it would send
            // the credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "service-catalog-osb-client/",
                env!("CARGO_PKG_VERSION")
            ));
        if let Some(pem) = &config.ca_bundle_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Config(format!("CA bundle: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Config("CA bundle: no PEM certificate found".into()));
            }
            builder = builder.tls_certs_only(certs);
        }
        if config.insecure_skip_tls_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(Self {
            http,
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// `GET /v2/catalog`, validated: an invalid catalog is [`Error::InvalidCatalog`] listing
    /// every problem with its JSON path.
    pub async fn catalog(&self) -> Result<Catalog, Error> {
        let op = Operation::GetCatalog;
        let response = self
            .send::<()>(op, Method::GET, &["catalog"], &[], None, None)
            .await?;
        match response.status.as_u16() {
            200 => {
                let value: serde_json::Value = parse_json(op, &response)?;
                validate_catalog(&value).map_err(Error::InvalidCatalog)?;
                serde_json::from_value(value).map_err(|e| Error::MalformedResponse {
                    operation: op,
                    status: 200,
                    reason: e.to_string(),
                })
            }
            _ => Err(broker_error(op, &response)),
        }
    }

    /// `PUT /v2/service_instances/:instance_id`.
    pub async fn provision(
        &self,
        instance_id: &str,
        request: &ProvisionRequest,
        options: &CallOptions,
    ) -> Result<InstanceResponse, Error> {
        let op = Operation::Provision;
        let query = accepts_incomplete(options);
        let response = self
            .send(
                op,
                Method::PUT,
                &["service_instances", instance_id],
                &query,
                Some(request),
                options.originating_identity.as_ref(),
            )
            .await?;
        let accepted = match response.status.as_u16() {
            200 => Accepted::Ok,
            201 => Accepted::Created,
            202 => Accepted::Async,
            _ => return Err(broker_error(op, &response)),
        };
        Ok(InstanceResponse {
            accepted,
            body: parse_json(op, &response)?,
        })
    }

    /// `PATCH /v2/service_instances/:instance_id`.
    pub async fn update(
        &self,
        instance_id: &str,
        request: &UpdateRequest,
        options: &CallOptions,
    ) -> Result<InstanceResponse, Error> {
        let op = Operation::Update;
        let query = accepts_incomplete(options);
        let response = self
            .send(
                op,
                Method::PATCH,
                &["service_instances", instance_id],
                &query,
                Some(request),
                options.originating_identity.as_ref(),
            )
            .await?;
        let accepted = match response.status.as_u16() {
            200 => Accepted::Ok,
            202 => Accepted::Async,
            _ => return Err(broker_error(op, &response)),
        };
        Ok(InstanceResponse {
            accepted,
            body: parse_json(op, &response)?,
        })
    }

    /// `DELETE /v2/service_instances/:instance_id`. `410 Gone` is [`Deleted::Gone`], a success.
    pub async fn deprovision(
        &self,
        instance_id: &str,
        service_id: &str,
        plan_id: &str,
        options: &CallOptions,
    ) -> Result<Deleted, Error> {
        let mut query = accepts_incomplete(options);
        query.push(("service_id", service_id.to_owned()));
        query.push(("plan_id", plan_id.to_owned()));
        self.delete(
            Operation::Deprovision,
            &["service_instances", instance_id],
            &query,
            options,
        )
        .await
    }

    /// `GET /v2/service_instances/:instance_id`.
    pub async fn fetch_instance(
        &self,
        instance_id: &str,
        service_id: Option<&str>,
        plan_id: Option<&str>,
    ) -> Result<FetchInstanceResponse, Error> {
        let op = Operation::FetchInstance;
        let query = ids_query(service_id, plan_id);
        let response = self
            .send::<()>(
                op,
                Method::GET,
                &["service_instances", instance_id],
                &query,
                None,
                None,
            )
            .await?;
        match response.status.as_u16() {
            200 => parse_json(op, &response),
            _ => Err(broker_error(op, &response)),
        }
    }

    /// `GET /v2/service_instances/:instance_id/last_operation`. `410 Gone` is returned as an
    /// error with [`Error::is_gone`]: after a deprovision it means the instance is gone (success).
    pub async fn instance_last_operation(
        &self,
        instance_id: &str,
        request: &LastOperationRequest,
    ) -> Result<LastOperation, Error> {
        self.last_operation(
            Operation::InstanceLastOperation,
            &["service_instances", instance_id, "last_operation"],
            request,
        )
        .await
    }

    /// `PUT /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    pub async fn bind(
        &self,
        instance_id: &str,
        binding_id: &str,
        request: &BindRequest,
        options: &CallOptions,
    ) -> Result<BindResponse, Error> {
        self.put_binding(instance_id, binding_id, request, options)
            .await
    }

    /// Binding rotation: a new binding `binding_id` succeeding `predecessor_binding_id`.
    pub async fn rotate_binding(
        &self,
        instance_id: &str,
        binding_id: &str,
        request: &RotateBindingRequest,
        options: &CallOptions,
    ) -> Result<BindResponse, Error> {
        self.put_binding(instance_id, binding_id, request, options)
            .await
    }

    /// `DELETE /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    pub async fn unbind(
        &self,
        instance_id: &str,
        binding_id: &str,
        service_id: &str,
        plan_id: &str,
        options: &CallOptions,
    ) -> Result<Deleted, Error> {
        let mut query = accepts_incomplete(options);
        query.push(("service_id", service_id.to_owned()));
        query.push(("plan_id", plan_id.to_owned()));
        self.delete(
            Operation::Unbind,
            &[
                "service_instances",
                instance_id,
                "service_bindings",
                binding_id,
            ],
            &query,
            options,
        )
        .await
    }

    /// `GET /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    pub async fn fetch_binding(
        &self,
        instance_id: &str,
        binding_id: &str,
        service_id: Option<&str>,
        plan_id: Option<&str>,
    ) -> Result<BindingBody, Error> {
        let op = Operation::FetchBinding;
        let query = ids_query(service_id, plan_id);
        let response = self
            .send::<()>(
                op,
                Method::GET,
                &[
                    "service_instances",
                    instance_id,
                    "service_bindings",
                    binding_id,
                ],
                &query,
                None,
                None,
            )
            .await?;
        match response.status.as_u16() {
            200 => parse_json(op, &response),
            _ => Err(broker_error(op, &response)),
        }
    }

    /// `GET .../service_bindings/:binding_id/last_operation`.
    pub async fn binding_last_operation(
        &self,
        instance_id: &str,
        binding_id: &str,
        request: &LastOperationRequest,
    ) -> Result<LastOperation, Error> {
        self.last_operation(
            Operation::BindingLastOperation,
            &[
                "service_instances",
                instance_id,
                "service_bindings",
                binding_id,
                "last_operation",
            ],
            request,
        )
        .await
    }

    async fn put_binding<B: Serialize>(
        &self,
        instance_id: &str,
        binding_id: &str,
        body: &B,
        options: &CallOptions,
    ) -> Result<BindResponse, Error> {
        let op = Operation::Bind;
        let query = accepts_incomplete(options);
        let response = self
            .send(
                op,
                Method::PUT,
                &[
                    "service_instances",
                    instance_id,
                    "service_bindings",
                    binding_id,
                ],
                &query,
                Some(body),
                options.originating_identity.as_ref(),
            )
            .await?;
        let accepted = match response.status.as_u16() {
            200 => Accepted::Ok,
            201 => Accepted::Created,
            202 => Accepted::Async,
            _ => return Err(broker_error(op, &response)),
        };
        Ok(BindResponse {
            accepted,
            body: parse_json(op, &response)?,
        })
    }

    async fn delete(
        &self,
        op: Operation,
        segments: &[&str],
        query: &[(&str, String)],
        options: &CallOptions,
    ) -> Result<Deleted, Error> {
        let response = self
            .send::<()>(
                op,
                Method::DELETE,
                segments,
                query,
                None,
                options.originating_identity.as_ref(),
            )
            .await?;
        match response.status.as_u16() {
            // The spec's body here is `{}`; we do not need it, so an empty body is tolerated.
            200 => Ok(Deleted::Done),
            410 => Ok(Deleted::Gone),
            202 => {
                let body: AsyncOperationBody = parse_json(op, &response)?;
                Ok(Deleted::Async {
                    operation: body.operation,
                })
            }
            _ => Err(broker_error(op, &response)),
        }
    }

    async fn last_operation(
        &self,
        op: Operation,
        segments: &[&str],
        request: &LastOperationRequest,
    ) -> Result<LastOperation, Error> {
        let mut query = ids_query(request.service_id.as_deref(), request.plan_id.as_deref());
        if let Some(operation) = &request.operation {
            query.push(("operation", operation.clone()));
        }
        let response = self
            .send::<()>(op, Method::GET, segments, &query, None, None)
            .await?;
        match response.status.as_u16() {
            200 => Ok(LastOperation {
                body: parse_json(op, &response)?,
                retry_after: retry_after(&response.headers),
            }),
            _ => Err(broker_error(op, &response)),
        }
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Result<Url, Error> {
        let mut url = self.config.url.clone();
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                Error::Config(format!("broker URL {} cannot be a base", self.config.url))
            })?;
            path.pop_if_empty().push("v2");
            // `push` percent-encodes, so IDs with `/` or `?` cannot escape their segment.
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    async fn send<B: Serialize>(
        &self,
        op: Operation,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&B>,
        identity: Option<&OriginatingIdentity>,
    ) -> Result<RawResponse, Error> {
        let url = self.url(segments, query)?;
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .header(API_VERSION_HEADER, &self.config.api_version)
            .header(REQUEST_IDENTITY_HEADER, &request_id);
        if let Some(identity) = identity {
            request = request.header(ORIGINATING_IDENTITY_HEADER, identity.header_value());
        }
        request = match &self.config.auth {
            Some(Auth::Basic { username, password }) => {
                request.basic_auth(username, Some(password))
            }
            Some(Auth::Bearer { token }) => request.bearer_auth(token),
            None => request,
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = std::time::Instant::now();
        let result = match request.send().await {
            Ok(response) => self.read(op, response).await,
            Err(e) => Err(transport_error(op, &url, &e, self.config.request_timeout)),
        };
        match &result {
            Ok(response) => tracing::debug!(
                %request_id, operation = %op, %method, url = %redact(&url),
                status = response.status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64,
                "OSB request"
            ),
            Err(error) => tracing::debug!(
                %request_id, operation = %op, %method, url = %redact(&url), %error,
                elapsed_ms = started.elapsed().as_millis() as u64, "OSB request failed"
            ),
        }
        result
    }

    async fn read(&self, op: Operation, response: reqwest::Response) -> Result<RawResponse, Error> {
        let status = response.status();
        let limit = self.config.max_response_bytes;
        let too_large = || Error::ResponseTooLarge {
            operation: op,
            status: status.as_u16(),
            limit,
        };
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let headers = response.headers().clone();
        let url = response.url().clone();
        let mut body = BytesMut::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| transport_error(op, &url, &e, self.config.request_timeout))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RawResponse {
            status,
            headers,
            body: body.freeze(),
        })
    }
}

fn accepts_incomplete(options: &CallOptions) -> Vec<(&'static str, String)> {
    if options.accepts_incomplete {
        vec![("accepts_incomplete", "true".to_owned())]
    } else {
        Vec::new()
    }
}

fn ids_query(service_id: Option<&str>, plan_id: Option<&str>) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(id) = service_id {
        query.push(("service_id", id.to_owned()));
    }
    if let Some(id) = plan_id {
        query.push(("plan_id", id.to_owned()));
    }
    query
}

/// The URL without user info, for logs.
fn redact(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url.to_string()
}

/// The error and its causes on one line: reqwest's top-level message alone rarely says why.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn transport_error(op: Operation, url: &Url, error: &reqwest::Error, timeout: Duration) -> Error {
    let (url, message) = (redact(url), error_chain(error));
    if error.is_timeout() {
        Error::Timeout {
            operation: op,
            url,
            timeout,
        }
    } else if error.is_connect() {
        Error::Connection {
            operation: op,
            url,
            message,
        }
    } else {
        Error::Interrupted {
            operation: op,
            url,
            message,
        }
    }
}

/// JSON bodies must say so when they say anything; a missing content type is tolerated because
/// many brokers omit it.
fn parse_json<T: DeserializeOwned>(op: Operation, response: &RawResponse) -> Result<T, Error> {
    let malformed = |reason: String| Error::MalformedResponse {
        operation: op,
        status: response.status.as_u16(),
        reason,
    };
    if let Some(content_type) = response.headers.get(CONTENT_TYPE) {
        let content_type = content_type.to_str().unwrap_or_default();
        if !is_json_content_type(content_type) {
            return Err(malformed(format!(
                "expected a JSON body, got content type {content_type:?}"
            )));
        }
    }
    let body: &[u8] = if response.body.iter().all(u8::is_ascii_whitespace)
        && matches!(op, Operation::Deprovision | Operation::Unbind)
    {
        b"{}"
    } else {
        &response.body
    };
    serde_json::from_slice(body).map_err(|e| malformed(format!("invalid JSON: {e}")))
}

fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// A non-success answer, with the broker's error body when it sent a readable one.
fn broker_error(op: Operation, response: &RawResponse) -> Error {
    let body: ErrorBody = serde_json::from_slice(&response.body).unwrap_or_default();
    let description = body.description.or_else(|| {
        // Not the spec's error shape: keep a short, printable excerpt to say what came back.
        let text = String::from_utf8_lossy(&response.body);
        let text = text.trim();
        (!text.is_empty() && !text.starts_with('{'))
            .then(|| text.chars().take(200).collect::<String>())
    });
    Error::Broker(BrokerError {
        operation: op,
        status: response.status.as_u16(),
        code: body.error.as_deref().map(BrokerErrorCode::parse),
        description,
        instance_usable: body.instance_usable,
        update_repeatable: body.update_repeatable,
    })
}

/// `Retry-After` as delay-seconds or an HTTP date (a date in the past means "now").
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn urls_keep_the_base_path_and_encode_ids() -> Result<(), Error> {
        let client = Client::new(ClientConfig::new("http://broker.example/prefix/")?)?;
        let url = client.url(
            &["service_instances", "a/b?c", "last_operation"],
            &[("operation", "op 1".to_owned())],
        )?;
        assert_eq!(
            url.as_str(),
            "http://broker.example/prefix/v2/service_instances/a%2Fb%3Fc/last_operation?operation=op+1"
        );
        Ok(())
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn json_content_types_are_recognised() {
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("application/problem+json"));
        assert!(!is_json_content_type("text/html"));
    }

    #[test]
    fn bad_configs_are_rejected() {
        assert!(matches!(
            ClientConfig::new("ftp://x"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            ClientConfig::new("not a url"),
            Err(Error::Config(_))
        ));
        let both = ClientConfig::new("https://x").map(|c| {
            c.with_ca_bundle(b"x".to_vec())
                .with_insecure_skip_tls_verify(true)
        });
        assert!(matches!(both.and_then(Client::new), Err(Error::Config(_))));
        let garbage = ClientConfig::new("https://x").map(|c| c.with_ca_bundle(b"nope".to_vec()));
        assert!(matches!(
            garbage.and_then(Client::new),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn credentials_never_print() {
        let auth = Auth::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }
}
