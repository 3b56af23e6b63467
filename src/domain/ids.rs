//! The service's own ids, parsed once where they come in (a path, a header, a body, a job) so
//! that nothing past the edge checks them again and a malformed one never reaches a key.
//!
//! A payment's id names its shard (the two characters after `pay_`) and a refund's id its
//! payment's, so an id leads to its Redis hash slot without a lookup (`store::keys`).

use super::{Invalid, OrderId};
use sha2::{Digest, Sha256};

/// How many groups payments are spread over. Fixed for good: ids name their shard.
pub const SHARDS: u16 = 64;

const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// One group of payments sharing a hash slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard(u16);

impl Shard {
    pub fn all() -> impl Iterator<Item = Shard> {
        (0..SHARDS).map(Shard)
    }

    pub fn number(self) -> u16 {
        self.0
    }

    /// The shard of a new payment for this location and order (and of the order's
    /// reservation).
    pub fn of_order(location: &str, order: &str) -> Shard {
        let digest = Sha256::digest(format!("{location}\n{order}").as_bytes());
        Shard(u16::from_be_bytes([digest[0], digest[1]]) % SHARDS)
    }

    /// The shard an id names: the two characters after its prefix (`pay_`, `rf_`). Any string
    /// has one, so a malformed id still reads from a slot (and finds nothing).
    pub fn of_id(id: &str) -> Shard {
        let tail = id.split_once('_').map(|(_, t)| t).unwrap_or(id).as_bytes();
        let digit = |b: u8| DIGITS.iter().position(|d| *d == b).unwrap_or(0) as u16;
        match tail {
            [a, b, ..] => Shard((digit(*a) * 36 + digit(*b)) % SHARDS),
            _ => Shard(0),
        }
    }

    /// The two characters that name this shard in an id.
    fn code(self) -> String {
        let (a, b) = (self.0 / 36, self.0 % 36);
        [DIGITS[a as usize] as char, DIGITS[b as usize] as char]
            .iter()
            .collect()
    }
}

/// `prefix` then `len` lowercase letters or digits.
fn ours(raw: &str, prefix: &str, len: usize) -> bool {
    raw.len() == prefix.len() + len
        && raw.starts_with(prefix)
        && raw[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// An id of ours or the booking system's: `$ok` says which strings are one.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $ok:expr, $refusal:expr) => {
        checked_string!($(#[$doc])* $name, |v| {
            let ok: fn(&str) -> bool = $ok;
            if ok(v) {
                Ok(())
            } else {
                Err(Invalid($refusal.into()))
            }
        });
    };
}

id_type!(
    /// A payment: `pay_`, its shard, and 22 random characters.
    PaymentId,
    |s| ours(s, "pay_", 24),
    "is not a payment id"
);
id_type!(
    /// A refund: `rf_`, its payment's shard, and 22 characters of a digest of the payment
    /// and the idempotency key, so one key names one refund however it was requested.
    RefundId,
    |s| ours(s, "rf_", 24),
    "is not a refund id"
);
id_type!(
    /// The booking system's location (a branch of the coworking space).
    LocationId,
    |s| !s.is_empty()
        && s.len() <= 100
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)),
    "must be 1 to 100 characters of letters, digits, _ - ."
);
id_type!(
    /// The booking system's `Idempotency-Key` of a refund request.
    IdempotencyKey,
    kakaopay_jobs::refunds::valid_idempotency_key,
    kakaopay_jobs::refunds::IDEMPOTENCY_KEY_RULE
);

impl PaymentId {
    /// A new payment's id for this location and order: its shard is the order's, which puts
    /// the order's reservation in the same slot as the payment it names.
    pub fn new(location: &LocationId, order: &OrderId) -> PaymentId {
        use rand::Rng;
        let mut rng = rand::rng();
        let tail: String = (0..22)
            .map(|_| char::from(DIGITS[rng.random_range(0..36)]))
            .collect();
        PaymentId(format!(
            "pay_{}{tail}",
            Shard::of_order(location, order).code()
        ))
    }
}

impl RefundId {
    /// The refund this payment and key name, whichever way it was requested.
    pub fn of(payment: &PaymentId, key: &IdempotencyKey) -> RefundId {
        RefundId(kakaopay_jobs::refunds::refund_id(payment, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_payment_ids_parse_and_carry_their_orders_shard() {
        let location = LocationId::try_from("gangnam-1").unwrap();
        let order = OrderId::parse("B-1").unwrap();
        let id = PaymentId::new(&location, &order);
        assert_eq!(PaymentId::try_from(id.to_string()).unwrap(), id);
        assert_eq!(
            Shard::of_id(&id),
            Shard::of_order(&location, order.as_str())
        );
        let refund = RefundId::of(&id, &IdempotencyKey::try_from("k-1").unwrap());
        assert_eq!(RefundId::try_from(refund.to_string()).unwrap(), refund);
        assert_eq!(
            Shard::of_id(&refund),
            Shard::of_id(&id),
            "a refund lives in its payment's slot"
        );
    }

    #[test]
    fn only_our_own_ids_parse() {
        for bad in [
            "",
            "pay_",
            "pay_ABCDEFGHIJKLMNOPQRSTUVWX",
            "pay_../../../../x",
            "rf_1",
        ] {
            assert!(PaymentId::try_from(bad).is_err(), "{bad:?}");
            assert!(RefundId::try_from(bad).is_err(), "{bad:?}");
        }
        assert!(LocationId::try_from("loc 1").is_err());
        assert!(LocationId::try_from("x".repeat(101)).is_err());
        assert!(IdempotencyKey::try_from("has space").is_err());
        assert!(IdempotencyKey::try_from("").is_err());
        assert!(IdempotencyKey::try_from("k".repeat(201)).is_err());
        assert!(serde_json::from_str::<PaymentId>("\"pay_1\"").is_err());
    }

    #[test]
    fn orders_spread_over_every_shard() {
        let location = LocationId::try_from("loc-1").unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..5_000 {
            let order = OrderId::parse(format!("order-{i}")).unwrap();
            seen.insert(Shard::of_order(&location, order.as_str()));
        }
        assert_eq!(seen.len(), SHARDS as usize);
    }

    #[test]
    fn shards_spread_and_read_back() {
        let codes: std::collections::BTreeSet<_> = Shard::all().map(|s| s.code()).collect();
        assert_eq!(codes.len(), SHARDS as usize);
        for s in Shard::all() {
            assert_eq!(Shard::of_id(&format!("pay_{}xyz", s.code())), s);
        }
        assert_eq!(Shard::of_id("?"), Shard(0));
    }
}
