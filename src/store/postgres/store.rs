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

use std::collections::HashSet;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::{Client, Row};

use super::group::{Group, Writer};
use super::rows::{api_key, bad, inventory, ms, tag, unsigned, user_credits};
use super::{big, connect, ledger, target, PostgresError};
use crate::domain::grants::GrantDeadline;
use crate::domain::{Currency, GrantId, HoldId, IdempotencyKey, KeyId, Money, PackageId, Ratio, SpendId, UserId};
use crate::replay::idempotency_record;
use crate::store::records::{
    AlertEventRecord, ApiKeyRecord, CaptureReceipt, CompletedBy, ExpiredDay, HoldRecord, HoldState, IdempotencyRecord,
    InventoryRecord, LedgerEntry, MetaRecord, Operation, PackageOverride, PruneCursor, RefundReceipt, SpendRecord,
    SpendState, WalletRecord,
};
use crate::store::writes::{Write, WriteSet};
use crate::store::StoreError;

/// Connections for the engine's reads; each pipelines the reads sent to it.
const READERS: usize = 2;

/// The longest a read or a group's transaction may take before it is
/// answered as failed (a group: as unconfirmed).
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

const HOLD_COLUMNS: &str = "hold_id, user_id, package_id, credits, price_minor_units, \
     (extract(epoch FROM created_at) * 1000)::BIGINT, (extract(epoch FROM expires_at) * 1000)::BIGINT, state, \
     captured_balance, owner, expires_after_days FROM holds";

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
                    "g" => Operation::Grant,
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
            let row = client
                .query_opt("SELECT balance, version, recent, grants::TEXT FROM wallets WHERE user_id = $1", &[&user])
                .await?;
            row.map(|row| wallet(&row)).transpose()
        })
    }

    /// Every wallet (the start-up check of every wallet).
    ///
    /// # Errors
    /// A read failure.
    pub fn wallets(&self) -> Result<Vec<(UserId, WalletRecord)>, StoreError> {
        self.read(|_, client| async move {
            let rows = client.query("SELECT balance, version, recent, grants::TEXT, user_id FROM wallets", &[]).await?;
            rows.iter()
                .map(|row| {
                    let user = UserId::parse(&row.get::<_, String>(4)).map_err(|e| bad(format!("wallet user: {e}")))?;
                    Ok((user, wallet(row)?))
                })
                .collect()
        })
    }

    /// Whether the key may have a record: `false` means it has none, known
    /// without a round trip (the hashes of every stored key are in memory).
    pub fn may_know(&self, operation: Operation, caller: Option<&KeyId>, key: &IdempotencyKey) -> bool {
        let hash = key_hash(operation, Some(caller.map_or("", KeyId::as_str)), key.as_str());
        self.known.lock().map_or(true, |known| known.contains(&hash))
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
            let query = format!("SELECT {} WHERE spend_id = $1", spend_columns());
            let row = client.query_opt(query.as_str(), &[&id]).await?;
            row.map(|row| spend(&row)).transpose()
        })
    }

    /// # Errors
    /// A read failure.
    pub fn open_spends(&self) -> Result<Vec<SpendRecord>, StoreError> {
        self.read(|_, client| async move {
            let query = format!("SELECT {} WHERE state = 'open'", spend_columns());
            client.query(query.as_str(), &[]).await?.iter().map(spend).collect()
        })
    }

    /// The credits expired by UTC day (SPEC §13), oldest first.
    ///
    /// # Errors
    /// A read failure.
    pub fn expired_days(&self) -> Result<Vec<ExpiredDay>, StoreError> {
        self.read(|shared, client| async move {
            let query = "SELECT (day - DATE '1970-01-01')::INTEGER, credits, breakage_minor_units FROM expired_by_day \
                         ORDER BY day";
            let rows = client.query(query, &[]).await?;
            rows.iter()
                .map(|row| {
                    let breakage = Money::new(unsigned(row.get(2), "breakage")?, shared.currency)
                        .map_err(|e| bad(format!("{e:?}")))?;
                    Ok(ExpiredDay {
                        day: u32::try_from(row.get::<_, i32>(0)).map_err(|_| bad("a day before 1970"))?,
                        credits: user_credits(row.get(1), "expired credits")?,
                        breakage,
                    })
                })
                .collect()
        })
    }

    /// The deadlines of the grants not closed that will expire (SPEC §13).
    ///
    /// # Errors
    /// A read failure.
    pub fn grant_deadlines(&self) -> Result<Vec<GrantDeadline>, StoreError> {
        self.read(|_, client| async move {
            let query = format!("SELECT grant_seq, {}, user_id FROM grant_deadlines", ms("expires_at"));
            let rows = client.query(query.as_str(), &[]).await?;
            rows.iter()
                .map(|row| {
                    let user =
                        UserId::parse(&row.get::<_, String>(2)).map_err(|e| bad(format!("deadline user: {e}")))?;
                    Ok(GrantDeadline {
                        grant: GrantId(unsigned(row.get(0), "grant_seq")?),
                        expires_at_ms: unsigned(row.get(1), "expires_at")?,
                        user,
                        open: true,
                        remaining: crate::domain::UserCredits::ZERO,
                    })
                })
                .collect()
        })
    }

    /// # Errors
    /// A read failure.
    pub fn package_overrides(&self) -> Result<Vec<(String, PackageOverride)>, StoreError> {
        self.read(|_, client| async move {
            let rows = client
                .query(
                    "SELECT package_id, enabled, credits, price_minor_units, currency, expires_after_days \
                     FROM package_overrides",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    let currency =
                        Currency::parse(row.get::<_, String>(4).trim()).map_err(|e| bad(format!("{e:?}")))?;
                    let price =
                        Money::new(unsigned(row.get(3), "price")?, currency).map_err(|e| bad(format!("{e:?}")))?;
                    let credits = user_credits(row.get(2), "credits")?;
                    let days = row.get::<_, Option<i32>>(5).and_then(|days| u32::try_from(days).ok());
                    Ok((row.get(0), PackageOverride { enabled: row.get(1), credits, price, expires_after_days: days }))
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

fn wallet(row: &Row) -> Result<WalletRecord, StoreError> {
    let recent: Vec<i64> = row.get(2);
    let balance = user_credits(row.get(0), "wallet balance")?;
    let recent: Vec<u64> = recent.into_iter().map(|seq| unsigned(seq, "recent entry")).collect::<Result<_, _>>()?;
    let grants = match row.get::<_, Option<String>>(3) {
        Some(json) => serde_json::from_str(&json).map_err(|e| bad(format!("wallet grants: {e}")))?,
        // A wallet from before grants: one never-expiring paid grant of its balance.
        None => match recent.last() {
            Some(&seq) if !balance.is_zero() => vec![crate::store::records::legacy_grant(seq, balance)],
            _ => Vec::new(),
        },
    };
    Ok(WalletRecord { balance, version: unsigned(row.get(1), "wallet version")?, recent, grants })
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
    let owner = maker(row, 9, &hold_id)?;
    let days: Option<i32> = row.get(10);
    Ok(HoldRecord {
        owner,
        expires_after_days: days
            .map(|days| u32::try_from(days).map_err(|_| bad(format!("hold {hold_id} days"))))
            .transpose()?,
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

/// The key that made a hold or spend, from column `index`.
fn maker(row: &Row, index: usize, of: &dyn std::fmt::Display) -> Result<Option<KeyId>, StoreError> {
    let owner: Option<String> = row.get(index);
    Ok(owner.map(|owner| KeyId::parse(&owner)).transpose().map_err(|e| bad(format!("{of} owner: {e}")))?)
}

/// The columns [`spend`] reads, and their table.
fn spend_columns() -> String {
    format!(
        "spend_id, user_id, credits, seq, refunded_balance, {}, state, completed_by, {}, owner, draws::TEXT FROM spends",
        ms("created_at"),
        ms("completed_at")
    )
}

fn spend(row: &Row) -> Result<SpendRecord, StoreError> {
    let spend_id = SpendId::parse(&row.get::<_, String>(0)).map_err(|e| bad(format!("spend id: {e}")))?;
    let user = UserId::parse(&row.get::<_, String>(1)).map_err(|e| bad(format!("spend {spend_id} user: {e}")))?;
    let credits = user_credits(row.get(2), "spend credits")?;
    let state = match (row.get::<_, String>(6).as_str(), row.get::<_, Option<i64>>(4)) {
        ("open", _) => SpendState::Open,
        ("completed", _) => {
            let by = match row.get::<_, Option<String>>(7).as_deref() {
                Some("service") => CompletedBy::Service,
                Some("time") => CompletedBy::Time,
                other => return Err(bad(format!("spend {spend_id}: completed by {other:?}")).into()),
            };
            SpendState::Completed { by, at_ms: unsigned(row.get::<_, Option<i64>>(8).unwrap_or(0), "completed_at")? }
        }
        ("refunded", Some(balance)) => SpendState::Refunded(RefundReceipt {
            spend_id: spend_id.clone(),
            user_id: user.clone(),
            credits,
            balance: user_credits(balance, "refunded balance")?,
        }),
        (other, _) => return Err(bad(format!("spend {spend_id}: state {other:?}")).into()),
    };
    let owner = maker(row, 9, &spend_id)?;
    let draws = row
        .get::<_, Option<String>>(10)
        .map(|json| serde_json::from_str(&json))
        .transpose()
        .map_err(|e| bad(format!("spend {spend_id} draws: {e}")))?;
    Ok(SpendRecord {
        owner,
        draws,
        seq: unsigned(row.get(3), "spend seq")?,
        created_at_ms: unsigned(row.get(5), "spend created_at")?,
        spend_id,
        user,
        credits,
        state,
    })
}
