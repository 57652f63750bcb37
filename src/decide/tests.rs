//! The decisions driven directly, without an actor, a commit loop or a
//! store: the books, a command, the time, and reads from an in-memory
//! store of what the changes so far wrote ([`Memory`]).

use super::memory::Memory;
use super::settled::Touched;
use super::{
    decide, ApplySync, Books, Decision, EngineError, Now, Prefetched, Recovered, SetPurchasesEnabled, SyncOutcome,
    UpdatePackage, UserCommand, UserReceipt,
};
use crate::actors::setup::Settings;
use crate::config::Config;
use crate::domain::{
    Caller, GrantKind, HoldId, IdempotencyKey, KeyId, PackageId, ProviderCredits, Scope, ScopedKey, Scopes, SpendId,
    UserCredits, UserId,
};
use crate::store::records::{CompletedBy, CompletionReceipt, EntryKind, InventoryRecord, WalletRecord};
use crate::store::writes::Write;

const T0: u64 = 1_750_000_000_000;

/// The default packages and ratio 4, with `balance` provider credits.
fn books(balance: u64) -> Books {
    let settings = Settings::from_config(&Config::load_with(None, |_| None).expect("defaults"));
    let mut state = InventoryRecord::empty(settings.revenue_zero);
    state.provider_balance = ProviderCredits::new(balance).expect("small");
    let recovered = Recovered {
        state,
        open_holds: Vec::new(),
        packages: settings.packages.clone(),
        last_at_ms: 0,
        api_keys: Vec::new(),
        open_spends: Vec::new(),
        grant_deadlines: Vec::new(),
        expired_by_day: Vec::new(),
    };
    Books::new(recovered, settings.rules(), T0, 0)
}

fn inputs(_: &Memory, monotonic_ms: u64) -> Now {
    Now { now_ms: T0 + monotonic_ms, monotonic_ms, writable: true, synced: true }
}

fn key(text: &str) -> ScopedKey {
    ScopedKey { caller: KeyId::parse("key_1").expect("valid"), key: IdempotencyKey::parse(text).expect("valid") }
}

/// The key that makes the holds and spends of these tests (`key_1`, as
/// [`key`]'s caller).
fn maker() -> Caller {
    let scopes = Scopes::new([Scope::Storefront, Scope::Enhancement]).expect("two scopes");
    Caller { id: KeyId::parse("key_1").expect("valid"), scopes }
}

fn user(name: &str) -> UserId {
    UserId::parse(name).expect("valid")
}

fn starter() -> PackageId {
    PackageId::parse("starter").expect("valid")
}

/// Decides `command` for `who` at `monotonic_ms` with what a read of `memory` gives.
fn run(
    books: &Books,
    memory: &Memory,
    who: &str,
    command: &UserCommand,
    monotonic_ms: u64,
) -> Result<Decision<UserReceipt>, EngineError> {
    let prefetched = memory.prefetch(&user(who), command);
    decide(books, &user(who), command, &prefetched, &inputs(memory, monotonic_ms))
}

fn purchase(order: &str, fingerprint: u8) -> UserCommand {
    UserCommand::Purchase { package_id: starter(), key: key(order), fingerprint: [fingerprint; 32] }
}

/// Adopts a change and makes it durable at once, as the actor and the
/// commit loop would; keeps its writes.
fn settle(books: &mut Books, memory: &mut Memory, change: super::Change) -> Touched {
    memory.keep(&change.writes);
    let touched = books.adopt(change).expect("adopts");
    books.settle(&touched, 0);
    touched
}

/// Decides a purchase, adopts it and keeps its writes, as the actor and
/// the commit loop would once it is durable.
fn buy(books: &mut Books, memory: &mut Memory, who: &str, order: &str) -> Result<UserReceipt, EngineError> {
    match run(books, memory, who, &purchase(order, 1), 0)? {
        Decision::Apply(change, outcome) => {
            settle(books, memory, *change);
            Ok(outcome)
        }
        Decision::Replay(outcome) => Ok(outcome),
        Decision::Refetch => panic!("a fresh read is current"),
    }
}

/// Applies a decision that must change something; answers its outcome.
fn apply<T>(books: &mut Books, memory: &mut Memory, decided: Result<Decision<T>, EngineError>) -> T {
    match decided.expect("decided") {
        Decision::Apply(change, outcome) => {
            settle(books, memory, *change);
            outcome
        }
        _ => panic!("expected a change"),
    }
}

fn credits(n: u64) -> ProviderCredits {
    ProviderCredits::new(n).expect("small")
}

/// Buys a starter (10 credits) for `who` and spends `n` of them; answers the spend's id.
fn buy_and_spend(books: &mut Books, memory: &mut Memory, who: &str, n: u64) -> SpendId {
    buy(books, memory, who, &format!("buy-{who}-{}", books.state.next_seq)).expect("fits");
    spend(books, memory, who, n)
}

fn spend_command(n: u64, order: &str) -> UserCommand {
    UserCommand::Spend {
        credits: UserCredits::new(n).expect("small"),
        reason: None,
        key: key(order),
        fingerprint: [4; 32],
    }
}

fn spend(books: &mut Books, memory: &mut Memory, who: &str, n: u64) -> SpendId {
    let order = format!("spend-{who}-{}", books.state.next_seq);
    let decided = run(books, memory, who, &spend_command(n, &order), 0);
    match apply(books, memory, decided) {
        UserReceipt::Spend(receipt) => receipt.spend_id,
        other => panic!("{other:?}"),
    }
}

fn refund(books: &mut Books, memory: &mut Memory, who: &str, id: &SpendId) -> Result<(), EngineError> {
    let decided = run(books, memory, who, &UserCommand::Refund { spend_id: id.clone(), by: maker() }, 0)?;
    apply(books, memory, Ok(decided));
    Ok(())
}

/// Completes spend `id` as the actor would: a change is adopted and
/// kept; answers whether there was one (false: a replay) and the receipt.
fn complete(books: &mut Books, memory: &mut Memory, id: &SpendId) -> Result<(bool, CompletionReceipt), EngineError> {
    let owner = memory.spend(id).map_or_else(|| "nobody".to_owned(), |spend| spend.user.to_string());
    let decided = run(books, memory, &owner, &UserCommand::Complete { spend_id: id.clone(), by: maker() }, 0)?;
    Ok(match decided {
        Decision::Apply(change, UserReceipt::Complete(receipt)) => {
            settle(books, memory, *change);
            (true, receipt)
        }
        Decision::Replay(UserReceipt::Complete(receipt)) => (false, receipt),
        other => panic!("{other:?}"),
    })
}

/// A sync whose request leaves now; `between` runs while it is in
/// flight; the provider answers `real`.
fn sync(
    books: &mut Books,
    memory: &mut Memory,
    real: u64,
    between: impl FnOnce(&mut Books, &mut Memory),
) -> SyncOutcome {
    let token = books.begin_sync();
    between(books, memory);
    let message = ApplySync { real: credits(real), token };
    let (change, outcome) = books.decide_sync(&inputs(memory, 0), message).expect("applies");
    settle(books, memory, change);
    books.end_sync();
    outcome
}

#[test]
fn purchases_sell_to_capacity_and_not_one_credit_beyond() {
    let (mut books, mut memory) = (books(400), Memory::default());
    for order in 0..10 {
        buy(&mut books, &mut memory, &format!("u{order}"), &format!("o{order}")).expect("fits");
    }
    assert_eq!(books.state.reserved, ProviderCredits::new(400).expect("small"), "10 × 10 credits × ratio 4");
    let refused = buy(&mut books, &mut memory, "late", "o10");
    assert!(matches!(refused, Err(EngineError::InsufficientCapacity)), "{refused:?}");
    assert_eq!(books.state.next_seq, 11, "a refusal writes nothing");
}

