use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{catalogue, client, free_port, provider, purchase, temp_dir, tool, Guarded, Server};

/// Goal: a real Prometheus scrapes creditd and sees the capacity creditd
/// reports. Method: Debian's `prometheus` on a loopback port scrapes the
/// server every second; its query API is polled until
/// `creditd_capacity_user_credits` equals the catalogue's `totalUserCredits`.
#[tokio::test]
async fn a_real_prometheus_scrapes_the_capacity_creditd_reports() {
    let Some(prometheus) = tool("prometheus") else { return };
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "p", "pro", "k").await.status, 200);
    let expected =
        catalogue(&client, &server).await["platformCapacity"]["totalUserCredits"].as_u64().expect("capacity");
    assert_eq!(expected, 134);

    let work = temp_dir();
    let target = server.base.trim_start_matches("http://");
    let config = work.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: creditd\n    static_configs:\n      - targets: [\"{target}\"]\n"),
    )
    .expect("writes the config");
    let port = free_port();
    let _prometheus = Guarded(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", work.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    let query = format!("http://127.0.0.1:{port}/api/v1/query?query=creditd_capacity_user_credits");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = match client.get(&query).send().await {
            Ok(response) => response.json::<serde_json::Value>().await.ok(),
            Err(_) => None,
        };
        let value = seen
            .as_ref()
            .and_then(|body| body["data"]["result"][0]["value"][1].as_str())
            .and_then(|value| value.parse::<f64>().ok());
        if value == Some(134.0) {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus never reported the capacity; last answer {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
