//! Simulated power loss, not only process death (SPEC §4.2).
//!
//! Goal: an acknowledged purchase survives the loss of the page cache.
//!
//! Method: `tests/power_loss/lossy_sync.c`, built with gcc and preloaded
//! into the real binary, keeps for every file of the data directory the
//! content it had at its last successful `fsync`/`fdatasync`. While 32
//! clients buy, the server gets SIGKILL; then every file is replaced by that
//! image, and files never synced are deleted: what a power cut leaves. After
//! a restart every acknowledged purchase must be there and `creditd check`
//! must pass. Several cycles, each losing the cache again.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{client, ledger, provider, run_check, temp_dir, tool, try_purchase, Server};

/// Replaces every file under `dir` by its last synced image; deletes files
/// that were never synced. Returns (restored, deleted).
fn lose_page_cache(dir: &Path) -> (usize, usize) {
    let (mut restored, mut deleted) = (0, 0);
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("reads the directory") {
            let path = entry.expect("entry").path();
            let name = path.to_string_lossy().into_owned();
            if path.is_dir() {
                pending.push(path);
            } else if name.ends_with(".durable.partial") {
                std::fs::remove_file(&path).expect("removes");
            } else if !name.ends_with(".durable") {
                let image = format!("{name}.durable");
                if Path::new(&image).exists() {
                    std::fs::copy(&image, &path).expect("restores the synced image");
                    restored += 1;
                } else {
                    std::fs::remove_file(&path).expect("deletes a never-synced file");
                    deleted += 1;
                }
            }
        }
    }
    (restored, deleted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_purchases_survive_the_loss_of_the_page_cache() {
    let Some(gcc) = tool("gcc") else { return };
    let build = temp_dir();
    let shim = build.path().join("lossy_sync.so");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/power_loss/lossy_sync.c");
    let status = Command::new(gcc)
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&shim)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("gcc runs");
    assert!(status.success(), "the shim builds");

    let provider = provider(1_000_000_000);
    let dir = temp_dir();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("creates");
    let data = data.canonicalize().expect("canonical");
    let env = [("LD_PRELOAD", shim.to_str().expect("utf-8")), ("LOSSY_DIR", data.to_str().expect("utf-8"))];
    let mut server = Server::start_with(&provider, &data, &env).await;
    let client = client();
    let mut acknowledged = BTreeSet::new();

    for cycle in 0..5 {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(AtomicUsize::new(0));
        let buyers: Vec<_> = (0..32)
            .map(|buyer| {
                let (client, base, stop, acks) = (client.clone(), server.base.clone(), stop.clone(), acks.clone());
                tokio::spawn(async move {
                    let mut ok = Vec::new();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let key = format!("pl{cycle}-{buyer}-{n}");
                        match try_purchase(&client, &base, &format!("pl-{buyer}"), "starter", &key).await {
                            Ok(answer) if answer.status == 200 => {
                                ok.push(answer.body["purchaseId"].as_str().expect("id").to_owned());
                                acks.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => break,
                        }
                    }
                    ok
                })
            })
            .collect();
        while acks.load(Ordering::Relaxed) < 300 {
            tokio::task::yield_now().await;
        }
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for buyer in buyers {
            acknowledged.extend(buyer.await.expect("buyer"));
        }
        let (restored, deleted) = lose_page_cache(&data);
        let (code, report) = run_check(&data);
        assert_eq!(code, 0, "cycle {cycle}: check after power loss:\n{report}");
        server.restart().await;
        let present: BTreeSet<String> =
            ledger(&client, &server).await.iter().filter_map(|e| e["purchaseId"].as_str().map(str::to_owned)).collect();
        let lost: Vec<_> = acknowledged.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "cycle {cycle}: {} acknowledged purchases lost with the page cache: {lost:?}",
            lost.len()
        );
        eprintln!("cycle {cycle}: {} acknowledged, all present; {restored} files restored to their synced image, {deleted} never-synced files dropped", acknowledged.len());
    }
}