#[test]
fn a_retry_is_in_use_while_in_flight_then_the_first_answer_and_another_body_is_refused() {
    let (mut books, mut memory) = (books(4_000), Memory::default());
    let decided = run(&books, &memory, "ann", &purchase("k", 1), 0).expect("fits");
    let Decision::Apply(change, first) = decided else { panic!("a new key is applied") };
    memory.keep(&change.writes);
    let touched = books.adopt(*change).expect("adopts");
    let again = run(&books, &memory, "ann", &purchase("k", 1), 0);
    assert!(matches!(again, Err(EngineError::IdempotencyKeyInUse)), "not durable yet: {:?}", again.err());
    books.settle(&touched, 0);
    let Decision::Replay(replayed) = run(&books, &memory, "ann", &purchase("k", 1), 0).expect("answers") else {
        panic!("a durable key is replayed")
    };
    assert_eq!(replayed, first, "the first answer");
    let other = run(&books, &memory, "ann", &purchase("k", 2), 0);
    assert!(matches!(other, Err(EngineError::IdempotencyKeyReused)), "{:?}", other.err());
    assert!(matches!(first, UserReceipt::Purchase(_)));
}

#[test]
fn a_hold_expires_at_its_monotonic_deadline_and_gives_its_reservation_back() {
    let (mut books, memory) = (books(4_000), Memory::default());
    let hold =
        UserCommand::Hold { package_id: starter(), ttl_ms: 60_000, key: None, fingerprint: [3; 32], owner: maker().id };
    let Decision::Apply(change, UserReceipt::Hold(receipt)) = run(&books, &memory, "bo", &hold, 1_000).expect("fits")
    else {
        panic!("a new hold is applied")
    };
    books.adopt(*change).expect("adopts");
    assert_eq!(books.state.reserved, ProviderCredits::new(40).expect("small"));
    assert!(!books.is_due(&receipt.hold_id, 60_999), "one millisecond before its deadline");
    assert!(books.is_due(&receipt.hold_id, 61_000), "at its deadline");
    let expired =
        books.decide_expiries(&inputs(&memory, 61_000), std::slice::from_ref(&receipt.hold_id)).expect("expires");
    let entry = expired.writes.writes().iter().find_map(|write| match write {
        Write::Ledger(entry) => Some(entry.clone()),
        _ => None,
    });
    let entry = entry.expect("an expiry entry");
    assert!(matches!(entry.kind, EntryKind::HoldExpired { .. }), "{entry:?}");
    assert!(entry.at_ms >= receipt.expires_at_ms, "dated no earlier than its expiresAt");
    books.adopt(expired).expect("adopts");
    assert_eq!(books.state.reserved, ProviderCredits::ZERO, "the reservation is back");
    assert!(books.open_holds.is_empty());
    assert!(books.holds_per_user.is_empty(), "no open hold is counted for the user any more");
}

/// The scenario, on the books: a sync that lands while a spend is
/// open must not count the spend's provider credits twice once it is refunded.
#[test]
fn a_sync_holds_back_an_open_spend_and_its_refund_gives_back_exactly_that() {
    let (mut books, mut memory) = (books(1_000), Memory::default());
    let spent = buy_and_spend(&mut books, &mut memory, "alice", 10);
    assert_eq!((books.state.provider_balance, books.state.reserved), (credits(960), credits(0)));
    let outcome = sync(&mut books, &mut memory, 1_000, |_, _| {});
    assert_eq!(outcome.held_back, credits(40), "the open spend");
    assert_eq!(books.state.provider_balance, credits(960), "the provider may still consume it");
    refund(&mut books, &mut memory, "alice", &spent).expect("refunds");
    assert_eq!(books.state.provider_balance, credits(1_000), "given back: what the sync held back");
    assert_eq!(books.state.held_back, credits(0));
    assert_eq!(books.capacity().user_credits().get(), 240, "(1000 − 40) / 4, not a credit more");
}

#[test]
fn a_spend_completed_in_flight_is_held_back_and_one_refunded_in_flight_is_not() {
    let (mut books, mut memory) = (books(1_000), Memory::default());
    let done = buy_and_spend(&mut books, &mut memory, "ann", 5);
    let failed = buy_and_spend(&mut books, &mut memory, "bo", 3);
    let outcome = sync(&mut books, &mut memory, 900, |books, memory| {
        complete(books, memory, &done).expect("completes");
        refund(books, memory, "bo", &failed).expect("refunds");
    });
    assert_eq!(outcome.held_back, credits(20), "ann's 5 credits: the provider may have read before consuming");
    assert_eq!(books.state.provider_balance, credits(880));
    assert_eq!(outcome.previous, credits(980), "1000 − 20 spent (ann), bo's 12 given back");
    assert_eq!(outcome.drift, None, "the first sync of a store has no drift");
    let later = sync(&mut books, &mut memory, 900, |_, _| {});
    assert_eq!((later.held_back, later.drift, later.drift_explained), (credits(0), Some(20), true));
    assert_eq!(books.state.provider_balance, credits(900));
    let quiet = sync(&mut books, &mut memory, 900, |_, _| {});
    assert_eq!((quiet.drift, quiet.drift_explained), (Some(0), true), "two quiet syncs: drift 0");
    let lost = sync(&mut books, &mut memory, 899, |_, _| {});
    assert_eq!((lost.drift, lost.drift_explained), (Some(-1), false), "nothing in flight explains a lost credit");
}

#[test]
fn a_drift_is_explained_only_within_what_the_syncs_held_back() {
    let (mut books, mut memory) = (books(1_000), Memory::default());
    sync(&mut books, &mut memory, 1_000, |_, _| {});
    let open = buy_and_spend(&mut books, &mut memory, "ann", 10);
    let consumed = sync(&mut books, &mut memory, 960, |_, _| {});
    assert_eq!((consumed.held_back, consumed.drift, consumed.drift_explained), (credits(40), Some(-40), true));
    complete(&mut books, &mut memory, &open).expect("completes");
    let back = sync(&mut books, &mut memory, 960, |_, _| {});
    assert_eq!((back.drift, back.drift_explained), (Some(40), true), "up to what the previous sync held back");
    let over = sync(&mut books, &mut memory, 961, |_, _| {});
    assert_eq!((over.drift, over.drift_explained), (Some(1), false), "the previous sync held back nothing");

    let (mut fresh, mut memory) = (self::books(1_000), Memory::default());
    sync(&mut fresh, &mut memory, 1_000, |_, _| {});
    buy_and_spend(&mut fresh, &mut memory, "ann", 10);
    let below = sync(&mut fresh, &mut memory, 959, |_, _| {});
    assert_eq!((below.drift, below.drift_explained), (Some(-41), false), "one credit past what it held back");
}

#[test]
fn held_back_spends_leave_nothing_to_sell_without_overcommitting() {
    let (mut books, mut memory) = (books(1_000), Memory::default());
    buy(&mut books, &mut memory, "ann", "a").expect("fits");
    let open = spend(&mut books, &mut memory, "ann", 10);
    for order in 0..24 {
        buy(&mut books, &mut memory, &format!("u{order}"), &format!("o{order}")).expect("fits");
    }
    assert_eq!((books.state.provider_balance, books.state.reserved), (credits(960), credits(960)));
    sync(&mut books, &mut memory, 960, |_, _| {});
    assert_eq!(books.state.provider_balance, credits(920), "the provider consumed it, or may still");
    assert!(!books.capacity().overcommitted(), "920 + 40 held back cover 960");
    assert_eq!(books.capacity().user_credits().get(), 0, "but nothing is left to sell");
    complete(&mut books, &mut memory, &open).expect("completes");
    sync(&mut books, &mut memory, 959, |_, _| {});
    assert!(books.capacity().overcommitted(), "959 < 960 with nothing held back");
}

