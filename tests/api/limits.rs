//! The limits of SPEC §9.2 that protect the service from its callers:
//! trickled bodies, many slow connections.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{client, provider, purchase, temp_dir, Server};

/// A connection that sent a purchase's head and the first byte of a
/// 100-byte body, and then nothing.
fn slow_body(address: &str, n: usize) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connects");
    let head = format!(
        "POST /api/credits/purchase HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Idempotency-Key: slow-{n}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        crate::common::ADMIN_TOKEN
    );
    stream.write_all(head.as_bytes()).expect("writes");
    stream
}

/// The server's address as `host:port`.
fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Goal: a body trickled one byte per second is cut with 408
/// `request_timeout` within `body_timeout_ms` + 1 s, and its connection is
/// closed (the rest of the body must not be read as a request).
#[tokio::test]
async fn a_trickled_body_is_cut_with_408_and_its_connection_closed() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start_with(&provider, dir.path(), &[("CREDITD_BODY_TIMEOUT_MS", "1500")]).await;
    let address = address(&server);
    let outcome = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&address).expect("connects");
        stream.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let body = br#"{"userId":"trickle","packageId":"starter"}"#;
        let head = format!(
            "POST /api/credits/purchase HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
             Idempotency-Key: trickle-1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            crate::common::ADMIN_TOKEN,
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("writes the head");
        let started = Instant::now();
        let mut answer = Vec::new();
        for byte in body {
            let _ = stream.write_all(&[*byte]);
            let mut buffer = [0u8; 4096];
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}}") {
                break;
            }
            std::thread::sleep(Duration::from_millis(800));
        }
        let elapsed = started.elapsed();
        // Closed: reads end (0 bytes or an error), no second answer.
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut rest = [0u8; 64];
        let closed = matches!(stream.read(&mut rest), Ok(0) | Err(_));
        (String::from_utf8_lossy(&answer).into_owned(), elapsed, closed)
    })
    .await
    .expect("joins");
    let (answer, elapsed, closed) = outcome;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert!(elapsed <= Duration::from_millis(1500 + 1000), "cut after {elapsed:?}");
    assert!(closed, "the connection is closed after the 408");
    let wallet = crate::common::get(&client(), &server.url("/api/users/trickle/credits")).await;
    assert_eq!(wallet.status, 404, "nothing was bought: {wallet:?}");
}

/// Goal: 2,000 connections trickling their bodies do not stop a purchase
/// from being answered promptly (SPEC §9.2): waiting for a body never
/// holds a worker.
#[tokio::test]
async fn two_thousand_slow_bodies_do_not_stop_a_purchase() {
    const SLOW: usize = 2_000;
    // Each connection is a descriptor here and one in the server.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).expect("limit");
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).expect("raises the limit");
    assert!(hard >= 3 * SLOW as u64, "the machine allows {hard} open files");
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start_with(&provider, dir.path(), &[("CREDITD_BODY_TIMEOUT_MS", "30000")]).await;
    let address = address(&server);
    let opened = tokio::task::spawn_blocking(move || (0..SLOW).map(|n| slow_body(&address, n)).collect::<Vec<_>>())
        .await
        .expect("joins");
    assert_eq!(opened.len(), SLOW);
    let started = Instant::now();
    let bought = purchase(&client(), &server.base, "prompt", "starter", "prompt-1").await;
    let took = started.elapsed();
    assert_eq!(bought.status, 200, "{bought:?}");
    assert!(took < Duration::from_secs(2), "answered in {took:?} beside {SLOW} slow bodies");
    drop(opened);
}

