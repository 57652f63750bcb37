//! The journal: what makes a group of the sled store durable (issue 16).
//!
//! A group is acknowledged once it is in the journal: one `write` of one
//! checksummed record and one `fdatasync` of one file that only grows. sled
//! stays the store of record for every read: the commit loop applies the
//! same group to sled right after the journal's sync, before it answers, so
//! whoever reads after an answer finds the change in sled as before. sled is
//! made durable behind the journal, in large steps: a *checkpoint* flushes
//! sled and `fdatasync`s its log, and only then empties the journal
//! ([`Journal::reset`]). So the journal always holds every group sled may
//! have lost with a crash; at start all of them are replayed into sled, in
//! order, and checkpointed before anything reads the store
//! (`SledStore::open`).
//!
//! Record layout (integers little-endian):
//!
//! ```text
//! u32 body length · u32 CRC-32 of the body · body:
//!   u8 version (1) · u64 group number · u32 operation count ·
//!   operations: u8 1 (put) · u32 key length · key · u32 value length · value
//!             | u8 2 (remove) · u32 key length · key
//! ```
//!
//! Keys and values are the sled store's own (each value a versioned record
//! of [`super::codec`]). Only the last record can be torn, since each is
//! synced before the next is written: reading stops at the first record
//! that is incomplete or fails its checksum, and that record was never
//! acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

/// The journal's file in the data directory.
pub const JOURNAL_FILE: &str = "journal";

/// The layout version of a journal record.
const RECORD_VERSION: u8 = 1;

/// Length and checksum before each body.
const HEADER_BYTES: usize = 8;

/// A checkpoint empties the journal once it holds this much...
pub const CHECKPOINT_BYTES: u64 = 8 << 20;

/// ...or once this long has passed since the last one: the journal a start
/// replays stays small (a few thousand groups' operations at most), so a
/// restart is quick (issue 16: ready ≤ 2 s), while a checkpoint (one sled
/// flush and one `fdatasync`) stays rare beside the groups' own syncs.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

const PUT: u8 = 1;
const REMOVE: u8 = 2;

/// One sled operation of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Put(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
}

/// A group read back from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub number: u64,
    pub operations: Vec<Operation>,
}

/// Why the journal cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal: {0}")]
    Io(#[from] std::io::Error),
    #[error("journal record {0} has unknown version {1}")]
    UnknownVersion(u64, u8),
    #[error("journal record is malformed: {0}")]
    Malformed(String),
    #[error("journal groups are not consecutive: {0} follows {1}")]
    Gap(u64, u64),
}

/// The open journal: only the commit loop writes it.
pub struct Journal {
    file: File,
    /// Bytes in the file.
    bytes: u64,
    last_checkpoint: Instant,
    /// The record being built, reused from group to group.
    record: Vec<u8>,
    operations: u32,
}

impl Journal {
    /// Opens (or creates, and makes its directory entry durable) the journal
    /// in `directory`, and reads every whole record in it.
    ///
    /// # Errors
    /// The file cannot be opened or read, or a whole record is not one this
    /// version wrote.
    pub fn open(directory: &Path) -> Result<(Self, Vec<Group>), JournalError> {
        let path = directory.join(JOURNAL_FILE);
        let existed = path.exists();
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        if !existed {
            file.sync_all()?;
            File::open(directory)?.sync_all()?;
        }
        let mut content = Vec::new();
        file.read_to_end(&mut content)?;
        let (groups, whole) = read_groups(&content)?;
        if whole < content.len() {
            // A torn last record: never synced, so never acknowledged.
            tracing::warn!(ignored_bytes = content.len() - whole, "journal: a torn record at the end is ignored");
        }
        let journal = Self {
            file,
            bytes: content.len() as u64,
            last_checkpoint: Instant::now(),
            record: Vec::with_capacity(64 * 1024),
            operations: 0,
        };
        Ok((journal, groups))
    }

    /// Starts the record of group `number`.
    pub fn begin(&mut self, number: u64) {
        self.record.clear();
        self.record.extend_from_slice(&[0; HEADER_BYTES]);
        self.record.push(RECORD_VERSION);
        self.record.extend_from_slice(&number.to_le_bytes());
        self.record.extend_from_slice(&0u32.to_le_bytes());
        self.operations = 0;
    }

