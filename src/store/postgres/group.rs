//! A group's writes as one PostgreSQL transaction (see `store.rs`): the
//! writes collapsed to the last of each record, the arrays of the
//! multi-row statements, and the pipeline that sends them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::rows::tag;
use super::{big, connect, lease, ledger, PostgresError};
use crate::domain::grants::GrantDeadline;
use crate::domain::{HoldId, KeyId, PackageId, SpendId, UserId};
use crate::store::records::{
    AlertEventRecord, ApiKeyRecord, ExpiredDay, HoldRecord, HoldState, InventoryRecord, LedgerEntry, MetaRecord,
    Operation, PackageOverride, PruneCursor, SpendRecord, SpendState, WalletRecord,
};
use crate::store::writes::{Write, WriteSet};
use crate::store::StoreError;

const WALLETS: &str = "WITH input AS (SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], \
     $5::BIGINT[], $7::TEXT[]) AS w (user_id, balance, version, recent, expected, grants)), \
     updated AS (UPDATE wallets SET balance = input.balance, version = input.version, \
     recent = string_to_array(input.recent, ',')::BIGINT[], grants = input.grants::JSONB FROM input \
     WHERE wallets.user_id = input.user_id AND input.expected <> 0 \
     AND (input.expected = -1 OR wallets.version = input.expected) RETURNING 1), \
     inserted AS (INSERT INTO wallets (user_id, balance, version, recent, grants) SELECT user_id, balance, version, \
     string_to_array(recent, ',')::BIGINT[], grants::JSONB FROM input WHERE expected = 0 OR (expected = -1 AND NOT EXISTS \
     (SELECT 1 FROM wallets WHERE wallets.user_id = input.user_id)) RETURNING 1) \
     SELECT creditd_require((SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted) = $6, \
     'a wallet is not at the version its write expects')";

pub(super) const REMEMBER: &str = "INSERT INTO idempotency (operation, caller, key, fingerprint, seq, at) \
     SELECT operation, caller, key, fingerprint, seq, to_timestamp(at_ms / 1000.0) FROM UNNEST($1::TEXT[], \
     $2::TEXT[], $3::TEXT[], $4::BYTEA[], $5::BIGINT[], $6::BIGINT[]) AS i (operation, caller, key, fingerprint, \
     seq, at_ms)";

const FORGET: &str = "DELETE FROM idempotency USING UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS f (operation, \
     caller, key) WHERE idempotency.operation = f.operation AND idempotency.caller = f.caller \
     AND idempotency.key = f.key";

pub(super) const HOLDS: &str = "INSERT INTO holds (hold_id, user_id, package_id, credits, price_minor_units, \
     created_at, expires_at, state, captured_balance, owner, expires_after_days) SELECT hold_id, user_id, \
     package_id, credits, price, \
     to_timestamp(created_ms / 1000.0), to_timestamp(expires_ms / 1000.0), state, captured, owner, days FROM \
     UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[], $6::BIGINT[], $7::BIGINT[], $8::TEXT[], \
     $9::BIGINT[], $10::TEXT[], $11::INTEGER[]) \
     AS h (hold_id, user_id, package_id, credits, price, created_ms, expires_ms, state, captured, owner, days) \
     ON CONFLICT (hold_id) DO UPDATE SET state = EXCLUDED.state, captured_balance = EXCLUDED.captured_balance";

pub(super) const SPENDS: &str = "INSERT INTO spends (spend_id, user_id, credits, seq, refunded_balance, created_at, \
     state, completed_by, completed_at, owner, draws) SELECT spend_id, user_id, credits, seq, refunded, \
     to_timestamp(created_ms / 1000.0), state, done_by, to_timestamp(completed_ms / 1000.0), owner, draws::JSONB FROM \
     UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $6::BIGINT[], $7::TEXT[], $8::TEXT[], \
     $9::BIGINT[], $10::TEXT[], $11::TEXT[]) \
     AS s (spend_id, user_id, credits, seq, refunded, created_ms, state, done_by, completed_ms, owner, draws) \
     ON CONFLICT (spend_id) DO UPDATE SET refunded_balance = EXCLUDED.refunded_balance, state = EXCLUDED.state, \
     completed_by = EXCLUDED.completed_by, completed_at = EXCLUDED.completed_at";

