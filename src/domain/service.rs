//! The five kinds of thing a member pays for on the platform.

use super::Invalid;
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    Bookings,
    EventTickets,
    ShopProducts,
    CreditPackages,
    Invoices,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Bookings,
        Service::EventTickets,
        Service::ShopProducts,
        Service::CreditPackages,
        Service::Invoices,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Bookings => "bookings",
            Service::EventTickets => "event_tickets",
            Service::ShopProducts => "shop_products",
            Service::CreditPackages => "credit_packages",
            Service::Invoices => "invoices",
        }
    }

    /// Bookings and tickets have a start; the refund rules measure notice against it.
    pub fn needs_start(self) -> bool {
        matches!(self, Service::Bookings | Service::EventTickets)
    }
}

impl FromStr for Service {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        Service::ALL
            .into_iter()
            .find(|svc| svc.as_str() == s)
            .ok_or_else(|| {
                Invalid(format!(
                    "must be one of bookings, event_tickets, shop_products, credit_packages, invoices; got {s:?}"
                ))
            })
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_five_names_round_trip() {
        for svc in Service::ALL {
            assert_eq!(svc.as_str().parse::<Service>().unwrap(), svc);
            let json = serde_json::to_string(&svc).unwrap();
            assert_eq!(json, format!("\"{}\"", svc.as_str()));
        }
    }

    #[test]
    fn other_names_are_refused() {
        for bad in ["", "booking", "Bookings", "tickets", "shop"] {
            assert!(bad.parse::<Service>().is_err(), "{bad}");
            assert!(serde_json::from_str::<Service>(&format!("\"{bad}\"")).is_err());
        }
    }
}
