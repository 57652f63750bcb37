//! Goal: the engine behaves exactly like a small, obviously-correct model of
//! SPEC §2–§6, and §4's invariants hold after every step, against a
//! provider that really consumes.
//!
//! Method: proptest draws sequences of purchase / hold / capture / release /
//! clock advance / spend / complete / refund / provider consumption / sync
//! (its request leaving, the provider reading its balance, the answer
//! landing, each at its own step) / refill / restart and runs each against
//! the real engine (actors, commit loop, sled in a temp dir) with a manual
//! clock, and against the model (plain maps and integers).
//!
//! The model holds the provider apart from the engine: its real balance,
//! which consumes each spend's `ratio × credits` at most once, at a random
//! step between the spend and its completion (at the latest when it
//! completes), and never for a refunded spend; the engine never sees it
//! except through a sync's answer. After every step, first the oracle that
//! does not trust the engine (SPEC §4.1): the engine's `providerBalance` ≤
//! the real balance minus the consumption still to come; then the answers,
//! the provider balance, what the last sync held back, `reserved`, the open
//! holds and every wallet must match the model. At the end every open spend
//! is completed, two quiet syncs run, and `providerBalance` must equal the
//! real balance with drift 0; then `creditd check` must pass.
//!
//! Cases: `MODEL_CASES` (default 24 in CI). The long run is
//! `MODEL_CASES=10000 cargo test --release --test model` (see BENCHMARKS.md).
//!
//! The same cases run on the PostgreSQL store (SPEC §12) too: one real
//! PostgreSQL, a new database per case, the engine on `PgStore`, and
//! `creditd check --store` at the end; `MODEL_PG_CASES` (default 8).
//!
//! And on the decider alone (`creditd::decide`, SPEC §10's state machine),
//! without an actor, a commit loop or a store: the books, the records the
//! changes wrote kept in memory (`decide::memory::Memory`), the manual
//! clock. Each command is read for before the due holds and spends are
//! swept, as a wallet actor's read may be overtaken while its command waits
//! for the inventory: a record the sweep moved must come back as a refetch,
//! never be decided on. `MODEL_DECIDER_CASES` (default 64).

#[path = "common/mod.rs"]
#[allow(unused)]
mod common;
#[path = "common/postgres.rs"]
mod postgres;

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use creditd::actors::inventory::{ApplySync, BeginSync, SyncOutcome, SyncToken};
use creditd::actors::EngineError;
use creditd::clock::{Clock, ManualClock};
use creditd::config::Config;
use creditd::decide::memory::Memory;
use creditd::decide::{decide, Books, Decision, Now, UserCommand, UserReceipt};
use creditd::domain::{
    Caller, HoldId, IdempotencyKey, KeyId, PackageId, ProviderCredits, Scope, ScopedKey, Scopes, SpendId, UserCredits,
    UserId,
};
use creditd::engine::{init, recover, Engine, EngineThreads, Settings};
use creditd::http::extract::fingerprint;
use creditd::store::records::InventoryRecord;
use creditd::store::Store;

const RATIO: u64 = 4;
const USERS: [&str; 4] = ["ann", "bob", "cy", "dee"];
/// Open holds per user (SPEC §9.2), low so that sequences reach it.
const MAX_OPEN_HOLDS: u32 = 2;
/// `spend_complete_after`, short so that sequences reach it.
const SPEND_COMPLETE_AFTER_MS: u64 = 3_000;

/// A day: the credits of `creative` expire a day after they were bought
/// (SPEC §13), and the clock sometimes jumps a day.
const DAY_MS: u64 = 86_400_000;
/// The package whose credits expire, by its index in [`PACKAGES`].
const EXPIRING_PACKAGE: usize = 1;

/// The four default packages, then one that does not exist.
const PACKAGES: [(&str, u64); 5] = [("starter", 10), ("creative", 50), ("pro", 100), ("studio", 500), ("platinum", 0)];

#[derive(Debug, Clone)]
enum Op {
    Purchase {
        user: usize,
        package: usize,
        key: u8,
    },
    Hold {
        user: usize,
        package: usize,
        ttl_s: u64,
        key: Option<u8>,
    },
    /// `by`: who asks ([`finisher`]): the key that made the hold, the other
    /// key, or an admin key.
    Capture {
        hold: usize,
        by: u8,
    },
    Release {
        hold: usize,
        by: u8,
    },
    Advance {
        ms: u64,
    },
    Spend {
        user: usize,
        credits: u64,
        key: u8,
    },
    /// The enhancement service says the provider did the work.
    Complete {
        spend: usize,
        by: u8,
    },
    /// The enhancement service says the provider call failed. A spend the
    /// provider already consumed cannot have failed: the service completes it.
    Refund {
        spend: usize,
        by: u8,
    },
    /// The provider consumes an open spend's credits (once).
    Consume {
        spend: usize,
    },
    /// A sync request leaves (if none is in flight).
    SyncBegin,
    /// The provider reads its balance for the request in flight.
    SyncRead,
    /// The answer lands (the provider reads now if it has not yet).
    SyncLand,
    /// The operator buys credits at the provider.
    Refill {
        credits: u64,
    },
    Restart,
    /// An admin's promotional grant (SPEC §13), expiring `expires_in` ms
    /// from now if set.
    Grant {
        user: usize,
        credits: u64,
        expires_in: Option<u64>,
        key: u8,
    },
    /// An admin voids a grant (one the model knows the id of).
    Void {
        grant: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..5usize, 0..6u8).prop_map(|(user, package, key)| Op::Purchase { user, package, key }),
        3 => (0..4usize, 0..4usize, 1..4u64, proptest::option::of(0..4u8))
            .prop_map(|(user, package, ttl_s, key)| Op::Hold { user, package, ttl_s, key }),
        2 => (0..8usize, 0..4u8).prop_map(|(hold, by)| Op::Capture { hold, by }),
        1 => (0..8usize, 0..4u8).prop_map(|(hold, by)| Op::Release { hold, by }),
        2 => prop_oneof![0..1500u64, Just(1000u64), Just(999u64), Just(1u64), Just(DAY_MS)].prop_map(|ms| Op::Advance { ms }),
        3 => (0..4usize, 1..130u64, 0..6u8).prop_map(|(user, credits, key)| Op::Spend { user, credits, key }),
        2 => (0..8usize, 0..4u8).prop_map(|(spend, by)| Op::Complete { spend, by }),
        2 => (0..8usize, 0..4u8).prop_map(|(spend, by)| Op::Refund { spend, by }),
        2 => (0..8usize).prop_map(|spend| Op::Consume { spend }),
        2 => Just(Op::SyncBegin),
        1 => Just(Op::SyncRead),
        2 => Just(Op::SyncLand),
        1 => (1..800u64).prop_map(|credits| Op::Refill { credits }),
        1 => Just(Op::Restart),
        2 => (0..4usize, 1..60u64, proptest::option::of(1..4000u64), 0..6u8)
            .prop_map(|(user, credits, expires_in, key)| Op::Grant { user, credits, expires_in, key }),
        1 => (0..8usize).prop_map(|grant| Op::Void { grant }),
    ]
}

// ---------------------------------------------------------------------------
// The model: plain maps and integers, written to be obviously right.

