//! ClusterServiceBroker and ServiceBroker: defaulting, validation and admission.

use apiserver::selectors::LabelSelector;
use apiserver::status::Cause;
use apiserver::{Admission, ApiError, Strategy};
use catalog_api::{
    ClusterServiceBroker, CommonServiceBrokerSpec, RELIST_DURATION, RELIST_MANUAL, ServiceBroker,
};
use serde_json::{Value, json};

use crate::common::{self, SchemaCheck};

/// Class properties a broker's catalog restrictions may test.
const CLASS_PROPERTIES: &[&str] = &["name", "spec.externalName", "spec.externalID"];

pub struct BrokerStrategy {
    cluster: bool,
    schema: SchemaCheck,
}

impl BrokerStrategy {
    pub fn cluster() -> Self {
        Self {
            cluster: true,
            schema: SchemaCheck::new(catalog_api::schema_properties::<ClusterServiceBroker>()),
        }
    }

    pub fn namespaced() -> Self {
        Self {
            cluster: false,
            schema: SchemaCheck::new(catalog_api::schema_properties::<ServiceBroker>()),
        }
    }

    fn plan_properties(&self) -> &'static [&'static str] {
        if self.cluster {
            &[
                "name",
                "spec.externalName",
                "spec.externalID",
                "spec.free",
                "spec.clusterServiceClass.name",
            ]
        } else {
            &[
                "name",
                "spec.externalName",
                "spec.externalID",
                "spec.free",
                "spec.serviceClass.name",
            ]
        }
    }

    /// The spec parts both kinds share, and the auth info checked per kind.
    fn typed(&self, object: &Value) -> Result<(CommonServiceBrokerSpec, Vec<Cause>), Vec<Cause>> {
        let mut causes = Vec::new();
        if self.cluster {
            let broker: ClusterServiceBroker = common::parse(object)?;
            if let Some(auth) = &broker.spec.auth_info {
                let refs = [("basic", &auth.basic), ("bearer", &auth.bearer)];
                check_auth(&mut causes, &refs, |field, secret_ref| {
                    let mut causes = Vec::new();
                    match secret_ref.and_then(|r| r.secret_ref.as_ref()) {
                        None => causes.push(secret_required(field)),
                        Some(reference) => {
                            if reference.namespace.is_empty() {
                                causes.push(Cause::required_because(
                                    &format!("{field}.secretRef.namespace"),
                                    "a cluster broker's auth secret needs a namespace",
                                ));
                            } else {
                                common::check_subdomain(
                                    &mut causes,
                                    &format!("{field}.secretRef.namespace"),
                                    &reference.namespace,
                                );
                            }
                            common::check_subdomain(
                                &mut causes,
                                &format!("{field}.secretRef.name"),
                                &reference.name,
                            );
                        }
                    }
                    causes
                });
            }
            Ok((broker.spec.common, causes))
        } else {
            let broker: ServiceBroker = common::parse(object)?;
            if let Some(auth) = &broker.spec.auth_info {
                let refs = [("basic", &auth.basic), ("bearer", &auth.bearer)];
                check_auth(&mut causes, &refs, |field, secret_ref| {
                    let mut causes = Vec::new();
                    match secret_ref.and_then(|r| r.secret_ref.as_ref()) {
                        None => causes.push(secret_required(field)),
                        Some(reference) => common::check_subdomain(
                            &mut causes,
                            &format!("{field}.secretRef.name"),
                            &reference.name,
                        ),
                    }
                    causes
                });
            }
            Ok((broker.spec.common, causes))
        }
    }
}

fn secret_required(field: &str) -> Cause {
    let what = if field.ends_with("basic") {
        "a basic auth secret is required"
    } else {
        "a bearer token secret is required"
    };
    Cause::required_because(&format!("{field}.secretRef"), what)
}

/// Exactly one auth method, each checked by `check_one`.
fn check_auth<T>(
    causes: &mut Vec<Cause>,
    methods: &[(&str, &Option<T>)],
    check_one: impl Fn(&str, Option<&T>) -> Vec<Cause>,
) {
    let given: Vec<_> = methods.iter().filter(|(_, m)| m.is_some()).collect();
    match given.as_slice() {
        [] => causes.push(Cause::required_because(
            "spec.authInfo",
            "auth config is required: basic or bearer",
        )),
        [(name, method)] => {
            causes.extend(check_one(&format!("spec.authInfo.{name}"), method.as_ref()))
        }
        _ => causes.push(Cause::invalid(
            "spec.authInfo",
            "basic, bearer",
            "exactly one of basic or bearer may be given",
        )),
    }
}

