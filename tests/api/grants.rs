//! Credit grants (SPEC §13) on the real binary: a package whose credits
//! expire, promotional grants, the burn order, a refund into the grants a
//! spend drew from, an expiry that returns capacity exactly, a void; the
//! wallet, the ledger, the report and `/metrics` agree, also after kill -9.

use serde_json::{json, Value};

use crate::common::{
    admin_get, capacity, client, epoch_ms, eventually, grant, ledger, now_ms, provider, purchase, refund, run_check,
    spend, temp_dir, void, Server, ADMIN_TOKEN,
};

/// The wallet of `user`.
async fn wallet(server: &Server, user: &str) -> Value {
    let got = admin_get(&client(), &server.url(&format!("/api/users/{user}/credits"))).await;
    assert_eq!(got.status, 200, "{got:?}");
    got.body
}

/// `(grantId, remaining)` of each grant the wallet shows, in its order.
fn grants_of(wallet: &Value) -> Vec<(String, u64)> {
    let grants = wallet["grants"].as_array().expect("grants");
    grants
        .iter()
        .map(|grant| (grant["grantId"].as_str().expect("id").to_owned(), grant["remaining"].as_u64().expect("n")))
        .collect()
}

/// `(grantId, credits)` of a ledger entry's `draws` or `grants`.
fn moved(entry: &Value, field: &str) -> Vec<(String, u64)> {
    let list = entry[field].as_array().unwrap_or_else(|| panic!("{field} in {entry}"));
    list.iter()
        .map(|item| (item["grantId"].as_str().expect("id").to_owned(), item["credits"].as_u64().expect("n")))
        .collect()
}

fn entry_of<'a>(entries: &'a [Value], kind: &str, field: &str, id: &str) -> &'a Value {
    entries
        .iter()
        .find(|entry| entry["kind"] == kind && entry[field] == id)
        .unwrap_or_else(|| panic!("no {kind} entry with {field} {id}"))
}

async fn reserved(server: &Server) -> u64 {
    capacity(&client(), server).await["reservedCredits"].as_u64().expect("reserved")
}

/// The value of the metric line that starts with `name` (no labels).
async fn metric(server: &Server, name: &str) -> f64 {
    let text = reqwest::get(server.url("/metrics")).await.expect("metrics").text().await.expect("text");
    let line = text.lines().find(|line| line.split(' ').next() == Some(name));
    line.unwrap_or_else(|| panic!("{name} in /metrics")).rsplit(' ').next().expect("value").parse().expect("a number")
}

