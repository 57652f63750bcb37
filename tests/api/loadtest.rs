//! `creditd loadtest` (issue 8) against the real server: a paced mix of every
//! operation, and its own consistency check, cross-checked with the ledger.

use crate::common::{binary, ledger, provider, temp_dir, Server, ADMIN_TOKEN};

/// The `ok` count of one operation's row in the summary.
fn ok_count(summary: &str, operation: &str) -> usize {
    summary
        .lines()
        .find(|line| line.split_whitespace().next() == Some(operation))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no {operation} row in:\n{summary}"))
}

/// Goal: the load generator drives every kind of operation, reports what the
/// server acknowledged, and verifies the wallets add up. Method: a short
/// paced run over a few users (so holds, captures and spends meet the same
/// wallets), then the ledger must hold exactly the purchases it reported.
#[actix_rt::test]
async fn loadtest_reports_what_the_ledger_holds_and_verifies_the_totals() {
    let provider = provider(1_000_000_000);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let url = server.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary())
            .args(["loadtest", "--url", &url, "--clients", "8", "--operations", "400", "--users", "20"])
            .args(["--mix", "purchase=40,catalogue=10,hold=25,spend=25", "--rate", "2000", "--quiet"])
            .args(["--run-id", "it", "--admin-token", ADMIN_TOKEN])
            .output()
            .expect("loadtest runs")
    })
    .await
    .expect("joins");
    let summary = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "loadtest failed:\n{summary}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(summary.contains("paced at 2000 operations/s"), "{summary}");
    assert!(summary.contains("verified: not oversold"), "{summary}");
    assert!(summary.contains("reserved = 4 × ("), "the wallets were checked: {summary}");

    let purchases = ok_count(&summary, "purchase");
    assert!(purchases > 0 && ok_count(&summary, "spend") > 0 && ok_count(&summary, "hold") > 0, "{summary}");
    let client = crate::common::client();
    let entries = ledger(&client, &server).await;
    let in_ledger = entries.iter().filter(|entry| entry["kind"] == "purchase").count();
    assert_eq!(in_ledger, purchases, "every purchase the load test counted is in the ledger, once:\n{summary}");
}
