//! Serving from PostgreSQL (SPEC §12): the reads the engine needs, and the
//! group commit of the leader, one fenced transaction per group.
//!
//! The engine's reads and the commit loop are synchronous (the commit loop
//! has its own thread; the actors read on theirs), so [`PgStore`] owns a
//! small tokio runtime of its own, runs every query there, and blocks only
//! the calling thread on the answer.
//!
//! A group is sent in one pipelined round trip: `BEGIN`, the fence
//! (`creditd_fence`, migration V2), one multi-row statement per table
//! (`UNNEST` of one array per column), `COMMIT`. The fence and the wallet
//! precondition raise errors in SQL, so a fenced or stale group aborts on
//! the server before anything of it commits. `synchronous_commit` is left
//! as the database has it (on): a group is acknowledged once PostgreSQL
//! says its commit is durable.
//!
//! The leader loads the set of idempotency keys it has (as 64-bit hashes)
//! when it opens the store, and adds the keys of every group it commits:
//! the lookup of a new key, on every purchase, then needs no round trip;
//! only a hash that is known (a retry, or a rare collision) is read.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use super::check::{api_key, bad, inventory, ms, unsigned, user_credits};
use super::{big, connect, lease, ledger, target, PostgresError};
use crate::domain::{Currency, HoldId, IdempotencyKey, KeyId, Money, PackageId, Ratio, SpendId, UserId};
use crate::replay::idempotency_record;
use crate::store::records::{
    AlertEventRecord, ApiKeyRecord, CaptureReceipt, HoldRecord, HoldState, IdempotencyRecord, InventoryRecord,
    LedgerEntry, MetaRecord, Operation, PackageOverride, PruneCursor, RefundReceipt, SpendRecord, WalletRecord,
};
use crate::store::writes::{Write, WriteSet};
use crate::store::StoreError;

/// Connections for the engine's reads; each pipelines the reads sent to it.
const READERS: usize = 2;

/// The longest a read or a group's transaction may take before it is
/// answered as failed (a group: as unconfirmed).
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

const WALLETS: &str = "WITH input AS (SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], \
     $5::BIGINT[]) AS w (user_id, balance, version, recent, expected)), \
     updated AS (UPDATE wallets SET balance = input.balance, version = input.version, \
     recent = string_to_array(input.recent, ',')::BIGINT[] FROM input \
     WHERE wallets.user_id = input.user_id AND input.expected <> 0 \
     AND (input.expected = -1 OR wallets.version = input.expected) RETURNING 1), \
     inserted AS (INSERT INTO wallets (user_id, balance, version, recent) SELECT user_id, balance, version, \
     string_to_array(recent, ',')::BIGINT[] FROM input WHERE expected = 0 OR (expected = -1 AND NOT EXISTS \
     (SELECT 1 FROM wallets WHERE wallets.user_id = input.user_id)) RETURNING 1) \
     SELECT creditd_require((SELECT count(*) FROM updated) + (SELECT count(*) FROM inserted) = $6, \
     'a wallet is not at the version its write expects')";

const REMEMBER: &str = "INSERT INTO idempotency (operation, caller, key, fingerprint, seq, at) \
     SELECT operation, caller, key, fingerprint, seq, to_timestamp(at_ms / 1000.0) FROM UNNEST($1::TEXT[], \
     $2::TEXT[], $3::TEXT[], $4::BYTEA[], $5::BIGINT[], $6::BIGINT[]) AS i (operation, caller, key, fingerprint, \
     seq, at_ms)";

const FORGET: &str = "DELETE FROM idempotency USING UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS f (operation, \
     caller, key) WHERE idempotency.operation = f.operation AND idempotency.caller = f.caller \
     AND idempotency.key = f.key";

const HOLDS: &str = "INSERT INTO holds (hold_id, user_id, package_id, credits, price_minor_units, created_at, \
     expires_at, state, captured_balance) SELECT hold_id, user_id, package_id, credits, price, \
     to_timestamp(created_ms / 1000.0), to_timestamp(expires_ms / 1000.0), state, captured FROM UNNEST($1::TEXT[], \
     $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[], $6::BIGINT[], $7::BIGINT[], $8::TEXT[], $9::BIGINT[]) \
     AS h (hold_id, user_id, package_id, credits, price, created_ms, expires_ms, state, captured) \
     ON CONFLICT (hold_id) DO UPDATE SET state = EXCLUDED.state, captured_balance = EXCLUDED.captured_balance";

