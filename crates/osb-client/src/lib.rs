//! An Open Service Broker API v2.17 client.
//!
//! - [`types`]: the wire types of the whole spec; unknown fields (vendor extensions) are kept.
//! - [`Client`]: one async method per endpoint, sending the spec's headers
//!   (`X-Broker-API-Version`, a fresh `X-Broker-API-Request-Identity`, the originating identity
//!   when given), with basic or bearer auth, a custom CA bundle or an explicit
//!   insecure-skip-verify, timeouts, and a cap on response size.
//! - [`Error`]: typed failures that answer the two questions a platform must ask —
//!   [`Error::requires_orphan_mitigation`] and [`Error::is_retriable`].
//! - [`validate_catalog`] lists every problem of a catalog with its JSON path;
//!   [`validate_parameters`] checks parameters against a plan's schema.
//!
//! # Example: provision an instance and wait for it
//!
//! ```no_run
//! use std::time::Duration;
//! use osb_client::{Accepted, Auth, CallOptions, Client, ClientConfig, LastOperationRequest,
//!                  OperationState, ProvisionRequest};
//!
//! # async fn run() -> Result<(), osb_client::Error> {
//! let config = ClientConfig::new("http://127.0.0.1:8080")?.with_auth(Auth::Basic {
//!     username: "admin".into(),
//!     password: "secret".into(),
//! });
//! let client = Client::new(config)?;
//! let catalog = client.catalog().await?;
//! let service = &catalog.services[0];
//! let plan = &service.plans[0];
//!
//! let request = ProvisionRequest {
//!     service_id: service.id.clone(),
//!     plan_id: plan.id.clone(),
//!     parameters: Some(serde_json::json!({"storageGB": 10})),
//!     ..Default::default()
//! };
//! let response = client.provision("instance-1", &request, &CallOptions::asynchronous()).await?;
//! if response.accepted == Accepted::Async {
//!     let poll = LastOperationRequest {
//!         service_id: Some(service.id.clone()),
//!         plan_id: Some(plan.id.clone()),
//!         operation: response.body.operation.clone(),
//!     };
//!     loop {
//!         let last = client.instance_last_operation("instance-1", &poll).await?;
//!         if last.body.state != OperationState::InProgress {
//!             println!("provisioning {}", last.body.state.as_str());
//!             break;
//!         }
//!         tokio::time::sleep(last.retry_after.unwrap_or(Duration::from_secs(2))).await;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod error;
pub mod identity;
pub mod types;
pub mod validate;

pub use client::{
    API_VERSION_HEADER, Accepted, Auth, BindResponse, CallOptions, Client, ClientConfig,
    DEFAULT_API_VERSION, DEFAULT_MAX_RESPONSE_BYTES, Deleted, InstanceResponse, LastOperation,
    LastOperationRequest, ORIGINATING_IDENTITY_HEADER, REQUEST_IDENTITY_HEADER,
};
pub use error::{BrokerError, BrokerErrorCode, Error, Operation};
pub use identity::{KubernetesUser, OriginatingIdentity};
pub use types::*;
pub use validate::{
    CatalogProblem, CatalogProblems, ParameterProblem, ParametersError, validate_catalog,
    validate_parameters,
};
