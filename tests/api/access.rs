//! API keys and scopes (SPEC §9.1): every route answers as the table says
//! to no key, a revoked key, a key without the route's scope, a key with
//! it, and the admin token; revocations last; keys never leak.

use serde_json::{json, Value};

use crate::common::{admin_get, answer, client, create_key, provider, temp_dir, Answer, Server, ADMIN_TOKEN};

/// Request `n` of a matrix, each from its own loopback address, so that the
/// matrix's many refusals stay under the 20 failed authentications an
/// address may make in a second (SPEC §9.2).
async fn call(server: &Server, method: &str, path: &str, body: Option<&Value>, key: Option<&str>, n: usize) -> Answer {
    let address = std::net::Ipv4Addr::new(
        127,
        1,
        u8::try_from(n / 250 % 250).expect("small"),
        u8::try_from(n % 250 + 1).expect("small"),
    );
    let bare = reqwest::Client::builder().local_address(Some(address.into())).build().expect("a client");
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = bare.request(method, server.url(path)).header("Idempotency-Key", format!("matrix-{n}"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    answer(request.send().await.expect("the server answers")).await
}

/// The callers of SPEC §9.1's matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    NoKey,
    WrongKey,
    RevokedKey,
    Read,
    Storefront,
    Enhancement,
    AdminKey,
    AdminToken,
}

const EVERYONE: [Who; 8] = [
    Who::NoKey,
    Who::WrongKey,
    Who::RevokedKey,
    Who::Read,
    Who::Storefront,
    Who::Enhancement,
    Who::AdminKey,
    Who::AdminToken,
];

/// Whose hold or spend a route names: the caller's own, or another key's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whose {
    Own,
    Another,
}

/// What a route's request names in its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Object {
    Nothing,
    Hold,
    Spend,
    ApiKey,
    Grant,
}

/// A request for the operation `method path` of the OpenAPI document that,
/// once let in, succeeds; `None` for an operation this test does not know,
/// which fails it: a new route cannot be left out of the matrix.
fn request_for(method: &str, path: &str) -> Option<(Option<Value>, Object)> {
    let nothing = |body: Option<Value>| Some((body, Object::Nothing));
    match (method, path) {
        (
            "GET",
            "/admin"
            | "/healthz"
            | "/readyz"
            | "/metrics"
            | "/api/credits/purchase"
            | "/api/credits/status"
            | "/api/admin/alerts"
            | "/api/admin/backup"
            | "/api/admin/credits"
            | "/api/admin/keys"
            | "/api/admin/ledger"
            | "/api/admin/report"
            | "/api/users/{userId}/credits",
        )
        | ("POST", "/api/admin/credits/sync" | "/api/admin/purchases/enable") => nothing(None),
        ("POST", "/api/admin/purchases/disable") => nothing(Some(json!({"reason": "the access matrix"}))),
        ("POST", "/api/admin/keys") => nothing(Some(json!({"name": "made in the matrix", "scopes": ["read"]}))),
        ("DELETE", "/api/admin/keys/{id}") => Some((None, Object::ApiKey)),
        ("PUT", "/api/admin/packages/{packageId}") => nothing(Some(json!({"enabled": true}))),
        ("POST", "/api/admin/grants") => {
            nothing(Some(json!({"userId": "matrix", "credits": 1, "reason": "the access matrix"})))
        }
        ("POST", "/api/admin/grants/{grantId}/void") => {
            Some((Some(json!({"reason": "the access matrix"})), Object::Grant))
        }
        ("POST", "/api/credits/purchase" | "/api/credits/holds") => {
            nothing(Some(json!({"userId": "matrix", "packageId": "starter"})))
        }
        ("POST", "/api/credits/spend") => nothing(Some(json!({"userId": "rich", "credits": 1}))),
        ("POST", "/api/credits/holds/{holdId}/capture" | "/api/credits/holds/{holdId}/release") => {
            Some((None, Object::Hold))
        }
        ("POST", "/api/credits/spend/{spendId}/complete" | "/api/credits/spend/{spendId}/refund") => {
            Some((None, Object::Spend))
        }
        _ => None,
    }
}

