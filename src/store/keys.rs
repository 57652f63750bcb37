//! The key space of the one sled tree creditd uses; the first byte says what
//! a key holds. A group's keys are journaled together (`journal.rs`).

use crate::domain::{HoldId, IdempotencyKey, KeyId, ScopedKey, SpendId, UserId};

use super::records::Operation;

pub const META: &[u8] = b"m";
pub const INVENTORY: &[u8] = b"s";
/// `PruneCursor`: where the pruning of idempotency records stopped.
pub const PRUNE_CURSOR: &[u8] = b"r";
pub const LEDGER_PREFIX: u8 = b'l';
pub const WALLET_PREFIX: u8 = b'w';
pub const IDEMPOTENCY_PREFIX: u8 = b'i';
pub const HOLD_PREFIX: u8 = b'h';
pub const SPEND_PREFIX: u8 = b'p';
pub const PACKAGE_PREFIX: u8 = b'c';
pub const ALERT_PREFIX: u8 = b'a';
pub const OPEN_HOLD_PREFIX: u8 = b'o';
pub const API_KEY_PREFIX: u8 = b'k';
pub const OPEN_SPEND_PREFIX: u8 = b'q';
/// `x` + expiresAt (u64 BE) + grant seq (u64 BE) → user id: the grants not
/// closed that will expire (SPEC §13), read at start.
pub const GRANT_DEADLINE_PREFIX: u8 = b'x';

/// `e` + UTC day (u32 BE) → `ExpiredDay`.
pub const EXPIRED_DAY_PREFIX: u8 = b'e';

pub fn expired_day(day: u32) -> [u8; 5] {
    let mut key = [EXPIRED_DAY_PREFIX; 5];
    key[1..].copy_from_slice(&day.to_be_bytes());
    key
}

/// The key of a grant's deadline.
pub fn grant_deadline(expires_at_ms: u64, grant: u64) -> [u8; 17] {
    let mut key = [GRANT_DEADLINE_PREFIX; 17];
    key[1..9].copy_from_slice(&expires_at_ms.to_be_bytes());
    key[9..].copy_from_slice(&grant.to_be_bytes());
    key
}

/// The expiry and grant seq of a deadline key, if it is one.
pub fn grant_deadline_parts(key: &[u8]) -> Option<(u64, u64)> {
    let (&prefix, rest) = key.split_first()?;
    if prefix != GRANT_DEADLINE_PREFIX || rest.len() != 16 {
        return None;
    }
    let (expires, grant) = rest.split_at(8);
    Some((u64::from_be_bytes(expires.try_into().ok()?), u64::from_be_bytes(grant.try_into().ok()?)))
}

/// `l` + big-endian sequence number, so that keys sort in ledger order.
pub fn ledger(seq: u64) -> [u8; 9] {
    let mut key = [LEDGER_PREFIX; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence number of a ledger key, if it is one.
pub fn ledger_seq(key: &[u8]) -> Option<u64> {
    let (&prefix, rest) = key.split_first()?;
    let bytes: [u8; 8] = rest.try_into().ok()?;
    (prefix == LEDGER_PREFIX).then(|| u64::from_be_bytes(bytes))
}

pub fn wallet(user: &UserId) -> Vec<u8> {
    prefixed(WALLET_PREFIX, user.as_str())
}

/// `i` + operation + caller + NUL + key: a key is scoped to the API key that
/// sent it (SPEC §9.1). Without a caller (entries from before API keys):
/// `i` + operation + key, which no scoped key can equal, since ids never
/// hold a NUL.
pub fn idempotency(operation: Operation, caller: Option<&KeyId>, key: &IdempotencyKey) -> Vec<u8> {
    let caller_len = caller.map_or(0, |caller| caller.as_str().len() + 1);
    let mut bytes = Vec::with_capacity(2 + caller_len + key.as_str().len());
    bytes.push(IDEMPOTENCY_PREFIX);
    bytes.push(operation.tag());
    if let Some(caller) = caller {
        bytes.extend_from_slice(caller.as_str().as_bytes());
        bytes.push(0);
    }
    bytes.extend_from_slice(key.as_str().as_bytes());
    bytes
}

/// The idempotency key of a caller's request.
pub fn scoped_idempotency(operation: Operation, key: &ScopedKey) -> Vec<u8> {
    idempotency(operation, Some(&key.caller), &key.key)
}

pub fn hold(id: &HoldId) -> Vec<u8> {
    prefixed(HOLD_PREFIX, id.as_str())
}

pub fn spend(id: &SpendId) -> Vec<u8> {
    prefixed(SPEND_PREFIX, id.as_str())
}

fn prefixed(prefix: u8, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(prefix);
    key.extend_from_slice(id.as_bytes());
    key
}

pub fn package(id: &crate::domain::PackageId) -> Vec<u8> {
    prefixed(PACKAGE_PREFIX, id.as_str())
}

/// `a` + big-endian event id, so that keys sort in event order.
pub fn alert(id: u64) -> [u8; 9] {
    let mut key = [ALERT_PREFIX; 9];
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

/// `o` + hold id: present while the hold is open, so that start-up reads the
/// open holds without scanning every hold ever made.
pub fn open_hold(id: &HoldId) -> Vec<u8> {
    prefixed(OPEN_HOLD_PREFIX, id.as_str())
}

/// `q` + spend id: present while the spend is open, so that start-up reads
/// the open spends without scanning every spend ever made.
pub fn open_spend(id: &SpendId) -> Vec<u8> {
    prefixed(OPEN_SPEND_PREFIX, id.as_str())
}

/// `k` + key id: one API key's record.
pub fn api_key(id: &KeyId) -> Vec<u8> {
    prefixed(API_KEY_PREFIX, id.as_str())
}