/// The callers: 0 and 1 are the two storefront-and-enhancement keys of
/// [`key`], 2 an admin key. SPEC §9.1: a hold or spend is finished only by
/// the key that made it (`maker`) or an admin key.
const ADMIN: u8 = 2;

/// Who asks, for an op's `by`: 1 the other key, 2 an admin key, else the maker.
fn finisher(by: u8, maker: u8) -> u8 {
    match by {
        1 => 1 - maker,
        2 => ADMIN,
        _ => maker,
    }
}

/// Whether caller `who` may finish what `maker` made.
fn may_finish(who: u8, maker: u8) -> bool {
    who == ADMIN || who == maker
}

/// The maker of a hold: the caller of its key, or (without one) the user's.
fn hold_maker(user: usize, key: Option<u8>) -> u8 {
    key.map_or(u8::from(user % 2 == 1), |key| key % 2)
}

#[derive(Debug, Clone, PartialEq)]
enum HoldState {
    Open,
    Captured(u64),
    Released,
    Expired,
}

#[derive(Debug, Clone)]
struct ModelHold {
    /// Its package's credits expire a day after the capture.
    expiring: bool,
    id: String,
    maker: u8,
    user: usize,
    credits: u64,
    expires_at: u64,
    state: HoldState,
}

#[derive(Debug, Clone, PartialEq)]
enum SpendState {
    Open,
    Completed,
    Refunded,
}

/// A grant (SPEC §13): every credit of a wallet is in one.
#[derive(Debug, Clone)]
struct ModelGrant {
    /// The engine's id, when the model knows it (a capture's is not answered).
    id: Option<String>,
    user: usize,
    promotional: bool,
    remaining: u64,
    /// On the model's clock; `None`: never.
    expires_at: Option<u64>,
    /// `'e'` expired, `'v'` voided.
    closed: Option<char>,
}

impl ModelGrant {
    /// SPEC §13's burn order, as a sort key: the soonest expiry (never
    /// last), promotional before paid; the oldest first is the grants' order.
    fn burn_key(&self) -> (u64, bool) {
        (self.expires_at.unwrap_or(u64::MAX), !self.promotional)
    }
}

#[derive(Debug, Clone)]
struct ModelSpend {
    /// What it drew: (grant index, credits).
    draws: Vec<(usize, u64)>,
    id: String,
    maker: u8,
    user: usize,
    credits: u64,
    made_at: u64,
    state: SpendState,
    /// The provider consumed its credits (only ever before its completion).
    consumed: bool,
    /// Made before the last sync's answer landed: that sync held it back.
    before_last_sync: bool,
}

/// A sync whose request left and whose answer has not landed.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    token: SyncToken,
    /// The real balance the provider read for it, once it has.
    read: Option<u64>,
    /// `ratio ×` the spends completed since it left.
    completed: u64,
}

/// What the model expects an operation to answer.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Success with this wallet balance (or, for holds and releases, this id).
    Balance(u64),
    Id(String),
    Refused(EngineError),
}

#[derive(Debug, Default)]
struct Model {
    /// What the engine's `providerBalance` must be, by SPEC §2, §5 and §6.
    balance: u64,
    /// The provider's real balance: moved by consumption and refills only.
    real: u64,
    /// What the last sync held back, less what refunds gave back since.
    held_back: u64,
    in_flight: Option<InFlight>,
    now: u64,
    wallets: BTreeMap<usize, u64>,
    holds: Vec<ModelHold>,
    spends: Vec<ModelSpend>,
    /// Every grant, in the order made (the ledger's).
    grants: Vec<ModelGrant>,
    /// User credits that left with expired and voided grants.
    expired: u64,
    voided: u64,
    /// (operation, key) → (request, the first answer).
    keys: BTreeMap<(char, u8), (String, Expect)>,
}

impl Model {
    fn open(&self, hold: &ModelHold) -> bool {
        hold.state == HoldState::Open && self.now < hold.expires_at
    }

    fn reserved(&self) -> u64 {
        let wallets: u64 = self.wallets.values().sum();
        let holds: u64 = self.holds.iter().filter(|h| self.open(h)).map(|h| h.credits).sum();
        RATIO * (wallets + holds)
    }

    fn fits(&self, credits: u64) -> bool {
        self.reserved() + RATIO * credits <= self.balance
    }

    /// The answer remembered under a key, or a refusal for a reused key.
    fn replay(&self, op: char, key: u8, request: &str) -> Option<Expect> {
        self.keys.get(&(op, key)).map(|(first, answer)| {
            if first == request {
                answer.clone()
            } else {
                Expect::Refused(EngineError::IdempotencyKeyReused)
            }
        })
    }

    fn sale(&self, package: usize) -> Result<u64, EngineError> {
        let (name, credits) = PACKAGES[package];
        if credits == 0 {
            return Err(EngineError::UnknownPackage(PackageId::parse(name).expect("valid")));
        }
        if self.fits(credits) {
            Ok(credits)
        } else {
            Err(EngineError::InsufficientCapacity)
        }
    }

    fn purchase(&mut self, user: usize, package: usize, key: u8, grant_id: Option<String>) -> Expect {
        let request = format!("{user}/{package}");
        if let Some(answer) = self.replay('p', key, &request) {
            return answer;
        }
        match self.sale(package) {
            Err(error) => Expect::Refused(error),
            Ok(credits) => {
                let expires_at = (package == EXPIRING_PACKAGE).then_some(self.now + DAY_MS);
                let answer = Expect::Balance(self.add_grant(user, false, credits, expires_at, grant_id));
                self.keys.insert(('p', key), (request, answer.clone()));
                answer
            }
        }
    }

    /// Adds a grant to `user`'s wallet; answers the wallet after it.
    fn add_grant(
        &mut self,
        user: usize,
        promotional: bool,
        credits: u64,
        expires_at: Option<u64>,
        id: Option<String>,
    ) -> u64 {
        self.grants.push(ModelGrant { id, user, promotional, remaining: credits, expires_at, closed: None });
        let wallet = self.wallets.entry(user).or_default();
        *wallet += credits;
        *wallet
    }

    /// Closes every grant past its `expiresAt` (the engine's sweep, which
    /// the driver runs after the clock moves).
    fn expire_grants(&mut self) {
        for grant in &mut self.grants {
            if grant.closed.is_none() && grant.expires_at.is_some_and(|at| at <= self.now) {
                grant.closed = Some('e');
                self.expired += grant.remaining;
                *self.wallets.get_mut(&grant.user).expect("a wallet") -= grant.remaining;
                grant.remaining = 0;
            }
        }
    }

    /// An admin's promotional grant: reserves like a sale, idempotent by key.
    fn grant(
        &mut self,
        user: usize,
        credits: u64,
        expires_in: Option<u64>,
        key: u8,
        engine_id: Option<String>,
    ) -> Expect {
        let request = format!("{user}/{credits}/{expires_in:?}");
        if let Some(answer) = self.replay('g', key, &request) {
            return answer;
        }
        if !self.fits(credits) {
            return Expect::Refused(EngineError::InsufficientCapacity);
        }
        let id = engine_id.unwrap_or_default();
        self.add_grant(user, true, credits, expires_in.map(|ms| self.now + ms), Some(id.clone()));
        let answer = Expect::Id(id);
        self.keys.insert(('g', key), (request, answer.clone()));
        answer
    }

