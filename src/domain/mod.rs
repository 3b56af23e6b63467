//! Types that parse once: after construction a value is known to be valid, so no code past
//! the edge of the service checks it again ("parse, don't validate").

/// A string type that can only hold what `$check` (`fn(&str) -> Result<(), Invalid>`)
/// accepts: built with `parse` or `TryFrom`, also when deserialized, and read as a `str`.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, $crate::domain::Invalid> {
                let value = value.into();
                let check: fn(&str) -> Result<(), $crate::domain::Invalid> = $check;
                check(&value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::domain::Invalid;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = $crate::domain::Invalid;
            fn try_from(value: &str) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

mod amount;
mod ids;
mod policy;
mod service;
mod status;
mod text;

pub use amount::Won;
pub use ids::{IdempotencyKey, LocationId, PaymentId, RefundId, Shard, SHARDS};
pub use policy::{PolicyRule, RefundPolicy, Tier};
pub use service::Service;
pub use status::{PaymentStatus, RefundStatus};
pub use text::{Aid, Cid, ItemName, OrderId, Payload, PgToken, Tid, UserId};

/// Why an input was refused, in words fit for an API error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);
