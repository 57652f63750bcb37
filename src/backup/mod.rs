//! Backups and restores (SPEC §11): the ledger up to one sequence number,
//! store-neutral, with a checksum.
//!
//! A backup is JSON lines (`docs/backup.md` documents every field): a
//! header (format, version, ratio, currency, the entries it holds:
//! `after < seq <= upTo`), one line per ledger entry with the fingerprint
//! of the request behind its idempotency key, and an end line with the
//! number of entries and the SHA-256 of every byte before it. The ledger is
//! the whole truth (SPEC §4.6): wallets, holds, spends, revenue, the kill
//! switch and the package settings are rebuilt from it ([`crate::replay`]);
//! the fingerprints let a restored store answer retries of old keys.
//!
//! A checksum only catches accidents: whoever can edit a backup can
//! recompute it, and a backup holds the hashes of the API keys, so a forged
//! one could plant a key. With `CREDITD_BACKUP_KEY`, `creditd backup` adds a
//! last line, the HMAC-SHA256 under that key of every byte before it
//! ([`sign`]), and `creditd restore` checks it before it reads anything else
//! ([`authenticate`]).
//!
//! The server writes a backup at a durable sequence number (the admin route
//! `GET /api/admin/backup`); `creditd backup` saves it and verifies it;
//! `creditd restore` verifies every file, checks that they chain, and
//! [`restore`] replays them into a new store and runs `check` on it. This
//! module is the file format only: it reads and writes files, never a store.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{Currency, Ratio};
use crate::store::records::LedgerEntry;

/// The `format` of every backup's header.
pub const FORMAT: &str = "creditd-backup";
/// The layout version this build writes. It also reads version 1, whose
/// entries have no `caller` and no API key kinds (written before SPEC §9.1).
pub const VERSION: u32 = 2;
/// The oldest layout version this build reads.
pub const VERSION_OLDEST: u32 = 1;

/// The longest line a backup may hold (an entry is a few hundred bytes).
const LINE_BYTES_MAX: usize = 64 * 1024;

/// A request fingerprint: SHA-256 of its canonical fields.
pub type Fingerprint = [u8; 32];

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}, line {line}: {reason}")]
    Format { path: String, line: u64, reason: String },
    #[error("{path}: the checksum does not match: the file is damaged or incomplete")]
    Checksum { path: String },
    #[error(
        "{path}: {reason}; it was not restored (a backup is authenticated with the CREDITD_BACKUP_KEY that made it)"
    )]
    Unauthenticated { path: String, reason: &'static str },
    #[error("the backups do not chain: {0}")]
    Chain(String),
    #[error("the backups break the ledger's rules, nothing was restored: {0}")]
    Ledger(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the restored store fails check: {0}")]
    Check(String),
}

/// The first line of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// The store's ratio: provider credits per user credit.
    pub ratio: u64,
    /// The store's currency (ISO 4217).
    pub currency: String,
    /// The backup holds the entries with `after < seq <= up_to`.
    pub after: u64,
    pub up_to: u64,
    /// When the backup was taken (RFC 3339), for people.
    pub created_at: String,
}

/// One ledger entry, and the fingerprint of the request behind its
/// idempotency key (hex), when it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryLine {
    pub entry: LedgerEntry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// The last line: how many entries came before, and their checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub entries: u64,
    /// SHA-256 (hex) of every byte of the file before this line.
    pub sha256: String,
}

/// The optional line after the end line: the HMAC-SHA256 (hex), under the
/// backup key, of every byte of the file before this line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signature {
    pub hmac_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Line {
    Header(Header),
    Entry(EntryLine),
    End(End),
    Signature(Signature),
}

/// The shortest backup key (SPEC §11): 32 bytes, as many as the HMAC's hash.
pub const BACKUP_KEY_BYTES_MIN: usize = 32;

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts every key length"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Fingerprint> {
    let mut bytes = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (index, byte) in bytes.iter_mut().enumerate() {
        let pair = text.get(index.checked_mul(2)?..index.checked_mul(2)?.checked_add(2)?)?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(bytes)
}

/// Encodes a backup line by line, keeping the checksum of what it wrote.
pub struct Writer {
    hash: Sha256,
    entries: u64,
}

impl Writer {
    /// Starts a backup with its header line.
    pub fn start(header: &Header) -> (Self, Vec<u8>) {
        let mut writer = Self { hash: Sha256::new(), entries: 0 };
        let line = writer.line(&Line::Header(header.clone()));
        (writer, line)
    }

