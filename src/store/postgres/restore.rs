//! `creditd restore --store postgres://…`: a backup (of a sled node, say)
//! loaded into a new PostgreSQL store (SPEC §11, §12): the migrations first,
//! then the entries in transactions of [`BATCH`] (one multi-row statement
//! for the entries and one for their idempotency keys, as the group commit
//! writes them), then every record the
//! replay rebuilt, and the `meta` row last, in one transaction with them,
//! so that a store is whole or is not one.

use tokio_postgres::Client;

use super::group::{RememberRows, Remembered, REMEMBER};
use super::{big, connect, ledger, migrate, target, PostgresError};
use crate::backup::restore::Sink;
use crate::backup::BackupError;
use crate::replay::Replay;
use crate::store::records::{LedgerEntry, MetaRecord};
use crate::store::StoreError;

/// Ledger entries per transaction.
pub const BATCH: usize = 1_000;

/// A PostgreSQL database being restored into.
pub struct PostgresSink {
    runtime: tokio::runtime::Runtime,
    client: Client,
    pending: Vec<(LedgerEntry, Option<[u8; 32]>)>,
}

fn failed(error: impl std::fmt::Display) -> BackupError {
    BackupError::Store(StoreError::Layout(format!("PostgreSQL: {error}")))
}

impl PostgresSink {
    /// Connects, runs the migrations, and refuses a database that already
    /// holds a store.
    ///
    /// # Errors
    /// [`PostgresError::AlreadyInitialised`], or the database cannot be reached.
    pub fn open(url: &str) -> Result<Self, PostgresError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| PostgresError::Unreachable { target: target(url), reason: error.to_string() })?;
        let client = runtime.block_on(async {
            let mut client = connect(url).await?;
            migrate(&mut client, url).await?;
            Ok::<_, PostgresError>(client)
        })?;
        Ok(Self { runtime, client, pending: Vec::new() })
    }

    fn flush(&mut self) -> Result<(), BackupError> {
        let pending = std::mem::take(&mut self.pending);
        let client = &mut self.client;
        let mut entries = ledger::Columns::default();
        let mut remembered = RememberRows::default();
        for (entry, fingerprint) in &pending {
            entries.push(entry);
            if let Some(row) = fingerprint.and_then(|print| Remembered::of(entry, print)) {
                remembered.push(&row);
            }
        }
        self.runtime
            .block_on(async {
                let transaction = client.transaction().await?;
                transaction.execute(ledger::INSERT_MANY, &entries.params()).await?;
                if !remembered.is_empty() {
                    transaction.execute(REMEMBER, &remembered.params()).await?;
                }
                transaction.commit().await
            })
            .map_err(failed)
    }
}

impl Sink for PostgresSink {
    fn entry(&mut self, entry: &LedgerEntry, fingerprint: Option<[u8; 32]>) -> Result<(), BackupError> {
        self.pending.push((entry.clone(), fingerprint));
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn finish(&mut self, replay: &Replay, meta: &MetaRecord) -> Result<(), BackupError> {
        self.flush()?;
        let client = &mut self.client;
        self.runtime.block_on(write_records(client, replay, meta)).map_err(failed)
    }
}

/// Every record `replay` rebuilt, the inventory, an unheld lease, and `meta`
/// last, in one transaction.
async fn write_records(client: &mut Client, replay: &Replay, meta: &MetaRecord) -> Result<(), tokio_postgres::Error> {
    let currency = replay.state.revenue.currency().to_string();
    let transaction = client.transaction().await?;
    let wallet = transaction
        .prepare(
            "INSERT INTO wallets (user_id, balance, version, recent, grants) VALUES ($1, $2, $3, $4, $5::TEXT::JSONB)",
        )
        .await?;
    for (user, record) in &replay.wallets {
        let recent: Vec<i64> = record.recent.iter().map(|seq| big(*seq)).collect();
        let grants = serde_json::to_string(&record.grants).unwrap_or_else(|_| "[]".into());
        transaction
            .execute(&wallet, &[&user.as_str(), &big(record.balance.get()), &big(record.version), &recent, &grants])
            .await?;
    }
    for day in replay.expired_by_day.values() {
        let params = super::group::expired_day_params(day);
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            params.iter().map(|param| param.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        transaction.execute(super::group::expired_day_statement(), &params).await?;
    }
    for deadline in replay.grant_deadlines() {
        transaction
            .execute(
                "INSERT INTO grant_deadlines (grant_seq, expires_at, user_id) VALUES ($1, \
                 to_timestamp($2::BIGINT / 1000.0), $3)",
                &[&big(deadline.grant.0), &big(deadline.expires_at_ms), &deadline.user.as_str()],
            )
            .await?;
    }
    let mut holds = super::group::HoldRows::default();
    for record in replay.holds.values() {
        holds.push(record);
    }
    transaction.execute(super::group::HOLDS, &holds.params()).await?;
    let mut spends = super::group::SpendRows::default();
    for record in replay.spends.values() {
        spends.push(record);
    }
    transaction.execute(super::group::SPENDS, &spends.params()).await?;
    for (package, settings) in &replay.packages {
        transaction
            .execute(
                "INSERT INTO package_overrides (package_id, enabled, credits, price_minor_units, currency, \
                 expires_after_days) VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &package.as_str(),
                    &settings.enabled,
                    &big(settings.credits.get()),
                    &big(settings.price.minor_units()),
                    &settings.price.currency().to_string(),
                    &settings.expires_after_days.and_then(|days| i32::try_from(days).ok()),
                ],
            )
            .await?;
    }
    for key in replay.api_keys.values() {
        let scopes: Vec<String> = key.scopes.list().into_iter().map(|scope| scope.as_str().to_owned()).collect();
        let revoked = key.revoked_at_ms.map(big);
        transaction
            .execute(
                "INSERT INTO api_keys (id, name, scopes, key_hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, \
                 to_timestamp($5::BIGINT / 1000.0), to_timestamp($6::BIGINT / 1000.0))",
                &[
                    &key.id.as_str(),
                    &key.name.as_str(),
                    &scopes,
                    &key.key_hash.as_slice(),
                    &big(key.created_at_ms),
                    &revoked,
                ],
            )
            .await?;
    }
    let params = super::group::inventory_params(&replay.state);
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        params.iter().map(|param| param.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
    transaction
        .execute(
            "INSERT INTO inventory (provider_balance, reserved, wallets_total, holds_total, next_seq, last_sync_at, \
             last_sync_real, last_sync_drift, purchases_enabled, disabled_reason, revenue_minor_units, \
             consumed_total, open_spends, held_back, last_sync_seq, last_sync_held_back, expired_credits, \
             voided_credits, breakage_minor_units, promotional_outstanding) VALUES ($1, $2, $3, $4, $5, \
             to_timestamp($6::BIGINT / 1000.0), $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
            &params,
        )
        .await?;
    transaction.execute("INSERT INTO lease (epoch, expires_at) VALUES (0, to_timestamp(0))", &[]).await?;
    transaction
        .execute(
            "INSERT INTO meta (ratio, currency, created_at) VALUES ($1, $2, to_timestamp($3::BIGINT / 1000.0))",
            &[&big(meta.ratio.get()), &currency, &big(meta.created_at_ms)],
        )
        .await?;
    transaction.commit().await
}