    /// An admin voids grant `index`: its remaining credits leave at once.
    fn void(&mut self, index: usize) -> Expect {
        let grant = &mut self.grants[index];
        let id = grant.id.clone().expect("a grant the model knows");
        match grant.closed {
            Some('v') => Expect::Id(id),
            Some(_) => Expect::Refused(EngineError::GrantClosed),
            None => {
                grant.closed = Some('v');
                self.voided += grant.remaining;
                *self.wallets.get_mut(&grant.user).expect("a wallet") -= grant.remaining;
                grant.remaining = 0;
                Expect::Id(id)
            }
        }
    }

    /// The (promotional, remaining) of `user`'s grants that hold credits, in the burn order.
    fn shown_grants(&self, user: usize) -> Vec<(bool, u64)> {
        let mut live: Vec<&ModelGrant> =
            self.grants.iter().filter(|g| g.user == user && g.closed.is_none() && g.remaining > 0).collect();
        live.sort_by_key(|grant| grant.burn_key());
        live.iter().map(|grant| (grant.promotional, grant.remaining)).collect()
    }

    fn hold(&mut self, user: usize, package: usize, ttl_s: u64, key: Option<u8>, engine_id: Option<String>) -> Expect {
        let request = format!("{user}/{package}/{ttl_s}");
        if let Some(answer) = key.and_then(|key| self.replay('h', key, &request)) {
            return answer;
        }
        let open = self.holds.iter().filter(|hold| hold.user == user && self.open(hold)).count();
        if open >= MAX_OPEN_HOLDS as usize {
            return Expect::Refused(EngineError::TooManyHolds(MAX_OPEN_HOLDS));
        }
        match self.sale(package) {
            Err(error) => Expect::Refused(error),
            Ok(credits) => {
                let id = engine_id.unwrap_or_default();
                let expires_at = self.now + ttl_s * 1000;
                let maker = hold_maker(user, key);
                let expiring = package == EXPIRING_PACKAGE;
                let hold =
                    ModelHold { expiring, id: id.clone(), maker, user, credits, expires_at, state: HoldState::Open };
                self.holds.push(hold);
                let answer = Expect::Id(id);
                if let Some(key) = key {
                    self.keys.insert(('h', key), (request, answer.clone()));
                }
                answer
            }
        }
    }

    fn expire(&mut self, index: usize) {
        let now = self.now;
        let hold = &mut self.holds[index];
        if hold.state == HoldState::Open && now >= hold.expires_at {
            hold.state = HoldState::Expired;
        }
    }

    fn capture(&mut self, index: usize, by: u8) -> Expect {
        if let Some(refused) = self.not_theirs_hold(index, by) {
            return refused;
        }
        self.expire(index);
        let hold = self.holds[index].clone();
        match hold.state {
            HoldState::Captured(balance) => Expect::Balance(balance),
            HoldState::Released => Expect::Refused(EngineError::HoldReleased),
            HoldState::Expired => Expect::Refused(EngineError::HoldExpired),
            HoldState::Open => {
                let expires_at = hold.expiring.then_some(self.now + DAY_MS);
                let balance = self.add_grant(hold.user, false, hold.credits, expires_at, None);
                self.holds[index].state = HoldState::Captured(balance);
                Expect::Balance(balance)
            }
        }
    }

    /// Another key's hold is as unknown as one that does not exist.
    fn not_theirs_hold(&self, index: usize, by: u8) -> Option<Expect> {
        let hold = &self.holds[index];
        let id = HoldId::parse(&hold.id).expect("valid");
        (!may_finish(finisher(by, hold.maker), hold.maker)).then_some(Expect::Refused(EngineError::UnknownHold(id)))
    }

    fn not_theirs_spend(&self, index: usize, by: u8) -> Option<Expect> {
        let spend = &self.spends[index];
        let id = SpendId::parse(&spend.id).expect("valid");
        (!may_finish(finisher(by, spend.maker), spend.maker)).then_some(Expect::Refused(EngineError::UnknownSpend(id)))
    }

    fn release(&mut self, index: usize, by: u8) -> Expect {
        if let Some(refused) = self.not_theirs_hold(index, by) {
            return refused;
        }
        self.expire(index);
        let hold = &mut self.holds[index];
        match hold.state {
            HoldState::Captured(_) => Expect::Refused(EngineError::HoldCaptured),
            HoldState::Expired => Expect::Refused(EngineError::HoldExpired),
            HoldState::Released => Expect::Id(hold.id.clone()),
            HoldState::Open => {
                hold.state = HoldState::Released;
                Expect::Id(hold.id.clone())
            }
        }
    }

    fn spend(&mut self, user: usize, credits: u64, key: u8, engine_id: Option<String>) -> Expect {
        let request = format!("{user}/{credits}");
        if let Some(answer) = self.replay('s', key, &request) {
            return answer;
        }
        let Some(&wallet) = self.wallets.get(&user) else {
            return Expect::Refused(EngineError::UnknownUser);
        };
        if wallet < credits {
            return Expect::Refused(EngineError::InsufficientFunds);
        }
        if RATIO * credits > self.balance {
            return Expect::Refused(EngineError::EnhancementUnavailable);
        }
        self.wallets.insert(user, wallet - credits);
        self.balance -= RATIO * credits;
        // The burn order: the soonest expiry, promotional first, then the oldest.
        let mut order: Vec<usize> = (0..self.grants.len())
            .filter(|&i| self.grants[i].user == user && self.grants[i].closed.is_none())
            .collect();
        order.sort_by_key(|&i| (self.grants[i].burn_key(), i));
        let (mut left, mut draws) = (credits, Vec::new());
        for index in order {
            let taken = self.grants[index].remaining.min(left);
            if taken > 0 {
                self.grants[index].remaining -= taken;
                left -= taken;
                draws.push((index, taken));
            }
        }
        assert_eq!(left, 0, "the wallet is the sum of its grants");
        self.spends.push(ModelSpend {
            draws,
            id: engine_id.unwrap_or_default(),
            maker: key % 2,
            user,
            credits,
            made_at: self.now,
            state: SpendState::Open,
            consumed: false,
            before_last_sync: false,
        });
        let answer = Expect::Balance(wallet - credits);
        self.keys.insert(('s', key), (request, answer.clone()));
        answer
    }

    /// Completes spend `index` (the provider consumes it now if it has not
    /// yet: it did the work before anyone could say so).
    fn finish(&mut self, index: usize) {
        let spend = &mut self.spends[index];
        if !spend.consumed {
            spend.consumed = true;
            self.real -= RATIO * spend.credits;
        }
        spend.state = SpendState::Completed;
        if let Some(flight) = &mut self.in_flight {
            flight.completed += RATIO * spend.credits;
        }
    }

    /// Completes every open spend whose time has run out (SPEC §5).
    fn complete_due(&mut self) {
        for index in 0..self.spends.len() {
            let spend = &self.spends[index];
            if spend.state == SpendState::Open && self.now >= spend.made_at + SPEND_COMPLETE_AFTER_MS {
                self.finish(index);
            }
        }
    }