const INVENTORY: &str = "UPDATE inventory SET provider_balance = $1, reserved = $2, wallets_total = $3, \
     holds_total = $4, next_seq = $5, last_sync_at = to_timestamp($6::BIGINT / 1000.0), last_sync_real = $7, \
     last_sync_drift = $8, purchases_enabled = $9, disabled_reason = $10, revenue_minor_units = $11, \
     consumed_total = $12, open_spends = $13, held_back = $14, last_sync_seq = $15, last_sync_held_back = $16, \
     expired_credits = $17, voided_credits = $18, breakage_minor_units = $19, promotional_outstanding = $20";

/// The commit connection and its prepared statements.
pub(super) struct Writer {
    pub(super) client: Client,
    fence: Statement,
    ledger: Statement,
    wallets: Statement,
    remember: Statement,
    forget: Statement,
    holds: Statement,
    spends: Statement,
    inventory: Statement,
    /// The rare writes' statements ([`Group::other_statements`]), prepared
    /// on first use: a statement sent as text is prepared by a round trip
    /// first, so in a pipeline its execution would reach the server after
    /// the group's `COMMIT`, outside the transaction and its fence.
    others: std::sync::Mutex<HashMap<String, Statement>>,
}

impl Writer {
    pub(super) async fn connect(url: &str, idle_in_transaction: Duration) -> Result<Self, PostgresError> {
        let client = connect(url).await?;
        // A node paused inside a transaction keeps the lease row locked: the
        // database ends such a session, so that a takeover does not wait for it.
        let idle = idle_in_transaction.as_millis();
        client.batch_execute(&format!("SET idle_in_transaction_session_timeout = {idle}")).await?;
        Ok(Self {
            fence: client.prepare(lease::FENCE).await?,
            ledger: client.prepare(ledger::INSERT_MANY).await?,
            wallets: client.prepare(WALLETS).await?,
            remember: client.prepare(REMEMBER).await?,
            forget: client.prepare(FORGET).await?,
            holds: client.prepare(HOLDS).await?,
            spends: client.prepare(SPENDS).await?,
            inventory: client.prepare(INVENTORY).await?,
            others: std::sync::Mutex::new(HashMap::new()),
            client,
        })
    }