const SPENDS: &str = "INSERT INTO spends (spend_id, user_id, credits, seq, refunded_balance) \
     SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[]) \
     ON CONFLICT (spend_id) DO UPDATE SET refunded_balance = EXCLUDED.refunded_balance";

const INVENTORY: &str = "UPDATE inventory SET provider_balance = $1, reserved = $2, wallets_total = $3, \
     holds_total = $4, next_seq = $5, last_sync_at = to_timestamp($6::BIGINT / 1000.0), last_sync_real = $7, \
     last_sync_drift = $8, purchases_enabled = $9, disabled_reason = $10, revenue_minor_units = $11, \
     consumed_total = $12";

const HOLD_COLUMNS: &str = "hold_id, user_id, package_id, credits, price_minor_units, \
     (extract(epoch FROM created_at) * 1000)::BIGINT, (extract(epoch FROM expires_at) * 1000)::BIGINT, state, \
     captured_balance FROM holds";

/// The commit connection and its prepared statements.
struct Writer {
    client: Client,
    fence: Statement,
    ledger: Statement,
    wallets: Statement,
    remember: Statement,
    forget: Statement,
    holds: Statement,
    spends: Statement,
    inventory: Statement,
}

impl Writer {
    async fn connect(url: &str, idle_in_transaction: Duration) -> Result<Self, PostgresError> {
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
            client,
        })
    }
}

/// What the reads share with the tasks that run them.
struct Shared {
    url: String,
    currency: Currency,
    readers: Mutex<Vec<Option<Arc<Client>>>>,
    next_reader: AtomicUsize,
}

