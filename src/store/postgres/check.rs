//! `creditd check --store postgres://…`: the checks of `creditd check`
//! (SPEC §4.5, §4.6) on a PostgreSQL store: the state rebuilt from the
//! `ledger` table alone, compared with every other table.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;

use super::rows::{api_key, bad, inventory, ms, unsigned, user_credits};
use super::{connect, ledger, target, PostgresError};
use crate::check::{report, CheckReport, Stored};
use crate::domain::{Currency, HoldId, Money, Ratio, SpendId, UserId};
use crate::replay::Replay;
use crate::store::records::PackageOverride;

/// Ledger rows read per query.
const PAGE: i64 = 10_000;

/// Checks the store in the database at `url`.
///
/// # Errors
/// The database cannot be read, holds no store, or holds a value no
/// creditd wrote; a store that reads but is inconsistent is a report with
/// violations.
pub async fn check(url: &str) -> Result<CheckReport, PostgresError> {
    let client = connect(url).await?;
    let has_meta = client.query_one("SELECT to_regclass('public.meta') IS NOT NULL", &[]).await?.get::<_, bool>(0);
    let meta = if has_meta { client.query_opt("SELECT ratio, currency FROM meta", &[]).await? } else { None };
    let meta = meta.ok_or_else(|| PostgresError::NotAStore(target(url)))?;
    // One snapshot for every read: a store a leader is writing to checks as consistently as a stopped one.
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
    let ratio = Ratio::new(unsigned(meta.get(0), "ratio")?).map_err(|e| bad(format!("ratio: {e}")))?;
    let currency = Currency::parse(meta.get::<_, String>(1).trim()).map_err(|e| bad(format!("currency: {e:?}")))?;
    let mut replay = Replay::new(ratio, Money::zero(currency));
    let (mut entries, mut misfiled, mut after) = (0u64, Vec::new(), 0i64);
    let page = format!("{} WHERE seq > $1 ORDER BY seq LIMIT $2", ledger::SELECT);
    loop {
        let rows = client.query(page.as_str(), &[&after, &PAGE]).await?;
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        for row in &rows {
            match ledger::entry(row, currency) {
                Ok(entry) => replay.apply(&entry),
                Err(error) => misfiled.push(error.to_string()),
            }
            entries = entries.saturating_add(1);
        }
    }
    let stored = read_stored(&client, currency).await?;
    Ok(report(entries, misfiled, replay, &stored))
}

