use std::collections::BTreeSet;
use std::path::Path;

use crate::common::{capture, client, hold, provider, purchase, refund, release, spend, sync_now, temp_dir, Server};

/// Every `creditd_*` name in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(start) = rest.find("creditd_") {
        let name: String = rest[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[start + name.len()..];
        names.insert(name);
    }
    names
}

/// Goal: the Grafana dashboard is valid, wired to the provisioned datasource,
/// covers what operators need, and queries only metrics creditd exports.
/// Method: parse the JSON; drive a server through every kind of operation so
/// every counter exists; check each metric name against a live `/metrics`.
#[tokio::test]
async fn the_grafana_dashboard_uses_only_metrics_that_creditd_exports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("grafana/dashboards/creditd.json")).expect("reads"))
            .expect("the dashboard is JSON");
    let datasources =
        std::fs::read_to_string(root.join("grafana/provisioning/datasources/prometheus.yml")).expect("reads");
    assert!(datasources.contains("uid: prometheus") && datasources.contains("type: prometheus"));
    let provider_config =
        std::fs::read_to_string(root.join("grafana/provisioning/dashboards/creditd.yml")).expect("reads");
    assert!(provider_config.contains("type: file"));
    assert_eq!(dashboard["uid"], "creditd");

    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut titles = String::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().expect("id")), "panel ids are unique");
        assert_eq!(panel["datasource"]["uid"], "prometheus", "{}", panel["title"]);
        assert!(panel["gridPos"]["w"].as_u64().is_some_and(|w| w > 0));
        titles.push_str(&panel["title"].as_str().expect("title").to_lowercase());
        titles.push('\n');
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            assert!(!expr.trim().is_empty(), "{}", panel["title"]);
            names.extend(metric_names(expr));
        }
    }
    for needed in [
        "balance",
        "reserved",
        "available",
        "capacity",
        "sellable",
        "burn",
        "runway",
        "purchase",
        "latency",
        "alerts",
        "sync",
        "expiring",
        "expired per day",
    ] {
        assert!(titles.contains(needed), "no panel about {needed}: {titles}");
    }

    let provider = provider(2_000);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let client = client();
    assert_eq!(purchase(&client, &server.base, "g", "pro", "g-1").await.status, 200);
    let held = hold(&client, &server, "g", "starter", 60).await;
    capture(&client, &server, held.body["holdId"].as_str().expect("id")).await;
    let other = hold(&client, &server, "g", "starter", 60).await;
    release(&client, &server, other.body["holdId"].as_str().expect("id")).await;
    let spent = spend(&client, &server, "g", 5, "s-1").await;
    refund(&client, &server, spent.body["spendId"].as_str().expect("id")).await;
    let done = spend(&client, &server, "g", 5, "s-2").await;
    crate::common::complete(&client, &server, done.body["spendId"].as_str().expect("id")).await;
    assert_eq!(purchase(&client, &server.base, "g", "studio", "g-2").await.status, 409, "a refusal, and its alert");
    assert_eq!(sync_now(&client, &server).await.status, 200);
    let response = client.get(server.url("/metrics")).send().await.expect("answers");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap_or(""))
        .collect();
    for name in &names {
        assert!(exported.contains(name.as_str()), "the dashboard queries {name}, which /metrics does not export");
    }
    assert!(names.len() >= 15, "the dashboard covers the metrics: {names:?}");
}