/// Spends that complete by time together, in one sweep, while a sync is
/// in flight: the sync holds back every one of them.
#[test]
fn spends_completed_by_time_in_one_sweep_during_a_sync_are_all_held_back() {
    let (mut books, mut memory) = (books(1_000), Memory::default());
    let first = buy_and_spend(&mut books, &mut memory, "ann", 3);
    let second = buy_and_spend(&mut books, &mut memory, "bo", 5);
    let after = books.spend_complete_after_ms;
    let outcome = sync(&mut books, &mut memory, 1_000, |books, memory| {
        let both = [first.clone(), second.clone()];
        let swept = books.decide_completions(&inputs(memory, after), &both).expect("completes");
        memory.keep(&swept.writes);
        books.adopt(swept).expect("adopts");
    });
    assert_eq!(outcome.held_back, credits(32), "4 × (3 + 5): both may have been consumed after the read");
    assert_eq!(books.state.provider_balance, credits(968));
}

/// A spend may take the provider balance to zero, not one credit below
/// (SPEC §5: "Enhancement temporarily unavailable").
#[test]
fn a_spend_may_use_the_whole_provider_balance_and_not_a_credit_more() {
    let (mut books, mut memory) = (books(1_000), Memory::default());
    buy(&mut books, &mut memory, "ann", "a").expect("fits");
    sync(&mut books, &mut memory, 20, |_, _| {});
    spend(&mut books, &mut memory, "ann", 5);
    assert_eq!(books.state.provider_balance, credits(0), "20 provider credits, exactly the balance");
    let refused = run(&books, &memory, "ann", &spend_command(1, "more"), 0);
    assert!(matches!(refused, Err(EngineError::EnhancementUnavailable)), "{:?}", refused.err());
}

/// A refund after a spend's time ran out is refused even before the
/// sweep has completed it: every answer after the instant treats it as
/// completed (SPEC §5).
#[test]
fn a_refund_at_the_spends_time_is_refused_before_any_sweep() {
    let (mut books, mut memory) = (books(1_000), Memory::default());
    let late = buy_and_spend(&mut books, &mut memory, "ann", 2);
    let after = books.spend_complete_after_ms;
    let refused = run(&books, &memory, "ann", &UserCommand::Refund { spend_id: late.clone(), by: maker() }, after);
    assert!(matches!(refused, Err(EngineError::SpendCompleted)), "{:?}", refused.err());
    assert!(books.open_spends.contains_key(&late), "no sweep ran: it is the deadline that refuses");
}

#[test]
fn a_spend_ends_once_completed_or_refunded_and_completes_by_itself_at_its_time() {
    let (mut books, mut memory) = (books(1_000), Memory::default());
    let done = buy_and_spend(&mut books, &mut memory, "ann", 2);
    let (applied, receipt) = complete(&mut books, &mut memory, &done).expect("completes");
    assert!(applied, "an open spend is completed");
    let again = complete(&mut books, &mut memory, &done).expect("answers");
    assert_eq!(again, (false, receipt), "a second completion replays the first answer");
    assert!(matches!(refund(&mut books, &mut memory, "ann", &done), Err(EngineError::SpendCompleted)));
    let failed = spend(&mut books, &mut memory, "ann", 3);
    refund(&mut books, &mut memory, "ann", &failed).expect("refunds");
    assert!(matches!(refund(&mut books, &mut memory, "ann", &failed), Err(EngineError::AlreadyRefunded)));
    assert!(matches!(complete(&mut books, &mut memory, &failed), Err(EngineError::AlreadyRefunded)));
    let late = spend(&mut books, &mut memory, "ann", 1);
    let after = books.spend_complete_after_ms;
    assert!(!books.spend_is_due(&late, after - 1), "one millisecond before its time");
    assert!(books.spend_is_due(&late, after), "at its time");
    let timed = books.decide_completions(&inputs(&memory, after), std::slice::from_ref(&late)).expect("completes");
    let entry = timed.writes.writes().iter().find_map(|write| match write {
        Write::Ledger(entry) => Some(entry.clone()),
        _ => None,
    });
    let entry = entry.expect("a completion entry");
    assert!(matches!(entry.kind, EntryKind::SpendCompleted { by: CompletedBy::Time, .. }), "{entry:?}");
    assert!(entry.at_ms >= T0 + after, "dated no earlier than its time");
    memory.keep(&timed.writes);
    books.adopt(timed).expect("adopts");
    assert_eq!(books.state.open_spends, crate::domain::UserCredits::ZERO);
    assert!(books.open_spends.is_empty() && books.spend_deadlines.is_empty());
    assert!(matches!(refund(&mut books, &mut memory, "ann", &late), Err(EngineError::SpendCompleted)));
}

#[test]
fn a_package_change_replaces_that_package_and_no_other() {
    let (mut books, mut memory) = (books(4_000), Memory::default());
    let others: Vec<_> = books.packages.iter().filter(|package| package.id != starter()).cloned().collect();
    let update = UpdatePackage {
        package_id: starter(),
        enabled: Some(false),
        credits: None,
        price_minor_units: Some(1_234),
        expires_after_days: None,
    };
    let decided = books.decide_package(&inputs(&memory, 0), &update);
    let changed = apply(&mut books, &mut memory, decided);
    let starter_now = books.packages.iter().find(|package| package.id == starter()).expect("still there");
    assert_eq!((starter_now.enabled, starter_now.price.minor_units()), (false, 1_234));
    assert_eq!(starter_now, &changed);
    let others_now: Vec<_> = books.packages.iter().filter(|package| package.id != starter()).cloned().collect();
    assert_eq!(others_now, others, "the other packages are untouched");
}

#[test]
fn nothing_is_decided_on_failed_storage_and_nothing_sold_before_the_first_sync() {
    let (books, memory) = (books(4_000), Memory::default());
    let failed = Now { writable: false, ..inputs(&memory, 0) };
    let unsynced = Now { synced: false, ..inputs(&memory, 0) };
    assert!(matches!(books.ensure_writable(&failed), Err(EngineError::NotReady(_))));
    assert!(matches!(books.ensure_ready(&failed), Err(EngineError::NotReady(_))));
    assert!(matches!(books.ensure_ready(&unsynced), Err(EngineError::NotReady(_))));
    assert!(books.ensure_writable(&unsynced).is_ok(), "an operator may act before the first sync");
    let switch = SetPurchasesEnabled { enabled: false, reason: Some("x".into()) };
    assert!(matches!(books.decide_kill_switch(&failed, switch), Err(EngineError::NotReady(_))));
}

#[test]
#[should_panic(expected = "reserved must equal")]
fn a_state_whose_reserve_is_not_ratio_times_what_is_spoken_for_is_never_adopted() {
    let books = books(4_000);
    let mut next = books.state.clone();
    next.next_seq += 1;
    next.reserved = ProviderCredits::new(4).expect("small");
    books.assert_invariants(&next);
}

