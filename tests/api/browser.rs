use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

use crate::common::{
    catalogue, client, free_port, provider, purchase, spend, temp_dir, tool, Guarded, Server, ADMIN_TOKEN,
};

async fn text_of(browser: &fantoccini::Client, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn wait_for_text(browser: &fantoccini::Client, css: &str, expected: &str) {
    wait_for(browser, css, expected, |got| got == expected).await;
}

async fn wait_for_start(browser: &fantoccini::Client, css: &str, expected: &str) {
    wait_for(browser, css, expected, |got| got.starts_with(expected)).await;
}

async fn wait_for(browser: &fantoccini::Client, css: &str, expected: &str, shows: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = text_of(browser, css).await;
        if shows(&got) {
            return;
        }
        assert!(Instant::now() < deadline, "{css} shows {got:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Goal: the admin page works in a real browser (SPEC §9). Method: headless
/// Debian chromium through chromedriver opens `/admin`, types the token,
/// sees the real balance; the fake provider's balance changes and "Sync Real
/// Credits" shows the new value; "Disable all purchases" makes the public
/// catalogue report `disabled`. A screenshot is saved.
#[tokio::test]
async fn the_admin_page_syncs_and_disables_in_a_real_browser() {
    let (Some(chromedriver), Some(chromium)) = (tool("chromedriver"), tool("chromium")) else { return };
    let provider = provider(938);
    let dir = temp_dir();
    let server = Server::start(&provider, dir.path()).await;
    let shop = client();
    for (user, key) in [("ada", "b-1"), ("bo", "b-2")] {
        assert_eq!(purchase(&shop, &server.base, user, "pro", key).await.status, 200);
    }
    let spent = spend(&shop, &server, "ada", 10, "s-1").await;
    assert_eq!(spent.status, 200);
    let port = free_port();
    let driver = Guarded(
        Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    let mut capabilities = serde_json::Map::new();
    let profile = temp_dir();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1280,1400", format!("--user-data-dir={}", profile.path().display())],
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let browser = loop {
        match ClientBuilder::rustls().expect("tls").capabilities(capabilities.clone()).connect(&webdriver).await {
            Ok(browser) => break browser,
            Err(error) => {
                assert!(Instant::now() < deadline, "chromedriver did not accept a session: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    browser.goto(&server.url("/admin")).await.expect("opens /admin");
    browser.find(Locator::Id("token")).await.expect("token field").send_keys(ADMIN_TOKEN).await.expect("types");
    browser.find(Locator::Id("save-token")).await.expect("button").click().await.expect("clicks");
    wait_for_text(&browser, "#real-balance", "938").await;
    wait_for_text(&browser, "#capacity", "34").await;
    wait_for_text(&browser, "#database-balance", "898").await;
    wait_for_text(&browser, "#burn-24h", "40").await;
    wait_for_text(&browser, "#open-spends", "1").await;
    wait_for_text(&browser, "#open-spends-credits", "40").await;
    let storage = browser
        .execute(
            "return [sessionStorage.getItem('creditd-admin-token') !== null, localStorage.length, document.cookie];",
            vec![],
        )
        .await
        .expect("runs");
    assert_eq!(storage, serde_json::json!([true, 0, ""]), "the token lives in session storage only");

    // The provider did the work of ada's spend: it is final, and no sync
    // holds it back any more.
    let spend_id = spent.body["spendId"].as_str().expect("spendId");
    assert_eq!(crate::common::complete(&shop, &server, spend_id).await.status, 200);
    provider.set_balance(5_000);
    browser.find(Locator::Id("sync-button")).await.expect("button").click().await.expect("clicks");
    wait_for_text(&browser, "#real-balance", "5,000").await;
    wait_for_text(&browser, "#database-balance", "5,000").await;
    wait_for_text(&browser, "#open-spends", "0").await;

    browser.find(Locator::Id("disable-reason")).await.expect("field").send_keys("browser test").await.expect("types");
    browser.find(Locator::Id("disable-button")).await.expect("button").click().await.expect("clicks");
    wait_for_text(&browser, "#purchases-enabled", "Disabled").await;
    let shown = catalogue(&client(), &server).await;
    assert_eq!(shown["status"], "disabled");
    wait_for_text(&browser, "#open-alerts tr[data-kind=purchases_disabled] td:nth-child(3)", "browser test").await;

    let png = browser.screenshot().await.expect("screenshot");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-dashboard.png");
    std::fs::write(&path, &png).expect("saves the screenshot");
    eprintln!("admin page screenshot: {}", path.display());
    assert!(png.starts_with(b"\x89PNG"), "a PNG");

    // The API keys tab (SPEC §9.1): make a key, use it, revoke it.
    browser.find(Locator::Css("nav button[data-tab=keys]")).await.expect("tab").click().await.expect("clicks");
    browser.find(Locator::Id("key-name")).await.expect("field").send_keys("made in the browser").await.expect("types");
    browser.find(Locator::Id("create-key")).await.expect("button").click().await.expect("clicks");
    wait_for_start(&browser, "#new-key", "ck_").await;
    let key = text_of(&browser, "#new-key").await;
    let made = crate::common::client_with_key(&key);
    assert_eq!(
        purchase(&made, &server.base, "cy", "starter", "b-3").await.status,
        503,
        "a storefront key: the kill switch answers"
    );
    let row = "#keys tr:first-child";
    wait_for_text(&browser, &format!("{row} td:nth-child(2)"), "made in the browser").await;
    wait_for_text(&browser, &format!("{row} td:nth-child(6)"), "active").await;
    browser.find(Locator::Css(&format!("{row} button"))).await.expect("revoke").click().await.expect("clicks");
    wait_for_start(&browser, &format!("{row} td:nth-child(6)"), "revoked").await;
    assert_eq!(purchase(&made, &server.base, "cy", "starter", "b-4").await.status, 401, "revoked from the page");

    // The grants tab (SPEC §13): a user's grants, a promotional grant, a void.
    browser.find(Locator::Css("nav button[data-tab=grants]")).await.expect("tab").click().await.expect("clicks");
    browser.find(Locator::Id("grant-user")).await.expect("field").send_keys("cy").await.expect("types");
    browser.find(Locator::Id("promo-credits")).await.expect("field").send_keys("7").await.expect("types");
    browser.find(Locator::Id("promo-reason")).await.expect("field").send_keys("browser bonus").await.expect("types");
    browser.find(Locator::Id("create-grant")).await.expect("button").click().await.expect("clicks");
    let row = "#grants tr:first-child";
    wait_for_text(&browser, &format!("{row} td:nth-child(2)"), "promotional").await;
    wait_for_text(&browser, &format!("{row} td:nth-child(4)"), "7").await;
    wait_for_text(&browser, &format!("{row} td:nth-child(6)"), "never").await;
    wait_for_text(&browser, "#grants-balance", "7").await;
    let wallet = crate::common::admin_get(&client(), &server.url("/api/users/cy/credits")).await;
    assert_eq!(
        (wallet.body["balance"].as_u64(), wallet.body["grants"][0]["kind"].as_str()),
        (Some(7), Some("promotional"))
    );
    browser.find(Locator::Id("void-reason")).await.expect("field").send_keys("browser void").await.expect("types");
    browser.find(Locator::Css(&format!("{row} button"))).await.expect("void").click().await.expect("clicks");
    wait_for_text(&browser, "#grants-balance", "0").await;
    let entries = crate::common::ledger(&client(), &server).await;
    let voided = entries.iter().find(|entry| entry["kind"] == "grantVoided").expect("a grantVoided entry");
    assert_eq!((voided["credits"].as_u64(), voided["reason"].as_str()), (Some(7), Some("browser void")));
    wait_for_text(&browser, "#voided-credits", "7").await;
    browser.close().await.expect("closes");
    drop(driver);
}