fn check_restrictions(causes: &mut Vec<Cause>, field: &str, rules: &[String], allowed: &[&str]) {
    if rules.is_empty() {
        return;
    }
    match LabelSelector::parse(&rules.join(",")) {
        Err(error) => causes.push(Cause::invalid(field, &rules.join(", "), &error)),
        Ok(selector) => {
            for key in selector.keys() {
                if !allowed.contains(&key) {
                    causes.push(Cause::invalid(
                        field,
                        key,
                        &format!(
                            "Invalid property: {key}; supported properties: {}",
                            allowed.join(", ")
                        ),
                    ));
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Strategy for BrokerStrategy {
    fn initial_status(&self) -> Option<Value> {
        Some(json!({"conditions": [], "reconciledGeneration": 0}))
    }

    async fn admit(
        &self,
        _admission: &Admission<'_>,
        object: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        match old {
            None => common::add_finalizer(object),
            Some(old) => {
                // An update that leaves relistRequests out keeps the counter where it was.
                let requests = object
                    .pointer("/spec/relistRequests")
                    .and_then(Value::as_i64);
                if requests.unwrap_or(0) == 0
                    && let Some(previous) = old.pointer("/spec/relistRequests")
                    && let Some(spec) = common::spec_mut(object)
                {
                    spec.insert("relistRequests".into(), previous.clone());
                }
            }
        }
        Ok(())
    }

    fn default(&self, object: &mut Value) {
        let Some(spec) = common::spec_mut(object) else {
            return;
        };
        let behavior = spec.get("relistBehavior").and_then(Value::as_str);
        if behavior.is_none_or(str::is_empty) {
            spec.insert("relistBehavior".into(), json!(RELIST_DURATION));
        }
    }

    fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = self.schema.check(object);
        if !causes.is_empty() {
            return causes;
        }
        let (spec, auth_causes) = match self.typed(object) {
            Ok(typed) => typed,
            Err(causes) => return causes,
        };
        causes.extend(auth_causes);
        if spec.url.is_empty() {
            causes.push(Cause::required_because(
                "spec.url",
                "brokers must have a remote url to contact",
            ));
        } else {
            match url::Url::parse(&spec.url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
                Ok(_) => causes.push(Cause::invalid(
                    "spec.url",
                    &spec.url,
                    "must be an http or https URL with a host",
                )),
                Err(error) => causes.push(Cause::invalid(
                    "spec.url",
                    &spec.url,
                    &format!("must be an absolute URL: {error}"),
                )),
            }
        }
        if spec.insecure_skip_tls_verify && spec.ca_bundle.as_ref().is_some_and(|b| !b.0.is_empty())
        {
            causes.push(Cause::invalid(
                "spec.caBundle",
                "<bytes>",
                "caBundle cannot be used when insecureSkipTLSVerify is true",
            ));
        }
        if spec.relist_behavior != RELIST_DURATION && spec.relist_behavior != RELIST_MANUAL {
            causes.push(Cause::unsupported(
                "spec.relistBehavior",
                &spec.relist_behavior,
                &[RELIST_DURATION, RELIST_MANUAL],
            ));
        }
        if spec.relist_requests < 0 {
            causes.push(Cause::invalid(
                "spec.relistRequests",
                &spec.relist_requests.to_string(),
                "must be greater than or equal to 0",
            ));
        }
        if let Some(duration) = &spec.relist_duration {
            match duration.parse::<kube::core::Duration>() {
                Err(error) => causes.push(Cause::invalid(
                    "spec.relistDuration",
                    duration,
                    &format!("must be a duration such as 15m0s: {error}"),
                )),
                Ok(parsed)
                    if parsed.is_negative() || std::time::Duration::from(parsed).is_zero() =>
                {
                    causes.push(Cause::invalid(
                        "spec.relistDuration",
                        duration,
                        "relistDuration must be greater than zero",
                    ))
                }
                Ok(_) => {}
            }
        }
        if let Some(restrictions) = &spec.catalog_restrictions {
            check_restrictions(
                &mut causes,
                "spec.catalogRestrictions.serviceClass",
                &restrictions.service_class,
                CLASS_PROPERTIES,
            );
            check_restrictions(
                &mut causes,
                "spec.catalogRestrictions.servicePlan",
                &restrictions.service_plan,
                self.plan_properties(),
            );
        }
        if let Some(old) = old {
            let previous = old
                .pointer("/spec/relistRequests")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if spec.relist_requests < previous {
                causes.push(Cause::invalid(
                    "spec.relistRequests",
                    &spec.relist_requests.to_string(),
                    &format!("relistRequests must not decrease (it was {previous})"),
                ));
            }
        }
        causes
    }
}