/// The scopes an operation of the OpenAPI document accepts; `None` when it is public.
fn scopes_of(operation: &Value) -> Option<Vec<String>> {
    let security = operation["security"].as_array()?;
    if security.iter().any(|requirement| requirement.as_object().is_some_and(serde_json::Map::is_empty)) {
        return None;
    }
    let scopes = security.iter().filter_map(|requirement| requirement["bearer"].as_array()).flatten();
    Some(scopes.filter_map(Value::as_str).map(str::to_owned).collect())
}

/// Goal: SPEC §9.1's whole matrix, generated from `/openapi.json`: every
/// operation × {no key, a wrong key, a revoked key, read, storefront,
/// enhancement, an admin key, the admin token} × {its own hold or spend,
/// another key's}. Public routes never answer 401 or 403; a protected one
/// answers 401 `unauthorized` without a valid key, 403 `forbidden` to a key
/// without one of its scopes, 404 `not_found` to a key finishing another
/// key's hold or spend (an admin key may), and succeeds otherwise. Each
/// request comes from its own loopback address (SPEC §9.2 slows an address
/// past 20 failed authentications a second).
#[tokio::test]
async fn every_operation_answers_each_caller_and_each_owner_as_section_9_1_says() {
    let provider = provider(100_000_000);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let (_, storefront) = create_key(&server, "storefront", &["storefront"]).await;
    let (_, enhancement) = create_key(&server, "enhancement", &["enhancement"]).await;
    let (_, read) = create_key(&server, "read", &["read"]).await;
    let (_, admin_key) = create_key(&server, "second admin", &["admin"]).await;
    let (_, rival) = create_key(&server, "another shop", &["storefront", "enhancement"]).await;
    let (revoked_id, revoked) = create_key(&server, "revoked", &["storefront", "enhancement", "read", "admin"]).await;
    let gone =
        answer(client().delete(server.url(&format!("/api/admin/keys/{revoked_id}"))).send().await.expect("answers"));
    assert_eq!(gone.await.status, 200);
    let rich = crate::common::purchase(&client(), &server.base, "rich", "studio", "rich-1").await;
    assert_eq!(rich.status, 200, "{rich:?}");
    let key_of = |who: Who| -> Option<&str> {
        match who {
            Who::NoKey => None,
            Who::WrongKey => Some("ck_0000000000000000000000000000000000000000000000000000000000000000"),
            Who::RevokedKey => Some(&revoked),
            Who::Read => Some(&read),
            Who::Storefront => Some(&storefront),
            Who::Enhancement => Some(&enhancement),
            Who::AdminKey => Some(&admin_key),
            Who::AdminToken => Some(ADMIN_TOKEN),
        }
    };
    let scopes_held = |who: Who| -> &[&str] {
        match who {
            Who::Read => &["read"],
            Who::Storefront => &["storefront"],
            Who::Enhancement => &["enhancement"],
            Who::AdminKey | Who::AdminToken => &["admin"],
            Who::NoKey | Who::WrongKey | Who::RevokedKey => &[],
        }
    };

    let document = crate::common::get(&client(), &server.url("/openapi.json")).await.body;
    let paths = document["paths"].as_object().expect("paths");
    let (mut n, mut operations) = (0, 0);
    for (path, methods) in paths {
        for (method, operation) in methods.as_object().expect("methods") {
            let method = method.to_uppercase();
            let (body, object) = request_for(&method, path)
                .unwrap_or_else(|| panic!("{method} {path} is not in the access matrix: add it to request_for"));
            let scopes = scopes_of(operation);
            operations += 1;
            for who in EVERYONE {
                for whose in [Whose::Own, Whose::Another] {
                    n += 1;
                    // The named object, made for this request alone.
                    let maker = match (whose, object, who) {
                        (Whose::Another, _, _) => rival.as_str(),
                        (Whose::Own, Object::Hold, Who::Storefront | Who::AdminKey | Who::AdminToken)
                        | (Whose::Own, Object::Spend, Who::Enhancement | Who::AdminKey | Who::AdminToken) => {
                            key_of(who).expect("a key")
                        }
                        (Whose::Own, Object::Spend, _) => enhancement.as_str(),
                        (Whose::Own, _, _) => storefront.as_str(),
                    };
                    let maker = crate::common::client_with_key(maker);
                    let concrete = match object {
                        Object::Nothing => path.replace("{userId}", "rich").replace("{packageId}", "starter"),
                        Object::Hold => {
                            let made = crate::common::hold(&maker, &server, &format!("m-{n}"), "starter", 600).await;
                            path.replace("{holdId}", made.body["holdId"].as_str().expect("a hold"))
                        }
                        Object::Spend => {
                            let made =
                                crate::common::spend(&maker, &server, "rich", 1, &format!("matrix-spend-{n}")).await;
                            path.replace("{spendId}", made.body["spendId"].as_str().expect("a spend"))
                        }
                        Object::ApiKey => {
                            let (id, _) = create_key(&server, &format!("to delete {n}"), &["read"]).await;
                            path.replace("{id}", &id)
                        }
                        Object::Grant => {
                            let made =
                                crate::common::grant(&server, "rich", 1, None, &format!("matrix-grant-{n}")).await;
                            assert_eq!(made.status, 201, "{made:?}");
                            path.replace("{grantId}", made.body["grantId"].as_str().expect("a grant"))
                        }
                    };
                    // A user of its own: the per-user hold limit never speaks.
                    let mut body = body.clone();
                    if let Some(user) =
                        body.as_mut().and_then(|body| body.get_mut("userId")).filter(|user| *user == "matrix")
                    {
                        *user = json!(format!("matrix-{n}"));
                    }
                    let got = call(&server, &method, &concrete, body.as_ref(), key_of(who), n).await;
                    let what = format!("{method} {concrete} by {who:?}, {whose:?}'s: {got:?}");
                    let Some(scopes) = &scopes else {
                        assert!(![401, 403].contains(&got.status), "public: {what}");
                        continue;
                    };
                    let admin = scopes_held(who).contains(&"admin");
                    if matches!(who, Who::NoKey | Who::WrongKey | Who::RevokedKey) {
                        assert_eq!((got.status, got.code()), (401, "unauthorized"), "{what}");
                    } else if !scopes_held(who).iter().any(|scope| scopes.iter().any(|allowed| allowed == scope)) {
                        assert_eq!((got.status, got.code()), (403, "forbidden"), "{what}");
                    } else if whose == Whose::Another && matches!(object, Object::Hold | Object::Spend) && !admin {
                        assert_eq!((got.status, got.code()), (404, "not_found"), "{what}");
                    } else {
                        assert!((200..300).contains(&got.status), "let in, and it succeeds: {what}");
                    }
                }
            }
            // Whatever the matrix did to the kill switch, sales go on for the next routes.
            crate::common::admin_post(&client(), &server.url("/api/admin/purchases/enable"), None).await;
        }
    }
    assert!(operations >= 28, "the document names {operations} operations");
}

