//! A location's KakaoPay integration. Each change is stored as a new version and the payment
//! remembers the version it was made with, so an approval in flight finishes with the
//! credentials it started with even after the location disconnects or changes its key.
//!
//! Versions never expire: a payment can be approved, reconciled or refunded months after the
//! location was last configured, and a version is a few hundred bytes per configuration change.

use super::{now_rfc3339, Store, StoreError};
use crate::domain::{Cid, RefundPolicy, Service};
use crate::kakaopay::Credentials;
use crate::secret::Secret;
use kakaopay_jobs::queue::Script;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// KakaoPay's current open API.
    SecretKey,
    /// The older Kakao API.
    AdminKey,
}

/// What is stored; the key is a [`Secret`] only in memory, written to Redis as itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    pub location_id: String,
    pub version: u64,
    pub cid: Cid,
    pub key_kind: KeyKind,
    #[serde(with = "plain_secret")]
    pub key: Secret,
    pub services: Vec<Service>,
    pub automatic_refunds: bool,
    /// Per service, overriding REFUNDS.md's defaults.
    pub refund_policy: BTreeMap<Service, RefundPolicy>,
    pub connected_at: String,
    pub updated_at: String,
}

/// Stored integrations keep the real key (workers need it); everywhere else it is masked.
mod plain_secret {
    use crate::secret::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Secret, D::Error> {
        String::deserialize(de).map(Secret::new)
    }
}

impl Integration {
    pub fn credentials(&self) -> Credentials {
        match self.key_kind {
            KeyKind::SecretKey => Credentials::SecretKey(self.key.clone()),
            KeyKind::AdminKey => Credentials::AdminKey(self.key.clone()),
        }
    }

    pub fn enables(&self, service: Service) -> bool {
        self.services.contains(&service)
    }
}

/// A payment's location as it is now (`None`: disconnected) and as it was when the payment was
/// made (`None`: that version is gone, as it could be under earlier releases).
#[derive(Debug, Clone)]
pub struct Integrations {
    pub current: Option<Integration>,
    pub original: Option<Integration>,
}

impl Integrations {
    /// What to cancel with: the location's current credentials while
    /// they are for the same merchant (a rotated key), else those the payment was made with,
    /// else the current ones as the last resort. `None`: no credentials at all, an operator
    /// has to reconnect the location.
    pub fn for_refunds(&self) -> Option<&Integration> {
        match (&self.current, &self.original) {
            (Some(c), Some(o)) if c.cid != o.cid => Some(o),
            (Some(c), _) => Some(c),
            (None, o) => o.as_ref(),
        }
    }

    /// What to approve and inquire with: the credentials the payment started with (API.md:
    /// approvals in flight finish with them), else the location's current ones.
    pub fn for_approval(&self) -> Option<&Integration> {
        self.original.as_ref().or(self.current.as_ref())
    }
}

/// The part of an integration an operator sets.
#[derive(Debug, Clone)]
pub struct IntegrationSettings {
    pub cid: Cid,
    pub key_kind: KeyKind,
    pub key: Secret,
    pub services: Vec<Service>,
    pub automatic_refunds: bool,
    pub refund_policy: BTreeMap<Service, RefundPolicy>,
}

/// Writes one value to two keys at once (the current integration and its version). KEYS: the
/// two keys. ARGV: the value.
static SET_BOTH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[1])
return 1
"#,
    )
});

impl Store {
    pub async fn integration(&self, location: &str) -> Result<Option<Integration>, StoreError> {
        self.read_integration(&self.integration_key(location)).await
    }

    /// The location's integration now and as it was at `version`, in one round trip.
    pub async fn integrations_of(
        &self,
        location: &str,
        version: u64,
    ) -> Result<Integrations, StoreError> {
        let (now_key, then_key) = (
            self.integration_key(location),
            self.integration_version_key(location, version),
        );
        let (now, then): (Option<String>, Option<String>) = redis::pipe()
            .get(&now_key)
            .get(&then_key)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(Integrations {
            current: parse_integration(&now_key, now)?,
            original: parse_integration(&then_key, then)?,
        })
    }

    async fn read_integration(&self, key: &str) -> Result<Option<Integration>, StoreError> {
        let raw: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await?;
        parse_integration(key, raw)
    }

    /// Connects or replaces (a new version each time; `connected_at` kept on replacement).
    pub async fn put_integration(
        &self,
        location: &str,
        settings: IntegrationSettings,
    ) -> Result<Integration, StoreError> {
        let current = self.integration(location).await?;
        let now = now_rfc3339();
        self.write_integration(Integration {
            location_id: location.to_string(),
            version: 0,
            cid: settings.cid,
            key_kind: settings.key_kind,
            key: settings.key,
            services: settings.services,
            automatic_refunds: settings.automatic_refunds,
            refund_policy: settings.refund_policy,
            connected_at: current
                .map(|c| c.connected_at)
                .unwrap_or_else(|| now.clone()),
            updated_at: now,
        })
        .await
    }

    /// Stores `integration` as the location's next version and makes it current.
    pub async fn write_integration(
        &self,
        mut integration: Integration,
    ) -> Result<Integration, StoreError> {
        let location = integration.location_id.clone();
        // A number taken and then not used (a crash, an error) leaves a gap, nothing worse.
        integration.version = redis::cmd("INCR")
            .arg(self.integration_seq_key(&location))
            .query_async(&mut self.conn.clone())
            .await?;
        let json = serde_json::to_string(&integration).expect("integrations serialize");
        let _: i64 = SET_BOTH
            .key(self.integration_key(&location))
            .key(self.integration_version_key(&location, integration.version))
            .arg(&json)
            .run(&self.conn)
            .await?;
        Ok(integration)
    }

    /// Disconnects: new payments are refused; versions stay for payments in flight.
    /// Answers whether there was an integration.
    pub async fn delete_integration(&self, location: &str) -> Result<bool, StoreError> {
        let del = redis::pipe().del(self.integration_key(location)).to_owned();
        let (removed,): (i64,) = self.conn.write(&del).await?;
        Ok(removed > 0)
    }
}

fn parse_integration(key: &str, raw: Option<String>) -> Result<Option<Integration>, StoreError> {
    raw.map(|r| {
        serde_json::from_str(&r).map_err(|e| StoreError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })
    })
    .transpose()
}