    fn complete(&mut self, index: usize, by: u8) -> Expect {
        if let Some(refused) = self.not_theirs_spend(index, by) {
            return refused;
        }
        match self.spends[index].state {
            SpendState::Refunded => Expect::Refused(EngineError::AlreadyRefunded),
            SpendState::Completed => Expect::Id("completed".into()),
            SpendState::Open => {
                self.finish(index);
                Expect::Id("completed".into())
            }
        }
    }

    fn refund(&mut self, index: usize, by: u8) -> Expect {
        if let Some(refused) = self.not_theirs_spend(index, by) {
            return refused;
        }
        let spend = self.spends[index].clone();
        match spend.state {
            SpendState::Refunded => return Expect::Refused(EngineError::AlreadyRefunded),
            SpendState::Completed => return Expect::Refused(EngineError::SpendCompleted),
            SpendState::Open => {}
        }
        self.spends[index].state = SpendState::Refunded;
        // Back into the grants it drew from; into one closed meanwhile, out again.
        for &(grant, credits) in &spend.draws {
            match self.grants[grant].closed {
                None => {
                    self.grants[grant].remaining += credits;
                    *self.wallets.entry(spend.user).or_default() += credits;
                }
                Some('e') => self.expired += credits,
                Some(_) => self.voided += credits,
            }
        }
        let wallet = self.wallets.entry(spend.user).or_default();
        self.balance += RATIO * spend.credits;
        if spend.before_last_sync {
            self.held_back -= RATIO * spend.credits;
        }
        Expect::Balance(*wallet)
    }

    /// The provider consumes spend `index` if it is open and not consumed yet.
    fn consume(&mut self, index: usize) {
        let spend = &mut self.spends[index];
        if spend.state == SpendState::Open && !spend.consumed {
            spend.consumed = true;
            self.real -= RATIO * spend.credits;
        }
    }

    /// The provider credits still to be consumed: open spends not consumed yet.
    fn to_come(&self) -> u64 {
        self.spends.iter().filter(|s| s.state == SpendState::Open && !s.consumed).map(|s| RATIO * s.credits).sum()
    }

    /// A sync's answer lands with the balance the provider read (SPEC §6).
    fn land(&mut self, read: u64, completed_in_flight: u64) {
        let open: u64 = self.spends.iter().filter(|s| s.state == SpendState::Open).map(|s| s.credits).sum();
        let held_back = RATIO * open + completed_in_flight;
        self.balance = read.saturating_sub(held_back);
        self.held_back = held_back;
        for spend in &mut self.spends {
            spend.before_last_sync = true;
        }
    }
}

// ---------------------------------------------------------------------------
// The real engine, in process, with a manual clock.

/// Where a case's engine stores: a sled directory, or a database of its
/// own; or no engine: the decider alone.
enum Backend {
    Sled(tempfile::TempDir),
    Postgres { url: String, initialised: bool },
    Decider,
}

struct Harness {
    backend: Backend,
    clock: ManualClock,
    running: Option<(Engine, EngineThreads)>,
    decider: Option<Decider>,
}

/// The decider driven directly, as the inventory actor drives it: the
/// sweeps before each decision, a change adopted, its records kept (made
/// durable) and settled at once.
struct Decider {
    books: Books,
    memory: Memory,
    /// The inventory `init` would write, before any change wrote one.
    initial: InventoryRecord,
    synced: bool,
}

impl Decider {
    fn start(memory: Memory, initial: InventoryRecord, clock: &ManualClock) -> Self {
        let settings = settings();
        let recovered = memory.recovered(&initial, settings.packages.clone());
        let books = Books::new(recovered, settings.rules(), clock.now_ms(), clock.monotonic_ms());
        Self { books, memory, initial, synced: false }
    }

    fn now(&self, clock: &ManualClock) -> Now {
        Now { now_ms: clock.now_ms(), monotonic_ms: clock.monotonic_ms(), writable: true, synced: self.synced }
    }

    /// What the inventory does with a change: checks, adopts, then (durable) keeps and settles.
    fn apply(&mut self, mut change: creditd::decide::Change, clock: &ManualClock) {
        self.books.assert_invariants(&change.next);
        change.writes.inventory(change.next.clone());
        let writes = std::mem::take(&mut change.writes);
        let touched = self.books.adopt(change).expect("adopts");
        self.memory.keep(&writes);
        self.books.settle(&touched, clock.monotonic_ms());
    }

    /// The expiries and completions by time that are due, as every handler starts.
    fn sweep(&mut self, clock: &ManualClock) {
        let now = self.now(clock);
        let due = self.books.due_holds(now.monotonic_ms);
        if !due.is_empty() {
            let change = self.books.decide_expiries(&now, &due).expect("expires");
            self.apply(change, clock);
        }
        let due = self.books.due_spends(now.monotonic_ms);
        if !due.is_empty() {
            let change = self.books.decide_completions(&now, &due).expect("completes");
            self.apply(change, clock);
        }
    }

    /// A command about `user`: read first, then swept, then decided; read again on a refetch.
    fn command(
        &mut self,
        user: &UserId,
        command: &UserCommand,
        clock: &ManualClock,
    ) -> Result<UserReceipt, EngineError> {
        let mut prefetched = self.memory.prefetch(user, command);
        self.sweep(clock);
        for _ in 0..4 {
            match decide(&self.books, user, command, &prefetched, &self.now(clock))? {
                Decision::Apply(change, receipt) => {
                    self.apply(*change, clock);
                    return Ok(receipt);
                }
                Decision::Replay(receipt) => return Ok(receipt),
                Decision::Refetch => prefetched = self.memory.prefetch(user, command),
            }
        }
        panic!("a fresh read is never stale: {command:?}");
    }

    fn hold_owner(&self, id: &HoldId) -> Result<UserId, EngineError> {
        self.memory.hold(id).map(|hold| hold.user.clone()).ok_or_else(|| EngineError::UnknownHold(id.clone()))
    }

    fn spend_owner(&self, id: &SpendId) -> Result<UserId, EngineError> {
        self.memory.spend(id).map(|spend| spend.user.clone()).ok_or_else(|| EngineError::UnknownSpend(id.clone()))
    }

    fn begin_sync(&mut self, clock: &ManualClock) -> SyncToken {
        self.sweep(clock);
        self.books.begin_sync()
    }

    fn land(&mut self, token: SyncToken, real: u64, clock: &ManualClock) -> Result<SyncOutcome, EngineError> {
        self.sweep(clock);
        let real = ProviderCredits::new(real).expect("small");
        let (change, outcome) = self.books.decide_sync(&self.now(clock), ApplySync { real, token })?;
        self.books.end_sync();
        self.apply(change, clock);
        self.synced = true;
        Ok(outcome)
    }
}

fn settings() -> Settings {
    let mut settings = Settings::from_config(&Config::load_with(None, |_| None).expect("defaults"));
    // Every restart of the model sums the wallets too.
    settings.verify_wallets_at_start = true;
    settings.max_open_holds_per_user = MAX_OPEN_HOLDS;
    settings.spend_complete_after = std::time::Duration::from_millis(SPEND_COMPLETE_AFTER_MS);
    let expiring = &mut settings.packages[EXPIRING_PACKAGE];
    *expiring = expiring.clone().expiring_after(Some(1)).expect("a day");
    settings
}