/// Goal: a key is shown once, stored only as a hash, listed without the
/// key, and its revocation holds at once and after a restart.
#[tokio::test]
async fn keys_are_shown_once_listed_without_the_key_and_revoked_for_good() {
    let provider = provider(938);
    let dir = temp_dir();
    let mut server = Server::start(&provider, dir.path()).await;
    let (id, key) = create_key(&server, "the shop", &["storefront", "enhancement"]).await;
    assert!(key.starts_with("ck_") && key.len() >= 40, "{key}");
    let shop = crate::common::client_with_key(&key);
    let bought = crate::common::purchase(&shop, &server.base, "s", "starter", "k-1").await;
    assert_eq!(bought.status, 200, "{bought:?}");

    let listed = admin_get(&client(), &server.url("/api/admin/keys")).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert!(!listed.body.to_string().contains(&key), "a listing never shows a key");
    let entry = listed.body["keys"].as_array().expect("keys").iter().find(|k| k["id"] == id.as_str()).cloned();
    let entry = entry.expect("the key is listed");
    assert_eq!(entry["name"], "the shop");
    assert_eq!(entry["scopes"], json!(["storefront", "enhancement"]));
    assert!(entry["lastUsedAt"].is_string(), "its use is noted: {entry}");
    assert!(entry["revokedAt"].is_null());
    let ledger = crate::common::ledger(&client(), &server).await;
    assert!(!serde_json::to_string(&ledger).expect("json").contains(&key), "the ledger never holds a key");

    let revoked = answer(client().delete(server.url(&format!("/api/admin/keys/{id}"))).send().await.expect("answers"));
    assert_eq!(revoked.await.status, 200);
    let refused = crate::common::purchase(&shop, &server.base, "s", "starter", "k-2").await;
    assert_eq!((refused.status, refused.code()), (401, "unauthorized"), "revoked at once");
    let again = answer(client().delete(server.url(&format!("/api/admin/keys/{id}"))).send().await.expect("answers"));
    assert_eq!(again.await.status, 200, "revoking twice is harmless");
    let unknown = answer(client().delete(server.url("/api/admin/keys/key_424242")).send().await.expect("answers"));
    assert_eq!(unknown.await.status, 404);

    server.kill9();
    server.restart().await;
    let refused = crate::common::purchase(&shop, &server.base, "s", "starter", "k-3").await;
    assert_eq!((refused.status, refused.code()), (401, "unauthorized"), "revoked after a restart too");
    let (_, other) = create_key(&server, "after the restart", &["read"]).await;
    let wallet = crate::common::get(&crate::common::client_with_key(&other), &server.url("/api/users/s/credits")).await;
    assert_eq!(wallet.status, 200, "a key made after the restart works: {wallet:?}");
    server.terminate();
    let (code, output) = crate::common::run_check(&server.data_dir);
    assert_eq!(code, 0, "check passes with keys made and revoked: {output}");
}