/// Goal: SPEC §13 from the outside, step by step, with each number the
/// wallet, the ledger, the report and `/metrics` show checked against
/// what the steps must leave.
#[tokio::test]
async fn grants_burn_in_order_refund_into_their_grants_expire_into_capacity_and_void() {
    let provider = provider(100_000);
    let dir = temp_dir();
    let mut server = Server::start(&provider, dir.path()).await;
    let admin = client();

    // A package whose credits last 30 days.
    let url = server.url("/api/admin/packages/starter");
    let changed = admin.put(&url).bearer_auth(ADMIN_TOKEN).json(&json!({"expiresAfterDays": 30})).send().await;
    let changed = crate::common::answer(changed.expect("answers")).await;
    assert_eq!((changed.status, changed.body["expiresAfterDays"].as_u64()), (200, Some(30)), "{changed:?}");
    for bad in [json!({"expiresAfterDays": 0}), json!({"expiresAfterDays": 3651}), json!({"expiresAfterDays": "x"})] {
        let refused = admin.put(&url).bearer_auth(ADMIN_TOKEN).json(&bad).send().await.expect("answers");
        let refused = crate::common::answer(refused).await;
        assert_eq!((refused.status, refused.code()), (400, "invalid_request"), "{bad}: {refused:?}");
    }

    let before = now_ms();
    let starter = purchase(&admin, &server.base, "g", "starter", "p-1").await; // 10 credits, 30 days
    assert_eq!(starter.status, 200, "{starter:?}");
    let pro = purchase(&admin, &server.base, "g", "pro", "p-2").await; // 100 credits, never
    assert_eq!(pro.status, 200, "{pro:?}");
    // Promotional: 5 credits that expire in a few seconds, 7 that never do.
    let soon = rfc3339(now_ms() + 10_000);
    let bonus = grant(&server, "g", 5, Some(&soon), "bonus-1").await;
    assert_eq!(bonus.status, 201, "{bonus:?}");
    assert_eq!((bonus.body["kind"].as_str(), bonus.body["credits"].as_u64()), (Some("promotional"), Some(5)));
    assert_eq!(bonus.body["expiresAt"], json!(soon));
    let again = grant(&server, "g", 5, Some(&soon), "bonus-1").await;
    assert_eq!((again.status, &again.body), (201, &bonus.body), "a retry gets the first answer");
    let reused = grant(&server, "g", 6, Some(&soon), "bonus-1").await;
    assert_eq!((reused.status, reused.code()), (422, "idempotency_key_reused"));
    let forever = grant(&server, "g", 7, None, "bonus-2").await;
    assert_eq!((forever.status, forever.body["expiresAt"].clone()), (201, Value::Null), "{forever:?}");
    let past = grant(&server, "g", 7, Some("2020-01-01T00:00:00Z"), "bonus-3").await;
    assert_eq!((past.status, past.code()), (400, "invalid_request"), "{past:?}");
    let missing = admin
        .post(server.url("/api/admin/grants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"userId": "g", "credits": 1, "reason": "no key"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(crate::common::answer(missing).await.code(), "missing_idempotency_key");

    let id = |answer: &Value, field: &str| answer[field].as_str().expect("an id").to_owned();
    let entries = ledger(&admin, &server).await;
    let starter_grant = id(entry_of(&entries, "purchase", "purchaseId", &id(&starter.body, "purchaseId")), "grantId");
    let pro_grant = id(entry_of(&entries, "purchase", "purchaseId", &id(&pro.body, "purchaseId")), "grantId");
    let (bonus_grant, forever_grant) = (id(&bonus.body, "grantId"), id(&forever.body, "grantId"));
    let created = entry_of(&entries, "grantCreated", "grantId", &bonus_grant);
    assert_eq!((created["credits"].as_u64(), created["grantKind"].as_str()), (Some(5), Some("promotional")));

    // The burn order: the soonest expiry first, promotional before paid, never-expiring last, oldest first.
    let shown = wallet(&server, "g").await;
    assert_eq!(shown["balance"], 122);
    let order =
        [(bonus_grant.clone(), 5), (starter_grant.clone(), 10), (forever_grant.clone(), 7), (pro_grant.clone(), 100)];
    assert_eq!(grants_of(&shown), order);
    let starter_expiry = shown["grants"][1]["expiresAt"].clone();
    let days = (epoch_ms(&starter_expiry) - before) / 86_400_000;
    assert!((29..=30).contains(&days), "30 days after the purchase: {starter_expiry}");
    assert_eq!(shown["expiring"]["credits"], 5, "only the bonus expires within 7 days: {shown}");
    assert_eq!(metric(&server, "creditd_grant_credits_expiring_7d").await, 5.0);
    assert_eq!(metric(&server, "creditd_promotional_credits_outstanding").await, 12.0);

    // A spend of 8 draws the bonus's 5, then 3 of the starter; its refund gives them back there.
    let drawn = spend(&admin, &server, "g", 8, "s-1").await;
    assert_eq!((drawn.status, drawn.body["balance"].as_u64()), (200, Some(114)), "{drawn:?}");
    let spend_id = id(&drawn.body, "spendId");
    let entries = ledger(&admin, &server).await;
    let spent = entry_of(&entries, "spend", "spendId", &spend_id);
    assert_eq!(moved(spent, "draws"), [(bonus_grant.clone(), 5), (starter_grant.clone(), 3)]);
    let back = refund(&admin, &server, &spend_id).await;
    assert_eq!((back.status, back.body["balance"].as_u64()), (200, Some(122)), "{back:?}");
    let entries = ledger(&admin, &server).await;
    let refunded = entry_of(&entries, "refund", "spendId", &spend_id);
    assert_eq!(moved(refunded, "grants"), [(bonus_grant.clone(), 5), (starter_grant.clone(), 3)]);
    assert_eq!(grants_of(&wallet(&server, "g").await), order, "every credit back where it came from");

    // A spend of 3 stays open across the bonus's expiry.
    let open = spend(&admin, &server, "g", 3, "s-2").await;
    assert_eq!(open.status, 200, "{open:?}");
    let open_id = id(&open.body, "spendId");
    let reserved_before = reserved(&server).await;
    // Expiry: the bonus's last 2 credits leave, and reserved falls by exactly ratio × 2.
    eventually("the bonus expired into the ledger", || async {
        ledger(&client(), &server).await.iter().any(|entry| entry["kind"] == "grantExpired")
    })
    .await;
    let entries = ledger(&admin, &server).await;
    let expired = entry_of(&entries, "grantExpired", "grantId", &bonus_grant);
    assert_eq!((expired["credits"].as_u64(), expired["breakage"].as_u64()), (Some(2), Some(0)), "{expired}");
    assert!(epoch_ms(&expired["at"]) >= epoch_ms(&json!(soon)), "written at or after its expiresAt");
    assert_eq!(reserved(&server).await, reserved_before - 4 * 2, "ratio × the expired credits back in capacity");
    let shown = wallet(&server, "g").await;
    assert_eq!(shown["balance"], 117);
    assert!(grants_of(&shown).iter().all(|(grant, _)| *grant != bonus_grant), "an expired grant is not shown");

    // The open spend's refund gives its 3 credits back to the expired bonus: they leave again.
    let reserved_before = reserved(&server).await;
    let back = refund(&admin, &server, &open_id).await;
    assert_eq!((back.status, back.body["balance"].as_u64()), (200, Some(117)), "{back:?}");
    let entries = ledger(&admin, &server).await;
    let refunded = entry_of(&entries, "refund", "spendId", &open_id);
    assert_eq!(refunded["grants"][0]["leftAgain"], "expired", "{refunded}");
    assert_eq!(reserved(&server).await, reserved_before, "credits that left again reserve nothing");

    // A void: the never-expiring bonus's 7 credits leave at once; again answers the first void.
    let reserved_before = reserved(&server).await;
    let voided = void(&server, &forever_grant, "chargeback").await;
    assert_eq!((voided.status, voided.body["state"].as_str()), (200, Some("voided")), "{voided:?}");
    assert_eq!(reserved(&server).await, reserved_before - 4 * 7);
    let again = void(&server, &forever_grant, "chargeback").await;
    assert_eq!((again.status, &again.body), (200, &voided.body), "voiding again answers the first void");
    let closed = void(&server, &bonus_grant, "too late").await;
    assert_eq!((closed.status, closed.code()), (409, "grant_closed"), "{closed:?}");
    for unknown in ["grant_999999", &id(&drawn.body, "spendId").replace("spend", "grant")] {
        let got = void(&server, unknown, "nothing").await;
        assert_eq!((got.status, got.code()), (404, "not_found"), "{unknown}: {got:?}");
    }
    let bad = void(&server, "grant_x", "nothing").await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_request"));
    assert_eq!(wallet(&server, "g").await["balance"], 110);

    // The report and the metrics say the same.
    let report = admin_get(&admin, &server.url("/api/admin/report")).await.body;
    assert_eq!(report["expiredCredits"], 5, "2 at expiry and 3 that left again: {report}");
    assert_eq!(report["voidedCredits"], 7);
    assert_eq!(report["breakageRevenue"], 0, "promotional credits earned nothing");
    assert_eq!(report["promotionalOutstanding"], 0);
    assert_eq!(report["providerCreditsReturnedByExpiry"], 20);
    assert_eq!(report["providerCreditsReturnedByVoids"], 28);
    let day = &report["expiredByDay"][0];
    assert_eq!((day["day"].as_str(), day["credits"].as_u64()), (Some(&soon[..10]), Some(5)), "{report}");
    assert_eq!(metric(&server, "creditd_grant_credits_expired_total").await, 5.0);
    assert_eq!(metric(&server, "creditd_grant_credits_voided_total").await, 7.0);
    assert_eq!(metric(&server, "creditd_promotional_credits_outstanding").await, 0.0);

    // kill -9 changes nothing of it, and `check` agrees with the ledger.
    let shown = wallet(&server, "g").await;
    server.kill9();
    server.restart().await;
    let after = wallet(&server, "g").await;
    assert_eq!((grants_of(&after), &after["balance"]), (grants_of(&shown), &shown["balance"]));
    assert_eq!(admin_get(&admin, &server.url("/api/admin/report")).await.body["expiredCredits"], 5);
    server.terminate();
    let (code, output) = run_check(dir.path());
    assert_eq!(code, 0, "{output}");
}

/// RFC 3339 of `ms`, as the API writes it.
fn rfc3339(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .expect("a time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

/// Goal (SPEC §13): a data directory the release before grants wrote
/// (`tests/fixtures/pre-grants-store.tar.gz`, made by
/// `tests/fixtures/make_pre_grants_store.sh` with that release's binary)
/// opens with each wallet's balance as one never-expiring paid grant, and
/// `check` passes on it before and after this release changes it: a spend
/// made before grants refunds into a grant of its own, a new spend draws the
/// old grant first (the oldest), a new purchase makes a grant beside it.
#[tokio::test]
async fn a_store_of_the_release_before_grants_opens_with_each_balance_as_one_grant() {
    let dir = temp_dir();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pre-grants-store.tar.gz");
    let untarred = std::process::Command::new("tar").args(["-xzf", fixture, "-C"]).arg(dir.path()).status();
    assert!(untarred.expect("tar runs").success(), "the fixture unpacks");
    let data = dir.path().join("data");
    let (code, output) = run_check(&data);
    assert_eq!(code, 0, "the old store checks: {output}");

    let provider = provider(100_000);
    // The fixture's open spend was made when the fixture was: it stays open
    // however old the fixture is (ten years).
    let env = [("CREDITD_SPEND_COMPLETE_AFTER_SECS", "315360000")];
    let mut server = Server::start_with(&provider, &data, &env).await;
    let admin = client();
    let old = wallet(&server, "old").await;
    assert_eq!(old["balance"], 85, "{old}");
    let grants = old["grants"].as_array().expect("grants").clone();
    assert_eq!(grants.len(), 1, "one grant of the balance: {old}");
    assert_eq!((grants[0]["kind"].as_str(), grants[0]["remaining"].as_u64()), (Some("paid"), Some(85)));
    assert_eq!(grants[0]["expiresAt"], Value::Null, "it never expires");
    let legacy = grants[0]["grantId"].as_str().expect("an id").to_owned();
    let held = wallet(&server, "held").await;
    assert_eq!((held["balance"].as_u64(), held["grants"][0]["remaining"].as_u64()), (Some(10), Some(10)));

    // The spend left open by the old release refunds into a grant of its own.
    let entries = ledger(&admin, &server).await;
    let open = entries.iter().rfind(|entry| entry["kind"] == "spend").expect("the old open spend");
    let open_id = open["spendId"].as_str().expect("id").to_owned();
    let back = refund(&admin, &server, &open_id).await;
    assert_eq!((back.status, back.body["balance"].as_u64()), (200, Some(90)), "{back:?}");
    let shown = wallet(&server, "old").await;
    let ids: Vec<(String, u64)> = grants_of(&shown);
    assert_eq!(ids.len(), 2, "{shown}");
    assert_eq!(ids[0], (legacy.clone(), 85), "the old grant is the oldest: {shown}");
    assert_eq!(ids[1].1, 5);

    // A new spend draws the old grant first; a new purchase adds a grant.
    let drawn = spend(&admin, &server, "old", 88, "new-1").await;
    assert_eq!((drawn.status, drawn.body["balance"].as_u64()), (200, Some(2)), "{drawn:?}");
    let entries = ledger(&admin, &server).await;
    let spent = entry_of(&entries, "spend", "spendId", drawn.body["spendId"].as_str().expect("id"));
    assert_eq!(moved(spent, "draws"), [(legacy, 85), (ids[1].0.clone(), 3)]);
    assert_eq!(purchase(&admin, &server.base, "old", "starter", "new-2").await.status, 200);
    let shown = wallet(&server, "old").await;
    let now_shown = grants_of(&shown);
    assert_eq!(shown["balance"], 12);
    assert_eq!(now_shown.len(), 2, "an emptied grant is not shown: {shown}");
    assert_eq!((&now_shown[0], now_shown[1].1), (&(ids[1].0.clone(), 2), 10), "oldest first: {shown}");

    server.terminate();
    let (code, output) = run_check(&data);
    assert_eq!(code, 0, "the store checks after this release changed it: {output}");
}
