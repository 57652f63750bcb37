//! The sled store: one sled tree holds the ledger, the wallets, the
//! inventory record and the idempotency keys (see [`keys`]). Writes happen
//! only in the commit loop, one group at a time: the group is written to the
//! journal and `fdatasync`ed (what makes it durable, [`super::journal`]),
//! then applied to sled (key by key, ledger entries first), before any of
//! its changes is answered. sled itself is flushed, and its log file
//! `fdatasync`ed, at each checkpoint, every 250 ms: sled's own flush
//! stops at `sync_file_range`, which neither writes the file's metadata nor
//! empties the disk's cache.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::journal::{self, Journal};
use super::records::{
    self, HoldRecord, HoldState, IdempotencyRecord, InventoryRecord, LedgerEntry, MetaRecord, Operation, SpendRecord,
    SpendState, WalletRecord,
};
use super::writes::{Write, WriteSet};
use super::{codec, keys, StorageFaults, StoreError, CACHE_BYTES_DEFAULT, LEDGER_PAGE_MAX};
use crate::domain::grants::GrantDeadline;
use crate::domain::{GrantId, HoldId, IdempotencyKey, KeyId, SpendId, UserId};

/// The file `creditd init` leaves in a data directory, and its content: a
/// directory without it is not opened, so sled never writes into a
/// directory that is not creditd's.
pub const MARK_FILE: &str = "CREDITD_STORE";
const MARK: &str = "creditd sled store, layout 1\n";

/// A handle on the data directory. Cheap to clone.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    /// sled's log file, kept open to `fdatasync` it after each flush.
    log_file: Arc<File>,
    /// What makes a group durable before sled is; the commit loop's alone.
    durability: Arc<Mutex<Durability>>,
    directory: PathBuf,
    faults: Option<Arc<dyn StorageFaults>>,
}

/// The journal and where it stands.
struct Durability {
    journal: Journal,
    /// The number the next group's journal record gets.
    next_group: u64,
    /// A group failed between its journal write and its sled writes: sled
    /// lacks what the journal may hold, so the journal is never emptied
    /// again in this process (the next start replays it).
    broken: bool,
}

impl SledStore {
    /// Opens the store `creditd init` made in `directory`.
    ///
    /// # Errors
    /// See [`Store::open_with_cache`].
    pub fn open(directory: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(directory, CACHE_BYTES_DEFAULT)
    }

    /// Runs `open` (of a store or of `check`) again while sled's file lock
    /// is still held by a store of this process that is closing: sled
    /// releases it once its last background write ends, a moment after the
    /// last handle is dropped, and later on a loaded machine. For in-process
    /// restarts (tests, tools); a second process gets the error at once.
    ///
    /// # Errors
    /// `open`'s error, once it is not the lock or `wait` has passed.
    pub fn when_unlocked<T, E: std::fmt::Display>(
        wait: std::time::Duration,
        mut open: impl FnMut() -> Result<T, E>,
    ) -> Result<T, E> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match open() {
                Err(error) if error.to_string().contains("could not acquire lock") => {
                    if std::time::Instant::now() >= deadline {
                        return Err(error);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => return other,
            }
        }
    }

