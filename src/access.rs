//! API keys at the edge (SPEC §9.1): making a key, hashing it, and the ring
//! of live keys the HTTP layer authenticates against.
//!
//! The inventory actor owns the keys (they are ledger entries, so that a
//! backup and a replay carry them) and publishes an immutable [`KeyRing`]
//! after every change; requests read the latest ring without asking it.
//! A key is never stored or logged: only its SHA-256, which is also what a
//! presented key is looked up by, so the lookup's timing depends on the
//! hash of a guess, never on how much of a real key it matches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use crate::domain::Caller;
use crate::domain::{KeyId, Scopes};

/// What every key made by creditd starts with, so that a leaked one is
/// recognisable (by secret scanners too).
pub const KEY_PREFIX: &str = "ck_";

/// Random bytes in a key: 256 bits.
const KEY_RANDOM_BYTES: usize = 32;

/// `lastUsedAt` moves at most this often per key: a request does not write.
pub const LAST_USED_GRANULARITY_MS: u64 = 60_000;

/// The id under which the configured admin token acts (idempotency, logs).
pub const ADMIN_TOKEN_ID: &str = "admin";

pub type KeyHash = [u8; 32];

/// SHA-256 of a key, as stored and as looked up.
pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// A new key: [`KEY_PREFIX`] and 256 random bits from the operating system, in hex.
pub fn new_key() -> String {
    let mut random = [0u8; KEY_RANDOM_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let mut key = String::with_capacity(KEY_PREFIX.len() + 2 * KEY_RANDOM_BYTES);
    key.push_str(KEY_PREFIX);
    for byte in random {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}

/// A key that may be used now.
#[derive(Debug)]
pub struct LiveKey {
    pub id: KeyId,
    pub scopes: Scopes,
    hash: KeyHash,
    /// Wall-clock ms of the last use, moved at most once per
    /// [`LAST_USED_GRANULARITY_MS`]; 0 for never. Shared by every ring that
    /// holds the key, so a new ring does not forget it.
    last_used_ms: AtomicU64,
    /// `rate_limit_per_key` (SPEC §9.2).
    pub bucket: TokenBucket,
}

impl LiveKey {
    pub fn new(id: KeyId, scopes: Scopes, hash: KeyHash, last_used_ms: Option<u64>) -> Self {
        Self {
            id,
            scopes,
            hash,
            last_used_ms: AtomicU64::new(last_used_ms.unwrap_or(0)),
            bucket: TokenBucket::default(),
        }
    }

    /// Notes a use at `now_ms`, without a write while the last one is recent.
    pub fn touch(&self, now_ms: u64) {
        let last = self.last_used_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= LAST_USED_GRANULARITY_MS {
            self.last_used_ms.fetch_max(now_ms, Ordering::Relaxed);
        }
    }

    pub fn last_used_ms(&self) -> Option<u64> {
        Some(self.last_used_ms.load(Ordering::Relaxed)).filter(|ms| *ms != 0)
    }
}

/// A token bucket of `rate` tokens a second holding at most `rate` (one
/// second of burst), as SPEC §9.2 says of `rate_limit_per_key`. Starts full.
#[derive(Debug, Default)]
pub struct TokenBucket {
    /// Tokens left and when they were counted; `None` until first used.
    state: Mutex<Option<(f64, Instant)>>,
}

impl TokenBucket {
    /// Takes a token at `now`, or says how long until one is there.
    ///
    /// # Errors
    /// The wait until the next token, when the bucket is empty.
    pub fn take(&self, rate: u32, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(rate.max(1));
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, counted) = state.unwrap_or((rate, now));
        let refilled = (tokens + now.saturating_duration_since(counted).as_secs_f64() * rate).min(rate);
        if refilled >= 1.0 {
            *state = Some((refilled - 1.0, now));
            Ok(())
        } else {
            *state = Some((refilled, now));
            Err(Duration::from_secs_f64((1.0 - refilled) / rate))
        }
    }
}

/// Failed authentications (401) from one address in one second past
/// which it is answered 429 for the next second (SPEC §9.2).
pub const AUTH_FAILURES_PER_SECOND_MAX: u32 = 20;

/// The most addresses [`FailedAuthentications`] remembers at once: beyond
/// it the stalest leave, so a guesser with many addresses costs a bounded
/// table (each entry is a few dozen bytes).
pub const AUTH_FAILURE_ADDRESSES_MAX: usize = 10_000;

/// Failed authentications by client address (SPEC §9.2): more than
/// [`AUTH_FAILURES_PER_SECOND_MAX`] in one second block the address for the
/// next second. A fixed one-second window per address, started by its first
/// failure; at most `capacity` addresses.
#[derive(Debug)]
pub struct FailedAuthentications {
    table: Mutex<HashMap<std::net::IpAddr, Failures>>,
    capacity: usize,
    /// The latest end of any block, in nanoseconds after `epoch`: while no
    /// address is blocked, a request's check takes no lock.
    blocks_until: AtomicU64,
    epoch: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    /// When this address's current one-second window began.
    since: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

impl Default for FailedAuthentications {
    fn default() -> Self {
        Self::with_capacity(AUTH_FAILURE_ADDRESSES_MAX)
    }
}

impl FailedAuthentications {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            table: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            blocks_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// How long `address` is still blocked at `now`, if it is.
    pub fn blocked(&self, address: std::net::IpAddr, now: Instant) -> Option<Duration> {
        if self.nanos(now) >= self.blocks_until.load(Ordering::Acquire) {
            return None;
        }
        let table = self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = table.get(&address)?.blocked_until?;
        Some(until.saturating_duration_since(now)).filter(|left| !left.is_zero())
    }

    /// Counts a failed authentication of `address` at `now`; answers how
    /// long it is blocked when this one went past the limit.
    pub fn failed(&self, address: std::net::IpAddr, now: Instant) -> Option<Duration> {
        let second = Duration::from_secs(1);
        let mut table = self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !table.contains_key(&address) && table.len() >= self.capacity {
            // Entries whose window and block are over first; then, if every
            // entry is current, the one whose window began first.
            table.retain(|_, failures| {
                now.saturating_duration_since(failures.since) < second
                    || failures.blocked_until.is_some_and(|until| until > now)
            });
            if table.len() >= self.capacity {
                if let Some(oldest) = table.iter().min_by_key(|(_, failures)| failures.since).map(|(at, _)| *at) {
                    table.remove(&oldest);
                }
            }
        }
        let failures = table.entry(address).or_insert(Failures { since: now, count: 0, blocked_until: None });
        if now.saturating_duration_since(failures.since) >= second {
            failures.since = now;
            failures.count = 0;
        }
        failures.count = failures.count.saturating_add(1);
        if failures.count > AUTH_FAILURES_PER_SECOND_MAX {
            let until = now + second;
            failures.blocked_until = Some(until);
            self.blocks_until.fetch_max(self.nanos(until), Ordering::AcqRel);
            return Some(second);
        }
        None
    }

    /// How many addresses are remembered.
    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The live keys at one moment, by hash. Revoked keys are not in it.
#[derive(Debug, Default)]
pub struct KeyRing {
    by_hash: HashMap<KeyHash, Arc<LiveKey>>,
}

impl KeyRing {
    pub fn new(keys: impl IntoIterator<Item = Arc<LiveKey>>) -> Self {
        Self { by_hash: keys.into_iter().map(|key| (key.hash, key)).collect() }
    }

    /// The live key whose hash is `hash`, compared in constant time.
    pub fn find(&self, hash: &KeyHash) -> Option<&Arc<LiveKey>> {
        self.by_hash.get(hash).filter(|key| bool::from(key.hash.ct_eq(hash)))
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Scope;

    #[test]
    fn keys_are_prefixed_random_and_found_only_by_their_own_hash() {
        let (one, two) = (new_key(), new_key());
        assert!(one.starts_with(KEY_PREFIX) && one.len() == KEY_PREFIX.len() + 64, "{one}");
        assert_ne!(one, two);
        let scopes = Scopes::new([Scope::Read]).expect("one scope");
        let live = Arc::new(LiveKey::new(KeyId::parse("key_1").expect("id"), scopes, hash_key(&one), None));
        let ring = KeyRing::new([live]);
        assert_eq!(ring.find(&hash_key(&one)).map(|key| key.id.as_str()), Some("key_1"));
        assert!(ring.find(&hash_key(&two)).is_none());
        assert!(ring.find(&hash_key(&one[..one.len() - 1])).is_none());
    }

    /// Goal: `rate_limit_per_key` is a token bucket with one second of burst.
    #[test]
    fn the_bucket_allows_one_second_of_burst_then_the_rate() {
        let bucket = TokenBucket::default();
        let start = Instant::now();
        for n in 0..10 {
            assert_eq!(bucket.take(10, start), Ok(()), "burst request {n}");
        }
        let wait = bucket.take(10, start).expect_err("the 11th within the second waits");
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        assert_eq!(bucket.take(10, start + Duration::from_millis(100)), Ok(()), "one token per 100 ms");
        assert!(bucket.take(10, start + Duration::from_millis(150)).is_err());
        assert_eq!(bucket.take(10, start + Duration::from_secs(60)), Ok(()));
        let full = (0..20).filter(|_| bucket.take(10, start + Duration::from_secs(60)).is_ok()).count();
        assert_eq!(full, 9, "an idle key refills to one second's worth, not more");
    }

    #[test]
    fn last_used_moves_at_most_once_a_minute() {
        let scopes = Scopes::new([Scope::Read]).expect("one scope");
        let key = LiveKey::new(KeyId::parse("key_1").expect("id"), scopes, [0; 32], None);
        assert_eq!(key.last_used_ms(), None);
        key.touch(1_000_000);
        assert_eq!(key.last_used_ms(), Some(1_000_000));
        key.touch(1_000_000 + LAST_USED_GRANULARITY_MS - 1);
        assert_eq!(key.last_used_ms(), Some(1_000_000), "not within the minute");
        key.touch(1_000_000 + LAST_USED_GRANULARITY_MS);
        assert_eq!(key.last_used_ms(), Some(1_000_000 + LAST_USED_GRANULARITY_MS));
    }

    /// SPEC §9.2: the 21st failure within a second blocks the address for
    /// the next second; other addresses are not affected; a new second
    /// starts a new count.
    #[test]
    fn more_than_twenty_failures_in_a_second_block_the_address_for_a_second() {
        let table = FailedAuthentications::default();
        let (one, two): (std::net::IpAddr, std::net::IpAddr) =
            ("127.0.0.1".parse().expect("ip"), "127.0.0.2".parse().expect("ip"));
        let start = Instant::now();
        for n in 0..AUTH_FAILURES_PER_SECOND_MAX {
            assert_eq!(table.failed(one, start + Duration::from_millis(u64::from(n) * 40)), None, "failure {n}");
        }
        assert_eq!(table.blocked(one, start + Duration::from_millis(800)), None, "twenty are allowed");
        let at = start + Duration::from_millis(900);
        assert_eq!(table.failed(one, at), Some(Duration::from_secs(1)), "the 21st blocks");
        assert_eq!(table.blocked(one, at + Duration::from_millis(999)), Some(Duration::from_millis(1)));
        assert_eq!(table.blocked(one, at + Duration::from_secs(1)), None, "for one second");
        assert_eq!(table.blocked(two, at), None, "another address is not blocked");
        assert_eq!(table.failed(two, at), None);
        let later = start + Duration::from_secs(5);
        for n in 0..AUTH_FAILURES_PER_SECOND_MAX {
            assert_eq!(table.failed(one, later), None, "a new second, a new count: {n}");
        }
    }

    /// A guesser with many addresses costs a bounded table: 1 000 distinct
    /// failing addresses leave at most the capacity, also when every entry
    /// is current.
    #[test]
    fn the_table_of_addresses_is_capped() {
        let table = FailedAuthentications::with_capacity(100);
        let start = Instant::now();
        let blocked: std::net::IpAddr = "10.0.0.1".parse().expect("ip");
        for _ in 0..=AUTH_FAILURES_PER_SECOND_MAX {
            table.failed(blocked, start);
        }
        for n in 0..1_000u32 {
            let address = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a01_0000 + n));
            table.failed(address, start + Duration::from_millis(u64::from(n)));
            assert!(table.len() <= 100, "{} addresses after {n}", table.len());
        }
        assert_eq!(table.len(), 100);
        let full = FailedAuthentications::with_capacity(3);
        for n in 0..10u8 {
            full.failed(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 2, 0, n)), start);
        }
        assert_eq!(full.len(), 3, "even when every entry is current");
    }
}