/// Two users' purchases with the same key and different bodies: the second
/// was read before the first became durable, so its read shows no record;
/// the decision asks for a fresh read, which shows the first body's record.
#[test]
fn a_key_read_before_another_change_with_it_settled_is_read_again() {
    let (mut books, mut memory) = (books(4_000), Memory::default());
    let early = memory.prefetch(&user("bo"), &purchase("k", 2));
    let Decision::Apply(change, _) = run(&books, &memory, "ann", &purchase("k", 1), 0).expect("fits") else {
        panic!("a new key is applied")
    };
    settle(&mut books, &mut memory, *change);
    let stale = decide(&books, &user("bo"), &purchase("k", 2), &early, &inputs(&memory, 0));
    assert!(matches!(stale, Ok(Decision::Refetch)), "{stale:?}");
    let fresh = run(&books, &memory, "bo", &purchase("k", 2), 0);
    assert!(matches!(fresh, Err(EngineError::IdempotencyKeyReused)), "{fresh:?}");
    assert_eq!(books.state.wallets_total.get(), 10, "one purchase, not two");
}

/// A capture read while the hold was open, decided after its release
/// settled: read again, and the fresh read says released.
#[test]
fn a_hold_read_before_its_release_settled_is_read_again() {
    let (mut books, mut memory) = (books(4_000), Memory::default());
    let hold =
        UserCommand::Hold { package_id: starter(), ttl_ms: 60_000, key: None, fingerprint: [3; 32], owner: maker().id };
    let decided = run(&books, &memory, "bo", &hold, 0);
    let UserReceipt::Hold(receipt) = apply(&mut books, &mut memory, decided) else { panic!("a hold") };
    let capture = UserCommand::Capture { hold_id: receipt.hold_id.clone(), by: maker() };
    let early = memory.prefetch(&user("bo"), &capture);
    let release = UserCommand::Release { hold_id: receipt.hold_id.clone(), by: maker() };
    let decided = run(&books, &memory, "bo", &release, 0);
    apply(&mut books, &mut memory, decided);
    let stale = decide(&books, &user("bo"), &capture, &early, &inputs(&memory, 0));
    assert!(matches!(stale, Ok(Decision::Refetch)), "{stale:?}");
    let fresh = run(&books, &memory, "bo", &capture, 0);
    assert!(matches!(fresh, Err(EngineError::HoldReleased)), "{fresh:?}");
    let elsewhere = run(&books, &memory, "ann", &capture, 0);
    assert!(matches!(elsewhere, Err(EngineError::UnknownHold(_))), "another user's hold is not found: {elsewhere:?}");
}

/// A spend read while open, decided after it completed: read again.
#[test]
fn a_spend_read_before_its_completion_settled_is_read_again() {
    let (mut books, mut memory) = (books(4_000), Memory::default());
    let id = buy_and_spend(&mut books, &mut memory, "ann", 2);
    let refund_command = UserCommand::Refund { spend_id: id.clone(), by: maker() };
    let early = memory.prefetch(&user("ann"), &refund_command);
    complete(&mut books, &mut memory, &id).expect("completes");
    let stale = decide(&books, &user("ann"), &refund_command, &early, &inputs(&memory, 0));
    assert!(matches!(stale, Ok(Decision::Refetch)), "{stale:?}");
    assert!(matches!(run(&books, &memory, "ann", &refund_command, 0), Err(EngineError::SpendCompleted)));
}

/// The wallet a wallet actor sends is checked by version: behind one that
/// settled is read again; one in flight is newer than any read and wins.
#[test]
fn a_wallet_behind_a_settled_version_is_read_again_and_one_in_flight_wins() {
    let (mut books, mut memory) = (books(4_000), Memory::default());
    buy(&mut books, &mut memory, "ann", "a").expect("fits");
    let behind =
        Prefetched { wallet: Some(WalletRecord::default()), ..memory.prefetch(&user("ann"), &purchase("b", 1)) };
    let stale = decide(&books, &user("ann"), &purchase("b", 1), &behind, &inputs(&memory, 0));
    assert!(matches!(stale, Ok(Decision::Refetch)), "{stale:?}");
    let Decision::Apply(change, _) = run(&books, &memory, "ann", &purchase("b", 1), 0).expect("fits") else {
        panic!("applies")
    };
    memory.keep(&change.writes);
    let touched = books.adopt(*change).expect("adopts");
    // Not durable yet: a read shows version 2, the books hold version 2 in flight.
    let Decision::Apply(change, UserReceipt::Purchase(receipt)) =
        decide(&books, &user("ann"), &purchase("c", 1), &behind, &inputs(&memory, 0)).expect("fits")
    else {
        panic!("applies")
    };
    assert_eq!(receipt.balance.get(), 30, "decided on the wallet in flight, not the one sent");
    assert_eq!(change.wallet.as_ref().map(|(_, wallet)| wallet.version), Some(3));
    // A spend sent with a read that found no wallet: the wallet in flight is there.
    let spend = spend_command(5, "s");
    let nothing = Prefetched { wallet: None, ..memory.prefetch(&user("ann"), &spend) };
    match decide(&books, &user("ann"), &spend, &nothing, &inputs(&memory, 0)) {
        Ok(Decision::Apply(_, UserReceipt::Spend(receipt))) => assert_eq!(receipt.balance.get(), 15),
        other => panic!("a spend from the wallet in flight: {other:?}"),
    }
    books.settle(&touched, 0);
}

/// A read older than the window cannot be checked: it is read again.
#[test]
fn a_read_older_than_the_window_is_read_again() {
    let (mut books, mut memory) = (books(4_000), Memory::default());
    let early = memory.prefetch(&user("bo"), &purchase("k", 1));
    buy(&mut books, &mut memory, "ann", "a").expect("fits");
    books.prune_settled(super::books::SETTLED_WINDOW_MS - 1);
    let within = decide(&books, &user("bo"), &purchase("k", 1), &early, &inputs(&memory, 0));
    assert!(matches!(within, Ok(Decision::Apply(..))), "nothing it read moved: {within:?}");
    books.prune_settled(super::books::SETTLED_WINDOW_MS);
    let old = decide(&books, &user("bo"), &purchase("k", 1), &early, &inputs(&memory, 0));
    assert!(matches!(old, Ok(Decision::Refetch)), "{old:?}");
    let fresh = run(&books, &memory, "bo", &purchase("k", 1), 0);
    assert!(matches!(fresh, Ok(Decision::Apply(..))), "{fresh:?}");
}

fn key_record(id: &str, created_at_ms: u64, revoked_at_ms: Option<u64>) -> crate::store::records::ApiKeyRecord {
    use crate::domain::{KeyName, Scope, Scopes};
    crate::store::records::ApiKeyRecord {
        id: KeyId::parse(id).expect("valid"),
        name: KeyName::parse("a key").expect("valid"),
        scopes: Scopes::new([Scope::Storefront]).expect("one scope"),
        key_hash: [u8::try_from(created_at_ms % 256).expect("small"); 32],
        created_at_ms,
        last_used_at_ms: None,
        revoked_at_ms,
    }
}