    /// Opens the store `creditd init` made in `directory`, with a page cache
    /// of `cache_bytes`. Never creates anything: a missing or empty directory
    /// is [`StoreError::Uninitialised`], one without creditd's records is
    /// [`StoreError::Foreign`], so an unmounted volume is never mistaken for
    /// a new ledger.
    ///
    /// # Errors
    /// Those, or the directory cannot be locked or read.
    pub fn open_with_cache(directory: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let shown = directory.display().to_string();
        let empty = match std::fs::read_dir(directory) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => true,
            Err(error) => return Err(error.into()),
            Ok(mut entries) => entries.next().is_none(),
        };
        if empty {
            return Err(StoreError::Uninitialised(shown));
        }
        // sled writes to any directory it opens: look for init's mark first.
        let marked = std::fs::read(directory.join(MARK_FILE)).is_ok_and(|mark| mark == MARK.as_bytes());
        if !marked || !directory.join("db").is_file() {
            return Err(StoreError::Foreign(shown));
        }
        let store = Self::open_sled(directory, cache_bytes)?;
        if store.meta()?.is_none() {
            return Err(StoreError::Foreign(shown));
        }
        Ok(store)
    }

    /// Marks the directory as creditd's, once its first records are durable:
    /// a crash before this leaves a directory both `init` and `open` refuse.
    ///
    /// # Errors
    /// The mark cannot be written or synced.
    pub fn mark(&self) -> Result<(), StoreError> {
        let path = self.directory.join(MARK_FILE);
        let mut file = OpenOptions::new().write(true).create_new(true).open(&path)?;
        std::io::Write::write_all(&mut file, MARK.as_bytes())?;
        file.sync_all()?;
        sync_directory(&self.directory)?;
        Ok(())
    }

    /// Makes a new, empty sled store in `directory`, which must be missing
    /// or empty; the caller writes the first records and then [`Store::mark`]s
    /// it (`engine::init`).
    ///
    /// # Errors
    /// [`StoreError::NotEmpty`], or the directory cannot be created or synced.
    pub fn create(directory: &Path) -> Result<Self, StoreError> {
        if std::fs::read_dir(directory).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(StoreError::NotEmpty(directory.display().to_string()));
        }
        std::fs::create_dir_all(directory)?;
        let store = Self::open_sled(directory, CACHE_BYTES_DEFAULT)?;
        // sled fsyncs neither its directory nor the `conf` file it creates there.
        store.db.flush()?;
        store.log_file.sync_all()?;
        File::open(directory.join("conf"))?.sync_all()?;
        sync_directory(directory)?;
        if let Some(parent) = directory.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_directory(parent)?;
        }
        Ok(store)
    }

    /// Opens sled, then replays the journal into it and checkpoints, so that
    /// nothing reads the store before it holds every acknowledged group.
    /// Every group in the journal is replayed, in order: sled may hold any
    /// part of what was applied since the last checkpoint, and each
    /// operation writes or removes a whole value, so replaying them all ends
    /// in the state of the last group whatever sled had kept.
    fn open_sled(directory: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(directory).cache_capacity(cache_bytes).open()?;
        let log_file = OpenOptions::new().read(true).write(true).open(directory.join("db"))?;
        let (journal, groups) = Journal::open(directory)?;
        let next_group = groups.last().map_or(1, |group| group.number + 1);
        if !groups.is_empty() {
            tracing::info!(groups = groups.len(), "replaying the journal into sled");
        }
        for group in groups {
            apply(&db, group.operations)?;
        }
        let durability = Durability { journal, next_group, broken: false };
        let store = Self {
            db,
            log_file: Arc::new(log_file),
            durability: Arc::new(Mutex::new(durability)),
            directory: directory.to_owned(),
            faults: None,
        };
        // Always, even with nothing to replay: emptying the journal also drops
        // a torn last record, which new records must never follow (reading
        // stops at the first bad record).
        store.sync()?;
        Ok(store)
    }

    /// The same store, with `faults` injected into every later write (tests only).
    #[must_use]
    pub fn with_faults(mut self, faults: Arc<dyn StorageFaults>) -> Self {
        self.faults = Some(faults);
        self
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    fn get<T: codec::Record>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.db.get(key)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// # Errors
    /// A read or decode failure.
    pub fn meta(&self) -> Result<Option<MetaRecord>, StoreError> {
        self.get(keys::META)
    }

    /// # Errors
    /// A read or decode failure.
    pub fn inventory(&self) -> Result<Option<InventoryRecord>, StoreError> {
        self.get(keys::INVENTORY)
    }

    /// # Errors
    /// A read or decode failure.
    pub fn wallet(&self, user: &UserId) -> Result<Option<WalletRecord>, StoreError> {
        self.get(&keys::wallet(user))
    }

    /// # Errors
    /// A read or decode failure.
    pub fn idempotency(
        &self,
        operation: Operation,
        caller: Option<&KeyId>,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.get(&keys::idempotency(operation, caller, key))
    }

    /// # Errors
    /// A read or decode failure.
    pub fn ledger_entry(&self, seq: u64) -> Result<Option<LedgerEntry>, StoreError> {
        self.get(&keys::ledger(seq))
    }

    /// # Errors
    /// A read or decode failure.
    pub fn hold(&self, id: &HoldId) -> Result<Option<HoldRecord>, StoreError> {
        self.get(&keys::hold(id))
    }

    /// # Errors
    /// A read or decode failure.
    pub fn spend(&self, id: &SpendId) -> Result<Option<SpendRecord>, StoreError> {
        self.get(&keys::spend(id))
    }

    /// Every hold, open or not.
    pub fn holds(&self) -> impl Iterator<Item = Result<HoldRecord, StoreError>> + '_ {
        self.db.scan_prefix([keys::HOLD_PREFIX]).map(|item| Ok(codec::decode(&item?.1)?))
    }

    /// The holds still open (their deadline may have passed while stopped),
    /// read through the open-hold index.
    ///
    /// # Errors
    /// A read or decode failure, or an index entry without its open hold.
    pub fn open_holds(&self) -> Result<Vec<HoldRecord>, StoreError> {
        let mut open = Vec::new();
        for id in self.open_hold_ids()? {
            let hold = self.hold(&id)?.ok_or_else(|| StoreError::Layout(format!("open hold {id} has no record")))?;
            if hold.state != HoldState::Open {
                return Err(StoreError::Layout(format!("hold {id} is indexed as open but is {}", hold.state.name())));
            }
            open.push(hold);
        }
        Ok(open)
    }

    /// The operators' package settings, by package id.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn package_overrides(&self) -> Result<Vec<(String, records::PackageOverride)>, StoreError> {
        self.db
            .scan_prefix([keys::PACKAGE_PREFIX])
            .map(|item| {
                let (key, value) = item?;
                Ok((String::from_utf8_lossy(&key[1..]).into_owned(), codec::decode(&value)?))
            })
            .collect()
    }

    /// The `limit` most recent alert events, oldest first.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn recent_alerts(&self, limit: usize) -> Result<Vec<records::AlertEventRecord>, StoreError> {
        let mut events: Vec<records::AlertEventRecord> = self
            .db
            .scan_prefix([keys::ALERT_PREFIX])
            .rev()
            .take(limit)
            .map(|item| Ok(codec::decode(&item?.1)?))
            .collect::<Result<_, StoreError>>()?;
        events.reverse();
        Ok(events)
    }

    /// Provider credits consumed (spends, positive) and given back (refunds,
    /// negative) by ledger entries after `since_ms`, newest first.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn consumption_since(&self, since_ms: u64, ratio: crate::domain::Ratio) -> Result<Vec<(u64, i64)>, StoreError> {
        let mut consumption = Vec::new();
        for item in self.db.scan_prefix([keys::LEDGER_PREFIX]).rev() {
            let entry: LedgerEntry = codec::decode(&item?.1)?;
            if entry.at_ms <= since_ms {
                break;
            }
            let (credits, sign) = match entry.kind {
                records::EntryKind::Spend { credits, .. } => (credits, 1),
                records::EntryKind::Refund { credits, .. } => (credits, -1),
                _ => continue,
            };
            let provider =
                ratio.backing(credits).map_or(0, |provider| i64::try_from(provider.get()).unwrap_or(i64::MAX));
            consumption.push((entry.at_ms, provider.saturating_mul(sign)));
        }
        Ok(consumption)
    }

    /// The ids in the open-hold index, whatever their records say (for `check`).
    ///
    /// # Errors
    /// A read failure or a malformed key.
    pub fn open_hold_ids(&self) -> Result<Vec<HoldId>, StoreError> {
        self.db
            .scan_prefix([keys::OPEN_HOLD_PREFIX])
            .map(|item| {
                let (key, _) = item?;
                std::str::from_utf8(&key[1..])
                    .ok()
                    .and_then(|id| HoldId::parse(id).ok())
                    .ok_or_else(|| StoreError::Layout(format!("bad open-hold key {key:?}")))
            })
            .collect()
    }

    /// Where the pruning of idempotency records stopped, if it ever ran.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn prune_cursor(&self) -> Result<Option<records::PruneCursor>, StoreError> {
        self.get(keys::PRUNE_CURSOR)
    }

    /// Every API key ever made, revoked ones included.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn api_keys(&self) -> Result<Vec<records::ApiKeyRecord>, StoreError> {
        self.db.scan_prefix([keys::API_KEY_PREFIX]).map(|item| Ok(codec::decode(&item?.1)?)).collect()
    }

    /// The credits expired by UTC day (SPEC §13), oldest first.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn expired_days(&self) -> Result<Vec<records::ExpiredDay>, StoreError> {
        self.db.scan_prefix([keys::EXPIRED_DAY_PREFIX]).map(|item| Ok(codec::decode(&item?.1)?)).collect()
    }

    /// The deadlines of the grants not closed that will expire (SPEC §13).
    ///
    /// # Errors
    /// A read failure, or a key or user id that is not one.
    pub fn grant_deadlines(&self) -> Result<Vec<GrantDeadline>, StoreError> {
        let mut deadlines = Vec::new();
        for item in self.db.scan_prefix([keys::GRANT_DEADLINE_PREFIX]) {
            let (key, value) = item?;
            let (expires_at_ms, grant) = keys::grant_deadline_parts(&key)
                .ok_or_else(|| StoreError::Layout("a bad grant deadline key".into()))?;
            let user = std::str::from_utf8(&value)
                .ok()
                .and_then(|user| UserId::parse(user).ok())
                .ok_or_else(|| StoreError::Layout(format!("grant deadline {grant} names no user")))?;
            let remaining = crate::domain::UserCredits::ZERO;
            deadlines.push(GrantDeadline { expires_at_ms, grant: GrantId(grant), user, open: true, remaining });
        }
        Ok(deadlines)
    }

    /// The spends still open (their time may have run out while stopped),
    /// read through the open-spend index.
    ///
    /// # Errors
    /// A read or decode failure, or an index entry without its open spend.
    pub fn open_spends(&self) -> Result<Vec<SpendRecord>, StoreError> {
        let mut open = Vec::new();
        for id in self.open_spend_ids()? {
            let spend = self.spend(&id)?.ok_or_else(|| StoreError::Layout(format!("open spend {id} has no record")))?;
            if spend.state != SpendState::Open {
                return Err(StoreError::Layout(format!("spend {id} is indexed as open but is {}", spend.state.name())));
            }
            open.push(spend);
        }
        Ok(open)
    }

    /// The ids in the open-spend index, whatever their records say (for `check`).
    ///
    /// # Errors
    /// A read failure or a malformed key.
    pub fn open_spend_ids(&self) -> Result<Vec<SpendId>, StoreError> {
        self.db
            .scan_prefix([keys::OPEN_SPEND_PREFIX])
            .map(|item| {
                let (key, _) = item?;
                std::str::from_utf8(&key[1..])
                    .ok()
                    .and_then(|id| SpendId::parse(id).ok())
                    .ok_or_else(|| StoreError::Layout(format!("bad open-spend key {key:?}")))
            })
            .collect()
    }

    /// Every spend.
    pub fn spends(&self) -> impl Iterator<Item = Result<SpendRecord, StoreError>> + '_ {
        self.db.scan_prefix([keys::SPEND_PREFIX]).map(|item| Ok(codec::decode(&item?.1)?))
    }

    /// Up to `limit` (at most [`LEDGER_PAGE_MAX`]) entries with `seq > after`, in order.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn ledger_page(&self, after: u64, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        let start = keys::ledger(after.saturating_add(1));
        let end = keys::ledger(u64::MAX);
        self.db.range(start..=end).take(limit.min(LEDGER_PAGE_MAX)).map(|item| Ok(codec::decode(&item?.1)?)).collect()
    }

    /// Every ledger entry in order, for replay.
    pub fn ledger(&self) -> impl Iterator<Item = Result<(u64, LedgerEntry), StoreError>> + '_ {
        self.db.scan_prefix([keys::LEDGER_PREFIX]).map(|item| {
            let (key, value) = item?;
            let seq = keys::ledger_seq(&key).ok_or_else(|| StoreError::Layout(format!("bad ledger key {key:?}")))?;
            Ok((seq, codec::decode(&value)?))
        })
    }

    /// Every wallet, for start-up checks and `creditd check`.
    pub fn wallets(&self) -> impl Iterator<Item = Result<(UserId, WalletRecord), StoreError>> + '_ {
        self.db.scan_prefix([keys::WALLET_PREFIX]).map(|item| {
            let (key, value) = item?;
            let id = std::str::from_utf8(&key[1..])
                .ok()
                .and_then(|id| UserId::parse(id).ok())
                .ok_or_else(|| StoreError::Layout(format!("bad wallet key {key:?}")))?;
            Ok((id, codec::decode(&value)?))
        })
    }

    /// The recent ledger entries that moved `wallet` (at most `limit`), oldest first.
    ///
    /// # Errors
    /// A read or decode failure, or a wallet pointing at a missing entry.
    pub fn wallet_entries(&self, wallet: &WalletRecord, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        let skip = wallet.recent.len().saturating_sub(limit);
        wallet.recent[skip..]
            .iter()
            .map(|&seq| {
                self.ledger_entry(seq)?
                    .ok_or_else(|| StoreError::Layout(format!("a wallet points at missing ledger entry {seq}")))
            })
            .collect()
    }

    /// Makes every write set durable as one group, then applies them to sled
    /// atomically. Used only by the commit loop (and by `init`, restore and
    /// tests that stage a directory).
    ///
    /// # Errors
    /// A precondition, write, sync or apply failure: then nothing may be
    /// acknowledged, and the caller must stop writing. A failure once the
    /// group's journal record was being written is [`StoreError::Unconfirmed`]
    /// (the next start replays the record if it is whole); any other error
    /// means nothing was written.
    pub fn write_durably<'a>(&self, sets: impl IntoIterator<Item = &'a WriteSet> + Clone) -> Result<(), StoreError> {
        // A wallet may change more than once in a group (the inventory decides
        // a user's next change before the last is durable): each write expects
        // the version the write before it left.
        let mut versions: HashMap<&UserId, u64> = HashMap::new();
        for set in sets.clone() {
            for write in set.writes() {
                if let Write::Wallet { user, expected, record } = write {
                    let version = match versions.get(user) {
                        Some(version) => *version,
                        None => self.wallet(user)?.map_or(0, |wallet| wallet.version),
                    };
                    versions.insert(user, record.version);
                    let Some(expected) = *expected else { continue };
                    if version != expected {
                        return Err(StoreError::Precondition(format!(
                            "wallet {:?} is at version {version}, the write expects {expected}",
                            user.as_str()
                        )));
                    }
                }
            }
        }
        let mut durability = self.durability.lock().unwrap_or_else(PoisonError::into_inner);
        if durability.broken {
            return Err(StoreError::Failed);
        }
        let number = durability.next_group;
        let mut group = Group::default();
        for set in sets.clone() {
            for write in set.writes().iter().filter(|write| matches!(write, Write::Ledger(_))) {
                encode_into(&mut group, write)?;
            }
        }
        for set in sets {
            for write in set.writes().iter().filter(|write| !matches!(write, Write::Ledger(_))) {
                encode_into(&mut group, write)?;
            }
        }
        durability.journal.begin(number);
        for operation in &group.operations {
            durability.journal.add(operation);
        }
        if let Some(faults) = &self.faults {
            faults.before_apply()?;
        }
        // From here on a failure may leave the group on disk or not.
        durability.broken = true;
        let unconfirmed = |error: StoreError| StoreError::Unconfirmed(error.to_string());
        durability.journal.write().map_err(|error| unconfirmed(error.into()))?;
        if let Some(faults) = &self.faults {
            faults.before_sync().map_err(|error| unconfirmed(error.into()))?;
        }
        durability.journal.sync().map_err(|error| unconfirmed(error.into()))?;
        apply(&self.db, group.operations).map_err(|error| unconfirmed(error.into()))?;
        durability.next_group += 1;
        durability.broken = false;
        if durability.journal.checkpoint_due() {
            self.checkpoint(&mut durability).map_err(unconfirmed)?;
        }
        Ok(())
    }

    /// Makes sled durable (flush, then `fdatasync` of its log) and empties
    /// the journal, whose groups sled now holds; at shutdown and about once
    /// a second ([`journal::CHECKPOINT_INTERVAL`]).
    ///
    /// # Errors
    /// The flush or a sync failed.
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut durability = self.durability.lock().unwrap_or_else(PoisonError::into_inner);
        self.checkpoint(&mut durability)
    }

    fn checkpoint(&self, durability: &mut Durability) -> Result<(), StoreError> {
        self.db.flush()?;
        self.log_file.sync_data()?;
        if !durability.broken {
            durability.journal.reset()?;
        }
        Ok(())
    }
}

