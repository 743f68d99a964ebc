//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it:
//! the holder renews `renewTime`; a candidate takes the lease over once `renewTime` is older than
//! `leaseDurationSeconds`; every write is conditional on the resourceVersion read, so two
//! candidates cannot both win.
//!
//! Hand-written: kube-rs has no leader election of its own, and the protocol is a few
//! conditional writes.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
}

pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Elector {
    pub fn new(client: kube::Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        }
    }

    fn seconds(&self) -> i32 {
        i32::try_from(self.settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// One attempt to hold the lease: `Ok(true)` when we hold it now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let identity = &self.settings.identity;
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.clone()),
                    lease_duration_seconds: Some(self.seconds()),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let held_by_us = spec.holder_identity.as_deref() == Some(identity.as_str());
        if !held_by_us {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(self.seconds()));
            let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
                Timestamp::now().as_second() - renewed.0.as_second() > duration
            }) || spec.holder_identity.as_deref().is_none_or(str::is_empty);
            if !expired {
                return Ok(false);
            }
            spec.holder_identity = Some(identity.clone());
            spec.acquire_time = Some(now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(self.seconds());
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // Someone else wrote first: they hold it.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Waits until this process holds the lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "leader election: could not reach the lease"),
            }
            tokio::time::sleep(self.settings.renew_interval).await;
        }
    }

    /// Renews until a renewal fails for longer than the lease lasts (or another holder took
    /// it); returns then, and the caller must stop acting as leader.
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.settings.renew_interval).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::warn!("leader election: the lease has another holder");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "leader election: renewal failed");
                    // Stop before the lease can expire under us.
                    if last_renewal.elapsed() + self.settings.renew_interval
                        >= self.settings.lease_duration
                    {
                        return;
                    }
                }
            }
        }
    }
}
