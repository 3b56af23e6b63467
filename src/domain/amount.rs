//! Money: whole Korean won in an `i64`, never a float, never negative.

use super::Invalid;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A non-negative amount of won.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct Won(i64);

impl Won {
    pub const ZERO: Won = Won(0);

    pub fn new(value: i64) -> Result<Self, Invalid> {
        if value < 0 {
            return Err(Invalid(format!("must not be negative, got {value}")));
        }
        Ok(Won(value))
    }

    /// An amount of at least one won, as KakaoPay requires for a payment or a cancel.
    pub fn positive(value: i64) -> Result<Self, Invalid> {
        if value < 1 {
            return Err(Invalid(format!("must be at least 1, got {value}")));
        }
        Ok(Won(value))
    }

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn checked_sub(self, other: Won) -> Option<Won> {
        self.0.checked_sub(other.0).and_then(|v| Won::new(v).ok())
    }

    pub fn checked_add(self, other: Won) -> Option<Won> {
        self.0.checked_add(other.0).map(Won)
    }

    /// KakaoPay's default VAT: `round((total - tax_free) / 11)`, half up, in whole won.
    pub fn default_vat(total: Won, tax_free: Won) -> Won {
        let taxable = (total.0 - tax_free.0).max(0);
        Won((taxable + 5) / 11)
    }
}

impl TryFrom<i64> for Won {
    type Error = Invalid;
    fn try_from(value: i64) -> Result<Self, Invalid> {
        Won::new(value)
    }
}

impl From<Won> for i64 {
    fn from(w: Won) -> i64 {
        w.0
    }
}

impl fmt::Display for Won {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} won", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_amounts_are_refused() {
        assert!(Won::new(-1).is_err());
        assert!(Won::new(i64::MIN).is_err());
        assert_eq!(Won::new(0).unwrap().get(), 0);
        assert!(serde_json::from_str::<Won>("-5").is_err());
    }

    #[test]
    fn positive_refuses_zero() {
        assert!(Won::positive(0).is_err());
        assert_eq!(Won::positive(1).unwrap().get(), 1);
    }

    #[test]
    fn floats_and_strings_are_not_amounts() {
        assert!(serde_json::from_str::<Won>("10.5").is_err());
        assert!(serde_json::from_str::<Won>("\"100\"").is_err());
        assert!(serde_json::from_str::<Won>("1e3").is_err());
    }

    #[test]
    fn default_vat_rounds_half_up() {
        let w = |v| Won::new(v).unwrap();
        assert_eq!(Won::default_vat(w(22000), w(0)), w(2000));
        // 10,000 / 11 = 909.09 → 909; 10,005 / 11 = 909.5 → 910
        assert_eq!(Won::default_vat(w(10000), w(0)), w(909));
        assert_eq!(Won::default_vat(w(10005), w(0)), w(910));
        assert_eq!(Won::default_vat(w(11000), w(1000)), w(909));
        assert_eq!(Won::default_vat(w(1000), w(1000)), w(0));
    }

    #[test]
    fn subtraction_never_goes_negative() {
        let w = |v| Won::new(v).unwrap();
        assert_eq!(w(5).checked_sub(w(3)), Some(w(2)));
        assert_eq!(w(3).checked_sub(w(5)), None);
        assert_eq!(Won(i64::MAX).checked_add(w(1)), None);
    }
}
