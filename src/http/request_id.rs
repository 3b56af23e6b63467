//! The id given to a request that came without a fit one: a random UUID (v4), drawn from the
//! thread's generator. tower-http's `MakeRequestUuid` asks the kernel for every one (a
//! `getrandom` call per request); an id only has to be unique, not secret.

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIds;

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid_v4(rand::random()))
            .ok()
            .map(RequestId::new)
    }
}

/// `bits` as a version 4, variant 1 UUID in its hyphenated form.
fn uuid_v4(bits: u128) -> String {
    let bits = (bits & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_4_uuids() {
        for bits in [0, u128::MAX, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef] {
            let id = uuid_v4(bits);
            let groups: Vec<&str> = id.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(groups[2].starts_with('4'), "{id}");
            assert!("89ab".contains(&groups[3][..1]), "{id}");
        }
        assert_eq!(uuid_v4(0), "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn two_requests_get_two_ids() {
        let req = Request::new(());
        let (a, b) = (
            RequestIds.make_request_id(&req).unwrap(),
            RequestIds.make_request_id(&req).unwrap(),
        );
        assert_ne!(a.header_value(), b.header_value());
    }
}