/// Goal: bad key requests are refused with the field named, and change nothing.
#[tokio::test]
async fn a_bad_key_request_names_the_field_and_makes_no_key() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let url = server.url("/api/admin/keys");
    for (body, field) in [
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "x", "scopes": ["root"]}), "scopes"),
        (json!({"name": "", "scopes": ["read"]}), "name"),
        (json!({"name": "x".repeat(129), "scopes": ["read"]}), "name"),
        (json!({"name": "x", "scopes": ["read"], "key": "ck_mine"}), "key"),
        (json!({"scopes": ["read"]}), "name"),
    ] {
        let got = crate::common::admin_post(&client(), &url, Some(body.clone())).await;
        assert_eq!((got.status, got.code()), (400, "invalid_request"), "{body}: {got:?}");
        assert!(got.message().contains(field), "{body}: the message names {field}: {got:?}");
    }
    let listed = admin_get(&client(), &url).await;
    assert_eq!(listed.body["keys"], json!([]), "no key was made");
}

/// Goal: `/metrics` is public unless `CREDITD_METRICS_TOKEN` is set, and
/// then answers only to that token (SPEC §9.1).
#[tokio::test]
async fn metrics_need_the_metrics_token_only_when_one_is_set() {
    let provider = provider(938);
    let dir = temp_dir();
    let token = "metrics-token-for-the-scraper";
    let server = Server::start_with(&provider, dir.path(), &[("CREDITD_METRICS_TOKEN", token)]).await;
    let url = server.url("/metrics");
    let bare = reqwest::Client::new();
    for key in [None, Some("wrong"), Some(ADMIN_TOKEN)] {
        let mut request = bare.get(&url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let got = answer(request.send().await.expect("answers")).await;
        assert_eq!((got.status, got.code()), (401, "unauthorized"), "/metrics with {key:?}");
    }
    let scraped = bare.get(&url).bearer_auth(token).send().await.expect("answers");
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.expect("text").contains("creditd_available_credits"));

    let open_dir = temp_dir();
    let open = Server::start(&provider, open_dir.path()).await;
    let public = bare.get(open.url("/metrics")).send().await.expect("answers");
    assert_eq!(public.status(), 200, "public without CREDITD_METRICS_TOKEN");
}

/// `shared` buys `package` as `client`, always with `Idempotency-Key: order-1`.
async fn order_1(server: &Server, client: &reqwest::Client, package: &str) -> Answer {
    crate::common::purchase(client, &server.base, "shared", package, "order-1").await
}

