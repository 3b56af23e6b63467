//! Bounded text: ids and names with KakaoPay's length limits (counted in characters).

use super::Invalid;
use serde::Deserialize;

/// Checks a string against a length range (in characters) and refuses control characters,
/// which no id or name of KakaoPay's legitimately holds and which break logs and CSV.
fn check(value: &str, min: usize, max: usize) -> Result<(), Invalid> {
    let len = value.chars().count();
    if len < min || len > max {
        return Err(Invalid(if min == max {
            format!("must be exactly {min} characters, got {len}")
        } else {
            format!("must be {min} to {max} characters, got {len}")
        }));
    }
    if value.chars().any(char::is_control) {
        return Err(Invalid("must not contain control characters".into()));
    }
    Ok(())
}

/// Text of `$min` to `$max` characters without control characters.
macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr) => {
        checked_string!($(#[$doc])* $name, |v| check(v, $min, $max));

        impl $name {
            pub const MIN: usize = $min;
            pub const MAX: usize = $max;
        }
    };
}

bounded_text!(
    /// The booking system's order id, sent to KakaoPay as `partner_order_id`.
    OrderId, 1, 100
);
bounded_text!(
    /// The booking system's member id, sent to KakaoPay as `partner_user_id`.
    UserId, 1, 100
);
bounded_text!(
    /// What the member pays for, as KakaoPay shows it.
    ItemName, 1, 100
);
bounded_text!(
    /// KakaoPay merchant code (`TC0ONETIME` in test mode).
    Cid, 10, 10
);
bounded_text!(
    /// KakaoPay's id of one payment.
    Tid, 20, 20
);
bounded_text!(
    /// KakaoPay's id of one approve or cancel action: 20 characters as documented, taken up
    /// to 100, because it is only ever received (never sent back) and an approval or a
    /// refund must never be lost over the shape of its receipt.
    Aid, 1, 100
);
bounded_text!(
    /// A value stored by KakaoPay with an approve or cancel, returned by the order inquiry.
    Payload, 0, 200
);
bounded_text!(
    /// The one-time token KakaoPay appends to `approval_url`.
    PgToken, 1, 100
);

impl Aid {
    /// An aid as a record holds it: `""` where KakaoPay named none (what every release
    /// writes, so that a release before this one reads it too).
    pub fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Aid>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.and_then(|a| Aid::parse(a).ok()))
    }

    pub fn write_lenient<S: serde::Serializer>(aid: &Option<Aid>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(aid.as_deref().unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_one_to_a_hundred_characters() {
        assert!(OrderId::parse("").is_err());
        assert!(OrderId::parse("B-1").is_ok());
        assert!(OrderId::parse("x".repeat(100)).is_ok());
        assert!(OrderId::parse("x".repeat(101)).is_err());
        // Characters, not bytes: 100 Hangul syllables are 300 bytes and still fine.
        assert!(ItemName::parse("가".repeat(100)).is_ok());
        assert!(ItemName::parse("가".repeat(101)).is_err());
    }

    #[test]
    fn user_ids_and_item_names_share_the_limits() {
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("m".repeat(101)).is_err());
        assert!(ItemName::parse("").is_err());
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(OrderId::parse("a\nb").is_err());
        assert!(ItemName::parse("room\u{0}").is_err());
    }

    #[test]
    fn kakaopay_ids_have_exact_lengths() {
        assert!(Cid::parse("TC0ONETIME").is_ok());
        assert!(Cid::parse("TC0ONETIM").is_err());
        assert!(Tid::parse("T2f36a1e3fba4dcf8ce3").is_ok());
        assert!(Tid::parse("T2f36a1e3fba4dcf8ce").is_err());
        assert!(Aid::parse("A53d1b3534b976a88b68").is_ok());
        assert!(
            Aid::parse("A53d1b3534b976a88b68x").is_ok(),
            "received, never sent"
        );
        assert!(Aid::parse("").is_err());
        assert!(Aid::parse("A".repeat(101)).is_err());
    }

    #[test]
    fn payloads_are_at_most_two_hundred() {
        assert!(Payload::parse("").is_ok());
        assert!(Payload::parse("p".repeat(200)).is_ok());
        assert!(Payload::parse("p".repeat(201)).is_err());
        assert!(PgToken::parse("").is_err());
    }

    #[test]
    fn deserializing_checks_too() {
        assert!(serde_json::from_str::<OrderId>("\"\"").is_err());
        assert_eq!(
            serde_json::from_str::<OrderId>("\"B-2026-0001\"")
                .unwrap()
                .as_str(),
            "B-2026-0001"
        );
    }
}