impl Shared {
    /// A read connection, connected again if it was lost (a database failover).
    async fn reader(&self) -> Result<Arc<Client>, StoreError> {
        let slot = self.next_reader.fetch_add(1, Ordering::Relaxed) % READERS;
        let current = self.readers.lock().map_err(|_| poisoned())?[slot].clone();
        match current {
            Some(client) if !client.is_closed() => Ok(client),
            _ => {
                let client = Arc::new(connect(&self.url).await?);
                self.readers.lock().map_err(|_| poisoned())?[slot] = Some(client.clone());
                Ok(client)
            }
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Postgres("a PostgreSQL connection's lock was poisoned".into())
}

impl From<PostgresError> for StoreError {
    fn from(error: PostgresError) -> Self {
        Self::Postgres(error.to_string())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Postgres(error.to_string())
    }
}

/// The PostgreSQL store, as the leader of `epoch` serves from it.
pub struct PgStore {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    shared: Arc<Shared>,
    target: String,
    epoch: i64,
    writer: Mutex<Option<Writer>>,
    idle_in_transaction: Duration,
    /// Hashes of the idempotency keys the store holds (see the module's doc).
    known: Mutex<HashSet<u64>>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The last handle may be dropped on an async thread, where a blocking shutdown panics.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn key_hash(operation: Operation, caller: Option<&str>, key: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    operation.tag().hash(&mut hasher);
    caller.unwrap_or("").hash(&mut hasher);
    key.hash(&mut hasher);
    hasher.finish()
}

fn tag(operation: Operation) -> String {
    char::from(operation.tag()).to_string()
}

fn timeout() -> StoreError {
    StoreError::Postgres(format!("no answer from PostgreSQL within {} s", QUERY_TIMEOUT.as_secs()))
}

impl PgStore {
    /// Opens the store in the database at `url` for the leader of `epoch`:
    /// connects, reads the store's currency, and loads the known
    /// idempotency keys. `idle_in_transaction` bounds how long a paused
    /// node's open transaction can hold the lease row (the lease's TTL).
    ///
    /// # Errors
    /// The database cannot be reached or holds no store.
    pub fn open(url: &str, epoch: i64, idle_in_transaction: Duration) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("creditd-pg")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let url_owned = url.to_owned();
        let (currency, known) = block(&handle, async move {
            let client = connect(&url_owned).await?;
            let meta = client.query_opt("SELECT currency FROM meta", &[]).await?;
            let meta = meta.ok_or_else(|| PostgresError::NotAStore(target(&url_owned)))?;
            let currency = Currency::parse(meta.get::<_, String>(0).trim()).map_err(|e| bad(format!("{e:?}")))?;
            let mut known = HashSet::new();
            for row in client.query("SELECT operation, caller, key FROM idempotency", &[]).await? {
                let operation = match row.get::<_, String>(0).as_str() {
                    "p" => Operation::Purchase,
                    "h" => Operation::Hold,
                    "s" => Operation::Spend,
                    other => return Err(bad(format!("idempotency operation {other:?}")).into()),
                };
                known.insert(key_hash(operation, Some(row.get(1)), row.get(2)));
            }
            Ok::<_, StoreError>((currency, known))
        })??;
        let shared = Arc::new(Shared {
            url: url.to_owned(),
            currency,
            readers: Mutex::new(vec![None; READERS]),
            next_reader: AtomicUsize::new(0),
        });
        Ok(Self {
            runtime: Some(runtime),
            handle,
            shared,
            target: target(url),
            epoch,
            writer: Mutex::new(None),
            idle_in_transaction,
            known: Mutex::new(known),
        })
    }

    /// `host:port/database`, never the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Runs a read on the store's runtime and waits for it.
    fn read<T, F, Fut>(&self, read: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Shared>, Arc<Client>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let shared = self.shared.clone();
        block(&self.handle, async move {
            let client = shared.reader().await?;
            read(shared, client).await
        })?
    }

    /// # Errors
    /// A read failure.
    pub fn meta(&self) -> Result<Option<MetaRecord>, StoreError> {
        self.read(|_, client| async move {
            let query = format!("SELECT ratio, {} FROM meta", ms("created_at"));
            let Some(row) = client.query_opt(query.as_str(), &[]).await? else { return Ok(None) };
            let ratio = Ratio::new(unsigned(row.get(0), "ratio")?).map_err(|e| bad(format!("ratio: {e}")))?;
            Ok(Some(MetaRecord { ratio, created_at_ms: unsigned(row.get(1), "created_at")? }))
        })
    }

    /// # Errors
    /// A read failure.
    pub fn inventory(&self) -> Result<Option<InventoryRecord>, StoreError> {
        self.read(|shared, client| async move { Ok(Some(inventory(&client, shared.currency).await?)) })
    }

    /// # Errors
    /// A read failure.
    pub fn wallet(&self, user: &UserId) -> Result<Option<WalletRecord>, StoreError> {
        let user = user.as_str().to_owned();
        self.read(|_, client| async move {
            let row =
                client.query_opt("SELECT balance, version, recent FROM wallets WHERE user_id = $1", &[&user]).await?;
            row.map(|row| wallet(&row, 0)).transpose()
        })
    }

    /// Every wallet (the start-up check of every wallet).
    ///
    /// # Errors
    /// A read failure.
    pub fn wallets(&self) -> Result<Vec<(UserId, WalletRecord)>, StoreError> {
        self.read(|_, client| async move {
            let rows = client.query("SELECT balance, version, recent, user_id FROM wallets", &[]).await?;
            rows.iter()
                .map(|row| {
                    let user = UserId::parse(&row.get::<_, String>(3)).map_err(|e| bad(format!("wallet user: {e}")))?;
                    Ok((user, wallet(row, 0)?))
                })
                .collect()
        })
    }

    /// # Errors
    /// A read failure.
    pub fn idempotency(
        &self,
        operation: Operation,
        caller: Option<&KeyId>,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let caller = caller.map_or("", KeyId::as_str).to_owned();
        let hash = key_hash(operation, Some(&caller), key.as_str());
        if !self.known.lock().map_err(|_| poisoned())?.contains(&hash) {
            return Ok(None);
        }
        let key = key.as_str().to_owned();
        self.read(move |shared, client| async move {
            let row = client
                .query_opt(
                    "SELECT fingerprint, seq FROM idempotency WHERE operation = $1 AND caller = $2 AND key = $3",
                    &[&tag(operation), &caller, &key],
                )
                .await?;
            let Some(row) = row else { return Ok(None) };
            let fingerprint: [u8; 32] =
                row.get::<_, Vec<u8>>(0).try_into().map_err(|_| bad("a fingerprint is not 32 bytes"))?;
            let entry = ledger_entry(&client, shared.currency, row.get(1))
                .await?
                .ok_or_else(|| bad(format!("idempotency key {key:?} names a missing ledger entry")))?;
            Ok(match idempotency_record(&entry, fingerprint) {
                Some(Write::Remember { record, .. }) => Some(record),
                _ => None,
            })
        })
    }

    /// # Errors
    /// A read failure.
    pub fn ledger_entry(&self, seq: u64) -> Result<Option<LedgerEntry>, StoreError> {
        self.read(move |shared, client| async move { ledger_entry(&client, shared.currency, big(seq)).await })
    }

    /// # Errors
    /// A read failure.
    pub fn hold(&self, id: &HoldId) -> Result<Option<HoldRecord>, StoreError> {
        let id = id.as_str().to_owned();
        self.read(|shared, client| async move {
            let query = format!("SELECT {HOLD_COLUMNS} WHERE hold_id = $1");
            let row = client.query_opt(query.as_str(), &[&id]).await?;
            row.map(|row| hold(&row, shared.currency)).transpose()
        })
    }

    /// # Errors
    /// A read failure.
    pub fn open_holds(&self) -> Result<Vec<HoldRecord>, StoreError> {
        self.read(|shared, client| async move {
            let query = format!("SELECT {HOLD_COLUMNS} WHERE state = 'open'");
            client.query(query.as_str(), &[]).await?.iter().map(|row| hold(row, shared.currency)).collect()
        })
    }

    /// # Errors
    /// A read failure.
    pub fn spend(&self, id: &SpendId) -> Result<Option<SpendRecord>, StoreError> {
        let id = id.as_str().to_owned();
        self.read(|_, client| async move {
            let row = client
                .query_opt(
                    "SELECT spend_id, user_id, credits, seq, refunded_balance FROM spends WHERE spend_id = $1",
                    &[&id],
                )
                .await?;
            row.map(|row| spend(&row)).transpose()
        })
    }

    /// # Errors
    /// A read failure.
    pub fn package_overrides(&self) -> Result<Vec<(String, PackageOverride)>, StoreError> {
        self.read(|_, client| async move {
            let rows = client
                .query("SELECT package_id, enabled, credits, price_minor_units, currency FROM package_overrides", &[])
                .await?;
            rows.iter()
                .map(|row| {
                    let currency =
                        Currency::parse(row.get::<_, String>(4).trim()).map_err(|e| bad(format!("{e:?}")))?;
                    let price =
                        Money::new(unsigned(row.get(3), "price")?, currency).map_err(|e| bad(format!("{e:?}")))?;
                    let credits = user_credits(row.get(2), "credits")?;
                    Ok((row.get(0), PackageOverride { enabled: row.get(1), credits, price }))
                })
                .collect()
        })
    }

    /// # Errors
    /// A read failure.
    pub fn recent_alerts(&self, limit: usize) -> Result<Vec<AlertEventRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |_, client| async move {
            let query = format!(
                "SELECT id, kind, firing, severity, message, {} FROM alert_events ORDER BY id DESC LIMIT $1",
                ms("at")
            );
            let mut events = client
                .query(query.as_str(), &[&limit])
                .await?
                .iter()
                .map(|row| {
                    Ok(AlertEventRecord {
                        id: unsigned(row.get(0), "alert id")?,
                        kind: row.get(1),
                        firing: row.get(2),
                        severity: row.get(3),
                        message: row.get(4),
                        at_ms: unsigned(row.get(5), "alert time")?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            events.reverse();
            Ok(events)
        })
    }

    /// # Errors
    /// A read failure.
    pub fn consumption_since(&self, since_ms: u64, ratio: Ratio) -> Result<Vec<(u64, i64)>, StoreError> {
        self.read(move |_, client| async move {
            let query = format!(
                "SELECT {}, kind, credits FROM ledger WHERE at > to_timestamp($1::BIGINT / 1000.0) \
                 AND kind IN ('spend', 'refund') ORDER BY seq DESC",
                ms("at")
            );
            let rows = client.query(query.as_str(), &[&big(since_ms)]).await?;
            rows.iter()
                .map(|row| {
                    let credits = user_credits(row.get(2), "credits")?;
                    let provider =
                        ratio.backing(credits).map_or(0, |provider| i64::try_from(provider.get()).unwrap_or(i64::MAX));
                    let sign = if row.get::<_, String>(1) == "refund" { -1 } else { 1 };
                    Ok((unsigned(row.get(0), "at")?, provider.saturating_mul(sign)))
                })
                .collect()
        })
    }

    /// # Errors
    /// A read failure.
    pub fn prune_cursor(&self) -> Result<Option<PruneCursor>, StoreError> {
        self.read(|_, client| async move {
            let row = client.query_opt("SELECT last_seq FROM prune_cursor", &[]).await?;
            row.map(|row| Ok(PruneCursor { last_seq: unsigned(row.get(0), "prune cursor")? })).transpose()
        })
    }

    /// # Errors
    /// A read failure.
    pub fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.read(|_, client| async move {
            let query = format!(
                "SELECT id, name, scopes, key_hash, {}, {}, {} FROM api_keys",
                ms("created_at"),
                ms("last_used_at"),
                ms("revoked_at")
            );
            Ok(client.query(query.as_str(), &[]).await?.iter().map(api_key).collect::<Result<_, _>>()?)
        })
    }

    /// # Errors
    /// A read failure.
    pub fn ledger_page(&self, after: u64, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |shared, client| async move {
            let query = format!("{} WHERE seq > $1 ORDER BY seq LIMIT $2", ledger::SELECT);
            let rows = client.query(query.as_str(), &[&big(after), &limit]).await?;
            rows.iter().map(|row| ledger::entry(row, shared.currency).map_err(|e| bad(e).into())).collect()
        })
    }

    /// # Errors
    /// A read failure, or a wallet pointing at a missing entry.
    pub fn wallet_entries(&self, wallet: &WalletRecord, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        let skip = wallet.recent.len().saturating_sub(limit);
        let wanted: Vec<i64> = wallet.recent[skip..].iter().map(|seq| big(*seq)).collect();
        self.read(move |shared, client| async move {
            let query = format!("{} WHERE seq = ANY($1) ORDER BY seq", ledger::SELECT);
            let rows = client.query(query.as_str(), &[&wanted]).await?;
            if rows.len() != wanted.len() {
                return Err(StoreError::Layout("a wallet points at a missing ledger entry".into()));
            }
            rows.iter().map(|row| ledger::entry(row, shared.currency).map_err(|e| bad(e).into())).collect()
        })
    }

    /// Commits every write set in one transaction, fenced by this node's
    /// epoch (see the module's doc).
    ///
    /// # Errors
    /// [`StoreError::Fenced`] when another node holds the lease;
    /// [`StoreError::Precondition`] for a stale wallet write; any other
    /// failure of a statement is a rolled-back group; a lost connection or
    /// a timeout is [`StoreError::Unconfirmed`].
    pub fn write_durably<'a>(&self, sets: impl IntoIterator<Item = &'a WriteSet> + Clone) -> Result<(), StoreError> {
        let group = Group::collect(sets)?;
        if group.is_empty() {
            return Ok(());
        }
        let taken = self.writer.lock().map_err(|_| poisoned())?.take();
        let (url, idle, epoch) = (self.shared.url.clone(), self.idle_in_transaction, self.epoch);
        let remembered: Vec<u64> =
            group.remember.iter().map(|row| key_hash(row.operation, Some(&row.caller), &row.key)).collect();
        let (writer, outcome) = block(&self.handle, async move {
            let writer = match taken {
                Some(writer) if !writer.client.is_closed() => writer,
                _ => match Writer::connect(&url, idle).await {
                    Ok(writer) => writer,
                    Err(error) => return (None, Err(StoreError::from(error))),
                },
            };
            let outcome = tokio::time::timeout(QUERY_TIMEOUT, group.commit(&writer, epoch))
                .await
                .unwrap_or_else(|_| Err(StoreError::Unconfirmed(timeout().to_string())));
            (Some(writer), outcome)
        })?;
        *self.writer.lock().map_err(|_| poisoned())? = writer;
        outcome?;
        self.known.lock().map_err(|_| poisoned())?.extend(remembered);
        Ok(())
    }
}

/// Runs `future` on `handle`'s runtime and blocks this thread until it ends.
fn block<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    future: impl Future<Output = T> + Send + 'static,
) -> Result<T, StoreError> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver.recv().map_err(|_| StoreError::Postgres("the PostgreSQL runtime stopped".into()))
}

