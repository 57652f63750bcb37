//! Rows as records: the conversions from PostgreSQL values that the store
//! and `creditd check --store` share.

use tokio_postgres::{Client, Row};

use super::PostgresError;
use crate::domain::{Currency, KeyId, KeyName, Money, ProviderCredits, Scope, Scopes, UserCredits};
use crate::store::records::{ApiKeyRecord, GrantTotals, InventoryRecord, Operation, SyncRecord};

/// The one-letter tag of an operation, as the `idempotency` table keys it.
pub(crate) fn tag(operation: Operation) -> String {
    char::from(operation.tag()).to_string()
}

/// Milliseconds since the epoch of a TIMESTAMPTZ column, in SQL.
pub(crate) fn ms(column: &str) -> String {
    format!("(extract(epoch FROM {column}) * 1000)::BIGINT")
}

pub(crate) fn bad(what: impl std::fmt::Display) -> PostgresError {
    PostgresError::Corrupt(what.to_string())
}

pub(crate) fn unsigned(value: i64, name: &str) -> Result<u64, PostgresError> {
    u64::try_from(value).map_err(|_| bad(format!("{name} is negative")))
}

pub(crate) fn user_credits(value: i64, name: &str) -> Result<UserCredits, PostgresError> {
    UserCredits::new(unsigned(value, name)?).map_err(|e| bad(format!("{name}: {e}")))
}

pub(crate) fn provider_credits(value: i64, name: &str) -> Result<ProviderCredits, PostgresError> {
    ProviderCredits::new(unsigned(value, name)?).map_err(|e| bad(format!("{name}: {e}")))
}

pub(crate) fn api_key(row: &Row) -> Result<ApiKeyRecord, PostgresError> {
    let id = KeyId::parse(&row.get::<_, String>(0)).map_err(|e| bad(format!("key id: {e}")))?;
    let scopes: Vec<String> = row.get(2);
    let scopes = scopes.iter().map(|scope| Scope::parse(scope)).collect::<Result<Vec<_>, _>>().map_err(bad)?;
    let hash: Vec<u8> = row.get(3);
    let optional = |value: Option<i64>, name: &str| value.map(|ms| unsigned(ms, name)).transpose();
    Ok(ApiKeyRecord {
        name: KeyName::parse(&row.get::<_, String>(1)).map_err(|e| bad(format!("key {id} name: {e}")))?,
        scopes: Scopes::new(scopes).map_err(bad)?,
        key_hash: hash.try_into().map_err(|_| bad(format!("key {id}: the hash is not 32 bytes")))?,
        created_at_ms: unsigned(row.get(4), "created_at")?,
        last_used_at_ms: optional(row.get(5), "last_used_at")?,
        revoked_at_ms: optional(row.get(6), "revoked_at")?,
        id,
    })
}

pub(crate) async fn inventory(client: &Client, currency: Currency) -> Result<InventoryRecord, PostgresError> {
    let query = format!(
        "SELECT provider_balance, reserved, wallets_total, holds_total, next_seq, {}, last_sync_real, \
         last_sync_drift, purchases_enabled, disabled_reason, revenue_minor_units, consumed_total, open_spends, \
         held_back, last_sync_seq, last_sync_held_back, expired_credits, voided_credits, breakage_minor_units, \
         promotional_outstanding FROM inventory",
        ms("last_sync_at")
    );
    let row = client.query_opt(query.as_str(), &[]).await?.ok_or_else(|| bad("the inventory row is missing"))?;
    let last_sync = match (row.get::<_, Option<i64>>(5), row.get::<_, Option<i64>>(6)) {
        (Some(at), Some(real)) => Some(SyncRecord {
            at_ms: unsigned(at, "last_sync_at")?,
            real: provider_credits(real, "last_sync_real")?,
            drift: row.get(7),
            seq: unsigned(row.get::<_, Option<i64>>(14).unwrap_or(0), "last_sync_seq")?,
            held_back: provider_credits(row.get::<_, Option<i64>>(15).unwrap_or(0), "last_sync_held_back")?,
        }),
        _ => None,
    };
    Ok(InventoryRecord {
        provider_balance: provider_credits(row.get(0), "provider_balance")?,
        reserved: provider_credits(row.get(1), "reserved")?,
        wallets_total: user_credits(row.get(2), "wallets_total")?,
        holds_total: user_credits(row.get(3), "holds_total")?,
        next_seq: unsigned(row.get(4), "next_seq")?,
        last_sync,
        purchases_enabled: row.get(8),
        disabled_reason: row.get(9),
        revenue: Money::new(unsigned(row.get(10), "revenue")?, currency).map_err(|e| bad(format!("{e:?}")))?,
        consumed_total: provider_credits(row.get(11), "consumed_total")?,
        open_spends: user_credits(row.get(12), "open_spends")?,
        held_back: provider_credits(row.get(13), "held_back")?,
        grants: GrantTotals {
            expired: user_credits(row.get(16), "expired_credits")?,
            voided: user_credits(row.get(17), "voided_credits")?,
            breakage: Money::new(unsigned(row.get(18), "breakage")?, currency).map_err(|e| bad(format!("{e:?}")))?,
            promotional: user_credits(row.get(19), "promotional_outstanding")?,
        },
    })
}