/// The keys the books start with: every record listed oldest first, only
/// the ones not revoked live; a key made is live at once, a revoked one
/// stops being live at once, and a second revocation answers the first.
#[test]
fn the_key_book_lists_every_key_oldest_first_and_only_live_keys_authenticate() {
    use super::{CreateApiKey, KeyBook};
    use crate::domain::{KeyName, Scope, Scopes};
    let loaded = vec![key_record("key_b", 20, None), key_record("key_a", 10, Some(15)), key_record("key_c", 30, None)];
    let book = KeyBook::load(loaded.clone());
    let mut live: Vec<String> = book.live().map(|key| key.id.to_string()).collect();
    live.sort();
    assert_eq!(live, ["key_b", "key_c"], "the revoked key is not live");
    let listed: Vec<String> = book.listed().iter().map(|record| record.id.to_string()).collect();
    assert_eq!(listed, ["key_a", "key_b", "key_c"], "every key, oldest first");

    let mut recovered = books(4_000);
    recovered.keys = KeyBook::load(loaded);
    let (mut books, mut memory) = (recovered, Memory::default());
    let create = CreateApiKey {
        name: KeyName::parse("new").expect("valid"),
        scopes: Scopes::new([Scope::Enhancement]).expect("one scope"),
        key_hash: [7; 32],
    };
    let decided = books.decide_create_key(&inputs(&memory, 0), create);
    let made = apply(&mut books, &mut memory, decided);
    assert!(books.keys.live().any(|key| key.id == made.id), "live once made");
    let decided = books.decide_revoke_key(&inputs(&memory, 0), &made.id);
    let revoked = apply(&mut books, &mut memory, decided);
    assert!(revoked.revoked_at_ms.is_some());
    assert!(!books.keys.live().any(|key| key.id == made.id), "not live once revoked");
    let again = books.decide_revoke_key(&inputs(&memory, 0), &made.id);
    assert!(matches!(again, Ok(Decision::Replay(ref record)) if record == &revoked), "{again:?}");
    assert_eq!(books.keys.listed().len(), 4);
}

/// A use noted in memory is written once (then it is saved), and only when
/// it is newer than the stored one; the listing shows the newest.
#[test]
fn a_key_use_is_saved_once_and_only_when_newer_than_the_stored_one() {
    use super::KeyBook;
    let mut used = key_record("key_u", 10, None);
    used.last_used_at_ms = Some(1_000_000);
    let mut book = KeyBook::load(vec![used, key_record("key_idle", 20, None)]);
    assert!(book.unsaved_uses().is_empty(), "nothing used since it was stored");
    let live = |book: &KeyBook, id: &str| book.live().find(|key| key.id.as_str() == id).expect("live");
    live(&book, "key_u").touch(500_000);
    assert!(book.unsaved_uses().is_empty(), "an older use than the stored one is not written");
    live(&book, "key_u").touch(5_000_000);
    let unsaved = book.unsaved_uses();
    assert_eq!(unsaved.len(), 1, "{unsaved:?}");
    assert_eq!((unsaved[0].id.as_str(), unsaved[0].last_used_at_ms), ("key_u", Some(5_000_000)));
    let listed = book.listed();
    assert_eq!(listed[0].last_used_at_ms, Some(5_000_000), "the listing shows the use noted in memory");
    book.saved(unsaved);
    assert!(book.unsaved_uses().is_empty(), "saved: not written again");
}

/// A hold past its deadline is expired for every decision, before any sweep
/// has written its expiry: it can be neither captured nor released.
#[test]
fn a_hold_at_its_deadline_is_expired_before_any_sweep() {
    let (mut books, mut memory) = (books(4_000), Memory::default());
    let hold =
        UserCommand::Hold { package_id: starter(), ttl_ms: 60_000, key: None, fingerprint: [3; 32], owner: maker().id };
    let decided = run(&books, &memory, "bo", &hold, 1_000);
    let UserReceipt::Hold(receipt) = apply(&mut books, &mut memory, decided) else { panic!("a hold") };
    let release = UserCommand::Release { hold_id: receipt.hold_id.clone(), by: maker() };
    let capture = UserCommand::Capture { hold_id: receipt.hold_id.clone(), by: maker() };
    for command in [&release, &capture] {
        let before = run(&books, &memory, "bo", command, 60_999);
        assert!(matches!(before, Ok(Decision::Apply(..))), "one millisecond before its deadline: {before:?}");
        let at = run(&books, &memory, "bo", command, 61_000);
        assert!(matches!(at, Err(EngineError::HoldExpired)), "at its deadline: {at:?}");
    }
    assert_eq!(books.open_counts().0, 1, "no sweep ran: it is the deadline that refuses");
}

/// What the sweeps and the view read: the holds and spends due at an
/// instant, and how many are open.
#[test]
fn the_due_holds_and_spends_are_those_at_their_deadline_and_the_open_ones_are_counted() {
    let (mut books, mut memory) = (books(4_000), Memory::default());
    assert_eq!(books.open_counts(), (0, 0));
    let spent = buy_and_spend(&mut books, &mut memory, "ann", 2);
    let hold =
        UserCommand::Hold { package_id: starter(), ttl_ms: 60_000, key: None, fingerprint: [3; 32], owner: maker().id };
    let decided = run(&books, &memory, "bo", &hold, 0);
    let UserReceipt::Hold(held) = apply(&mut books, &mut memory, decided) else { panic!("a hold") };
    assert_eq!(books.open_counts(), (1, 1), "one hold, one spend");
    let after = books.spend_complete_after_ms;
    assert!(books.due_spends(after - 1).is_empty() && books.due_holds(59_999).is_empty(), "nothing due yet");
    assert_eq!(books.due_spends(after), vec![spent]);
    assert_eq!(books.due_holds(60_000), vec![held.hold_id]);
}

#[test]
fn the_kill_switch_set_as_it_stands_is_a_replay_and_a_new_reason_is_a_change() {
    let (mut books, mut memory) = (books(4_000), Memory::default());
    let switch = |enabled: bool, reason: Option<&str>| SetPurchasesEnabled { enabled, reason: reason.map(Into::into) };
    let now = inputs(&memory, 0);
    assert!(matches!(books.decide_kill_switch(&now, switch(true, None)), Ok(Decision::Replay(_))), "on already");
    let decided = books.decide_kill_switch(&now, switch(false, Some("fraud")));
    let answer = apply(&mut books, &mut memory, decided);
    assert_eq!((answer.enabled, answer.reason.as_deref()), (false, Some("fraud")));
    let again = books.decide_kill_switch(&now, switch(false, Some("fraud")));
    assert!(matches!(again, Ok(Decision::Replay(_))), "the same reason again changes nothing: {again:?}");
    let reason = books.decide_kill_switch(&now, switch(false, Some("audit")));
    assert!(matches!(reason, Ok(Decision::Apply(..))), "a new reason is a ledger entry: {reason:?}");
    let enable = books.decide_kill_switch(&now, switch(true, Some("ignored")));
    assert!(matches!(enable, Ok(Decision::Apply(..))), "enabling is a change: {enable:?}");
}

#[test]
fn a_sync_answer_is_applied_once_and_its_token_is_spent_when_its_window_closes() {
    let (mut books, mut memory) = (books(4_000), Memory::default());
    let token = books.begin_sync();
    let (change, _) =
        books.decide_sync(&inputs(&memory, 0), ApplySync { real: credits(4_000), token }).expect("applies");
    settle(&mut books, &mut memory, change);
    books.end_sync();
    let late = books.decide_sync(&inputs(&memory, 0), ApplySync { real: credits(9_000), token });
    assert!(matches!(late, Err(EngineError::Overloaded(_))), "the window is closed: {late:?}");
    assert_eq!(books.state.provider_balance, credits(4_000), "the late answer changed nothing");
}

#[test]
fn each_decision_has_its_metrics_label() {
    let books = books(4_000);
    let change = books.begin(&inputs(&Memory::default(), 0));
    assert_eq!(super::outcome_label(&Ok(Decision::Apply(Box::new(change), ()))), "ok");
    assert_eq!(super::outcome_label(&Ok(Decision::Replay(()))), "replayed");
    assert_eq!(super::outcome_label::<()>(&Ok(Decision::Refetch)), "refetch");
    assert_eq!(
        super::outcome_label::<()>(&Err(EngineError::InsufficientCapacity)),
        EngineError::InsufficientCapacity.label()
    );
    assert_ne!(EngineError::InsufficientCapacity.label(), "ok");
}

