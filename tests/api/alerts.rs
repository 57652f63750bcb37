use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::common::{alerts, client, eventually, provider, purchase, sync_now, temp_dir, Server};

/// Goal: buying down through 500, 100, 40 and 0 fires each level alert
/// exactly once, and a refill resolves each exactly once (SPEC §7).
#[tokio::test]
async fn levels_fire_once_on_the_way_down_and_clear_once_on_refill() {
    let provider = provider(920);
    let dir = temp_dir();
    let server = Server::start_with(&provider, dir.path(), &[("CREDITD_SYNC_INTERVAL_SECS", "3600")]).await;
    let client = client();

    for i in 0..23 {
        assert_eq!(purchase(&client, &server.base, &format!("u{i}"), "starter", &format!("k{i}")).await.status, 200);
    }
    let refused = purchase(&client, &server.base, "late", "starter", "late").await;
    assert_eq!(refused.code(), "insufficient_capacity");
    let levels = ["level_warning", "level_low", "level_critical", "level_empty"];
    eventually("every level fired", || async {
        let (open, _) = alerts(&client, &server).await;
        levels.iter().all(|level| open.iter().any(|kind| kind == level))
    })
    .await;
    let (open, events) = alerts(&client, &server).await;
    for kind in levels.iter().chain(&["low_capacity", "purchase_blocked"]) {
        let fired = events.iter().filter(|(k, s)| k == kind && s == "firing").count();
        assert_eq!(fired, 1, "{kind} fired once: {events:?}");
        assert!(open.iter().any(|k| k == kind), "{kind} is open");
    }

    provider.set_balance(20_000);
    assert_eq!(sync_now(&client, &server).await.status, 200);
    eventually("the refill resolved the levels", || async {
        let (open, _) = alerts(&client, &server).await;
        levels.iter().all(|level| !open.iter().any(|kind| kind == level))
    })
    .await;
    let (_, events) = alerts(&client, &server).await;
    for kind in levels.iter().chain(&["low_capacity"]) {
        let cleared = events.iter().filter(|(k, s)| k == kind && s == "cleared").count();
        assert_eq!(cleared, 1, "{kind} cleared once: {events:?}");
    }
    assert_eq!(purchase(&client, &server.base, "again", "starter", "again").await.status, 200);
    let (open, events) = alerts(&client, &server).await;
    assert!(
        open.iter().any(|k| k == "purchase_blocked"),
        "a sale does not resolve purchase_blocked: only alert_blocked_clear_secs without a refusal do"
    );
    assert_eq!(events.iter().filter(|(k, s)| k == "level_warning" && s == "firing").count(), 1, "no flapping");
}

/// Goal: alerts do not flap (SPEC §7): a hold and its release across the
/// early-warning level, 30 times, fire `level_warning` once and never clear
/// it (it clears only 10 % above the level), while a refill far above the
/// level clears it at once; `purchase_blocked` clears only after
/// `alert_blocked_clear_secs` without a refusal, not on the next sale.
#[tokio::test]
async fn holds_and_releases_across_a_level_do_not_flap() {
    // 530 available: a starter hold (40) takes it to 490, under 500; its release
    // brings it back to 530, under the clearing point 550.
    let provider = provider(530);
    let dir = temp_dir();
    let env = [("CREDITD_SYNC_INTERVAL_SECS", "3600"), ("CREDITD_ALERT_BLOCKED_CLEAR_SECS", "2")];
    let server = Server::start_with(&provider, dir.path(), &env).await;
    let client = client();
    for cycle in 0..30 {
        let held = crate::common::hold(&client, &server, "cycler", "starter", 60).await;
        assert_eq!(held.status, 200, "{cycle}: {held:?}");
        let id = held.body["holdId"].as_str().expect("hold id").to_owned();
        assert_eq!(crate::common::release(&client, &server, &id).await.status, 200, "{cycle}");
    }
    // The inventory tells the alert actor before it answers, so the list is up to date.
    let (open, events) = alerts(&client, &server).await;
    let count = |kind: &str, state: &str| events.iter().filter(|(k, s)| k == kind && s == state).count();
    assert_eq!((count("level_warning", "firing"), count("level_warning", "cleared")), (1, 0), "{events:?}");
    assert!(open.iter().any(|kind| kind == "level_warning"), "530 is under the clearing point 550");
    for (kind, state) in &events {
        assert!(count(kind, state) <= 1, "{kind} {state} more than once: {events:?}");
    }

    // Far above the clearing point; then one studio (2 000) leaves 500, too little for another.
    provider.set_balance(2_500);
    assert_eq!(sync_now(&client, &server).await.status, 200);
    eventually("a refill far above the level clears it at once", || async {
        !alerts(&client, &server).await.0.iter().any(|kind| kind == "level_warning")
    })
    .await;

    let big = purchase(&client, &server.base, "whale", "studio", "w1").await;
    assert_eq!(big.status, 200, "{big:?}");
    for n in 0..4 {
        let refused = purchase(&client, &server.base, "whale", "studio", &format!("w-refused-{n}")).await;
        assert_eq!(refused.code(), "insufficient_capacity");
    }
    eventually("a refusal fires purchase_blocked", || async {
        alerts(&client, &server).await.0.iter().any(|kind| kind == "purchase_blocked")
    })
    .await;
    assert_eq!(purchase(&client, &server.base, "minnow", "starter", "m1").await.status, 200);
    let (open, events) = alerts(&client, &server).await;
    assert!(open.iter().any(|kind| kind == "purchase_blocked"), "a sale does not clear it: {events:?}");
    eventually("purchase_blocked clears after 2 s without a refusal", || async {
        !alerts(&client, &server).await.0.iter().any(|kind| kind == "purchase_blocked")
    })
    .await;
    let (_, events) = alerts(&client, &server).await;
    let blocked: Vec<_> = events.iter().filter(|(kind, _)| kind == "purchase_blocked").collect();
    assert_eq!(blocked.len(), 2, "one firing for four refusals, one clearing: {blocked:?}");
}