async fn ledger_entry(client: &Client, currency: Currency, seq: i64) -> Result<Option<LedgerEntry>, StoreError> {
    let query = format!("{} WHERE seq = $1", ledger::SELECT);
    let row = client.query_opt(query.as_str(), &[&seq]).await?;
    row.map(|row| ledger::entry(&row, currency).map_err(|e| bad(e).into())).transpose()
}

fn wallet(row: &Row, first: usize) -> Result<WalletRecord, StoreError> {
    let recent: Vec<i64> = row.get(first + 2);
    Ok(WalletRecord {
        balance: user_credits(row.get(first), "wallet balance")?,
        version: unsigned(row.get(first + 1), "wallet version")?,
        recent: recent.into_iter().map(|seq| unsigned(seq, "recent entry")).collect::<Result<_, _>>()?,
    })
}

fn hold(row: &Row, currency: Currency) -> Result<HoldRecord, StoreError> {
    let hold_id = HoldId::parse(&row.get::<_, String>(0)).map_err(|e| bad(format!("hold id: {e}")))?;
    let user = UserId::parse(&row.get::<_, String>(1)).map_err(|e| bad(format!("hold {hold_id} user: {e}")))?;
    let package_id =
        PackageId::parse(&row.get::<_, String>(2)).map_err(|e| bad(format!("hold {hold_id} package: {e}")))?;
    let credits = user_credits(row.get(3), "hold credits")?;
    let state = match row.get::<_, String>(7).as_str() {
        "open" => HoldState::Open,
        "released" => HoldState::Released,
        "expired" => HoldState::Expired,
        "captured" => {
            let balance: Option<i64> = row.get(8);
            let balance = balance.ok_or_else(|| bad(format!("captured hold {hold_id} has no balance")))?;
            HoldState::Captured(CaptureReceipt {
                hold_id: hold_id.clone(),
                user_id: user.clone(),
                package_id: package_id.clone(),
                credits,
                balance: user_credits(balance, "captured balance")?,
            })
        }
        other => return Err(bad(format!("hold {hold_id}: state {other:?}")).into()),
    };
    Ok(HoldRecord {
        price: Money::new(unsigned(row.get(4), "hold price")?, currency).map_err(|e| bad(format!("{e:?}")))?,
        created_at_ms: unsigned(row.get(5), "hold created_at")?,
        expires_at_ms: unsigned(row.get(6), "hold expires_at")?,
        hold_id,
        user,
        package_id,
        credits,
        state,
    })
}