    fn line(&mut self, line: &Line) -> Vec<u8> {
        // Plain data with string keys: serialising it cannot fail.
        let mut bytes = serde_json::to_vec(line).unwrap_or_default();
        bytes.push(b'\n');
        self.hash.update(&bytes);
        bytes
    }

    /// One entry line.
    pub fn entry(&mut self, entry: LedgerEntry, fingerprint: Option<Fingerprint>) -> Vec<u8> {
        self.entries = self.entries.saturating_add(1);
        self.line(&Line::Entry(EntryLine { entry, fingerprint: fingerprint.as_ref().map(|bytes| hex(bytes)) }))
    }

    /// The end line, with the checksum of everything before it.
    pub fn end(self) -> Vec<u8> {
        let end = End { entries: self.entries, sha256: hex(&self.hash.finalize()) };
        let mut bytes = serde_json::to_vec(&Line::End(end)).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// The header of a checked backup file, and how many entries it holds.
#[derive(Debug, Clone)]
pub struct Verified {
    pub path: PathBuf,
    pub header: Header,
    pub entries: u64,
    pub sha256: String,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.display().to_string(), source }
}

/// Reads a backup file line by line, calling `on_entry` for each entry; checks
/// the header, the sequence numbers, the count and the checksum.
pub(crate) fn read(
    path: &Path,
    mut on_entry: impl FnMut(LedgerEntry, Option<Fingerprint>) -> Result<(), BackupError>,
) -> Result<Verified, BackupError> {
    let shown = path.display().to_string();
    let format = |line: u64, reason: String| BackupError::Format { path: shown.clone(), line, reason };
    let mut reader = BufReader::new(File::open(path).map_err(io_error(path))?);
    let mut hash = Sha256::new();
    let (mut header, mut next_seq, mut count) = (None::<Header>, 0u64, 0u64);
    let mut buffer = Vec::new();
    for number in 1u64.. {
        if read_line(&mut reader, &mut buffer).map_err(io_error(path))? == 0 {
            return Err(format(number, "the file ends before its end line: incomplete".into()));
        }
        if buffer.len() > LINE_BYTES_MAX || buffer.last() != Some(&b'\n') {
            return Err(format(number, "a line is too long or unterminated".into()));
        }
        let line: Line = serde_json::from_slice(&buffer).map_err(|error| format(number, error.to_string()))?;
        match (line, &header) {
            (Line::Header(found), None) => {
                if found.format != FORMAT || !(VERSION_OLDEST..=VERSION).contains(&found.version) {
                    let what = format!("format {:?} version {}", found.format, found.version);
                    let reads = format!("this build reads {FORMAT:?} versions {VERSION_OLDEST} to {VERSION}");
                    return Err(format(number, format!("{what}, {reads}")));
                }
                if found.after > found.up_to {
                    return Err(format(number, "after is beyond upTo".into()));
                }
                next_seq = found.after.saturating_add(1);
                header = Some(found);
            }
            (Line::Entry(line), Some(_)) => {
                if line.entry.seq != next_seq {
                    return Err(format(number, format!("entry {} where {next_seq} was due", line.entry.seq)));
                }
                let fingerprint = match line.fingerprint.as_deref() {
                    Some(text) => Some(unhex(text).ok_or_else(|| format(number, "a bad fingerprint".into()))?),
                    None => None,
                };
                next_seq = next_seq.saturating_add(1);
                count = count.saturating_add(1);
                on_entry(line.entry, fingerprint)?;
            }
            (Line::End(end), Some(found)) => {
                if hex(&hash.clone().finalize()) != end.sha256 {
                    return Err(BackupError::Checksum { path: shown });
                }
                if end.entries != count || next_seq != found.up_to.saturating_add(1) {
                    let what = format!("{count} entries, the header promises {}..={}", found.after, found.up_to);
                    return Err(format(number, what));
                }
                after_end(&mut reader, number).map_err(|(line, reason)| format(line, reason))?;
                let header = found.clone();
                return Ok(Verified { path: path.to_owned(), header, entries: count, sha256: end.sha256 });
            }
            _ => return Err(format(number, "a line out of place (header first, end last)".into())),
        }
        hash.update(&buffer);
    }
    Err(format(0, "too many lines".into()))
}

/// Reads the next line into `buffer` (cleared first), at most one byte past
/// [`LINE_BYTES_MAX`] so that a longer line is seen without being read
/// whole; answers the bytes read (0 at the end of the file).
fn read_line(reader: &mut impl BufRead, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
    buffer.clear();
    let limit = u64::try_from(LINE_BYTES_MAX).unwrap_or(u64::MAX).saturating_add(1);
    std::io::Read::take(reader, limit).read_until(b'\n', buffer)
}

/// What may follow the end line (number `end`): a signature line, then
/// nothing (it is checked by [`authenticate`] when a backup key is set).
fn after_end(reader: &mut impl BufRead, end: u64) -> Result<(), (u64, String)> {
    let mut rest = Vec::new();
    if read_line(reader, &mut rest).map_err(|error| (end + 1, error.to_string()))? == 0 {
        return Ok(());
    }
    match serde_json::from_slice::<Line>(&rest) {
        Ok(Line::Signature(_)) if rest.last() == Some(&b'\n') => {}
        _ => return Err((end + 1, "only a signature line may follow the end line".into())),
    }
    let mut more = [0u8; 1];
    match std::io::Read::read(reader, &mut more) {
        Ok(0) => Ok(()),
        _ => Err((end + 2, "the file goes on after its signature line".into())),
    }
}

/// Appends the signature line to the complete backup at `path`: the
/// HMAC-SHA256 under `key` of every byte of the file.
///
/// # Errors
/// The file cannot be read or written.
pub fn sign(path: &Path, key: &[u8]) -> Result<(), BackupError> {
    let mut mac = mac(key);
    let mut reader = BufReader::new(File::open(path).map_err(io_error(path))?);
    std::io::copy(&mut reader, &mut MacWriter(&mut mac)).map_err(io_error(path))?;
    let signature = Signature { hmac_sha256: hex(&mac.finalize().into_bytes()) };
    let mut line = serde_json::to_vec(&Line::Signature(signature)).unwrap_or_default();
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new().append(true).open(path).map_err(io_error(path))?;
    file.write_all(&line).and_then(|()| file.sync_all()).map_err(io_error(path))
}

/// Feeds what is written into an HMAC.
struct MacWriter<'a>(&'a mut Hmac<Sha256>);