#[test]
fn a_key_forgotten_after_its_retention_is_a_new_operation() {
    let (mut books, mut memory) = (books(4_000), Memory::default());
    buy(&mut books, &mut memory, "ann", "k").expect("fits");
    assert!(matches!(run(&books, &memory, "ann", &purchase("k", 1), 0), Ok(Decision::Replay(_))), "remembered");
    let mut pruned = crate::store::writes::WriteSet::default();
    let forgotten = key("k");
    pruned.push(Write::Forget {
        operation: crate::store::records::Operation::Purchase,
        caller: Some(forgotten.caller),
        key: forgotten.key,
    });
    memory.keep(&pruned);
    let again = run(&books, &memory, "ann", &purchase("k", 2), 0);
    assert!(matches!(again, Ok(Decision::Apply(..))), "forgotten: another body is a new purchase: {again:?}");
}

#[test]
fn only_refusals_that_name_a_state_wait_for_it_to_be_durable() {
    let named = [
        EngineError::HoldCaptured,
        EngineError::HoldReleased,
        EngineError::HoldExpired,
        EngineError::AlreadyRefunded,
        EngineError::SpendCompleted,
    ];
    assert!(named.iter().all(EngineError::names_a_state));
    let others = [EngineError::InsufficientCapacity, EngineError::InsufficientFunds, EngineError::UnknownUser];
    assert!(!others.iter().any(EngineError::names_a_state));
}

#[test]
fn the_metrics_labels_of_refusals_are_their_error_codes() {
    let labelled = [
        (EngineError::InsufficientCapacity, "insufficient_capacity"),
        (EngineError::HoldExpired, "hold_expired"),
        (EngineError::IdempotencyKeyInUse, "idempotency_key_in_use"),
        (EngineError::Stale, "refetch"),
    ];
    for (error, label) in labelled {
        assert_eq!(error.label(), label);
    }
}

/// Another key of the same scope, for [`maker`]'s holds and spends.
fn rival() -> Caller {
    Caller { id: KeyId::parse("key_2").expect("valid"), ..maker() }
}

fn admin() -> Caller {
    Caller { id: KeyId::parse("key_9").expect("valid"), scopes: Scopes::ADMIN }
}

/// SPEC §9.1: only the key that made a hold or spend, or an admin key,
/// finishes it; to any other key it is as unknown as an id that does not
/// exist. A hold or spend made before makers were recorded (`owner: None`)
/// is finished by an admin key alone.
#[test]
fn only_the_maker_or_an_admin_finishes_a_hold_or_a_spend() {
    let (mut books, mut memory) = (books(4_000), Memory::default());
    let make_hold = |books: &mut Books, memory: &mut Memory| {
        let hold = UserCommand::Hold {
            package_id: starter(),
            ttl_ms: 60_000,
            key: None,
            fingerprint: [3; 32],
            owner: maker().id,
        };
        match apply(books, memory, run(books, memory, "ann", &hold, 0)) {
            UserReceipt::Hold(receipt) => receipt.hold_id,
            other => panic!("{other:?}"),
        }
    };
    let (mine, legacy) = (make_hold(&mut books, &mut memory), make_hold(&mut books, &mut memory));
    assert_eq!(books.open_holds[&mine].record.owner, Some(maker().id), "the hold records its maker");
    if let Some(open) = books.open_holds.get_mut(&legacy) {
        open.record.owner = None;
    }
    let spent = buy_and_spend(&mut books, &mut memory, "ann", 3);
    assert_eq!(memory.spend(&spent).and_then(|spend| spend.owner.clone()), Some(maker().id));
    let reserved = books.state.reserved;

    let capture = |id: &HoldId, by: Caller| UserCommand::Capture { hold_id: id.clone(), by };
    let release = |id: &HoldId, by: Caller| UserCommand::Release { hold_id: id.clone(), by };
    for command in
        [capture(&mine, rival()), release(&mine, rival()), capture(&legacy, maker()), release(&legacy, rival())]
    {
        let refused = run(&books, &memory, "ann", &command, 0).expect_err("not theirs");
        assert!(matches!(refused, EngineError::UnknownHold(_)), "{command:?}: {refused:?}");
    }
    let refund = UserCommand::Refund { spend_id: spent.clone(), by: rival() };
    let complete = UserCommand::Complete { spend_id: spent.clone(), by: rival() };
    for command in [refund, complete] {
        let refused = run(&books, &memory, "ann", &command, 0).expect_err("not theirs");
        assert_eq!(refused, EngineError::UnknownSpend(spent.clone()), "{command:?}");
    }
    assert_eq!(books.state.reserved, reserved, "nothing moved");

    let decided = run(&books, &memory, "ann", &capture(&mine, maker()), 0);
    let captured = apply(&mut books, &mut memory, decided);
    assert!(matches!(captured, UserReceipt::Capture(_)), "the maker captures: {captured:?}");
    let decided = run(&books, &memory, "ann", &release(&legacy, admin()), 0);
    let released = apply(&mut books, &mut memory, decided);
    assert!(matches!(released, UserReceipt::Release(_)), "an admin releases a hold of no known maker");
    let refunded = run(&books, &memory, "ann", &UserCommand::Refund { spend_id: spent.clone(), by: admin() }, 0);
    assert!(matches!(apply(&mut books, &mut memory, refunded), UserReceipt::Refund(_)), "an admin refunds any spend");
}

/// SPEC §9.2: one API key has at most `max_open_holds_per_key` open holds,
/// whatever users it names (a caller that invents users is bound by it); one
/// more is `too_many_holds` and reserves nothing; other keys are not bound
/// by it, and a release or a capture makes room.
#[test]
fn one_key_holds_at_most_its_limit_whatever_users_it_names() {
    let (mut books, mut memory) = (books(40_000), Memory::default());
    books.max_open_holds_per_key = 3;
    let hold = |books: &mut Books, memory: &mut Memory, who: &str, by: &Caller| {
        let command = UserCommand::Hold {
            package_id: starter(),
            ttl_ms: 60_000,
            key: None,
            fingerprint: [3; 32],
            owner: by.id.clone(),
        };
        let decided = run(books, memory, who, &command, 0)?;
        match apply(books, memory, Ok(decided)) {
            UserReceipt::Hold(receipt) => Ok(receipt.hold_id),
            other => panic!("{other:?}"),
        }
    };
    let held: Vec<HoldId> =
        ["u1", "u2", "u3"].iter().map(|who| hold(&mut books, &mut memory, who, &maker()).expect("fits")).collect();
    let reserved = books.state.reserved;
    assert_eq!(hold(&mut books, &mut memory, "u4", &maker()), Err(EngineError::TooManyHoldsForKey(3)));
    assert_eq!(books.state.reserved, reserved, "a refused hold reserves nothing");
    assert_eq!(EngineError::TooManyHoldsForKey(3).label(), "too_many_holds");
    hold(&mut books, &mut memory, "u4", &rival()).expect("another key is not bound by it");
    let release = UserCommand::Release { hold_id: held[0].clone(), by: maker() };
    let decided = run(&books, &memory, "u1", &release, 0);
    apply(&mut books, &mut memory, decided);
    hold(&mut books, &mut memory, "u5", &maker()).expect("a release makes room");
    assert_eq!(hold(&mut books, &mut memory, "u6", &maker()), Err(EngineError::TooManyHoldsForKey(3)));
    let capture = UserCommand::Capture { hold_id: held[1].clone(), by: maker() };
    let decided = run(&books, &memory, "u2", &capture, 0);
    apply(&mut books, &mut memory, decided);
    hold(&mut books, &mut memory, "u6", &maker()).expect("a capture makes room");
}