    /// `sql` prepared on this connection (once).
    async fn prepared(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        let cached = self.others.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(sql).cloned();
        if let Some(statement) = cached {
            return Ok(statement);
        }
        let statement = self.client.prepare(sql).await?;
        self.others.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

/// One statement of a group's pipeline.
type Step<'a> = std::pin::Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>>;

/// An idempotency record as a row: the answer is rebuilt from entry `seq`.
pub(super) struct Remembered {
    pub(super) operation: Operation,
    pub(super) caller: String,
    pub(super) key: String,
    fingerprint: Vec<u8>,
    seq: i64,
    at_ms: i64,
}

impl Remembered {
    /// The idempotency row `entry` leaves, given its request's fingerprint;
    /// `None` for an entry without a key.
    pub(super) fn of(entry: &LedgerEntry, fingerprint: [u8; 32]) -> Option<Self> {
        Some(Self {
            operation: entry.kind.operation()?,
            caller: entry.caller.as_ref().map_or("", KeyId::as_str).to_owned(),
            key: entry.idempotency_key.as_ref()?.as_str().to_owned(),
            fingerprint: fingerprint.to_vec(),
            seq: big(entry.seq),
            at_ms: big(entry.at_ms),
        })
    }
}

/// A group's writes, collapsed to the last write of each record, as the
/// arrays of its multi-row statements.
#[derive(Default)]
pub(super) struct Group {
    ledger: ledger::Columns,
    inventory: Option<InventoryRecord>,
    meta: Option<MetaRecord>,
    /// By user: the version the stored wallet must have, and the last record.
    /// (−1: any version; a restore).
    wallets: BTreeMap<UserId, (i64, WalletRecord)>,
    pub(super) remember: Vec<Remembered>,
    forget: BTreeSet<(Operation, String, String)>,
    holds: BTreeMap<HoldId, HoldRecord>,
    spends: BTreeMap<SpendId, SpendRecord>,
    packages: BTreeMap<PackageId, PackageOverride>,
    alerts: BTreeMap<u64, Option<AlertEventRecord>>,
    prune_cursor: Option<PruneCursor>,
    api_keys: BTreeMap<KeyId, ApiKeyRecord>,
    /// In the order written: one grant may open and close in one group.
    grant_deadlines: Vec<GrantDeadline>,
    /// By day, the last value written.
    expired_days: BTreeMap<u32, ExpiredDay>,
}

impl Group {
    pub(super) fn collect<'a>(sets: impl IntoIterator<Item = &'a WriteSet>) -> Result<Self, StoreError> {
        let mut group = Self::default();
        for set in sets {
            for write in set.writes() {
                group.add(set, write)?;
            }
        }
        Ok(group)
    }

    fn add(&mut self, set: &WriteSet, write: &Write) -> Result<(), StoreError> {
        match write {
            Write::Meta(record) => self.meta = Some(record.clone()),
            Write::Inventory(record) => self.inventory = Some(record.clone()),
            Write::Ledger(entry) => self.ledger.push(entry),
            Write::Wallet { user, record, expected } => {
                let expected = expected.map_or(-1, big);
                let slot = self.wallets.entry(user.clone()).or_insert_with(|| (expected, record.clone()));
                slot.1 = record.clone();
            }
            Write::Remember { operation, caller, key, record } => {
                let entry = set.writes().iter().find_map(|write| match write {
                    Write::Ledger(entry)
                        if entry.idempotency_key.as_ref() == Some(key)
                            && entry.caller.as_ref() == caller.as_ref()
                            && entry.kind.operation() == Some(*operation) =>
                    {
                        Some(entry)
                    }
                    _ => None,
                });
                let row = entry.and_then(|entry| Remembered::of(entry, record.fingerprint)).ok_or_else(|| {
                    StoreError::Precondition(format!("idempotency key {:?} without its ledger entry", key.as_str()))
                })?;
                self.remember.push(Remembered { at_ms: big(record.at_ms), ..row });
            }
            Write::Forget { operation, caller, key } => {
                let caller = caller.as_ref().map_or("", KeyId::as_str).to_owned();
                self.forget.insert((*operation, caller, key.as_str().to_owned()));
            }
            Write::Hold(record) => {
                self.holds.insert(record.hold_id.clone(), record.clone());
            }
            Write::Spend(record) => {
                self.spends.insert(record.spend_id.clone(), record.clone());
            }
            Write::Package { id, settings } => {
                self.packages.insert(id.clone(), settings.clone());
            }
            Write::Alert(event) => {
                self.alerts.insert(event.id, Some(event.clone()));
            }
            Write::ForgetAlert(id) => {
                self.alerts.insert(*id, None);
            }
            Write::PruneCursor(cursor) => self.prune_cursor = Some(*cursor),
            Write::ApiKey(record) => {
                self.api_keys.insert(record.id.clone(), record.clone());
            }
            Write::GrantDeadline(deadline) => {
                self.grant_deadlines.push(deadline.clone());
            }
            Write::ExpiredDay(day) => {
                self.expired_days.insert(day.day, *day);
            }
        }
        Ok(())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ledger.is_empty()
            && self.inventory.is_none()
            && self.meta.is_none()
            && self.wallets.is_empty()
            && self.remember.is_empty()
            && self.forget.is_empty()
            && self.holds.is_empty()
            && self.spends.is_empty()
            && self.packages.is_empty()
            && self.alerts.is_empty()
            && self.prune_cursor.is_none()
            && self.api_keys.is_empty()
            && self.grant_deadlines.is_empty()
            && self.expired_days.is_empty()
    }

    /// Sends the whole group in one pipeline and reads every answer.
    pub(super) async fn commit(self, writer: &Writer, epoch: i64) -> Result<(), StoreError> {
        let client = &writer.client;
        let rows = self.rows();
        // Every statement of the pipeline prepared before it starts: each is
        // then sent in order, at the first poll, before the `COMMIT`.
        let mut others = Vec::with_capacity(rows.others.len());
        for (sql, params) in &rows.others {
            let statement = writer.prepared(sql).await.map_err(|error| classify(&error, false))?;
            others.push((statement, params));
        }
        let mut steps: Vec<Step<'_>> = Vec::new();
        steps.push(Box::pin(async move { client.batch_execute("BEGIN").await.map(|()| 0) }));
        steps.push(Box::pin(async { client.execute(&writer.fence, &[&epoch]).await }));
        if !self.ledger.is_empty() {
            steps.push(Box::pin(async { client.execute(&writer.ledger, &self.ledger.params()).await }));
        }
        if !self.wallets.is_empty() {
            steps.push(Box::pin(async { client.execute(&writer.wallets, &rows.wallets.params()).await }));
        }
        if !self.forget.is_empty() {
            steps.push(Box::pin(async { client.execute(&writer.forget, &rows.forget.params()).await }));
        }
        if !self.remember.is_empty() {
            steps.push(Box::pin(async { client.execute(&writer.remember, &rows.remember.params()).await }));
        }
        if !self.holds.is_empty() {
            steps.push(Box::pin(async { client.execute(&writer.holds, &rows.holds.params()).await }));
        }
        if !self.spends.is_empty() {
            steps.push(Box::pin(async { client.execute(&writer.spends, &rows.spends.params()).await }));
        }
        for (statement, params) in &others {
            let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|param| &**param as _).collect();
            steps.push(Box::pin(async move { client.execute(statement, &params).await }));
        }
        if let Some(params) = &rows.inventory {
            let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|param| &**param as _).collect();
            steps.push(Box::pin(async move { client.execute(&writer.inventory, &params).await }));
        }
        steps.push(Box::pin(async move { client.batch_execute("COMMIT").await.map(|()| 0) }));
        let answers = futures_util::future::join_all(steps).await;
        let count = answers.len();
        // The first error decides; COMMIT after an error ends the transaction as a rollback.
        match answers.into_iter().enumerate().find_map(|(at, answer)| answer.err().map(|error| (at, error))) {
            None => Ok(()),
            Some((at, error)) => Err(classify(&error, at + 1 == count)),
        }
    }

    fn rows(&self) -> Rows {
        let mut rows = Rows::default();
        for (user, (expected, record)) in &self.wallets {
            rows.wallets.push(user, *expected, record);
        }
        for (operation, caller, key) in &self.forget {
            rows.forget.operation.push(tag(*operation));
            rows.forget.caller.push(caller.clone());
            rows.forget.key.push(key.clone());
        }
        for row in &self.remember {
            rows.remember.push(row);
        }
        for record in self.holds.values() {
            rows.holds.push(record);
        }
        for record in self.spends.values() {
            rows.spends.push(record);
        }
        rows.others = self.other_statements();
        rows.inventory = self.inventory.as_ref().map(inventory_params);
        rows
    }

    /// The rare writes, one statement each.
    fn other_statements(&self) -> Vec<(String, Vec<Box<dyn ToSql + Sync + Send>>)> {
        let mut statements: Vec<(String, Vec<Box<dyn ToSql + Sync + Send>>)> = Vec::new();
        if let Some(meta) = &self.meta {
            statements.push((
                "INSERT INTO meta (ratio, currency, created_at) SELECT $1, currency, \
                 to_timestamp($2::BIGINT / 1000.0) FROM inventory ON CONFLICT (id) DO NOTHING"
                    .into(),
                vec![Box::new(big(meta.ratio.get())), Box::new(big(meta.created_at_ms))],
            ));
        }
        for (id, settings) in &self.packages {
            statements.push((
                "INSERT INTO package_overrides (package_id, enabled, credits, price_minor_units, currency, \
                 expires_after_days) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (package_id) DO UPDATE SET \
                 enabled = EXCLUDED.enabled, credits = EXCLUDED.credits, \
                 price_minor_units = EXCLUDED.price_minor_units, currency = EXCLUDED.currency, \
                 expires_after_days = EXCLUDED.expires_after_days"
                    .into(),
                vec![
                    Box::new(id.as_str().to_owned()),
                    Box::new(settings.enabled),
                    Box::new(big(settings.credits.get())),
                    Box::new(big(settings.price.minor_units())),
                    Box::new(settings.price.currency().to_string()),
                    Box::new(settings.expires_after_days.and_then(|days| i32::try_from(days).ok())),
                ],
            ));
        }
        for (id, event) in &self.alerts {
            match event {
                Some(event) => statements.push((
                    "INSERT INTO alert_events (id, kind, firing, severity, message, at) VALUES ($1, $2, $3, $4, $5, \
                     to_timestamp($6::BIGINT / 1000.0)) ON CONFLICT (id) DO NOTHING"
                        .into(),
                    vec![
                        Box::new(big(event.id)),
                        Box::new(event.kind.clone()),
                        Box::new(event.firing),
                        Box::new(event.severity.clone()),
                        Box::new(event.message.clone()),
                        Box::new(big(event.at_ms)),
                    ],
                )),
                None => {
                    statements.push(("DELETE FROM alert_events WHERE id = $1".into(), vec![Box::new(big(*id))]));
                }
            }
        }
        if let Some(cursor) = &self.prune_cursor {
            statements.push((
                "INSERT INTO prune_cursor (last_seq) VALUES ($1) ON CONFLICT (id) DO UPDATE SET last_seq = $1".into(),
                vec![Box::new(big(cursor.last_seq))],
            ));
        }
        for record in self.api_keys.values() {
            let scopes: Vec<String> = record.scopes.list().into_iter().map(|scope| scope.as_str().to_owned()).collect();
            statements.push((
                "INSERT INTO api_keys (id, name, scopes, key_hash, created_at, last_used_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, to_timestamp($5::BIGINT / 1000.0), to_timestamp($6::BIGINT / 1000.0), \
                 to_timestamp($7::BIGINT / 1000.0)) ON CONFLICT (id) DO UPDATE SET \
                 last_used_at = EXCLUDED.last_used_at, revoked_at = EXCLUDED.revoked_at"
                    .into(),
                vec![
                    Box::new(record.id.as_str().to_owned()),
                    Box::new(record.name.as_str().to_owned()),
                    Box::new(scopes),
                    Box::new(record.key_hash.to_vec()),
                    Box::new(big(record.created_at_ms)),
                    Box::new(record.last_used_at_ms.map(big)),
                    Box::new(record.revoked_at_ms.map(big)),
                ],
            ));
        }
        for day in self.expired_days.values() {
            statements.push((expired_day_statement().into(), expired_day_params(day)));
        }
        for deadline in &self.grant_deadlines {
            if deadline.open {
                statements.push((
                    "INSERT INTO grant_deadlines (grant_seq, expires_at, user_id) VALUES ($1, \
                     to_timestamp($2::BIGINT / 1000.0), $3) ON CONFLICT (grant_seq) DO NOTHING"
                        .into(),
                    vec![
                        Box::new(big(deadline.grant.0)),
                        Box::new(big(deadline.expires_at_ms)),
                        Box::new(deadline.user.as_str().to_owned()),
                    ],
                ));
            } else {
                statements.push((
                    "DELETE FROM grant_deadlines WHERE grant_seq = $1".into(),
                    vec![Box::new(big(deadline.grant.0))],
                ));
            }
        }
        statements
    }
}