fn sync_directory(directory: &Path) -> Result<(), std::io::Error> {
    File::open(directory)?.sync_all()
}

/// A group's operations as sled keys and values, in the order they are
/// journaled and applied: ledger entries first, so that a concurrent reader
/// never finds a wallet pointing at an entry not yet there.
#[derive(Default)]
struct Group {
    operations: Vec<journal::Operation>,
}

impl Group {
    fn insert(&mut self, key: &[u8], value: Vec<u8>) {
        self.operations.push(journal::Operation::Put(key.to_vec(), value));
    }

    fn remove(&mut self, key: &[u8]) {
        self.operations.push(journal::Operation::Remove(key.to_vec()));
    }
}

/// Applies operations to sled one by one, in order (a group after its
/// journal sync, and the journal's groups at open), not as one
/// `sled::Batch`: sled writes its log buffer out twice for every batch
/// (`PageCache::pin_log`), and the journal, not sled, makes a group atomic
/// on recovery.
fn apply(db: &sled::Db, operations: Vec<journal::Operation>) -> Result<(), sled::Error> {
    for operation in operations {
        match operation {
            journal::Operation::Put(key, value) => db.insert(key, value)?,
            journal::Operation::Remove(key) => db.remove(key)?,
        };
    }
    Ok(())
}