impl Harness {
    async fn start(&mut self, balance: u64) {
        let settings = settings();
        if matches!(self.backend, Backend::Decider) {
            let (memory, initial) = match self.decider.take() {
                Some(decider) => (decider.memory, decider.initial),
                None => (Memory::default(), InventoryRecord::empty(settings.revenue_zero)),
            };
            self.decider = Some(Decider::start(memory, initial, &self.clock));
            self.sync(balance).await.expect("the first sync succeeds");
            return;
        }
        let store = match &mut self.backend {
            Backend::Sled(dir) => {
                if !dir.path().join("db").exists() {
                    init(dir.path(), &settings, &self.clock).expect("init");
                }
                Store::when_unlocked(std::time::Duration::from_secs(30), || Store::open(dir.path()))
                    .expect("store opens")
            }
            Backend::Decider => unreachable!("no store"),
            Backend::Postgres { url, initialised } => {
                if !*initialised {
                    creditd::store::postgres::init(url, settings.ratio, settings.revenue_zero.currency(), &self.clock)
                        .await
                        .expect("init --store");
                    *initialised = true;
                }
                // Epoch 0: the lease `init` leaves, which nobody else takes here.
                let url = url.clone();
                let ttl = std::time::Duration::from_secs(2);
                let opened = tokio::task::spawn_blocking(move || creditd::store::postgres::PgStore::open(&url, 0, ttl))
                    .await
                    .expect("joins");
                Store::Postgres(Arc::new(opened.expect("the store opens")))
            }
        };
        let recovered = recover(&store, &settings).expect("recovers");
        let clock: Arc<dyn Clock> = Arc::new(self.clock.clone());
        self.running = Some(Engine::start(recovered, settings, store, clock, None).expect("starts"));
        self.sync(balance).await.expect("the first sync succeeds");
    }

    async fn stop(&mut self) {
        if let Some((engine, threads)) = self.running.take() {
            drop(engine);
            tokio::task::spawn_blocking(move || threads.stop()).await.expect("stops");
        }
    }

    fn engine(&self) -> &Engine {
        &self.running.as_ref().expect("running").0
    }

    async fn sync(&mut self, real: u64) -> Result<SyncOutcome, EngineError> {
        let token = self.begin_sync().await;
        self.land(token, real).await
    }

    async fn begin_sync(&mut self) -> SyncToken {
        if let Some(decider) = &mut self.decider {
            return decider.begin_sync(&self.clock);
        }
        self.engine().inventory().send(BeginSync).await.expect("answers")
    }

    async fn land(&mut self, token: SyncToken, real: u64) -> Result<SyncOutcome, EngineError> {
        if let Some(decider) = &mut self.decider {
            return decider.land(token, real, &self.clock);
        }
        let real = ProviderCredits::new(real).expect("small");
        self.engine().inventory().send(ApplySync { real, token }).await.expect("answers")
    }

    /// A command about a user, on the engine or on the decider alone.
    async fn command(&mut self, user: &UserId, command: UserCommand) -> Result<UserReceipt, EngineError> {
        if let Some(decider) = &mut self.decider {
            return decider.command(user, &command, &self.clock);
        }
        let engine = self.engine().clone();
        let user = user.clone();
        Ok(match command {
            UserCommand::Purchase { package_id, key, fingerprint } => {
                UserReceipt::Purchase(engine.purchase(user, package_id, key, fingerprint).await?)
            }
            UserCommand::Hold { package_id, ttl_ms, key, fingerprint, owner } => {
                UserReceipt::Hold(engine.create_hold(user, package_id, ttl_ms, key, fingerprint, owner).await?)
            }
            UserCommand::Spend { credits, reason, key, fingerprint } => {
                UserReceipt::Spend(engine.spend(user, credits, reason, key, fingerprint).await?)
            }
            UserCommand::Capture { hold_id, by } => UserReceipt::Capture(engine.capture(hold_id, by).await?),
            UserCommand::Release { hold_id, by } => UserReceipt::Release(engine.release(hold_id, by).await?),
            UserCommand::Refund { spend_id, by } => UserReceipt::Refund(engine.refund(spend_id, by).await?),
            UserCommand::Complete { spend_id, by } => UserReceipt::Complete(engine.complete(spend_id, by).await?),
            UserCommand::Grant { credits, expires_at_ms, reason, key, fingerprint } => {
                UserReceipt::Grant(engine.grant(user, credits, expires_at_ms, reason, key, fingerprint).await?)
            }
            UserCommand::Void { grant, reason, .. } => UserReceipt::Void(engine.void_grant(grant, reason).await?),
            UserCommand::ExpireGrants => UserReceipt::Expired(engine.expire_grants(&user).await?),
        })
    }

    /// A command about a hold or spend, sent to its owner as the engine does.
    async fn by_id(&mut self, command: UserCommand) -> Result<UserReceipt, EngineError> {
        let owner = match (&self.decider, &command) {
            (Some(decider), UserCommand::Capture { hold_id, .. } | UserCommand::Release { hold_id, .. }) => {
                decider.hold_owner(hold_id)?
            }
            (Some(decider), UserCommand::Refund { spend_id, .. } | UserCommand::Complete { spend_id, .. }) => {
                decider.spend_owner(spend_id)?
            }
            // The engine finds the owner itself.
            _ => UserId::parse("unused").expect("valid"),
        };
        self.command(&owner, command).await
    }

    /// The books as a snapshot shows them (after the sweeps, as the snapshot makes them).
    async fn view(&mut self) -> View {
        if let Some(decider) = &mut self.decider {
            decider.sweep(&self.clock);
            let (state, capacity) = (&decider.books.state, decider.books.capacity());
            return View {
                provider_balance: capacity.provider_balance.get(),
                held_back: capacity.held_back.get(),
                open_spends: state.open_spends.get(),
                reserved: capacity.reserved.get(),
                holds: state.holds_total.get(),
                wallets: state.wallets_total.get(),
            };
        }
        let view = self.engine().snapshot().await.expect("snapshot");
        View {
            provider_balance: view.capacity.provider_balance.get(),
            held_back: view.capacity.held_back.get(),
            open_spends: view.open_spends_total.get(),
            reserved: view.capacity.reserved.get(),
            holds: view.holds_total.get(),
            wallets: view.wallets_total.get(),
        }
    }

    /// The (promotional, remaining) of `user`'s grants that hold credits, in the burn order.
    async fn grants(&self, user: UserId) -> Vec<(bool, u64)> {
        let now = self.clock.now_ms();
        let wallet = match &self.decider {
            Some(decider) => decider.memory.wallet(&user).cloned().expect("a wallet"),
            None => self.engine().user_credits(user, 1).await.expect("a wallet").0,
        };
        let shown = creditd::domain::grants::shown(&wallet.grants, now);
        shown.iter().map(|g| (g.kind == creditd::domain::GrantKind::Promotional, g.remaining.get())).collect()
    }