/// Upserts one day of `expired_by_day` from [`expired_day_params`].
pub(super) const fn expired_day_statement() -> &'static str {
    "INSERT INTO expired_by_day (day, credits, breakage_minor_units) VALUES \
     (DATE '1970-01-01' + $1::INTEGER, $2, $3) ON CONFLICT (day) DO UPDATE SET credits = EXCLUDED.credits, \
     breakage_minor_units = EXCLUDED.breakage_minor_units"
}

pub(super) fn expired_day_params(day: &ExpiredDay) -> Vec<Box<dyn ToSql + Sync + Send>> {
    vec![
        Box::new(i32::try_from(day.day).unwrap_or(i32::MAX)),
        Box::new(big(day.credits.get())),
        Box::new(big(day.breakage.minor_units())),
    ]
}

pub(super) fn inventory_params(state: &InventoryRecord) -> Vec<Box<dyn ToSql + Sync + Send>> {
    let (sync_at, sync_real, sync_drift, sync_seq, sync_held_back) = match state.last_sync {
        Some(sync) => (
            Some(big(sync.at_ms)),
            Some(big(sync.real.get())),
            sync.drift,
            Some(big(sync.seq)),
            Some(big(sync.held_back.get())),
        ),
        None => (None, None, None, None, None),
    };
    vec![
        Box::new(big(state.provider_balance.get())),
        Box::new(big(state.reserved.get())),
        Box::new(big(state.wallets_total.get())),
        Box::new(big(state.holds_total.get())),
        Box::new(big(state.next_seq)),
        Box::new(sync_at),
        Box::new(sync_real),
        Box::new(sync_drift),
        Box::new(state.purchases_enabled),
        Box::new(state.disabled_reason.clone()),
        Box::new(big(state.revenue.minor_units())),
        Box::new(big(state.consumed_total.get())),
        Box::new(big(state.open_spends.get())),
        Box::new(big(state.held_back.get())),
        Box::new(sync_seq),
        Box::new(sync_held_back),
        Box::new(big(state.grants.expired.get())),
        Box::new(big(state.grants.voided.get())),
        Box::new(big(state.grants.breakage.minor_units())),
        Box::new(big(state.grants.promotional.get())),
    ]
}

