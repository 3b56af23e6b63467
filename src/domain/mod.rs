//! Types that parse once: after construction a value is known to be valid, so no code past
//! the edge of the service checks it again ("parse, don't validate").

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