/// Goal: `Idempotency-Key`s are scoped to the API key that sent them (SPEC
/// §9.1): the same key from two callers is two operations, each caller's
/// retry gets its own first answer, and one caller can neither replay nor
/// block (422) another's key.
#[tokio::test]
async fn the_same_idempotency_key_from_two_callers_is_two_operations() {
    let provider = provider(938);
    let dir = temp_dir();
    let mut server = Server::start(&provider, dir.path()).await;
    let (_, first) = create_key(&server, "shop one", &["storefront", "enhancement"]).await;
    let (_, second) = create_key(&server, "shop two", &["storefront", "enhancement"]).await;
    let (one, two) = (crate::common::client_with_key(&first), crate::common::client_with_key(&second));
    let a = order_1(&server, &one, "starter").await;
    assert_eq!((a.status, a.body["balance"].clone()), (200, json!(10)), "{a:?}");
    let b = order_1(&server, &two, "creative").await;
    assert_eq!(
        (b.status, b.body["balance"].clone()),
        (200, json!(60)),
        "another caller's key: a new purchase, not 422"
    );
    assert_ne!(a.body["purchaseId"], b.body["purchaseId"]);
    let a_again = order_1(&server, &one, "starter").await;
    assert_eq!(a_again.body, a.body, "each caller's retry gets its own first answer");
    let b_again = order_1(&server, &two, "creative").await;
    assert_eq!(b_again.body, b.body);
    let a_other = order_1(&server, &one, "creative").await;
    assert_eq!(
        (a_other.status, a_other.code()),
        (422, "idempotency_key_reused"),
        "within one caller, reuse is refused"
    );

    let spend = |client: reqwest::Client| {
        let url = server.url("/api/credits/spend");
        async move {
            crate::common::post(&client, &url, Some("job-1"), Some(json!({"userId": "shared", "credits": 5}))).await
        }
    };
    let (s1, s2) = (spend(one.clone()).await, spend(two.clone()).await);
    assert_eq!((s1.status, s2.status), (200, 200), "{s1:?} {s2:?}");
    assert_eq!((s1.body["balance"].clone(), s2.body["balance"].clone()), (json!(55), json!(50)));

    server.kill9();
    server.restart().await;
    assert_eq!(order_1(&server, &one, "starter").await.body, a.body, "after a restart, still each caller's own answer");
    assert_eq!(order_1(&server, &two, "creative").await.body, b.body);
    let wallet = crate::common::get(&one, &server.url("/api/users/shared/credits")).await;
    assert_eq!(wallet.body["balance"], json!(50), "two purchases and two spends, each once");
}

/// Goal: no secret reaches the logs (SPEC §9.1, and the rules of the
/// build): with `RUST_LOG=debug`, neither the admin token, an API key, the
/// metrics token nor the provider key appears, whatever the requests do.
#[tokio::test]
async fn no_key_or_token_is_ever_logged_even_at_debug() {
    let provider = provider(938);
    let dir = temp_dir();
    let log = dir.path().join("creditd.log");
    let data = dir.path().join("data");
    let metrics_token = "metrics-token-never-logged";
    let env = [("RUST_LOG", "debug"), ("CREDITD_METRICS_TOKEN", metrics_token)];
    let mut server = Server::start_logged(&provider, &data, &env, &log).await;
    let (id, key) = create_key(&server, "logged shop", &["storefront", "enhancement"]).await;
    let shop = crate::common::client_with_key(&key);
    assert_eq!(crate::common::purchase(&shop, &server.base, "l", "starter", "log-1").await.status, 200);
    let wrong = format!("{key}x");
    let stranger = crate::common::client_with_key(&wrong);
    assert_eq!(crate::common::purchase(&stranger, &server.base, "l", "pro", "log-2").await.status, 401);
    let scraped = reqwest::Client::new().get(server.url("/metrics")).bearer_auth(metrics_token).send().await;
    assert_eq!(scraped.expect("answers").status(), 200);
    let revoked = client().delete(server.url(&format!("/api/admin/keys/{id}"))).send().await.expect("answers");
    assert_eq!(revoked.status(), 200);
    assert_eq!(crate::common::sync_now(&client(), &server).await.status, 200);
    server.terminate();

    let logged = std::fs::read_to_string(&log).expect("the log");
    assert!(logged.contains("DEBUG"), "debug logging was on: {} bytes", logged.len());
    let hash: String = crate::common::sha256_hex(&key);
    for (what, secret) in [
        ("the admin token", ADMIN_TOKEN),
        ("the API key", key.as_str()),
        ("the wrong key", wrong.as_str()),
        ("the API key's hash", hash.as_str()),
        ("the metrics token", metrics_token),
        ("the provider key", crate::common::PROVIDER_KEY),
    ] {
        assert!(!logged.contains(secret), "{what} is in the log");
    }
}