/// What a failed statement means for the group.
fn classify(error: &tokio_postgres::Error, at_commit: bool) -> StoreError {
    let code = error.code().map(SqlState::code);
    match code {
        Some("CRFEN") => {
            StoreError::Fenced(error.as_db_error().map_or_else(|| error.to_string(), |db| db.message().to_owned()))
        }
        Some("CRPRE") => StoreError::Precondition(error.to_string()),
        // The server answered: the transaction is rolled back, nothing of the group is stored.
        Some(_) if !at_commit => StoreError::Postgres(format!("group rolled back: {error}")),
        // No answer, or the commit itself failed: the group may be committed or not.
        _ => StoreError::Unconfirmed(format!("PostgreSQL: {error}")),
    }
}

/// A group's multi-row parameters.
#[derive(Default)]
struct Rows {
    wallets: WalletRows,
    forget: ForgetRows,
    remember: RememberRows,
    holds: HoldRows,
    spends: SpendRows,
    others: Vec<(String, Vec<Box<dyn ToSql + Sync + Send>>)>,
    inventory: Option<Vec<Box<dyn ToSql + Sync + Send>>>,
}

#[derive(Default)]
struct WalletRows {
    user: Vec<String>,
    balance: Vec<i64>,
    version: Vec<i64>,
    recent: Vec<String>,
    expected: Vec<i64>,
    count: i64,
    grants: Vec<String>,
}