/// Goal: `rate_limit_per_key` (SPEC §9.2): past one second's burst a key
/// gets 429 `rate_limited` with `Retry-After` in whole seconds; another key
/// keeps its own bucket; public reads are not limited.
#[tokio::test]
async fn a_key_past_its_rate_gets_429_with_retry_after() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start_with(&provider, dir.path(), &[("CREDITD_RATE_LIMIT_PER_KEY", "5")]).await;
    let (_, busy) = crate::common::create_key(&server, "busy", &["read"]).await;
    let (_, calm) = crate::common::create_key(&server, "calm", &["read"]).await;
    let busy = crate::common::client_with_key(&busy);
    let url = server.url("/api/users/nobody/credits");
    let mut limited = None;
    for _ in 0..50 {
        let response = busy.get(&url).send().await.expect("answers");
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), 404, "let in until the bucket is empty");
    }
    let limited = limited.expect("50 requests at once exceed 5 a second");
    let retry_after: u64 = limited.headers()["retry-after"].to_str().expect("text").parse().expect("seconds");
    assert!((1..=1).contains(&retry_after), "Retry-After {retry_after}");
    let body: serde_json::Value = limited.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    let other = crate::common::get(&crate::common::client_with_key(&calm), &url).await;
    assert_eq!(other.status, 404, "another key has its own bucket");
    for _ in 0..20 {
        assert_eq!(reqwest::get(server.url("/api/credits/status")).await.expect("answers").status(), 200);
    }
}

/// Goal: `max_connections` bounds the open connections (SPEC §9.2): with 4
/// (2 a worker) held open by slow bodies, a 5th caller is not served until
/// one of them goes; then it is.
#[tokio::test]
async fn max_connections_bounds_the_open_connections() {
    let provider = provider(938);
    let dir = temp_dir();
    let env = [("CREDITD_MAX_CONNECTIONS", "4"), ("CREDITD_WORKERS", "2"), ("CREDITD_BODY_TIMEOUT_MS", "60000")];
    let server = Server::start_with(&provider, dir.path(), &env).await;
    let address = address(&server);
    let held: Vec<TcpStream> = (0..4).map(|n| slow_body(&address, n)).collect();
    let fifth = tokio::spawn({
        let url = server.url("/healthz");
        async move { reqwest::Client::new().get(url).send().await.map(|response| response.status().as_u16()) }
    });
    // Not served while the four are open (the kernel queues it; creditd does not accept it).
    let early = tokio::time::timeout(Duration::from_millis(700), async {
        while !fifth.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(early.is_err(), "a fifth connection was served while four were open");
    drop(held);
    let status = tokio::time::timeout(Duration::from_secs(10), fifth).await.expect("served once they go");
    assert_eq!(status.expect("joins").expect("answers"), 200);
}

/// Sends `bytes` on a new connection and reads until the server closes it
/// or `wait` passes; answers what came back.
fn exchange(address: &str, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(address).expect("connects");
    stream.set_read_timeout(Some(wait)).expect("timeout");
    stream.write_all(bytes).expect("writes");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// The JSON body of a raw HTTP/1.1 answer, checked against its
/// `content-length` and `content-type`.
fn json_of(answer: &str) -> serde_json::Value {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("a head: {answer:?}"));
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: application/json"), "{answer}");
    assert!(head.contains(&format!("content-length: {}", body.len())), "{answer}");
    serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {answer}"))
}

/// Goal: every error answer is the contract's JSON (SPEC §9), the ones
/// actix-http writes below the application too. The reproduction: a slow
/// header's 408, and a request that is not HTTP, came back with an empty
/// body. Now both carry `{"error": {"code", "message"}}`, and the
/// connection is still closed after them.
#[tokio::test]
async fn the_servers_own_error_answers_are_json() {
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start_with(&provider, dir.path(), &[("CREDITD_BODY_TIMEOUT_MS", "500")]).await;
    let address = address(&server);
    let answers = tokio::task::spawn_blocking(move || {
        let slow_header =
            exchange(&address, b"GET /api/credits/status HTTP/1.1\r\nHost: creditd\r\n", Duration::from_secs(5));
        let not_http = exchange(&address, b"NOT HTTP AT ALL\r\n\r\n", Duration::from_secs(5));
        (slow_header, not_http)
    })
    .await
    .expect("joins");
    let (slow_header, not_http) = answers;
    assert!(slow_header.starts_with("HTTP/1.1 408"), "{slow_header}");
    assert_eq!(json_of(&slow_header)["error"]["code"], "request_timeout", "{slow_header}");
    assert!(not_http.starts_with("HTTP/1.1 400"), "{not_http}");
    let body = json_of(&not_http);
    assert_eq!(body["error"]["code"], "invalid_request", "{not_http}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{not_http}");
    let fine = crate::common::get(&client(), &server.url("/api/credits/status")).await;
    assert_eq!(fine.status, 200, "the server goes on: {fine:?}");
}
