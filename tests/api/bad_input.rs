use crate::common::{
    admin_get, answer, catalogue, client, get, ledger, provider, purchase, temp_dir, Server, ADMIN_TOKEN,
};

struct Case {
    name: &'static str,
    content_type: Option<&'static str>,
    key: Option<String>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    /// A word the error message must contain (the field it names).
    mentions: &'static str,
}

fn case(name: &'static str, body: &str, status: u16, code: &'static str, mentions: &'static str) -> Case {
    Case {
        name,
        content_type: Some("application/json"),
        key: Some(format!("key-{name}")),
        body: body.as_bytes().to_vec(),
        status,
        code,
        mentions,
    }
}

/// Goal: bad input gets its status and error code, names the field, and
/// never changes state (SPEC §9). Method: a table of bad purchases, then
/// the catalogue and the ledger are compared with their state before.
#[tokio::test]
async fn bad_purchases_are_refused_with_their_code_and_change_nothing() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();
    let before = (catalogue(&client, &server).await, ledger(&client, &server).await);

    let long_user = "u".repeat(129);
    let big_body = format!(r#"{{"userId":"a","packageId":"starter","pad":"{}"}}"#, "x".repeat(65 * 1024));
    let cases = vec![
        case("malformed", r#"{"userId": "a","#, 400, "invalid_request", ""),
        case("not-an-object", r#"["a","starter"]"#, 400, "invalid_request", ""),
        case("unknown-field", r#"{"userId":"a","packageId":"starter","extra":1}"#, 400, "invalid_request", "extra"),
        case(
            "negative-amount",
            r#"{"userId":"a","packageId":"starter","credits":-10}"#,
            400,
            "invalid_request",
            "credits",
        ),
        case("missing-field", r#"{"userId":"a"}"#, 400, "invalid_request", "packageId"),
        case("wrong-type", r#"{"userId":5,"packageId":"starter"}"#, 400, "invalid_request", "userId"),
        case("null-field", r#"{"userId":null,"packageId":"starter"}"#, 400, "invalid_request", "userId"),
        case("empty-user", r#"{"userId":"","packageId":"starter"}"#, 400, "invalid_request", "userId"),
        case("control-character", r#"{"userId":"a\u0000b","packageId":"starter"}"#, 400, "invalid_request", "userId"),
        case("unknown-package", r#"{"userId":"a","packageId":"platinum"}"#, 404, "not_found", "platinum"),
        case(
            "user-129-bytes",
            &format!(r#"{{"userId":"{long_user}","packageId":"starter"}}"#),
            400,
            "invalid_request",
            "userId",
        ),
        case("body-65-KiB", &big_body, 413, "payload_too_large", ""),
        case("empty-body", "", 400, "invalid_request", ""),
        Case {
            content_type: Some("text/plain"),
            ..case("text-plain", r#"{"userId":"a","packageId":"starter"}"#, 415, "unsupported_media_type", "")
        },
        Case {
            content_type: None,
            ..case("no-content-type", r#"{"userId":"a","packageId":"starter"}"#, 415, "unsupported_media_type", "")
        },
        Case {
            key: None,
            ..case("no-key", r#"{"userId":"a","packageId":"starter"}"#, 400, "missing_idempotency_key", "")
        },
        Case {
            key: Some("k".repeat(256)),
            ..case(
                "key-256-bytes",
                r#"{"userId":"a","packageId":"starter"}"#,
                400,
                "invalid_request",
                "Idempotency-Key",
            )
        },
        Case {
            key: Some(String::new()),
            ..case("empty-key", r#"{"userId":"a","packageId":"starter"}"#, 400, "invalid_request", "Idempotency-Key")
        },
    ];

    for case in cases {
        let mut request = client.post(server.url("/api/credits/purchase")).body(case.body.clone());
        if let Some(content_type) = case.content_type {
            request = request.header("Content-Type", content_type);
        }
        if let Some(key) = &case.key {
            request = request.header("Idempotency-Key", key);
        }
        let got = answer(request.send().await.expect("the server answers")).await;
        assert_eq!((got.status, got.code()), (case.status, case.code), "{}: {got:?}", case.name);
        assert!(
            got.message().contains(case.mentions),
            "{}: message {:?} names {:?}",
            case.name,
            got.message(),
            case.mentions
        );
    }

    let after = (catalogue(&client, &server).await, ledger(&client, &server).await);
    assert_eq!(after, before, "bad input changed nothing");
    assert_eq!(get(&client, &server.url("/api/users/a/credits")).await.status, 404);
}

/// Goal: routes, paths and queries are validated too, with JSON errors.
#[tokio::test]
async fn bad_paths_queries_and_tokens_get_json_errors() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();

    let long_user = get(&client, &server.url(&format!("/api/users/{}/credits", "u".repeat(129)))).await;
    assert_eq!((long_user.status, long_user.code()), (400, "invalid_request"));
    let unknown_route = get(&client, &server.url("/api/nothing-here")).await;
    assert_eq!((unknown_route.status, unknown_route.code()), (404, "not_found"));
    let wrong_method = answer(client.delete(server.url("/api/credits/purchase")).send().await.expect("answers")).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.code(), "method_not_allowed");

    for query in ["limit=0", "limit=-1", "limit=1001", "after=abc", "after=-5", "bogus=1"] {
        let page = admin_get(&client, &server.url(&format!("/api/admin/ledger?{query}"))).await;
        assert_eq!((page.status, page.code()), (400, "invalid_request"), "{query}: {page:?}");
    }
    let ledger_url = server.url("/api/admin/ledger");
    let no_token = get(&reqwest::Client::new(), &ledger_url).await;
    assert_eq!((no_token.status, no_token.code()), (401, "unauthorized"));
    let wrong = answer(client.get(&ledger_url).bearer_auth("wrong-token").send().await.expect("answers")).await;
    assert_eq!((wrong.status, wrong.code()), (401, "unauthorized"));
    let prefix = answer(client.get(&ledger_url).bearer_auth(&ADMIN_TOKEN[..5]).send().await.expect("answers")).await;
    assert_eq!(prefix.status, 401, "a prefix of the token is not the token");
    assert!(!format!("{no_token:?}{wrong:?}").contains(ADMIN_TOKEN), "the token is never echoed");
    assert_eq!(admin_get(&client, &ledger_url).await.status, 200);
}

/// Goal: no metric label takes its value from request input (SPEC §9: bad
/// input changes nothing, and that includes the number of series Prometheus
/// must keep). Method: 300 purchases of random, unknown package ids, then
/// count the `package` label values of `creditd_purchases_total`.
#[tokio::test]
async fn unknown_package_ids_do_not_make_new_metric_series() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "buyer", "starter", "known").await.status, 200);
    for n in 0..300 {
        let refused = purchase(&client, &server.base, "buyer", &format!("no-such-package-{n}"), &format!("k{n}")).await;
        assert_eq!((refused.status, refused.code()), (404, "not_found"));
    }
    let text = client.get(server.url("/metrics")).send().await.expect("answers").text().await.expect("text");
    let packages: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|line| line.starts_with("creditd_purchases_total{"))
        .filter_map(|line| line.split("package=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(packages.into_iter().collect::<Vec<_>>(), ["starter", "unknown"]);
}