impl WalletRows {
    fn push(&mut self, user: &UserId, expected: i64, record: &WalletRecord) {
        self.user.push(user.as_str().to_owned());
        self.balance.push(big(record.balance.get()));
        self.version.push(big(record.version));
        self.recent.push(record.recent.iter().map(u64::to_string).collect::<Vec<_>>().join(","));
        self.expected.push(expected);
        self.count = self.count.saturating_add(1);
        self.grants.push(serde_json::to_string(&record.grants).unwrap_or_else(|_| "[]".into()));
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [&self.user, &self.balance, &self.version, &self.recent, &self.expected, &self.count, &self.grants]
    }
}

#[derive(Default)]
struct ForgetRows {
    operation: Vec<String>,
    caller: Vec<String>,
    key: Vec<String>,
}

impl ForgetRows {
    fn params(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.operation, &self.caller, &self.key]
    }
}

#[derive(Default)]
pub(super) struct RememberRows {
    operation: Vec<String>,
    caller: Vec<String>,
    key: Vec<String>,
    fingerprint: Vec<Vec<u8>>,
    seq: Vec<i64>,
    at_ms: Vec<i64>,
}

impl RememberRows {
    pub(super) fn push(&mut self, row: &Remembered) {
        self.operation.push(tag(row.operation));
        self.caller.push(row.caller.clone());
        self.key.push(row.key.clone());
        self.fingerprint.push(row.fingerprint.clone());
        self.seq.push(row.seq);
        self.at_ms.push(row.at_ms);
    }

    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [&self.operation, &self.caller, &self.key, &self.fingerprint, &self.seq, &self.at_ms]
    }

    pub(super) fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }
}

