//! `/openapi.json`: the contract as OpenAPI 3, generated from the handlers' annotations.

use super::{callbacks, integrations, payments, queues, refunds, transactions};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "kakaopay-worker", description = "KakaoPay payments and refunds as reliable jobs on Redis (API.md)"),
    paths(
        integrations::put, integrations::patch, integrations::get, integrations::delete,
        payments::create, payments::get,
        refunds::create, refunds::get,
        transactions::report,
        queues::list, queues::jobs, queues::retry,
        callbacks::callback,
        super::healthz, super::readyz, super::metrics,
    ),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