    /// The grants' expiry sweep for every user.
    async fn expire_grants(&mut self) {
        if let Some(decider) = &mut self.decider {
            let now = decider.now(&self.clock).now_ms;
            for user in decider.books.due_grant_users(now, usize::MAX) {
                decider.command(&user, &UserCommand::ExpireGrants, &self.clock).expect("expires");
            }
            return;
        }
        for name in USERS {
            self.engine().expire_grants(&UserId::parse(name).expect("valid")).await.expect("expires");
        }
    }

    /// An admin's void of grant `id`.
    async fn void(&mut self, id: &str) -> Result<creditd::store::records::VoidReceipt, EngineError> {
        let grant = creditd::domain::GrantId::parse(id).expect("a grant id");
        let reason = creditd::domain::Reason::parse("model void").expect("valid");
        let Some(decider) = &mut self.decider else {
            return self.engine().void_grant(grant, reason).await;
        };
        let origin = decider.memory.ledger_entry(grant.0).cloned().ok_or(EngineError::UnknownGrant(grant))?;
        let user = origin.user.clone().ok_or(EngineError::UnknownGrant(grant))?;
        let command = UserCommand::Void { grant, reason, origin: Some(Arc::new(origin)) };
        match decider.command(&user, &command, &self.clock)? {
            UserReceipt::Void(receipt) => Ok(receipt),
            other => panic!("{other:?}"),
        }
    }

    async fn wallet(&self, user: UserId) -> Result<u64, EngineError> {
        if let Some(decider) = &self.decider {
            return decider.memory.wallet(&user).map(|wallet| wallet.balance.get()).ok_or(EngineError::UnknownUser);
        }
        self.engine().user_credits(user, 1).await.map(|(wallet, _)| wallet.balance.get())
    }
}

/// What `compare` reads of the books.
struct View {
    provider_balance: u64,
    held_back: u64,
    open_spends: u64,
    reserved: u64,
    holds: u64,
    wallets: u64,
}

/// The model's key `n` is the key `{op}{n / 2}` sent by caller `n % 2`: two
/// API keys sending the same `Idempotency-Key` are two operations (SPEC
/// §9.1), which the model, keyed by `n`, expects; an engine that ignored
/// the caller would replay one caller's answer to the other.
/// Caller `n` of the model ([`ADMIN`] or a key of [`key`]).
fn caller(n: u8) -> Caller {
    if n == ADMIN {
        return Caller { id: KeyId::parse("key_admin").expect("valid"), scopes: Scopes::ADMIN };
    }
    let scopes = Scopes::new([Scope::Storefront, Scope::Enhancement]).expect("two scopes");
    Caller { id: KeyId::parse(&format!("key_caller{n}")).expect("valid"), scopes }
}

fn key(op: char, n: u8) -> ScopedKey {
    let caller = KeyId::parse(&format!("key_caller{}", n % 2)).expect("valid");
    ScopedKey::new(caller, IdempotencyKey::parse(&format!("{op}{}", n / 2)).expect("valid"))
}

fn user(index: usize) -> UserId {
    UserId::parse(USERS[index]).expect("valid")
}

/// Runs one operation on the engine; returns its answer in the model's terms
/// and, for new holds and spends, the id the engine gave them.
async fn run(harness: &mut Harness, model: &Model, op: &Op) -> (Expect, Option<String>) {
    let balance_of = |answer: Result<UserReceipt, EngineError>| match answer {
        Ok(UserReceipt::Purchase(receipt)) => Expect::Balance(receipt.balance.get()),
        Ok(UserReceipt::Capture(receipt)) => Expect::Balance(receipt.balance.get()),
        Ok(UserReceipt::Refund(receipt)) => Expect::Balance(receipt.balance.get()),
        Ok(other) => panic!("{other:?}"),
        Err(error) => Expect::Refused(error),
    };
    match op {
        Op::Purchase { user: u, package, key: k } => {
            let package_id = PackageId::parse(PACKAGES[*package].0).expect("valid");
            let fingerprint = fingerprint(&[b"purchase", USERS[*u].as_bytes(), PACKAGES[*package].0.as_bytes()]);
            let command = UserCommand::Purchase { package_id, key: key('p', *k), fingerprint };
            match harness.command(&user(*u), command).await {
                // Its paid grant is `grant_` and the purchase's sequence number.
                Ok(UserReceipt::Purchase(receipt)) => {
                    let grant = receipt.purchase_id.replace("pur_", "grant_");
                    (Expect::Balance(receipt.balance.get()), Some(grant))
                }
                other => (balance_of(other), None),
            }
        }
        Op::Grant { user: u, credits, expires_in, key: k } => {
            let amount = UserCredits::positive(*credits).expect("positive");
            let expiry = expires_in.map_or_else(|| "never".to_owned(), |ms| ms.to_string());
            let fingerprint = fingerprint(&[b"grant", USERS[*u].as_bytes(), &credits.to_be_bytes(), expiry.as_bytes()]);
            let expires_at_ms = expires_in.map(|ms| harness.clock.now_ms() + ms);
            let reason = creditd::domain::Reason::parse("model bonus").expect("valid");
            let command = UserCommand::Grant { credits: amount, expires_at_ms, reason, key: key('g', *k), fingerprint };
            match harness.command(&user(*u), command).await {
                Ok(UserReceipt::Grant(receipt)) => {
                    let id = receipt.grant_id.to_string();
                    (Expect::Id(id.clone()), Some(id))
                }
                Ok(other) => panic!("{other:?}"),
                Err(error) => (Expect::Refused(error), None),
            }
        }
        Op::Void { grant } => {
            let known: Vec<&ModelGrant> = model.grants.iter().filter(|grant| grant.id.is_some()).collect();
            let id = known[grant % known.len()].id.clone().expect("known");
            match harness.void(&id).await {
                Ok(receipt) => (Expect::Id(receipt.grant_id.to_string()), None),
                Err(error) => (Expect::Refused(error), None),
            }
        }
        Op::Hold { user: u, package, ttl_s, key: k } => {
            let package_id = PackageId::parse(PACKAGES[*package].0).expect("valid");
            let fingerprint =
                fingerprint(&[b"hold", USERS[*u].as_bytes(), PACKAGES[*package].0.as_bytes(), &ttl_s.to_be_bytes()]);
            let (ttl_ms, owner) = (ttl_s * 1000, caller(hold_maker(*u, *k)).id);
            let command = UserCommand::Hold { package_id, ttl_ms, key: k.map(|k| key('h', k)), fingerprint, owner };
            match harness.command(&user(*u), command).await {
                Ok(UserReceipt::Hold(receipt)) => {
                    let id = receipt.hold_id.to_string();
                    (Expect::Id(id.clone()), Some(id))
                }
                Ok(other) => panic!("{other:?}"),
                Err(error) => (Expect::Refused(error), None),
            }
        }
        Op::Capture { hold, by } => {
            let hold = &model.holds[*hold % model.holds.len()];
            let (hold_id, by) = (HoldId::parse(&hold.id).expect("valid"), caller(finisher(*by, hold.maker)));
            (balance_of(harness.by_id(UserCommand::Capture { hold_id, by }).await), None)
        }
        Op::Release { hold, by } => {
            let hold = &model.holds[*hold % model.holds.len()];
            let (hold_id, by) = (HoldId::parse(&hold.id).expect("valid"), caller(finisher(*by, hold.maker)));
            match harness.by_id(UserCommand::Release { hold_id, by }).await {
                Ok(UserReceipt::Release(receipt)) => (Expect::Id(receipt.hold_id.to_string()), None),
                Ok(other) => panic!("{other:?}"),
                Err(error) => (Expect::Refused(error), None),
            }
        }
        Op::Spend { user: u, credits, key: k } => {
            let amount = UserCredits::positive(*credits).expect("positive");
            let fingerprint = fingerprint(&[b"spend", USERS[*u].as_bytes(), &credits.to_be_bytes(), b"model"]);
            let reason = Some(creditd::domain::Reason::parse("model").expect("valid"));
            let command = UserCommand::Spend { credits: amount, reason, key: key('s', *k), fingerprint };
            match harness.command(&user(*u), command).await {
                Ok(UserReceipt::Spend(receipt)) => {
                    (Expect::Balance(receipt.balance.get()), Some(receipt.spend_id.to_string()))
                }
                Ok(other) => panic!("{other:?}"),
                Err(error) => (Expect::Refused(error), None),
            }
        }
        Op::Refund { spend, by } => {
            let spend = &model.spends[*spend % model.spends.len()];
            let (spend_id, by) = (SpendId::parse(&spend.id).expect("valid"), caller(finisher(*by, spend.maker)));
            (balance_of(harness.by_id(UserCommand::Refund { spend_id, by }).await), None)
        }
        Op::Complete { spend, by } => {
            let spend = &model.spends[*spend % model.spends.len()];
            let (spend_id, by) = (SpendId::parse(&spend.id).expect("valid"), caller(finisher(*by, spend.maker)));
            match harness.by_id(UserCommand::Complete { spend_id, by }).await {
                Ok(_) => (Expect::Id("completed".into()), None),
                Err(error) => (Expect::Refused(error), None),
            }
        }
        _ => unreachable!("handled by the driver"),
    }
}