/// Holds as the column arrays of [`HOLDS`].
#[derive(Default)]
pub(super) struct HoldRows {
    id: Vec<String>,
    user: Vec<String>,
    package: Vec<String>,
    credits: Vec<i64>,
    price: Vec<i64>,
    created_ms: Vec<i64>,
    expires_ms: Vec<i64>,
    state: Vec<&'static str>,
    captured: Vec<Option<i64>>,
    owner: Vec<Option<String>>,
    days: Vec<Option<i32>>,
}

impl HoldRows {
    pub(super) fn push(&mut self, record: &HoldRecord) {
        self.id.push(record.hold_id.as_str().to_owned());
        self.user.push(record.user.as_str().to_owned());
        self.package.push(record.package_id.as_str().to_owned());
        self.credits.push(big(record.credits.get()));
        self.price.push(big(record.price.minor_units()));
        self.created_ms.push(big(record.created_at_ms));
        self.expires_ms.push(big(record.expires_at_ms));
        self.state.push(record.state.name());
        self.captured.push(match &record.state {
            HoldState::Captured(receipt) => Some(big(receipt.balance.get())),
            _ => None,
        });
        self.owner.push(record.owner.as_ref().map(|owner| owner.as_str().to_owned()));
        self.days.push(record.expires_after_days.and_then(|days| i32::try_from(days).ok()));
    }

    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 11] {
        [
            &self.id,
            &self.user,
            &self.package,
            &self.credits,
            &self.price,
            &self.created_ms,
            &self.expires_ms,
            &self.state,
            &self.captured,
            &self.owner,
            &self.days,
        ]
    }
}

/// Spends as the column arrays of [`SPENDS`].
#[derive(Default)]
pub(super) struct SpendRows {
    id: Vec<String>,
    user: Vec<String>,
    credits: Vec<i64>,
    seq: Vec<i64>,
    refunded: Vec<Option<i64>>,
    created_ms: Vec<i64>,
    state: Vec<&'static str>,
    completed_by: Vec<Option<&'static str>>,
    completed_ms: Vec<Option<i64>>,
    owner: Vec<Option<String>>,
    draws: Vec<Option<String>>,
}

impl SpendRows {
    pub(super) fn push(&mut self, record: &SpendRecord) {
        self.id.push(record.spend_id.as_str().to_owned());
        self.user.push(record.user.as_str().to_owned());
        self.credits.push(big(record.credits.get()));
        self.seq.push(big(record.seq));
        self.created_ms.push(big(record.created_at_ms));
        self.state.push(record.state.name());
        let (refunded, by, at) = match &record.state {
            SpendState::Open => (None, None, None),
            SpendState::Completed { by, at_ms } => (None, Some(by.name()), Some(big(*at_ms))),
            SpendState::Refunded(receipt) => (Some(big(receipt.balance.get())), None, None),
        };
        self.refunded.push(refunded);
        self.completed_by.push(by);
        self.completed_ms.push(at);
        self.owner.push(record.owner.as_ref().map(|owner| owner.as_str().to_owned()));
        self.draws.push(record.draws.as_ref().and_then(|draws| serde_json::to_string(draws).ok()));
    }

    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 11] {
        [
            &self.id,
            &self.user,
            &self.credits,
            &self.seq,
            &self.refunded,
            &self.created_ms,
            &self.state,
            &self.completed_by,
            &self.completed_ms,
            &self.owner,
            &self.draws,
        ]
    }
}