/// One write as sled keys and encoded values.
fn encode_into(batch: &mut Group, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::Meta(record) => batch.insert(keys::META, codec::encode(record)?),
        Write::Inventory(record) => batch.insert(keys::INVENTORY, codec::encode(record)?),
        Write::Ledger(entry) => batch.insert(&keys::ledger(entry.seq), codec::encode(entry)?),
        Write::Wallet { user, record, .. } => batch.insert(&keys::wallet(user), codec::encode(record)?),
        Write::Remember { operation, caller, key, record } => {
            batch.insert(&keys::idempotency(*operation, caller.as_ref(), key), codec::encode(record)?);
        }
        Write::Forget { operation, caller, key } => batch.remove(&keys::idempotency(*operation, caller.as_ref(), key)),
        Write::Hold(record) => {
            batch.insert(&keys::hold(&record.hold_id), codec::encode(record)?);
            if record.state == HoldState::Open {
                batch.insert(&keys::open_hold(&record.hold_id), Vec::new());
            } else {
                batch.remove(&keys::open_hold(&record.hold_id));
            }
        }
        Write::Spend(record) => {
            batch.insert(&keys::spend(&record.spend_id), codec::encode(record)?);
            if record.state == SpendState::Open {
                batch.insert(&keys::open_spend(&record.spend_id), Vec::new());
            } else {
                batch.remove(&keys::open_spend(&record.spend_id));
            }
        }
        Write::Package { id, settings } => batch.insert(&keys::package(id), codec::encode(settings)?),
        Write::Alert(event) => batch.insert(&keys::alert(event.id), codec::encode(event)?),
        Write::ForgetAlert(id) => batch.remove(&keys::alert(*id)),
        Write::PruneCursor(cursor) => batch.insert(keys::PRUNE_CURSOR, codec::encode(cursor)?),
        Write::ApiKey(record) => batch.insert(&keys::api_key(&record.id), codec::encode(record)?),
        Write::ExpiredDay(day) => batch.insert(&keys::expired_day(day.day), codec::encode(day)?),
        Write::GrantDeadline(deadline) => {
            let key = keys::grant_deadline(deadline.expires_at_ms, deadline.grant.0);
            if deadline.open {
                batch.insert(&key, deadline.user.as_str().as_bytes().to_vec());
            } else {
                batch.remove(&key);
            }
        }
    }
    Ok(())
}