/// Compares everything observable with the model.
async fn compare(harness: &mut Harness, model: &Model, step: usize, op: &Op) -> Result<(), TestCaseError> {
    let view = harness.view().await;
    // SPEC §4.1, against the provider itself rather than the engine's view.
    let can_count_on = model.real.checked_sub(model.to_come());
    prop_assert!(
        can_count_on.is_some_and(|credits| view.provider_balance <= credits),
        "step {step} {op:?}: §4.1: providerBalance {} exceeds the real balance {} minus the consumption to come {}",
        view.provider_balance,
        model.real,
        model.to_come()
    );
    let reserved = model.reserved();
    prop_assert_eq!(view.provider_balance, model.balance, "step {} {:?}: provider balance", step, op);
    prop_assert_eq!(view.held_back, model.held_back, "step {} {:?}: held back", step, op);
    let open: u64 = model.spends.iter().filter(|s| s.state == SpendState::Open).map(|s| s.credits).sum();
    prop_assert_eq!(view.open_spends, open, "step {} {:?}: Σ open spends", step, op);
    prop_assert_eq!(view.reserved, reserved, "step {} {:?}: reserved", step, op);
    let open: u64 = model.holds.iter().filter(|h| model.open(h)).map(|h| h.credits).sum();
    prop_assert_eq!(view.holds, open, "step {} {:?}: Σ open holds", step, op);
    let wallets: u64 = model.wallets.values().sum();
    prop_assert_eq!(view.wallets, wallets, "step {} {:?}: Σ wallets", step, op);
    prop_assert_eq!(view.reserved, RATIO * (view.wallets + view.holds), "§4.5");
    for (index, name) in USERS.iter().enumerate() {
        if model.wallets.contains_key(&index) {
            let shown = harness.grants(UserId::parse(name).expect("valid")).await;
            prop_assert_eq!(shown, model.shown_grants(index), "step {} {:?}: grants of {}", step, op, name);
        }
        let stored = harness.wallet(UserId::parse(name).expect("valid")).await;
        match (model.wallets.get(&index), stored) {
            (Some(expected), Ok(balance)) => {
                prop_assert_eq!(balance, *expected, "step {} {:?}: wallet of {}", step, op, name)
            }
            (None, Err(EngineError::UnknownUser)) => {}
            (expected, got) => {
                prop_assert!(false, "step {step} {op:?}: wallet of {name}: model {expected:?}, engine {got:?}")
            }
        }
    }
    Ok(())
}

fn check_case(initial: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    check_case_on(Backend::Sled(tempfile::tempdir().expect("temp dir")), initial, ops)
}

fn check_case_on(backend: Backend, initial: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let system = actix_rt::System::new();
    system.block_on(async move {
        let mut harness =
            Harness { backend, clock: ManualClock::starting_at(1_750_000_000_000), running: None, decider: None };
        let mut model = Model { balance: initial, real: initial, now: 1_750_000_000_000, ..Model::default() };
        harness.start(initial).await;
        let mut outcome = Ok(());
        for (step, op) in ops.iter().enumerate() {
            model.complete_due();
            let expected = match op {
                Op::Advance { ms } => {
                    harness.clock.advance_ms(*ms);
                    model.now += ms;
                    // The grants' expiry sweep, at once (the engine's runs every second).
                    harness.expire_grants().await;
                    model.expire_grants();
                    None
                }
                Op::Consume { spend } if !model.spends.is_empty() => {
                    model.consume(spend % model.spends.len());
                    None
                }
                Op::Refill { credits } => {
                    model.real += credits;
                    None
                }
                Op::SyncBegin if model.in_flight.is_none() => {
                    let token = harness.begin_sync().await;
                    model.in_flight = Some(InFlight { token, read: None, completed: 0 });
                    None
                }
                Op::SyncRead => {
                    if let Some(flight) = &mut model.in_flight {
                        flight.read = flight.read.or(Some(model.real));
                    }
                    None
                }
                Op::SyncLand => {
                    if let Some(flight) = model.in_flight.take() {
                        let read = flight.read.unwrap_or(model.real);
                        harness.land(flight.token, read).await.expect("sync applies");
                        model.land(read, flight.completed);
                    }
                    None
                }
                Op::Restart => {
                    model.in_flight = None;
                    harness.stop().await;
                    harness.start(model.real).await;
                    model.land(model.real, 0);
                    None
                }
                Op::Capture { .. } | Op::Release { .. } if model.holds.is_empty() => None,
                Op::Void { .. } if model.grants.iter().all(|grant| grant.id.is_none()) => None,
                Op::Refund { .. } | Op::Complete { .. } | Op::Consume { .. } if model.spends.is_empty() => None,
                Op::SyncBegin => None,
                _ => {
                    // A spend the provider already consumed did not fail: the
                    // enhancement service completes it instead.
                    let op = match op {
                        Op::Refund { spend, by } if model.spends[spend % model.spends.len()].consumed => {
                            &Op::Complete { spend: *spend, by: *by }
                        }
                        other => other,
                    };
                    let (got, new_id) = run(&mut harness, &model, op).await;
                    let expected = match op {
                        Op::Purchase { user, package, key } => model.purchase(*user, *package, *key, new_id),
                        Op::Grant { user, credits, expires_in, key } => {
                            model.grant(*user, *credits, *expires_in, *key, new_id)
                        }
                        Op::Void { grant } => {
                            let known: Vec<usize> =
                                (0..model.grants.len()).filter(|&i| model.grants[i].id.is_some()).collect();
                            model.void(known[grant % known.len()])
                        }
                        Op::Hold { user, package, ttl_s, key } => model.hold(*user, *package, *ttl_s, *key, new_id),
                        Op::Capture { hold, by } => model.capture(hold % model.holds.len(), *by),
                        Op::Release { hold, by } => model.release(hold % model.holds.len(), *by),
                        Op::Spend { user, credits, key } => model.spend(*user, *credits, *key, new_id),
                        Op::Refund { spend, by } => model.refund(spend % model.spends.len(), *by),
                        Op::Complete { spend, by } => model.complete(spend % model.spends.len(), *by),
                        _ => unreachable!(),
                    };
                    Some((got, expected))
                }
            };
            if let Some((got, expected)) = expected {
                if got != expected {
                    outcome =
                        Err(TestCaseError::fail(format!("step {step} {op:?}: engine {got:?}, model {expected:?}")));
                    break;
                }
            }
            // Not after a clock advance: the comparison's snapshot would expire
            // due holds, hiding an engine that forgets to before deciding.
            if matches!(op, Op::Advance { .. }) {
                continue;
            }
            if let Err(error) = compare(&mut harness, &model, step, op).await {
                outcome = Err(error);
                break;
            }
        }
        if outcome.is_ok() {
            outcome = settle(&mut harness, &mut model).await;
        }
        harness.stop().await;
        if outcome.is_ok() {
            let report = match &harness.backend {
                Backend::Sled(dir) => {
                    Store::when_unlocked(std::time::Duration::from_secs(30), || creditd::check::check(dir.path()))
                        .expect("check runs")
                }
                Backend::Postgres { url, .. } => {
                    creditd::store::postgres::check::check(url).await.expect("check --store runs")
                }
                // No store: `compare` checked the books after every step.
                Backend::Decider => return outcome,
            };
            prop_assert!(report.passed(), "creditd check:\n{}", report);
        }
        outcome
    })
}