/// A promotional grant of `n` credits to `who`, expiring at `expires_at_ms`.
fn grant_command(n: u64, expires_at_ms: Option<u64>, order: &str) -> UserCommand {
    UserCommand::Grant {
        credits: UserCredits::new(n).expect("small"),
        expires_at_ms,
        reason: crate::domain::Reason::parse("a bonus").expect("valid"),
        key: key(order),
        fingerprint: [7; 32],
    }
}

fn void_command(memory: &Memory, grant: crate::domain::GrantId) -> UserCommand {
    UserCommand::Void {
        grant,
        reason: crate::domain::Reason::parse("fraud").expect("valid"),
        origin: memory.ledger_entry(grant.0).cloned().map(std::sync::Arc::new),
    }
}

/// Decides `command` for `who` at `monotonic_ms` and applies the change it must make.
fn act(books: &mut Books, memory: &mut Memory, who: &str, command: &UserCommand, monotonic_ms: u64) -> UserReceipt {
    let decided = run(books, memory, who, command, monotonic_ms);
    apply(books, memory, decided)
}

/// The kinds of the ledger entries a change writes, in order.
fn entry_kinds(change: &super::Change) -> Vec<&'static str> {
    let kinds = change.writes.writes().iter().filter_map(|write| match write {
        Write::Ledger(entry) => Some(entry.kind.name()),
        _ => None,
    });
    kinds.collect()
}

/// Goal (SPEC §13): a grant stops counting at its `expiresAt`, before any
/// sweep: a spend at that instant cannot draw from it, and the next change
/// to the wallet closes it first, in the same change (a `grantExpired`
/// entry before its own, `reserved` down by ratio × what it had left).
#[test]
fn a_change_to_a_wallet_closes_its_due_grants_first() {
    let (mut books, mut memory) = (books(10_000), Memory::default());
    let made = act(&mut books, &mut memory, "ann", &grant_command(5, Some(T0 + 1_000), "g-1"), 0);
    let UserReceipt::Grant(receipt) = made else { panic!("{made:?}") };
    assert_eq!((receipt.credits.get(), receipt.expires_at_ms), (5, Some(T0 + 1_000)));
    buy(&mut books, &mut memory, "ann", "b-1").expect("fits");
    assert_eq!((books.state.reserved, books.state.grants.promotional.get()), (credits(4 * 15), 5));
    assert_eq!(books.due_grant_users(T0 + 999, 10), Vec::<UserId>::new());
    assert_eq!(books.due_grant_users(T0 + 1_000, 10), [user("ann")]);
    assert!(books.due_grant_users(T0 + 1_000, 0).is_empty(), "at most `limit` users");
    assert_eq!(books.next_grant_deadline(T0 + 999), Some(T0 + 1_000), "when the sweep looks again");
    assert_eq!(books.next_grant_deadline(T0 + 1_000), None, "none after it");
    assert_eq!(books.expiring_within(T0, 1_000).get(), 0, "expiring before the bound, not at it");
    assert_eq!(books.expiring_within(T0, 1_001).get(), 5);
    // A second grant of ann's due at the same instant: ann is named once.
    act(&mut books, &mut memory, "ann", &grant_command(1, Some(T0 + 1_000), "g-0"), 0);
    assert_eq!(books.due_grant_users(T0 + 1_000, 10), [user("ann")]);
    assert_eq!(books.expiring_within(T0, 1_001).get(), 6, "what each grant has left");
    let spent = act(&mut books, &mut memory, "ann", &spend_command(1, "s-0"), 0);
    assert!(matches!(spent, UserReceipt::Spend(_)), "{spent:?}");
    assert_eq!(books.expiring_within(T0, 1_001).get(), 5, "a spend drew from the soonest grant");

    let refused = run(&books, &memory, "ann", &spend_command(11, "s-1"), 1_000);
    assert_eq!(refused.err(), Some(EngineError::InsufficientFunds), "the expired grant no longer counts");
    let Decision::Apply(change, UserReceipt::Purchase(bought)) =
        run(&books, &memory, "ann", &purchase("b-2", 2), 1_000).expect("decides")
    else {
        panic!("a purchase")
    };
    assert_eq!(entry_kinds(&change), ["grantExpired", "grantExpired", "purchase"], "both of ann's, then hers");
    assert_eq!((bought.balance.get(), change.next.reserved), (20, credits(4 * 20)));
    settle(&mut books, &mut memory, *change);
    assert_eq!((books.state.grants.expired.get(), books.state.grants.promotional.get()), (5, 0));
    assert_eq!(books.expired_by_day().iter().map(|day| day.credits.get()).collect::<Vec<_>>(), [5]);
    assert!(books.due_grant_users(T0 + 1_000, 10).is_empty(), "its deadline is gone");
    // A retry of the grant after its expiry gets its first answer; a new one with that expiry is refused.
    match run(&books, &memory, "ann", &grant_command(5, Some(T0 + 1_000), "g-1"), 1_000).expect("decides") {
        Decision::Replay(UserReceipt::Grant(again)) => assert_eq!(again, receipt),
        other => panic!("{other:?}"),
    }
    let late = run(&books, &memory, "ann", &grant_command(5, Some(T0 + 1_000), "g-2"), 1_000);
    assert_eq!(late.err(), Some(EngineError::ExpiryPassed));
    let wallet = memory.wallet(&user("ann")).expect("a wallet");
    assert!(wallet.grants_agree() && wallet.balance.get() == 20);
}

