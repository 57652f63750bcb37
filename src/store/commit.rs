//! The commit loop: the only writer of the data directory.
//!
//! It runs on its own OS thread, so the writes and the `fdatasync` never
//! block an async worker. Group commit: it takes every change that queued up
//! while the previous sync ran (up to [`GROUP_COMMITS_MAX`]), makes them
//! durable as one group (sled: one journal record and one `fdatasync`, then
//! applied to sled; PostgreSQL: one transaction), then answers them all. A
//! failed write or sync is answered as a failure to every change in the group
//! and to every change after it: the loop never writes again, so nothing that
//! was not durable is ever acknowledged. The failure says whether the group
//! may be on disk ([`CommitFailed::Unconfirmed`]: a failed flush or sync) or
//! is not ([`CommitFailed::NotApplied`]), since only the latter may be
//! answered "nothing was applied". An empty change is a barrier: it is
//! answered once every change queued before it is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;

use super::{Store, StoreError, WriteSet};

/// The most changes waiting for the commit loop; past it, new changes are
/// refused (503) instead of queueing without bound.
pub const QUEUE_CAPACITY: usize = 65_536;

/// The most changes made durable by one sync.
pub const GROUP_COMMITS_MAX: usize = 4_096;

/// How changes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommitMode {
    /// One flush + sync for every change that arrived while the last one ran.
    Group,
    /// One flush + sync per change: the baseline group commit is measured against.
    PerChange,
}

impl std::str::FromStr for CommitMode {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "group" => Ok(Self::Group),
            "per-change" => Ok(Self::PerChange),
            other => Err(format!("unknown commit mode {other:?} (expected group or per-change)")),
        }
    }
}

/// The answer the commit loop sends when a change is durable (or is not).
pub type CommitReceipt = oneshot::Receiver<Result<(), CommitFailed>>;

/// A change could not be made durable; the message says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitFailed {
    /// Nothing of the change reached storage.
    #[error("not written: {0}")]
    NotApplied(String),
    /// The change was handed to storage, but its durability could not be
    /// confirmed: it may be on disk after a restart, or not.
    #[error("written but not confirmed durable: {0}")]
    Unconfirmed(String),
}

struct Commit {
    writes: WriteSet,
    done: oneshot::Sender<Result<(), CommitFailed>>,
}

/// The highest ledger sequence number whose group the store has applied:
/// a read that starts after loading it sees every change up to it. A
/// prefetch notes it before reading (`decide::Prefetched::seen`).
#[derive(Debug, Clone)]
pub struct Visible(Arc<AtomicU64>);

impl Visible {
    pub fn new(seq: u64) -> Self {
        Self(Arc::new(AtomicU64::new(seq)))
    }

    pub fn load(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn advance(&self, seq: u64) {
        self.0.fetch_max(seq, Ordering::AcqRel);
    }
}

/// The sending side of the commit loop. Cheap to clone; the loop ends when
/// every clone is dropped and the queue is empty.
#[derive(Clone)]
pub struct CommitQueue {
    sender: SyncSender<Commit>,
    visible: Visible,
}

impl CommitQueue {
    /// Starts the commit loop on its own thread;
    /// `last_seq` is the last ledger sequence number already in the store.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(store: Store, mode: CommitMode, last_seq: u64) -> Result<(Self, JoinHandle<()>), StoreError> {
        let (sender, receiver) = mpsc::sync_channel(QUEUE_CAPACITY);
        let visible = Visible::new(last_seq);
        let applied = visible.clone();
        let thread = std::thread::Builder::new()
            .name("creditd-commit".into())
            .spawn(move || run(&store, &receiver, mode, &applied))?;
        Ok((Self { sender, visible }, thread))
    }

    /// What the store shows, as of the last group applied.
    pub fn visible(&self) -> Visible {
        self.visible.clone()
    }

    /// A receipt that resolves once every change queued before it is durable
    /// (or has failed): what a replay waits for before repeating an answer.
    ///
    /// # Errors
    /// As [`CommitQueue::submit`].
    pub fn barrier(&self) -> Result<CommitReceipt, StoreError> {
        self.submit(WriteSet::default())
    }

    /// Queues a change; the receipt resolves once it is on stable storage.
    ///
    /// # Errors
    /// [`StoreError::Overloaded`] when the queue is full, [`StoreError::Failed`]
    /// when the loop has stopped.
    pub fn submit(&self, writes: WriteSet) -> Result<CommitReceipt, StoreError> {
        let (done, receipt) = oneshot::channel();
        match self.sender.try_send(Commit { writes, done }) {
            Ok(()) => Ok(receipt),
            Err(TrySendError::Full(_)) => Err(StoreError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Failed),
        }
    }
}

fn run(store: &Store, receiver: &Receiver<Commit>, mode: CommitMode, visible: &Visible) {
    let group_max = match mode {
        CommitMode::Group => GROUP_COMMITS_MAX,
        CommitMode::PerChange => 1,
    };
    // The first failure: every later group is refused unwritten.
    let mut failure: Option<String> = None;
    let mut group = Vec::with_capacity(group_max);
    while let Ok(first) = receiver.recv() {
        group.push(first);
        while group.len() < group_max {
            match receiver.try_recv() {
                Ok(next) => group.push(next),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let outcome = match &failure {
            Some(earlier) => Err(CommitFailed::NotApplied(format!("storage failed earlier: {earlier}"))),
            // Only barriers: everything queued before them was in an earlier group, already answered.
            None if group.iter().all(|commit| commit.writes.is_empty()) => Ok(()),
            None => write_group(store, &group),
        };
        if outcome.is_ok() {
            // Applied: a read from now on sees the group (before anyone is answered).
            if let Some(last) = group.iter().filter_map(|commit| commit.writes.last_ledger_seq()).max() {
                visible.advance(last);
            }
        }
        if let Err(error) = &outcome {
            if failure.is_none() {
                tracing::error!(error = %error, changes = group.len(), "storage failed: refusing every further write");
                failure = Some(error.to_string());
            }
        }
        for commit in group.drain(..) {
            // A caller that gave up waiting is not an error: its change is durable or failed all the same.
            let _ = commit.done.send(outcome.clone());
        }
    }
}

fn write_group(store: &Store, group: &[Commit]) -> Result<(), CommitFailed> {
    let started = Instant::now();
    let result = store.write_durably(group.iter().map(|commit| &commit.writes));
    let size = u32::try_from(group.len()).unwrap_or(u32::MAX);
    metrics::histogram!("creditd_commit_batch_size").record(f64::from(size));
    metrics::histogram!("creditd_commit_duration_seconds").record(started.elapsed().as_secs_f64());
    result.map_err(|error| match error {
        StoreError::Unconfirmed(reason) | StoreError::Fenced(reason) => CommitFailed::Unconfirmed(reason),
        other => CommitFailed::NotApplied(other.to_string()),
    })
}