fn spend(row: &Row) -> Result<SpendRecord, StoreError> {
    let spend_id = SpendId::parse(&row.get::<_, String>(0)).map_err(|e| bad(format!("spend id: {e}")))?;
    let user = UserId::parse(&row.get::<_, String>(1)).map_err(|e| bad(format!("spend {spend_id} user: {e}")))?;
    let credits = user_credits(row.get(2), "spend credits")?;
    let refunded: Option<i64> = row.get(4);
    let refund = refunded
        .map(|balance| {
            Ok::<_, PostgresError>(RefundReceipt {
                spend_id: spend_id.clone(),
                user_id: user.clone(),
                credits,
                balance: user_credits(balance, "refunded balance")?,
            })
        })
        .transpose()?;
    Ok(SpendRecord { seq: unsigned(row.get(3), "spend seq")?, spend_id, user, credits, refund })
}

/// One statement of a group's pipeline.
type Step<'a> = std::pin::Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>>;

/// An idempotency record as a row: the answer is rebuilt from entry `seq`.
struct Remembered {
    operation: Operation,
    caller: String,
    key: String,
    fingerprint: Vec<u8>,
    seq: i64,
    at_ms: i64,
}

/// A group's writes, collapsed to the last write of each record, as the
/// arrays of its multi-row statements.
#[derive(Default)]
struct Group {
    ledger: ledger::Columns,
    inventory: Option<InventoryRecord>,
    meta: Option<MetaRecord>,
    /// By user: the version the stored wallet must have, and the last record.
    /// (−1: any version; a restore).
    wallets: BTreeMap<UserId, (i64, WalletRecord)>,
    remember: Vec<Remembered>,
    forget: BTreeSet<(Operation, String, String)>,
    holds: BTreeMap<HoldId, HoldRecord>,
    spends: BTreeMap<SpendId, SpendRecord>,
    packages: BTreeMap<PackageId, PackageOverride>,
    alerts: BTreeMap<u64, Option<AlertEventRecord>>,
    prune_cursor: Option<PruneCursor>,
    api_keys: BTreeMap<KeyId, ApiKeyRecord>,
}