/// Goal: a hold is captured or released, and a spend completed or
/// refunded, only by the API key that made it or an admin key (SPEC §9.1);
/// any other key of the right scope gets 404 `not_found`, as if the id did
/// not exist, and changes nothing. The reproduction: sequential ids are easy
/// to walk, so another storefront walks `hold_1` … and another enhancement
/// service `spend_1` …, and the answers stay 404 after a `kill -9`.
#[tokio::test]
async fn only_the_key_that_made_a_hold_or_spend_or_an_admin_may_finish_it() {
    use crate::common::{capture, complete, hold, purchase, refund, release, spend};
    let provider = provider(938);
    let dir = temp_dir();
    let mut server = Server::start(&provider, dir.path()).await;
    let (_, shop) = create_key(&server, "shop", &["storefront"]).await;
    let (_, rival) = create_key(&server, "rival shop", &["storefront"]).await;
    let (_, enhancer) = create_key(&server, "enhancer", &["enhancement"]).await;
    let (_, intruder) = create_key(&server, "other enhancer", &["enhancement"]).await;
    let (shop, rival) = (crate::common::client_with_key(&shop), crate::common::client_with_key(&rival));
    let (enhancer, intruder) = (crate::common::client_with_key(&enhancer), crate::common::client_with_key(&intruder));
    let admin = client();

    let held = [hold(&shop, &server, "ann", "starter", 600).await, hold(&shop, &server, "ann", "starter", 600).await];
    let held: Vec<String> = held.iter().map(|a| a.body["holdId"].as_str().expect("a hold id").to_owned()).collect();
    assert_eq!(purchase(&shop, &server.base, "ann", "creative", "order-1").await.status, 200);
    let spends =
        [spend(&enhancer, &server, "ann", 5, "job-1").await, spend(&enhancer, &server, "ann", 7, "job-2").await];
    let spends: Vec<String> =
        spends.iter().map(|a| a.body["spendId"].as_str().expect("a spend id").to_owned()).collect();
    let before = crate::common::capacity(&admin, &server).await;
    let wallet = |server: &Server| {
        let (admin, url) = (admin.clone(), server.url("/api/users/ann/credits"));
        async move { crate::common::get(&admin, &url).await }
    };
    assert_eq!(wallet(&server).await.body["balance"], json!(38), "50 bought, 12 spent");

    let attempts = 2;
    for round in 0..attempts {
        for seq in 1..=12 {
            let (hold_id, spend_id) = (format!("hold_{seq}"), format!("spend_{seq}"));
            for answer in [capture(&rival, &server, &hold_id).await, release(&rival, &server, &hold_id).await] {
                assert_eq!((answer.status, answer.code()), (404, "not_found"), "round {round}, {hold_id}: {answer:?}");
            }
            for answer in [refund(&intruder, &server, &spend_id).await, complete(&intruder, &server, &spend_id).await] {
                assert_eq!((answer.status, answer.code()), (404, "not_found"), "round {round}, {spend_id}: {answer:?}");
            }
        }
        let unknown = capture(&rival, &server, "hold_999").await;
        let theirs = capture(&rival, &server, &held[0]).await;
        assert_eq!(theirs.body["error"]["code"], unknown.body["error"]["code"], "another key's hold looks unknown");
        assert_eq!(wallet(&server).await.body["balance"], json!(38), "nothing moved");
        assert_eq!(crate::common::capacity(&admin, &server).await, before, "nothing moved");
        server.kill9();
        server.restart().await;
    }

    let captured = capture(&shop, &server, &held[0]).await;
    assert_eq!(
        (captured.status, captured.body["balance"].clone()),
        (200, json!(48)),
        "the maker captures: {captured:?}"
    );
    let released = release(&admin, &server, &held[1]).await;
    assert_eq!(released.status, 200, "an admin key releases another key's hold: {released:?}");
    let refunded = refund(&enhancer, &server, &spends[0]).await;
    assert_eq!(
        (refunded.status, refunded.body["balance"].clone()),
        (200, json!(53)),
        "the maker refunds: {refunded:?}"
    );
    let completed = complete(&admin, &server, &spends[1]).await;
    assert_eq!(completed.status, 200, "an admin key completes another key's spend: {completed:?}");
    let shop_again = capture(&shop, &server, &held[0]).await;
    assert_eq!(shop_again.body, captured.body, "the maker's retry gets the first answer");
    let rival_again = capture(&rival, &server, &held[0]).await;
    assert_eq!((rival_again.status, rival_again.code()), (404, "not_found"), "a finished hold is no more theirs");
}

