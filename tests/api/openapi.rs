use crate::common::{answer, client, get, provider, temp_dir, Server, ADMIN_TOKEN};

/// Goal: the OpenAPI document (SPEC §9) describes exactly what is served.
/// Method: every documented operation is called on a live server and must
/// reach a handler (no "no route", no 405); every admin operation declares
/// the bearer scheme and 401; every error code of SPEC §9 is listed.
#[tokio::test]
async fn the_openapi_document_matches_the_served_routes() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();
    let document = get(&client, &server.url("/openapi.json")).await;
    assert_eq!(document.status, 200);
    assert!(document.body["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "OpenAPI 3");
    let paths = document.body["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            operations += 1;
            let url = server.url(&path.replace('{', "x").replace('}', ""));
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let got =
                answer(client.request(method.clone(), &url).bearer_auth(ADMIN_TOKEN).send().await.expect("answers"))
                    .await;
            assert_ne!(got.status, 405, "{method} {path} is documented but not served");
            assert!(!got.message().starts_with("no route"), "{method} {path} is documented but not served");
            let responses = operation["responses"].as_object().expect("responses");
            let public = path == "/api/credits/purchase" && method == reqwest::Method::GET
                || path == "/api/credits/status"
                || !path.starts_with("/api/");
            if !public {
                let scopes = operation["security"][0]["bearer"].to_string();
                assert!(scopes.contains("\"admin\""), "{method} {path} declares the bearer scheme and its scopes");
                let needs = if path.starts_with("/api/admin") { 1 } else { 2 };
                assert!(scopes.matches('"').count() >= 2 * needs, "{method} {path}: a scope besides admin: {scopes}");
                assert!(responses.contains_key("401"), "{method} {path} documents 401");
                assert!(responses.contains_key("403"), "{method} {path} documents 403");
            }
            if path.starts_with("/api/") {
                assert!(responses.contains_key("503"), "{method} {path} documents 503");
            }
            assert!(
                responses.contains_key(&got.status.to_string()),
                "{method} {path} answered {} which is not documented",
                got.status
            );
        }
    }
    assert_eq!(operations, 28, "every route of SPEC §9, §9.1 (keys), §11 (backup) and §13 (grants) is documented");
    let codes = document.body["components"]["schemas"]["ErrorCode"]["enum"].to_string();
    for code in [
        "invalid_request",
        "missing_idempotency_key",
        "unauthorized",
        "forbidden",
        "request_timeout",
        "too_many_holds",
        "rate_limited",
        "not_found",
        "insufficient_capacity",
        "package_disabled",
        "insufficient_funds",
        "hold_captured",
        "hold_released",
        "hold_expired",
        "already_refunded",
        "spend_completed",
        "idempotency_key_in_use",
        "payload_too_large",
        "unsupported_media_type",
        "idempotency_key_reused",
        "sync_failed",
        "purchases_disabled",
        "enhancement_unavailable",
        "not_ready",
        "outcome_unknown",
    ] {
        assert!(codes.contains(&format!("\"{code}\"")), "{code} is listed: {codes}");
    }
}

/// Regressions found by schemathesis: a 405 names the allowed methods in
/// `Allow` (RFC 9110), and a ledger cursor beyond the largest sequence
/// number is refused instead of answered with an empty page.
#[tokio::test]
async fn schemathesis_findings_stay_fixed() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();
    let traced = client
        .request(reqwest::Method::from_bytes(b"TRACE").expect("method"), server.url("/api/credits/purchase"))
        .send()
        .await
        .expect("answers");
    assert_eq!(traced.status(), 405);
    assert_eq!(traced.headers().get("allow").and_then(|v| v.to_str().ok()), Some("GET, POST"));
    let beyond = answer(
        client
            .get(server.url("/api/admin/ledger?after=9223372036854775808"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("answers"),
    )
    .await;
    assert_eq!((beyond.status, beyond.code()), (400, "invalid_request"));
}