impl Group {
    fn collect<'a>(sets: impl IntoIterator<Item = &'a WriteSet>) -> Result<Self, StoreError> {
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
                let entry = entry.ok_or_else(|| {
                    StoreError::Precondition(format!("idempotency key {:?} without its ledger entry", key.as_str()))
                })?;
                self.remember.push(Remembered {
                    operation: *operation,
                    caller: caller.as_ref().map_or("", KeyId::as_str).to_owned(),
                    key: key.as_str().to_owned(),
                    fingerprint: record.fingerprint.to_vec(),
                    seq: big(entry.seq),
                    at_ms: big(record.at_ms),
                });
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
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
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
    }

    /// Sends the whole group in one pipeline and reads every answer.
    async fn commit(self, writer: &Writer, epoch: i64) -> Result<(), StoreError> {
        let client = &writer.client;
        let rows = self.rows();
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
        for (statement, params) in &rows.others {
            let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|param| &**param as _).collect();
            steps.push(Box::pin(async move { client.execute(statement.as_str(), &params).await }));
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
                "INSERT INTO package_overrides (package_id, enabled, credits, price_minor_units, currency) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (package_id) DO UPDATE SET enabled = EXCLUDED.enabled, \
                 credits = EXCLUDED.credits, price_minor_units = EXCLUDED.price_minor_units, \
                 currency = EXCLUDED.currency"
                    .into(),
                vec![
                    Box::new(id.as_str().to_owned()),
                    Box::new(settings.enabled),
                    Box::new(big(settings.credits.get())),
                    Box::new(big(settings.price.minor_units())),
                    Box::new(settings.price.currency().to_string()),
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
        statements
    }
}