/// A client from loopback address `address` (127.0.0.0/8 is all loopback),
/// sending `key` as its bearer key.
fn client_from(address: &str, key: &str) -> reqwest::Client {
    crate::common::client_with_key_from(key, Some(address.parse().expect("an address")))
}

/// Goal: guessing keys is slowed to 20 a second an address (SPEC §9.2).
/// The reproduction: 300 wrong keys were answered 401 in 0.45 s. Now the
/// 21st failed authentication within a second from one address, and every
/// request from it for the next second (a valid key's too), is 429
/// `rate_limited` with `Retry-After`; another address is not affected; once
/// the second is over, the valid key works again from the first address.
#[tokio::test]
async fn more_than_twenty_failed_authentications_in_a_second_block_the_address() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let (_, shop) = create_key(&server, "shop", &["storefront"]).await;
    let wallet = server.url("/api/users/ann/credits");
    let guesser = client_from("127.0.0.7", "ck_a-guess");
    let mut statuses = Vec::new();
    for n in 0..300 {
        let key = format!("ck_guess-{n}");
        let answer = guesser.get(&wallet).bearer_auth(&key).send().await.expect("answers");
        statuses.push(answer.status().as_u16());
        if answer.status() == 429 {
            let retry = answer.headers().get("retry-after").and_then(|value| value.to_str().ok()).map(str::to_owned);
            assert_eq!(retry.as_deref(), Some("1"), "Retry-After says when to come back");
            let body = answer.json::<Value>().await.expect("JSON");
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        }
    }
    let unauthorized = statuses.iter().filter(|status| **status == 401).count();
    assert!(statuses[..20].iter().all(|status| *status == 401), "the first 20 are answered: {statuses:?}");
    assert_eq!(statuses[20], 429, "the 21st is refused");
    assert!(unauthorized < 300 / 2, "most of 300 guesses are refused unchecked: {unauthorized} answered 401");
    let honest = client_from("127.0.0.8", &shop);
    assert_eq!(honest.get(&wallet).send().await.expect("answers").status(), 404, "another address is not blocked");
    let wrong = client_from("127.0.0.8", "ck_one-typo");
    assert_eq!(wrong.get(&wallet).send().await.expect("answers").status(), 401, "nor are its own few failures");
    let same_address = client_from("127.0.0.7", &shop);
    let blocked = same_address.get(&wallet).send().await.expect("answers");
    assert_eq!(blocked.status(), 429, "the blocked address is blocked for every key");
    crate::common::eventually("the block is over", || {
        let request = same_address.get(&wallet).send();
        async move { request.await.expect("answers").status() == 404 }
    })
    .await;
}

/// Goal: `serve` refuses an admin token under 16 bytes (SPEC §9.2), with
/// exit 2 and how to make a good one, never printing the token. The
/// reproduction: a one-character token started the server.
#[test]
fn serve_refuses_an_admin_token_under_16_bytes() {
    let dir = temp_dir();
    for token in ["Zq", "fifteen-bytes!!"] {
        let output = std::process::Command::new(crate::common::binary())
            .arg("serve")
            .env_clear()
            .env("CREDITD_DATA_DIR", dir.path())
            .env("CREDITD_LISTEN", "127.0.0.1:0")
            .env("CREDITD_ADMIN_TOKEN", token)
            .env("NANOBANANA_BASE_URL", "http://127.0.0.1:9")
            .env("NANOBANANA_API_KEY", "k")
            .output()
            .expect("creditd runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{token:?}: {stderr}");
        assert!(stderr.contains("at least 16") && stderr.contains("openssl rand"), "{stderr}");
        assert!(!stderr.contains(token), "the token is never printed: {stderr}");
    }
}