    /// Adds an operation to the record begun.
    pub fn add(&mut self, operation: &Operation) {
        match operation {
            Operation::Put(key, value) => {
                self.record.push(PUT);
                push_bytes(&mut self.record, key);
                push_bytes(&mut self.record, value);
            }
            Operation::Remove(key) => {
                self.record.push(REMOVE);
                push_bytes(&mut self.record, key);
            }
        }
        self.operations += 1;
    }

    /// Writes the record begun at the end of the file (one `write`), without syncing.
    ///
    /// # Errors
    /// The write failed: the end of the file may hold part of the record.
    pub fn write(&mut self) -> Result<(), std::io::Error> {
        let count_at = HEADER_BYTES + 1 + 8;
        self.record[count_at..count_at + 4].copy_from_slice(&self.operations.to_le_bytes());
        let body = &self.record[HEADER_BYTES..];
        let length = u32::try_from(body.len())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a group over 4 GiB"))?;
        let checksum = crc32fast::hash(body);
        self.record[..4].copy_from_slice(&length.to_le_bytes());
        self.record[4..HEADER_BYTES].copy_from_slice(&checksum.to_le_bytes());
        self.file.write_all(&self.record)?;
        self.bytes += self.record.len() as u64;
        Ok(())
    }

    /// `fdatasync`: every record written is durable.
    ///
    /// # Errors
    /// The sync failed.
    pub fn sync(&self) -> Result<(), std::io::Error> {
        self.file.sync_data()
    }

    /// Whether sled should be checkpointed now.
    pub fn checkpoint_due(&self) -> bool {
        self.bytes > 0 && (self.bytes >= CHECKPOINT_BYTES || self.last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL)
    }

    /// Empties the journal once every group in it is durable in sled.
    ///
    /// # Errors
    /// The truncation or its sync failed.
    pub fn reset(&mut self) -> Result<(), std::io::Error> {
        self.file.set_len(0)?;
        self.file.sync_data()?;
        self.bytes = 0;
        self.last_checkpoint = Instant::now();
        Ok(())
    }
}

fn push_bytes(record: &mut Vec<u8>, bytes: &[u8]) {
    // A sled key or value is far under 4 GiB (codec::RECORD_BYTES_MAX).
    record.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    record.extend_from_slice(bytes);
}

/// Every whole record of `content`, in order, and how many bytes they fill.
fn read_groups(content: &[u8]) -> Result<(Vec<Group>, usize), JournalError> {
    let mut groups: Vec<Group> = Vec::new();
    let mut at = 0;
    while let Some(header) = content.get(at..at + HEADER_BYTES) {
        let length = u32::from_le_bytes(header[..4].try_into().unwrap_or_default()) as usize;
        let checksum = u32::from_le_bytes(header[4..].try_into().unwrap_or_default());
        let Some(body) = content.get(at + HEADER_BYTES..at + HEADER_BYTES + length) else { break };
        if length == 0 || crc32fast::hash(body) != checksum {
            break;
        }
        let group = parse_body(body)?;
        if let Some(previous) = groups.last() {
            if group.number != previous.number + 1 {
                return Err(JournalError::Gap(group.number, previous.number));
            }
        }
        groups.push(group);
        at += HEADER_BYTES + length;
    }
    Ok((groups, at))
}