impl Write for MacWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks that the last line of the backup at `path` is a signature under
/// `key` of every byte before it, compared in constant time, before
/// anything of the file is parsed or believed.
///
/// # Errors
/// `Unauthenticated` for a file without a signature line or with one that
/// does not match (a damaged, altered or forged file, or another key).
pub fn authenticate(path: &Path, key: &[u8]) -> Result<(), BackupError> {
    let shown = path.display().to_string();
    let refuse = |reason| BackupError::Unauthenticated { path: shown.clone(), reason };
    let mut reader = BufReader::new(File::open(path).map_err(io_error(path))?);
    let mut mac = mac(key);
    let (mut last, mut line) = (Vec::new(), Vec::new());
    loop {
        if read_line(&mut reader, &mut line).map_err(io_error(path))? == 0 {
            break;
        }
        if line.len() > LINE_BYTES_MAX {
            return Err(refuse("a line is too long"));
        }
        mac.update(&last);
        std::mem::swap(&mut last, &mut line);
    }
    let Ok(Line::Signature(signature)) = serde_json::from_slice::<Line>(&last) else {
        return Err(refuse("the file is not signed"));
    };
    let Some(expected) = unhex(&signature.hmac_sha256) else {
        return Err(refuse("the signature is not a SHA-256 HMAC"));
    };
    mac.verify_slice(&expected).map_err(|_| refuse("the signature does not match"))
}

/// Authenticates every file (see [`authenticate`]).
///
/// # Errors
/// The first file that is not signed under `key`.
pub fn authenticate_all(files: &[PathBuf], key: &[u8]) -> Result<(), BackupError> {
    files.iter().try_for_each(|path| authenticate(path, key))
}

/// Checks a backup file without restoring it.
///
/// # Errors
/// The file cannot be read, is not a backup of this version, or is damaged.
pub fn verify(path: &Path) -> Result<Verified, BackupError> {
    read(path, |_, _| Ok(()))
}

