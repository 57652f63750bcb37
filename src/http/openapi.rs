//! The OpenAPI 3 document of SPEC §9, generated from the handlers'
//! `#[utoipa::path]` attributes and the DTO types, served at `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::dto;
use super::error::{ErrorBody, ErrorCode, ErrorDetail};
use super::{backup, grants, keys, metrics, routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "creditd",
        description = "Guards a platform's inventory of prepaid NanoBanana credits. Errors are \
                       `{\"error\": {\"code\", \"message\"}}`; the codes are the `ErrorCode` schema.",
        license(name = "MIT"),
    ),
    paths(
        routes::catalogue,
        routes::purchase,
        routes::status,
        routes::create_hold,
        routes::capture_hold,
        routes::release_hold,
        routes::spend,
        routes::complete,
        routes::refund,
        routes::user_credits,
        routes::admin_credits,
        routes::admin_sync,
        routes::disable_purchases,
        routes::enable_purchases,
        routes::update_package,
        routes::admin_alerts,
        routes::admin_report,
        routes::ledger,
        backup::backup,
        keys::create_key,
        keys::list_keys,
        keys::revoke_key,
        grants::create_grant,
        grants::void_grant,
        routes::admin_page,
        metrics::metrics,
        routes::healthz,
        routes::readyz,
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode, dto::LedgerEntryResponse)),
    modifiers(&BearerAuth),
    tags(
        (name = "storefront", description = "Purchases, holds and wallets"),
        (name = "enhancement", description = "Spends and refunds"),
        (name = "admin", description = "Operators; `Authorization: Bearer <key>` with the `admin` scope (the configured admin token is one)"),
        (name = "operations", description = "Health, readiness, metrics, dashboard"),
    ),
)]
pub struct ApiDoc;

/// The `bearer` security scheme of SPEC §9.1: `Authorization: Bearer <key>`;
/// each protected route lists the scopes that let a key in (any one of them;
/// `admin` always does).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as served: the generated one, with the configured package
/// ids as the allowed values of `packageId` in request bodies.
pub fn document(package_ids: &[String]) -> String {
    let mut value = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    for schema in ["PurchaseRequest", "HoldRequest"] {
        if let Some(property) = value.pointer_mut(&format!("/components/schemas/{schema}/properties/packageId")) {
            property["enum"] = serde_json::json!(package_ids);
        }
    }
    if let Some(parameters) = value.pointer_mut("/paths/~1api~1admin~1packages~1{packageId}/put/parameters") {
        for parameter in parameters.as_array_mut().into_iter().flatten() {
            if parameter["name"] == "packageId" {
                parameter["schema"]["enum"] = serde_json::json!(package_ids);
            }
        }
    }
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_path_is_a_named_route_and_every_route_is_documented() {
        let document = ApiDoc::openapi();
        let mut documented: Vec<&str> = document.paths.paths.keys().map(String::as_str).collect();
        documented.push("/openapi.json");
        documented.sort_unstable();
        let mut routes = super::super::ROUTES.to_vec();
        routes.sort_unstable();
        assert_eq!(documented, routes);
    }
}