fn inventory_params(state: &InventoryRecord) -> Vec<Box<dyn ToSql + Sync + Send>> {
    let (sync_at, sync_real, sync_drift) = match state.last_sync {
        Some(sync) => (Some(big(sync.at_ms)), Some(big(sync.real.get())), sync.drift),
        None => (None, None, None),
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
}

impl WalletRows {
    fn push(&mut self, user: &UserId, expected: i64, record: &WalletRecord) {
        self.user.push(user.as_str().to_owned());
        self.balance.push(big(record.balance.get()));
        self.version.push(big(record.version));
        self.recent.push(record.recent.iter().map(u64::to_string).collect::<Vec<_>>().join(","));
        self.expected.push(expected);
        self.count = self.count.saturating_add(1);
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [&self.user, &self.balance, &self.version, &self.recent, &self.expected, &self.count]
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
struct RememberRows {
    operation: Vec<String>,
    caller: Vec<String>,
    key: Vec<String>,
    fingerprint: Vec<Vec<u8>>,
    seq: Vec<i64>,
    at_ms: Vec<i64>,
}

impl RememberRows {
    fn push(&mut self, row: &Remembered) {
        self.operation.push(tag(row.operation));
        self.caller.push(row.caller.clone());
        self.key.push(row.key.clone());
        self.fingerprint.push(row.fingerprint.clone());
        self.seq.push(row.seq);
        self.at_ms.push(row.at_ms);
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [&self.operation, &self.caller, &self.key, &self.fingerprint, &self.seq, &self.at_ms]
    }
}

#[derive(Default)]
struct HoldRows {
    id: Vec<String>,
    user: Vec<String>,
    package: Vec<String>,
    credits: Vec<i64>,
    price: Vec<i64>,
    created_ms: Vec<i64>,
    expires_ms: Vec<i64>,
    state: Vec<&'static str>,
    captured: Vec<Option<i64>>,
}

impl HoldRows {
    fn push(&mut self, record: &HoldRecord) {
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
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 9] {
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
        ]
    }
}

#[derive(Default)]
struct SpendRows {
    id: Vec<String>,
    user: Vec<String>,
    credits: Vec<i64>,
    seq: Vec<i64>,
    refunded: Vec<Option<i64>>,
}

impl SpendRows {
    fn push(&mut self, record: &SpendRecord) {
        self.id.push(record.spend_id.as_str().to_owned());
        self.user.push(record.user.as_str().to_owned());
        self.credits.push(big(record.credits.get()));
        self.seq.push(big(record.seq));
        self.refunded.push(record.refund.as_ref().map(|receipt| big(receipt.balance.get())));
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        [&self.id, &self.user, &self.credits, &self.seq, &self.refunded]
    }
}