/// The end state of SPEC §6: every spend completed or refunded, two quiet
/// syncs, then `providerBalance` is the real balance and the drift 0.
async fn settle(harness: &mut Harness, model: &mut Model) -> Result<(), TestCaseError> {
    if let Some(flight) = model.in_flight.take() {
        let read = flight.read.unwrap_or(model.real);
        harness.land(flight.token, read).await.expect("sync applies");
        model.land(read, flight.completed);
    }
    model.complete_due();
    for index in 0..model.spends.len() {
        if model.spends[index].state == SpendState::Open {
            let spend_id = SpendId::parse(&model.spends[index].id).expect("valid");
            let completed = harness.by_id(UserCommand::Complete { spend_id, by: caller(ADMIN) }).await;
            completed.map_err(|error| TestCaseError::fail(format!("complete: {error}")))?;
            model.finish(index);
        }
    }
    harness.sync(model.real).await.expect("the first quiet sync");
    let last = harness.sync(model.real).await.expect("the second quiet sync");
    prop_assert_eq!(last.balance.get(), model.real, "after two quiet syncs providerBalance is the real balance");
    prop_assert_eq!(last.drift, Some(0), "and the drift is 0");
    Ok(())
}

fn cases() -> u32 {
    std::env::var("MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

fn initial() -> impl Strategy<Value = u64> {
    prop_oneof![0..3000u64, Just(938u64)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_behaves_like_the_model(initial in initial(), ops in proptest::collection::vec(op(), 1..40)) {
        check_case(initial, ops)?;
    }
}

fn decider_cases() -> u32 {
    std::env::var("MODEL_DECIDER_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: decider_cases(), max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    /// The same model against the decider alone: no actor, no store.
    #[test]
    fn the_decider_behaves_like_the_model(initial in initial(), ops in proptest::collection::vec(op(), 1..60)) {
        check_case_on(Backend::Decider, initial, ops)?;
    }
}

/// The same model, with the engine on the PostgreSQL store.
#[test]
fn the_engine_on_postgres_behaves_like_the_model() {
    let Some(database) = postgres::Postgres::start() else { return };
    let cases = std::env::var("MODEL_PG_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    });
    let made = std::sync::atomic::AtomicU32::new(0);
    let admin = database.url();
    let outcome = runner.run(&(initial(), proptest::collection::vec(op(), 1..40)), |(initial, ops)| {
        let name = format!("model_{}", made.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let client = creditd::store::postgres::connect(&admin).await.expect("connects");
            client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("a database for the case");
        });
        let url = admin.replace("/postgres", &format!("/{name}"));
        check_case_on(Backend::Postgres { url, initialised: false }, initial, ops)
    });
    if let Err(error) = outcome {
        panic!("{error}");
    }
}

/// A named case: a purchase right after a hold's deadline must see the freed
/// capacity even though no sweep has run yet.
#[test]
fn a_purchase_right_after_a_deadline_sees_the_freed_capacity() {
    let ops = vec![
        Op::Hold { user: 0, package: 2, ttl_s: 1, key: None },
        Op::Purchase { user: 1, package: 2, key: 0 },
        Op::Advance { ms: 1000 },
        Op::Purchase { user: 1, package: 2, key: 1 },
    ];
    check_case(400 + 39, ops).expect("matches the model");
}

/// A named case, the issue-24 oversell: a sync lands while a spend is open
/// and the provider has not consumed it; the refund must not give back
/// credits the sync already counted.
#[test]
fn a_refund_after_a_sync_that_held_back_its_spend_gives_back_only_that() {
    let ops = vec![
        Op::Purchase { user: 0, package: 2, key: 0 },
        Op::Spend { user: 0, credits: 100, key: 0 },
        Op::SyncBegin,
        Op::SyncLand,
        Op::Refund { spend: 0, by: 0 },
        Op::Purchase { user: 1, package: 2, key: 1 },
        Op::Purchase { user: 2, package: 2, key: 2 },
        Op::Restart,
        Op::Spend { user: 0, credits: 25, key: 2 },
    ];
    check_case(1_000, ops).expect("matches the model");
}

/// A named case: the provider consumes an open spend before it reads its
/// balance for a sync, and the spend completes while the request is in
/// flight; then the provider drops (a refill takes it back up).
#[test]
fn a_spend_consumed_before_the_read_and_completed_in_flight_is_held_back() {
    let ops = vec![
        Op::Purchase { user: 0, package: 1, key: 0 },
        Op::Spend { user: 0, credits: 30, key: 0 },
        Op::SyncBegin,
        Op::Consume { spend: 0 },
        Op::SyncRead,
        Op::Complete { spend: 0, by: 0 },
        Op::Spend { user: 0, credits: 10, key: 1 },
        Op::SyncLand,
        Op::Refund { spend: 1, by: 0 },
        Op::Refill { credits: 100 },
        Op::Advance { ms: 1_500 },
        Op::Advance { ms: 1_500 },
        Op::SyncBegin,
        Op::SyncLand,
    ];
    check_case(938, ops).expect("matches the model");
}
