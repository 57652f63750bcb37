//! Restores (SPEC §11): verified backups (see [`super::verify_all`])
//! replayed, with every rule of SPEC §4 checked, into a new store, which
//! is then checked as `creditd check` would.

use std::path::{Path, PathBuf};

use super::{chain, read, verify_all, BackupError, Fingerprint, Verified};
use crate::clock::Clock;
use crate::domain::Money;
use crate::replay::{idempotency_record, Replay};
use crate::store::records::{LedgerEntry, MetaRecord};
use crate::store::{SledStore, WriteSet};

/// Records written to the new store per durable batch during a restore.
const RESTORE_BATCH_WRITES: usize = 10_000;

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub files: Vec<Verified>,
    pub entries: u64,
    pub wallets: usize,
    pub up_to: u64,
    pub check: crate::check::CheckReport,
}

/// Writes `writes` durably once it holds a batch (or when `flush`).
fn write_batch(store: &SledStore, writes: &mut WriteSet, flush: bool) -> Result<(), BackupError> {
    if writes.len() >= RESTORE_BATCH_WRITES || (flush && !writes.is_empty()) {
        store.write_durably([&*writes])?;
        *writes = WriteSet::default();
    }
    Ok(())
}

/// Where a restore writes: a sled directory or a PostgreSQL database.
pub trait Sink {
    /// One ledger entry, in order, with the fingerprint behind its
    /// idempotency key when the backup carries one.
    ///
    /// # Errors
    /// The store refused the write.
    fn entry(&mut self, entry: &LedgerEntry, fingerprint: Option<Fingerprint>) -> Result<(), BackupError>;

    /// Every record the replay rebuilt and the store's facts, written last:
    /// the store is whole, and marked as creditd's, only once this returns.
    ///
    /// # Errors
    /// The store refused the write.
    fn finish(&mut self, replay: &Replay, meta: &MetaRecord) -> Result<(), BackupError>;
}

/// What [`restore_into`] did.
pub struct Replayed {
    pub files: Vec<Verified>,
    pub entries: u64,
    pub wallets: usize,
    pub up_to: u64,
}

/// Replays the entries of `verified` (from [`verify_all`]) with every rule
/// of SPEC §4 checked, and writes them and what they describe into `sink`.
///
/// # Errors
/// Backups that break the ledger's rules, or the sink's failure.
pub fn restore_into(verified: Vec<Verified>, sink: &mut dyn Sink, clock: &dyn Clock) -> Result<Replayed, BackupError> {
    let (ratio, currency, up_to) = chain(&verified)?;
    let mut replay = Replay::new(ratio, Money::zero(currency));
    let mut entries = 0u64;
    for file in &verified {
        read(&file.path, |entry, fingerprint| {
            if entry.seq < replay.state.next_seq {
                return Ok(()); // Already restored from an earlier, overlapping backup.
            }
            replay.apply(&entry);
            if let Some(first) = replay.violations.first() {
                return Err(BackupError::Ledger(first.clone()));
            }
            entries = entries.saturating_add(1);
            sink.entry(&entry, fingerprint)
        })?;
    }
    let meta = MetaRecord { ratio, created_at_ms: clock.now_ms() };
    sink.finish(&replay, &meta)?;
    Ok(Replayed { files: verified, entries, wallets: replay.wallets.len(), up_to })
}

/// A sled directory being restored into, in durable batches.
struct SledSink {
    store: SledStore,
    writes: WriteSet,
}

impl Sink for SledSink {
    fn entry(&mut self, entry: &LedgerEntry, fingerprint: Option<Fingerprint>) -> Result<(), BackupError> {
        if let Some(write) = fingerprint.and_then(|print| idempotency_record(entry, print)) {
            self.writes.push(write);
        }
        self.writes.ledger(entry.clone());
        write_batch(&self.store, &mut self.writes, false)
    }

    fn finish(&mut self, replay: &Replay, meta: &MetaRecord) -> Result<(), BackupError> {
        write_records(&self.store, replay, &mut self.writes)?;
        self.writes.meta(meta.clone());
        self.writes.inventory(replay.state.clone());
        write_batch(&self.store, &mut self.writes, true)?;
        self.store.mark()?;
        Ok(())
    }
}

/// Restores `files` (a full backup, then incremental ones) into a new store
/// in `directory`, which must be missing or empty, and checks the result.
///
/// # Errors
/// A file that does not verify, backups that do not chain or break the
/// ledger's rules, a directory that is not empty, a storage failure.
pub fn restore(files: &[PathBuf], directory: &Path, clock: &dyn Clock) -> Result<Restored, BackupError> {
    let verified = verify_all(files)?;
    let store = SledStore::create(directory)?;
    let mut sink = SledSink { store, writes: WriteSet::default() };
    let replayed = restore_into(verified, &mut sink, clock)?;
    drop(sink);
    // sled releases the directory's lock a moment after its last handle is
    // dropped (its background flush ends first): wait for it rather than fail.
    let check = SledStore::when_unlocked(std::time::Duration::from_secs(30), || crate::check::check(directory))
        .map_err(|error| BackupError::Check(error.to_string()))?;
    if !check.passed() {
        return Err(BackupError::Check(check.to_string()));
    }
    let Replayed { files, entries, wallets, up_to } = replayed;
    Ok(Restored { files, entries, wallets, up_to, check })
}

/// Every record the ledger describes besides the entries themselves.
fn write_records(store: &SledStore, replay: &Replay, writes: &mut WriteSet) -> Result<(), BackupError> {
    for (user, wallet) in &replay.wallets {
        writes.push(crate::store::Write::Wallet { user: user.clone(), record: wallet.clone(), expected: None });
        write_batch(store, writes, false)?;
    }
    for hold in replay.holds.values() {
        writes.hold(hold.clone());
        write_batch(store, writes, false)?;
    }
    for spend in replay.spends.values() {
        writes.spend(spend.clone());
        write_batch(store, writes, false)?;
    }
    for (package, settings) in &replay.packages {
        writes.push(crate::store::Write::Package { id: package.clone(), settings: settings.clone() });
    }
    for deadline in replay.grant_deadlines() {
        writes.push(crate::store::Write::GrantDeadline(deadline));
    }
    for day in replay.expired_by_day.values() {
        writes.push(crate::store::Write::ExpiredDay(*day));
    }
    // Revoked keys too: a revocation survives a restore (SPEC §9.1).
    for key in replay.api_keys.values() {
        writes.api_key(key.clone());
    }
    Ok(())
}