/// Goal (SPEC §13): a void takes a grant's remaining credits at once and
/// answers the same again; an expired grant is `grant_closed`; another
/// user's grant, or an entry that made none, is unknown; a grant the wallet
/// forgot (emptied long ago) voids with nothing left.
#[test]
fn a_void_takes_what_is_left_once_and_refuses_an_expired_grant() {
    let (mut books, mut memory) = (books(10_000), Memory::default());
    let made = act(&mut books, &mut memory, "ann", &grant_command(5, None, "g-1"), 0);
    let UserReceipt::Grant(forever) = made else { panic!("{made:?}") };
    spend(&mut books, &mut memory, "ann", 2);
    let reserved = books.state.reserved;
    let command = void_command(&memory, forever.grant_id);
    let voided = act(&mut books, &mut memory, "ann", &command, 5);
    let UserReceipt::Void(first) = voided else { panic!("{voided:?}") };
    assert_eq!(books.state.reserved, reserved.checked_sub(credits(4 * 3)).expect("less"), "the 3 left");
    assert_eq!((books.state.grants.voided.get(), memory.wallet(&user("ann")).expect("a wallet").balance.get()), (3, 0));
    match run(&books, &memory, "ann", &void_command(&memory, forever.grant_id), 9).expect("decides") {
        Decision::Replay(UserReceipt::Void(again)) => assert_eq!(again, first, "the first answer"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        run(&books, &memory, "bob", &void_command(&memory, forever.grant_id), 9).err(),
        Some(EngineError::UnknownGrant(forever.grant_id)),
        "another user's grant"
    );

    let made = act(&mut books, &mut memory, "ann", &grant_command(5, Some(T0 + 100), "g-2"), 10);
    let UserReceipt::Grant(soon) = made else { panic!("{made:?}") };
    assert_eq!(
        run(&books, &memory, "ann", &void_command(&memory, soon.grant_id), 100).err(),
        Some(EngineError::GrantClosed)
    );

    // Bob empties two purchases' grants; long after, his wallet forgets them, and a void finds nothing left.
    buy(&mut books, &mut memory, "bob", "b-bob-1").expect("fits");
    buy(&mut books, &mut memory, "bob", "b-bob-2").expect("fits");
    let spent = spend(&mut books, &mut memory, "bob", 20);
    let draws = memory.spend(&spent).expect("a spend").draws.clone().expect("draws");
    let paid = crate::domain::GrantId(draws[1].grant);
    let later = 700_000 + 3_600_000;
    act(&mut books, &mut memory, "bob", &purchase("b-late", 3), later);
    assert!(memory.wallet(&user("bob")).expect("a wallet").grants.iter().all(|grant| grant.id() != paid), "forgotten");
    let command = void_command(&memory, paid);
    let voided = act(&mut books, &mut memory, "bob", &command, later + 1);
    let UserReceipt::Void(first) = voided else { panic!("{voided:?}") };
    assert_eq!(
        (first.credits.get(), first.kind, first.expires_at_ms),
        (10, GrantKind::Paid, None),
        "as it was granted"
    );
    assert_eq!(books.state.grants.voided.get(), 3, "nothing was left in it");
    assert!(matches!(
        run(&books, &memory, "bob", &void_command(&memory, paid), later + 2).expect("decides"),
        Decision::Replay(UserReceipt::Void(_))
    ));
    // An expired grant the wallet forgot long ago is still closed.
    let made = act(&mut books, &mut memory, "cy", &grant_command(4, Some(T0 + later + 10), "g-cy"), later);
    let UserReceipt::Grant(cy) = made else { panic!("{made:?}") };
    act(&mut books, &mut memory, "cy", &grant_command(1, None, "g-cy-2"), later + 10);
    act(&mut books, &mut memory, "cy", &grant_command(1, None, "g-cy-3"), 2 * later + 20);
    assert!(memory.wallet(&user("cy")).expect("a wallet").grants.iter().all(|grant| grant.id() != cy.grant_id));
    assert_eq!(
        run(&books, &memory, "cy", &void_command(&memory, cy.grant_id), 2 * later + 30).err(),
        Some(EngineError::GrantClosed)
    );
    // The same for a promotional grant: it is voided as what it was. (The
    // clock never goes back, so this comes after cy's.)
    let made = act(&mut books, &mut memory, "dee", &grant_command(2, None, "g-dee"), 2 * later + 40);
    let UserReceipt::Grant(dee) = made else { panic!("{made:?}") };
    spend(&mut books, &mut memory, "dee", 2);
    act(&mut books, &mut memory, "dee", &grant_command(1, None, "g-dee-2"), 3 * later + 50);
    assert!(memory.wallet(&user("dee")).expect("a wallet").grants.iter().all(|grant| grant.id() != dee.grant_id));
    let command = void_command(&memory, dee.grant_id);
    let voided = act(&mut books, &mut memory, "dee", &command, 3 * later + 51);
    let UserReceipt::Void(promotional) = voided else { panic!("{voided:?}") };
    assert_eq!((promotional.kind, promotional.credits.get()), (GrantKind::Promotional, 2));
    let spend_entry = crate::domain::GrantId(memory.spend(&spent).expect("a spend").seq);
    assert_eq!(
        run(&books, &memory, "bob", &void_command(&memory, spend_entry), later + 2).err(),
        Some(EngineError::UnknownGrant(spend_entry)),
        "a spend's entry made no grant"
    );
}

/// Goal (SPEC §13, issue 27's migration): the grants of a store written
/// before grants, once emptied and forgotten, are still voided as the
/// migration named them: a wallet's one grant after its last entry (here a
/// spend), and the grant a refund of that release's spend gave back.
#[test]
fn the_grants_of_a_store_from_before_grants_are_voided_as_the_migration_named_them() {
    let (mut books, mut memory) = (books(10_000), Memory::default());
    buy(&mut books, &mut memory, "ann", "b-ann").expect("fits");
    let old = spend(&mut books, &mut memory, "ann", 3);
    // The release opens that store: the books recovered from its records.
    memory.as_before_grants();
    let settings = Settings::from_config(&Config::load_with(None, |_| None).expect("defaults"));
    let recovered = memory.recovered(&books.state, settings.packages.clone());
    books = Books::new(recovered, settings.rules(), T0, 0);
    let wallet = memory.wallet(&user("ann")).expect("a wallet").clone();
    let spend_seq = memory.spend(&old).expect("a spend").seq;
    assert_eq!(wallet.grants.iter().map(|grant| grant.seq).collect::<Vec<_>>(), [spend_seq], "named after the spend");
    let before = wallet.balance;
    refund(&mut books, &mut memory, "ann", &old).expect("refunds");
    let wallet = memory.wallet(&user("ann")).expect("a wallet").clone();
    let back = wallet.grants.iter().find(|grant| grant.seq != spend_seq).expect("a grant given back").id();
    assert_eq!(wallet.balance.get(), before.get() + 3);
    spend(&mut books, &mut memory, "ann", wallet.balance.get());
    let later = 700_000 + 3_600_000;
    act(&mut books, &mut memory, "ann", &purchase("b-ann-late", 3), later);
    assert!(memory.wallet(&user("ann")).expect("a wallet").grants.iter().all(|grant| grant.seq > back.0), "forgotten");

    let command = void_command(&memory, back);
    let voided = act(&mut books, &mut memory, "ann", &command, later + 1);
    let UserReceipt::Void(refunded) = voided else { panic!("{voided:?}") };
    assert_eq!((refunded.kind, refunded.credits.get(), refunded.expires_at_ms), (GrantKind::Paid, 3, None));
    let legacy = crate::domain::GrantId(spend_seq);
    let command = void_command(&memory, legacy);
    let voided = act(&mut books, &mut memory, "ann", &command, later + 2);
    let UserReceipt::Void(migrated) = voided else { panic!("{voided:?}") };
    assert_eq!((migrated.kind, migrated.credits, migrated.expires_at_ms), (GrantKind::Paid, before, None));
    assert_eq!(books.state.grants.voided, UserCredits::ZERO, "nothing was left in either");
}

/// Goal (SPEC §13): what a refund gives back to a grant that closed
/// meanwhile leaves the wallet again at once, counted as that grant: an
/// expired promotional grant's credits count as expired with no breakage
/// (not the price of another grant in the wallet), and they never count
/// again among the promotional credits outstanding.
#[test]
fn a_refund_into_an_expired_promotional_grant_leaves_again_as_that_grant() {
    let (mut books, mut memory) = (books(100_000), Memory::default());
    buy(&mut books, &mut memory, "ann", "b-ann").expect("fits"); // paid: 10 credits for 999
    act(&mut books, &mut memory, "ann", &grant_command(5, Some(T0 + 1_000), "g-soon"), 0);
    let spent = spend(&mut books, &mut memory, "ann", 7); // 5 from the promotional grant, then 2 paid
    assert_eq!((books.state.grants.promotional.get(), books.state.reserved), (0, credits(4 * 8)));

    let command = UserCommand::Refund { spend_id: spent, by: maker() };
    let refunded = act(&mut books, &mut memory, "ann", &command, 1_000);
    assert!(matches!(refunded, UserReceipt::Refund(_)), "{refunded:?}");
    let wallet = memory.wallet(&user("ann")).expect("a wallet");
    assert_eq!(wallet.balance.get(), 10, "the 2 paid credits back; the 5 left again");
    let totals = &books.state.grants;
    assert_eq!((totals.expired.get(), totals.breakage.minor_units()), (5, 0), "expired, earning nothing");
    assert_eq!(totals.promotional.get(), 0, "not counted back in");
    assert_eq!(books.state.reserved, credits(4 * 10));
    assert_eq!(
        books.expired_by_day().iter().map(|day| (day.credits.get(), day.breakage.minor_units())).collect::<Vec<_>>(),
        [(5, 0)]
    );
}