/// A delivery as received: its `Creditd-Signature` header and raw body.
type Delivery = (Option<String>, Vec<u8>);

/// A webhook receiver on loopback: it records JSON bodies and answers 200,
/// or, when `hang` is set, accepts connections and never answers.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Each POST as received: its `Creditd-Signature` header and raw body.
    signed: Arc<Mutex<Vec<Delivery>>>,
    connections: Arc<AtomicUsize>,
}

fn receiver(hang: bool) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!("http://{}/alerts", listener.local_addr().expect("address"));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let signed = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let (seen, raw, count) = (Arc::clone(&bodies), Arc::clone(&signed), Arc::clone(&connections));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            if hang {
                held.push(stream); // Never answered, never closed: a receiver that hangs.
                continue;
            }
            let mut reader = BufReader::new(stream.try_clone().expect("clones"));
            let mut length = 0;
            let mut signature = None;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if line.to_ascii_lowercase().starts_with("creditd-signature:") {
                    signature = line.split_once(':').map(|(_, value)| value.trim().to_owned());
                }
                line.clear();
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                raw.lock().expect("lock").push((signature, body.clone()));
                if let Ok(json) = serde_json::from_slice(&body) {
                    seen.lock().expect("lock").push(json);
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    Receiver { url, bodies, signed, connections }
}

/// Latencies of `count` purchases, 16 at a time, that cross alert levels.
async fn purchase_latencies(server: &Server, count: usize) -> Vec<Duration> {
    let client = client();
    let mut latencies = Vec::with_capacity(count);
    for batch in 0..count / 16 {
        let timed = (0..16).map(|i| {
            let (client, base) = (client.clone(), server.base.clone());
            async move {
                let started = Instant::now();
                let answer =
                    purchase(&client, &base, &format!("w{batch}-{i}"), "starter", &format!("w{batch}-{i}")).await;
                assert!(answer.status == 200 || answer.code() == "insufficient_capacity", "{answer:?}");
                started.elapsed()
            }
        });
        latencies.extend(join_all(timed).await);
    }
    latencies.sort();
    latencies
}

fn p99(latencies: &[Duration]) -> Duration {
    latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)]
}