async fn read_stored(client: &Client, currency: Currency) -> Result<Stored, PostgresError> {
    let state = inventory(client, currency).await?;
    let mut stored = Stored {
        state,
        wallets: BTreeMap::new(),
        grants: BTreeMap::new(),
        grant_deadlines: BTreeSet::new(),
        expired_days: BTreeMap::new(),
        holds: BTreeMap::new(),
        open_index: BTreeSet::new(),
        stale_recent: Vec::new(),
        spends: BTreeMap::new(),
        open_spends: BTreeSet::new(),
        packages: BTreeMap::new(),
        api_keys: BTreeMap::new(),
    };
    // Each wallet with the entry its last recent sequence number names.
    let wallets = client
        .query(
            "SELECT w.user_id, w.balance, l.seq, l.user_id, l.wallet_after, w.grants::TEXT FROM wallets w \
             LEFT JOIN ledger l ON l.seq = w.recent[array_length(w.recent, 1)]",
            &[],
        )
        .await?;
    for row in wallets {
        let user = UserId::parse(&row.get::<_, String>(0)).map_err(|e| bad(format!("wallet user: {e}")))?;
        let balance = user_credits(row.get(1), "wallet balance")?;
        let (seq, entry_user, after): (Option<i64>, Option<String>, Option<i64>) = (row.get(2), row.get(3), row.get(4));
        let consistent = entry_user.as_deref() == Some(user.as_str()) && after == i64::try_from(balance.get()).ok();
        if !consistent {
            stored.stale_recent.push(format!(
                "wallet {:?}: its latest recent entry {seq:?} does not show its balance {balance}",
                user.as_str()
            ));
        }
        let grants = match row.get::<_, Option<String>>(5) {
            Some(json) => serde_json::from_str(&json).map_err(|e| bad(format!("wallet {user} grants: {e}")))?,
            // From before grants: one grant of its balance, named after its last entry.
            None => match seq.and_then(|seq| u64::try_from(seq).ok()) {
                Some(seq) if !balance.is_zero() => vec![crate::store::records::legacy_grant(seq, balance)],
                _ => Vec::new(),
            },
        };
        stored.grants.insert(user.clone(), grants);
        stored.wallets.insert(user, balance);
    }
    let deadlines = format!("SELECT {}, grant_seq FROM grant_deadlines", super::rows::ms("expires_at"));
    for row in client.query(deadlines.as_str(), &[]).await? {
        let expires = u64::try_from(row.get::<_, i64>(0)).map_err(|_| bad("a negative grant deadline"))?;
        let grant = u64::try_from(row.get::<_, i64>(1)).map_err(|_| bad("a negative grant seq"))?;
        stored.grant_deadlines.insert((expires, grant));
    }
    let days = "SELECT (day - DATE '1970-01-01')::INTEGER, credits, breakage_minor_units FROM expired_by_day";
    for row in client.query(days, &[]).await? {
        let day = u32::try_from(row.get::<_, i32>(0)).map_err(|_| bad("a day before 1970"))?;
        let breakage = Money::new(unsigned(row.get(2), "breakage")?, stored.state.revenue.currency())
            .map_err(|e| bad(format!("{e:?}")))?;
        let credits = user_credits(row.get(1), "expired credits")?;
        stored.expired_days.insert(day, crate::store::records::ExpiredDay { day, credits, breakage });
    }
    for row in client.query("SELECT hold_id, state FROM holds", &[]).await? {
        let id = HoldId::parse(&row.get::<_, String>(0)).map_err(|e| bad(format!("hold id: {e}")))?;
        let state = match row.get::<_, String>(1).as_str() {
            "open" => "open",
            "captured" => "captured",
            "released" => "released",
            "expired" => "expired",
            other => return Err(bad(format!("hold {id}: state {other:?}"))),
        };
        if state == "open" {
            stored.open_index.insert(id.clone());
        }
        stored.holds.insert(id, state);
    }
    for row in client.query("SELECT spend_id, state FROM spends", &[]).await? {
        let id = SpendId::parse(&row.get::<_, String>(0)).map_err(|e| bad(format!("spend id: {e}")))?;
        let state = match row.get::<_, String>(1).as_str() {
            "open" => "open",
            "completed" => "completed",
            "refunded" => "refunded",
            other => return Err(bad(format!("spend {id}: state {other:?}"))),
        };
        if state == "open" {
            stored.open_spends.insert(id.clone());
        }
        stored.spends.insert(id, state);
    }
    for row in client
        .query(
            "SELECT package_id, enabled, credits, price_minor_units, currency, expires_after_days FROM package_overrides",
            &[],
        )
        .await?
    {
        let price_currency = Currency::parse(row.get::<_, String>(4).trim()).map_err(|e| bad(format!("{e:?}")))?;
        let price = Money::new(unsigned(row.get(3), "price")?, price_currency).map_err(|e| bad(format!("{e:?}")))?;
        let expires_after_days = row.get::<_, Option<i32>>(5).and_then(|days| u32::try_from(days).ok());
        let credits = user_credits(row.get(2), "credits")?;
        let settings = PackageOverride { enabled: row.get(1), credits, price, expires_after_days };
        stored.packages.insert(row.get(0), settings);
    }
    let keys = format!(
        "SELECT id, name, scopes, key_hash, {}, {}, {} FROM api_keys",
        ms("created_at"),
        ms("last_used_at"),
        ms("revoked_at")
    );
    for row in client.query(keys.as_str(), &[]).await? {
        let record = api_key(&row)?;
        stored.api_keys.insert(record.id.clone(), record);
    }
    Ok(stored)
}