/// Reads a body whose checksum matched.
fn parse_body(body: &[u8]) -> Result<Group, JournalError> {
    let mut reader = Reader { bytes: body, at: 0 };
    let version = reader.byte()?;
    let number = u64::from_le_bytes(reader.take(8)?.try_into().unwrap_or_default());
    if version != RECORD_VERSION {
        return Err(JournalError::UnknownVersion(number, version));
    }
    let count = reader.length()?;
    let mut operations = Vec::with_capacity(count.min(body.len()));
    for _ in 0..count {
        let operation = match reader.byte()? {
            PUT => {
                let key = reader.chunk()?;
                Operation::Put(key, reader.chunk()?)
            }
            REMOVE => Operation::Remove(reader.chunk()?),
            other => return Err(JournalError::Malformed(format!("operation {other} in group {number}"))),
        };
        operations.push(operation);
    }
    if reader.at != body.len() {
        return Err(JournalError::Malformed(format!("{} trailing bytes in group {number}", body.len() - reader.at)));
    }
    Ok(Group { number, operations })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Result<&[u8], JournalError> {
        let slice = self
            .bytes
            .get(self.at..self.at.saturating_add(count))
            .ok_or_else(|| JournalError::Malformed("a record ends early".into()))?;
        self.at += count;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, JournalError> {
        Ok(self.take(1)?[0])
    }

    fn length(&mut self) -> Result<usize, JournalError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()) as usize)
    }

    fn chunk(&mut self) -> Result<Vec<u8>, JournalError> {
        let length = self.length()?;
        Ok(self.take(length)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(directory: &Path, groups: &[(u64, Vec<Operation>)]) {
        let (mut journal, _) = Journal::open(directory).expect("opens");
        for (number, operations) in groups {
            journal.begin(*number);
            for operation in operations {
                journal.add(operation);
            }
            journal.write().expect("writes");
        }
        journal.sync().expect("syncs");
    }

    fn sample() -> Vec<(u64, Vec<Operation>)> {
        vec![
            (7, vec![Operation::Put(b"w1".to_vec(), vec![1, 2, 3]), Operation::Remove(b"i9".to_vec())]),
            (8, vec![Operation::Put(b"s".to_vec(), vec![])]),
        ]
    }

    #[test]
    fn groups_read_back_as_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        written(dir.path(), &sample());
        let (_, groups) = Journal::open(dir.path()).expect("opens");
        let expected: Vec<Group> =
            sample().into_iter().map(|(number, operations)| Group { number, operations }).collect();
        assert_eq!(groups, expected);
    }

    #[test]
    fn a_torn_or_damaged_last_record_is_ignored_and_the_rest_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        written(dir.path(), &sample());
        let path = dir.path().join(JOURNAL_FILE);
        let whole = std::fs::read(&path).expect("reads");
        for cut in [whole.len() - 1, whole.len() - 9, whole.len() - 20] {
            std::fs::write(&path, &whole[..cut]).expect("writes");
            let (_, groups) = Journal::open(dir.path()).expect("opens");
            assert_eq!(groups.iter().map(|g| g.number).collect::<Vec<_>>(), vec![7], "cut at {cut}");
        }
        let mut flipped = whole.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x40;
        std::fs::write(&path, &flipped).expect("writes");
        let (_, groups) = Journal::open(dir.path()).expect("opens");
        assert_eq!(groups.len(), 1, "a record failing its checksum is not replayed");
    }

    #[test]
    fn a_gap_between_groups_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        written(dir.path(), &[(1, vec![]), (3, vec![])]);
        assert!(matches!(Journal::open(dir.path()), Err(JournalError::Gap(3, 1))));
    }

    #[test]
    fn a_journal_over_its_size_limit_is_due_for_a_checkpoint_whatever_the_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut journal, _) = Journal::open(dir.path()).expect("opens");
        assert!(!journal.checkpoint_due(), "an empty journal never needs one");
        let value = vec![7u8; 64 * 1024];
        let mut number = 1;
        while journal.bytes < CHECKPOINT_BYTES {
            journal.begin(number);
            journal.add(&Operation::Put(b"w".to_vec(), value.clone()));
            journal.write().expect("writes");
            number += 1;
        }
        assert!(journal.checkpoint_due());
        journal.reset().expect("resets");
        assert!(!journal.checkpoint_due());
    }

    #[test]
    fn a_reset_journal_is_empty_and_takes_new_groups() {
        let dir = tempfile::tempdir().expect("temp dir");
        written(dir.path(), &sample());
        let (mut journal, _) = Journal::open(dir.path()).expect("opens");
        assert!(journal.checkpoint_due() || journal.bytes > 0);
        journal.reset().expect("resets");
        assert!(!journal.checkpoint_due());
        drop(journal);
        written(dir.path(), &[(9, vec![Operation::Remove(b"x".to_vec())])]);
        let (_, groups) = Journal::open(dir.path()).expect("opens");
        assert_eq!(groups.iter().map(|g| g.number).collect::<Vec<_>>(), vec![9]);
    }
}