/// Goal: alert delivery never slows purchases (SPEC §7). Method: the same
/// purchase run, crossing every level, against a server whose webhook never
/// answers and one without a webhook; both complete, and the p99s are
/// logged side by side. Then a working receiver gets events of SPEC §7's shape.
#[tokio::test]
async fn a_webhook_that_never_answers_does_not_slow_purchases() {
    let hanging = receiver(true);
    let provider = provider(400 * 40);
    let (dir_plain, dir_hook) = (temp_dir(), temp_dir());
    let plain = Server::start(&provider, dir_plain.path()).await;
    let hooked = Server::start_with(&provider, dir_hook.path(), &[("CREDITD_ALERT_WEBHOOK_URL", &hanging.url)]).await;

    let without = purchase_latencies(&plain, 480).await;
    let with = purchase_latencies(&hooked, 480).await;
    eprintln!(
        "purchase latency without webhook: p50 {:?} p99 {:?}; with a hanging webhook: p50 {:?} p99 {:?}",
        without[without.len() / 2],
        p99(&without),
        with[with.len() / 2],
        p99(&with)
    );
    assert!(hanging.connections.load(Ordering::SeqCst) >= 1, "the webhook was called and hung during the run");
    let (open, _) = alerts(&client(), &hooked).await;
    assert!(open.iter().any(|k| k == "level_empty"), "the run crossed every level: {open:?}");

    let working = receiver(false);
    let dir = temp_dir();
    let provider = crate::common::provider(938);
    let server = Server::start_with(&provider, dir.path(), &[("CREDITD_ALERT_WEBHOOK_URL", &working.url)]).await;
    let client = client();
    for i in 0..3 {
        purchase(&client, &server.base, &format!("x{i}"), "pro", &format!("x{i}")).await;
    }
    eventually("the receiver got the events", || async { !working.bodies.lock().expect("lock").is_empty() }).await;
    let first = working.bodies.lock().expect("lock")[0].clone();
    for field in ["id", "kind", "state", "severity", "message", "at"] {
        assert!(first.get(field).is_some(), "{field} in {first}");
    }
    assert_eq!(first["state"], "firing");
}

/// A receiver's check of `Creditd-Signature` (docs/webhooks.md), written
/// from the documentation, not from creditd's code: HMAC-SHA256 with the
/// secret over "<t>.<body>", compared with `v1`, and `t` not older than
/// `tolerance` (a replay of an old delivery is refused).
fn verify(secret: &str, header: &str, body: &[u8], now_secs: u64, tolerance_secs: u64) -> bool {
    use hmac::Mac;
    let field = |name: &str| header.split(',').find_map(|part| part.trim().strip_prefix(name).map(str::to_owned));
    let (Some(t), Some(v1)) = (field("t="), field("v1=")) else { return false };
    let Ok(t_secs) = t.parse::<u64>() else { return false };
    if now_secs.abs_diff(t_secs) > tolerance_secs {
        return false;
    }
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    expected == v1
}

/// Goal: with `CREDITD_ALERT_WEBHOOK_SECRET`, every alert webhook POST is
/// signed (`Creditd-Signature: t=…,v1=…`) so that a receiver rejects
/// forgeries and replays. Method: a real receiver on loopback verifies each
/// delivery as docs/webhooks.md says; a changed body, another secret and an
/// old timestamp all fail the same check.
#[tokio::test]
async fn alert_webhooks_are_signed_and_a_receiver_can_reject_forgeries_and_replays() {
    let secret = "whsec_test_secret_never_logged";
    let working = receiver(false);
    let dir = temp_dir();
    let provider = crate::common::provider(938);
    let env = [("CREDITD_ALERT_WEBHOOK_URL", working.url.as_str()), ("CREDITD_ALERT_WEBHOOK_SECRET", secret)];
    let server = Server::start_with(&provider, dir.path(), &env).await;
    let client = client();
    for i in 0..3 {
        purchase(&client, &server.base, &format!("s{i}"), "pro", &format!("s{i}")).await;
    }
    eventually("the receiver got the events", || async { !working.signed.lock().expect("lock").is_empty() }).await;
    let now = crate::common::now_ms() / 1000;
    let deliveries = working.signed.lock().expect("lock").clone();
    for (header, body) in &deliveries {
        let header = header.as_deref().expect("every delivery is signed");
        assert!(verify(secret, header, body, now, 300), "a genuine delivery verifies: {header}");
        let mut forged = body.clone();
        forged.extend_from_slice(b" ");
        assert!(!verify(secret, header, &forged, now, 300), "a changed body does not");
        assert!(!verify("another secret", header, body, now, 300), "another secret does not");
        assert!(!verify(secret, header, body, now + 3600, 300), "an hour later it is a replay");
        assert!(!String::from_utf8_lossy(body).contains(secret), "the secret is never sent");
    }
}