/// Where `creditd backup` writes while the backup arrives: the file becomes
/// `to` only once it is complete, verified and synced.
pub fn partial_path(to: &Path) -> PathBuf {
    let mut name = to.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Appends to a partial backup file.
///
/// # Errors
/// The file cannot be written.
pub fn append(file: &mut File, path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    file.write_all(bytes).map_err(io_error(path))
}

/// Finishes a backup: syncs the partial file, verifies it, signs it under
/// `key` when there is one, renames it to `to` and syncs the directory, so
/// that `to` is only ever a whole, checked backup.
///
/// # Errors
/// The file does not verify, or cannot be signed, synced or renamed.
pub fn finish(file: File, to: &Path, key: Option<&[u8]>) -> Result<Verified, BackupError> {
    let partial = partial_path(to);
    file.sync_all().map_err(io_error(&partial))?;
    drop(file);
    let verified = verify(&partial)?;
    if let Some(key) = key {
        sign(&partial, key)?;
        authenticate(&partial, key)?;
    }
    std::fs::rename(&partial, to).map_err(io_error(to))?;
    let directory = to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(directory).and_then(|dir| dir.sync_all()).map_err(io_error(directory))?;
    Ok(Verified { path: to.to_owned(), ..verified })
}

/// Checks that verified backups chain: the first starts at the ledger's
/// beginning, each next one starts at or before where the previous ended,
/// and all are of one store (ratio and currency).
pub(crate) fn chain(files: &[Verified]) -> Result<(Ratio, Currency, u64), BackupError> {
    let first = files.first().ok_or_else(|| BackupError::Chain("no backup given".into()))?;
    if first.header.after != 0 {
        return Err(BackupError::Chain(format!(
            "{} starts after entry {}: the first backup must be a full one (--after 0)",
            first.path.display(),
            first.header.after
        )));
    }
    let mut up_to = 0;
    for file in files {
        let header = &file.header;
        if (header.ratio, &header.currency) != (first.header.ratio, &first.header.currency) {
            return Err(BackupError::Chain(format!("{} is of another store (ratio or currency)", file.path.display())));
        }
        if header.after > up_to {
            return Err(BackupError::Chain(format!(
                "{} starts after entry {}, but the backups before it end at {up_to}: entries are missing",
                file.path.display(),
                header.after
            )));
        }
        up_to = up_to.max(header.up_to);
    }
    let ratio = Ratio::new(first.header.ratio).map_err(|error| BackupError::Chain(format!("ratio: {error}")))?;
    let currency =
        Currency::parse(&first.header.currency).map_err(|error| BackupError::Chain(format!("currency: {error:?}")))?;
    Ok((ratio, currency, up_to))
}

/// Verifies `files` (a full backup, then incremental ones) and checks that
/// they chain, before anything is written anywhere.
///
/// # Errors
/// A file that does not verify, or backups that do not chain.
pub fn verify_all(files: &[PathBuf]) -> Result<Vec<Verified>, BackupError> {
    let verified = files.iter().map(|path| verify(path)).collect::<Result<Vec<_>, _>>()?;
    chain(&verified)?;
    Ok(verified)
}

pub mod restore;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_survive_hex() {
        let print: Fingerprint = std::array::from_fn(|index| u8::try_from(index * 7 % 256).unwrap_or(0));
        assert_eq!(unhex(&hex(&print)), Some(print));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
    }

    fn backup_file(dir: &Path) -> PathBuf {
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            ratio: 4,
            currency: "EUR".into(),
            after: 0,
            up_to: 0,
            created_at: "2026-12-03T00:00:00Z".into(),
        };
        let (writer, mut bytes) = Writer::start(&header);
        bytes.extend(writer.end());
        let path = dir.join("backup");
        std::fs::write(&path, bytes).expect("writes");
        path
    }

    /// A signed backup authenticates under its key only; a changed byte,
    /// another key, a missing signature line or anything after it is
    /// refused, and the checksum reader accepts the signature line and
    /// nothing more after the end line.
    #[test]
    fn a_signature_covers_every_byte_before_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = backup_file(dir.path());
        let key = [7u8; 32];
        assert!(matches!(authenticate(&path, &key), Err(BackupError::Unauthenticated { .. })), "unsigned");
        sign(&path, &key).expect("signs");
        authenticate(&path, &key).expect("authentic");
        verify(&path).expect("a signed backup still verifies");
        assert!(authenticate(&path, &[8u8; 32]).is_err(), "another key");

        let bytes = std::fs::read(&path).expect("reads");
        for index in [0, bytes.len() / 2, bytes.len() - 3] {
            let mut changed = bytes.clone();
            changed[index] ^= 1;
            std::fs::write(&path, &changed).expect("writes");
            assert!(authenticate(&path, &key).is_err(), "byte {index} changed");
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"{}\n");
        std::fs::write(&path, &longer).expect("writes");
        assert!(authenticate(&path, &key).is_err(), "a line after the signature");
        assert!(verify(&path).is_err(), "nothing may follow the signature line");
    }
}
