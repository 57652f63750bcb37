//! The inventory actor: the single owner of the provider balance, `reserved`,
//! the revenue, the ledger sequence and the idempotency keys in flight.
//!
//! Every change is decided inside one handler (check, build the new state,
//! queue the writes) so nothing interleaves between the check and the apply:
//! concurrent buyers are serialised here and cannot jointly exceed capacity
//! (SPEC §4.1). The handler does not wait for the disk: it queues the change
//! on the commit loop and goes on deciding; the reply waits for the group
//! commit that makes the change durable (SPEC §4.2). A failed commit turns
//! the engine unready and every later change is refused.
//!
//! Messages: [`Purchase`] (from wallet actors), [`Snapshot`] (from HTTP),
//! [`BeginSync`] and [`ApplySync`] (from the sync actor).
//!
//! Invariants asserted after every change: `reserved == ratio × (Σ wallets +
//! Σ open holds)`, and a sale never leaves `reserved > providerBalance`.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use super::EngineError;
use crate::clock::Clock;
use crate::domain::{
    Capacity, IdempotencyKey, Package, PackageId, PlatformStatus, ProviderCredits, Ratio,
    UserCredits, UserId,
};
use crate::engine::{Health, Settings};
use crate::store::commit::{CommitQueue, CommitReceipt};
use crate::store::records::{
    EntryKind, IdempotencyRecord, InventoryRecord, LedgerEntry, Operation, PurchaseReceipt,
    Receipt, SyncRecord, WalletRecord,
};
use crate::store::{keys, Store, WriteSet};

/// Messages queued for the inventory before senders wait.
const MAILBOX_CAPACITY: usize = 4_096;

/// A SHA-256 fingerprint of a canonical request.
pub type Fingerprint = [u8; 32];

pub struct InventoryActor {
    state: InventoryRecord,
    ratio: Ratio,
    packages: Vec<Package>,
    warning_level: ProviderCredits,
    store: Store,
    commits: CommitQueue,
    clock: Arc<dyn Clock>,
    health: Arc<Health>,
    /// Idempotency keys whose change is decided but not yet durable.
    keys_in_flight: HashMap<Vec<u8>, Fingerprint>,
    /// Provider credits consumed locally since start; a sync subtracts what
    /// was consumed while its request was in flight (SPEC §6).
    consumed_counter: u64,
}

impl InventoryActor {
    pub fn new(
        state: InventoryRecord,
        settings: &Settings,
        store: Store,
        commits: CommitQueue,
        clock: Arc<dyn Clock>,
        health: Arc<Health>,
    ) -> Self {
        Self {
            state,
            ratio: settings.ratio,
            packages: settings.packages.clone(),
            warning_level: settings.warning_level,
            store,
            commits,
            clock,
            health,
            keys_in_flight: HashMap::new(),
            consumed_counter: 0,
        }
    }

    fn capacity(&self) -> Capacity {
        Capacity {
            provider_balance: self.state.provider_balance,
            reserved: self.state.reserved,
            ratio: self.ratio,
        }
    }

    fn ensure_ready(&self) -> Result<(), EngineError> {
        if self.health.storage_failed() {
            return Err(EngineError::NotReady("storage failed; restart required"));
        }
        if !self.health.synced() {
            return Err(EngineError::NotReady("waiting for the first provider sync"));
        }
        Ok(())
    }

    /// Panics on a broken invariant: that is a bug, and continuing would
    /// write a wrong state to disk.
    fn assert_invariants(&self, next: &InventoryRecord) {
        let spoken_for = next
            .wallets_total
            .checked_add(next.holds_total)
            .and_then(|credits| self.ratio.backing(credits))
            .expect("Σ wallets + Σ holds stays within bounds");
        assert_eq!(
            next.reserved, spoken_for,
            "reserved must equal ratio × (Σ wallets + Σ open holds)"
        );
        assert!(
            next.next_seq > self.state.next_seq || next == &self.state,
            "the ledger sequence only grows"
        );
    }

    /// Looks the key up among changes in flight, then on disk.
    fn check_key(
        &self,
        operation: Operation,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
    ) -> Result<Option<Receipt>, EngineError> {
        let store_key = keys::idempotency(operation, key);
        if let Some(in_flight) = self.keys_in_flight.get(&store_key) {
            return Err(if in_flight == fingerprint {
                EngineError::IdempotencyKeyInUse
            } else {
                EngineError::IdempotencyKeyReused
            });
        }
        match self.store.idempotency(operation, key)? {
            Some(record) if &record.fingerprint == fingerprint => Ok(Some(record.receipt)),
            Some(_) => Err(EngineError::IdempotencyKeyReused),
            None => Ok(None),
        }
    }

    fn entry(
        &self,
        next: &InventoryRecord,
        user: Option<&UserId>,
        key: Option<&IdempotencyKey>,
        kind: EntryKind,
    ) -> LedgerEntry {
        LedgerEntry {
            seq: self.state.next_seq,
            at_ms: self.clock.now_ms(),
            user: user.cloned(),
            idempotency_key: key.cloned(),
            kind,
            provider_balance_after: next.provider_balance,
            reserved_after: next.reserved,
            wallet_after: None,
        }
    }

    fn decide_purchase(&self, message: &Purchase) -> Result<PurchaseDecision, EngineError> {
        self.ensure_ready()?;
        if let Some(Receipt::Purchase(receipt)) =
            self.check_key(Operation::Purchase, &message.key, &message.fingerprint)?
        {
            return Ok(PurchaseDecision::Replay(receipt));
        }
        if !self.state.purchases_enabled {
            return Err(EngineError::PurchasesDisabled);
        }
        let package = self
            .packages
            .iter()
            .find(|package| package.id == message.package_id)
            .ok_or_else(|| EngineError::UnknownPackage(message.package_id.clone()))?;
        if !package.enabled {
            return Err(EngineError::PackageDisabled(package.id.clone()));
        }
        let needed = self
            .capacity()
            .fits(package.credits)?
            .ok_or(EngineError::InsufficientCapacity)?;

        let wallet = WalletRecord {
            balance: message.wallet.balance.checked_add(package.credits)?,
            version: message
                .wallet
                .version
                .checked_add(1)
                .ok_or(EngineError::Storage("wallet version".into()))?,
        };
        let mut next = self.state.clone();
        next.reserved = next.reserved.checked_add(needed)?;
        next.wallets_total = next.wallets_total.checked_add(package.credits)?;
        next.revenue = next
            .revenue
            .checked_add(package.price)
            .map_err(|_| EngineError::Overloaded("revenue overflow"))?;
        next.next_seq = next
            .next_seq
            .checked_add(1)
            .ok_or(EngineError::Storage("ledger sequence".into()))?;
        self.assert_invariants(&next);
        assert!(
            next.reserved <= next.provider_balance,
            "a sale never reserves more than the provider balance"
        );

        let seq = self.state.next_seq;
        let receipt = PurchaseReceipt {
            purchase_id: format!("pur_{seq}"),
            user_id: message.user.clone(),
            package_id: package.id.clone(),
            credits: package.credits,
            balance: wallet.balance,
        };
        let mut entry = self.entry(
            &next,
            Some(&message.user),
            Some(&message.key),
            EntryKind::Purchase {
                purchase_id: receipt.purchase_id.clone(),
                package_id: package.id.clone(),
                credits: package.credits,
                price: package.price,
            },
        );
        entry.wallet_after = Some(wallet.balance);

        let mut writes = WriteSet::default();
        let store_key = keys::idempotency(Operation::Purchase, &message.key);
        let codec =
            |error: crate::store::codec::CodecError| EngineError::Storage(error.to_string());
        writes.put(keys::ledger(seq), &entry).map_err(codec)?;
        writes.put_empty(keys::user_index(&message.user, seq));
        writes.put_wallet(&message.user, &wallet).map_err(codec)?;
        writes.put(keys::INVENTORY, &next).map_err(codec)?;
        writes
            .put(
                store_key.clone(),
                &IdempotencyRecord {
                    fingerprint: message.fingerprint,
                    receipt: Receipt::Purchase(receipt.clone()),
                    at_ms: entry.at_ms,
                },
            )
            .map_err(codec)?;
        Ok(PurchaseDecision::Apply(Box::new(PendingPurchase {
            next,
            wallet,
            receipt,
            writes,
            store_key,
        })))
    }

    /// Queues `writes`; on success the new state becomes current.
    fn commit(
        &mut self,
        next: InventoryRecord,
        writes: WriteSet,
    ) -> Result<CommitReceipt, EngineError> {
        let receipt = self.commits.submit(writes)?;
        self.state = next;
        Ok(receipt)
    }

    fn storage_failed(&self, reason: &str) -> EngineError {
        self.health.mark_storage_failed();
        EngineError::Storage(reason.to_owned())
    }

    fn view(&self) -> InventoryView {
        let capacity = self.capacity();
        let status =
            PlatformStatus::of(&capacity, self.state.purchases_enabled, self.warning_level);
        let limited =
            capacity.available() < i64::try_from(self.warning_level.get()).unwrap_or(i64::MAX);
        let packages = self
            .packages
            .iter()
            .map(|package| {
                let sellable = capacity.times_sellable(package.credits);
                let buyable = package.enabled
                    && sellable > 0
                    && self.state.purchases_enabled
                    && !capacity.overcommitted();
                let message = if !self.state.purchases_enabled {
                    Some(PlatformStatus::Disabled.message())
                } else if !buyable {
                    Some(PACKAGE_UNAVAILABLE)
                } else if limited {
                    Some(PlatformStatus::Limited.message())
                } else {
                    None
                };
                PackageView {
                    package: package.clone(),
                    sellable,
                    disabled: !buyable,
                    message,
                }
            })
            .collect();
        InventoryView {
            capacity,
            status,
            purchases_enabled: self.state.purchases_enabled,
            disabled_reason: self.state.disabled_reason.clone(),
            packages,
            last_sync: self.state.last_sync,
            wallets_total: self.state.wallets_total,
            holds_total: self.state.holds_total,
            ready: self.ensure_ready().is_ok(),
        }
    }
}

/// The message a package that cannot be bought now carries (SPEC §5).
pub const PACKAGE_UNAVAILABLE: &str = "Temporarily unavailable";

enum PurchaseDecision {
    Replay(PurchaseReceipt),
    Apply(Box<PendingPurchase>),
}

/// A decided purchase, ready to be queued for commit.
struct PendingPurchase {
    next: InventoryRecord,
    wallet: WalletRecord,
    receipt: PurchaseReceipt,
    writes: WriteSet,
    store_key: Vec<u8>,
}

impl Actor for InventoryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

/// Buy a package for a user whose wallet is `wallet` (sent by that user's
/// wallet actor, which waits for the answer before its next operation).
#[derive(Debug)]
pub struct Purchase {
    pub user: UserId,
    pub package_id: PackageId,
    pub wallet: WalletRecord,
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
}

/// A purchase's answer and, when it changed the wallet, the wallet's new state.
#[derive(Debug)]
pub struct PurchaseOutcome {
    pub receipt: PurchaseReceipt,
    pub wallet: Option<WalletRecord>,
}

impl Message for Purchase {
    type Result = Result<PurchaseOutcome, EngineError>;
}

impl Handler<Purchase> for InventoryActor {
    type Result = ResponseActFuture<Self, Result<PurchaseOutcome, EngineError>>;

    fn handle(&mut self, message: Purchase, _: &mut Self::Context) -> Self::Result {
        let PendingPurchase {
            next,
            wallet,
            receipt,
            writes,
            store_key,
        } = match self.decide_purchase(&message) {
            Err(error) => return Box::pin(fut::ready(Err(error))),
            Ok(PurchaseDecision::Replay(receipt)) => {
                return Box::pin(fut::ready(Ok(PurchaseOutcome {
                    receipt,
                    wallet: None,
                })))
            }
            Ok(PurchaseDecision::Apply(pending)) => *pending,
        };
        let durable = match self.commit(next, writes) {
            Ok(durable) => durable,
            Err(error) => return Box::pin(fut::ready(Err(error))),
        };
        self.keys_in_flight
            .insert(store_key.clone(), message.fingerprint);
        Box::pin(durable.into_actor(self).map(move |result, actor, _| {
            actor.keys_in_flight.remove(&store_key);
            match result {
                Ok(Ok(())) => Ok(PurchaseOutcome {
                    receipt,
                    wallet: Some(wallet),
                }),
                Ok(Err(failed)) => Err(actor.storage_failed(&failed.0)),
                Err(_) => Err(actor.storage_failed("the commit loop stopped")),
            }
        }))
    }
}

/// What can be sold now: the catalogue, the status and the numbers behind them.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot;

#[derive(Debug, Clone)]
pub struct PackageView {
    pub package: Package,
    /// How many times it can still be sold (SPEC §2's "sellable 23 times").
    pub sellable: u64,
    pub disabled: bool,
    pub message: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct InventoryView {
    pub capacity: Capacity,
    pub status: PlatformStatus,
    pub purchases_enabled: bool,
    pub disabled_reason: Option<String>,
    pub packages: Vec<PackageView>,
    pub last_sync: Option<SyncRecord>,
    pub wallets_total: UserCredits,
    pub holds_total: UserCredits,
    pub ready: bool,
}

impl Message for Snapshot {
    type Result = InventoryView;
}

impl Handler<Snapshot> for InventoryActor {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.view())
    }
}

/// Marks the start of a provider request; the token goes back in [`ApplySync`].
#[derive(Debug, Clone, Copy)]
pub struct BeginSync;

/// Where local consumption stood when a sync request left.
#[derive(Debug, Clone, Copy)]
pub struct SyncToken(u64);

impl Message for BeginSync {
    type Result = SyncToken;
}

impl Handler<BeginSync> for InventoryActor {
    type Result = MessageResult<BeginSync>;

    fn handle(&mut self, _: BeginSync, _: &mut Self::Context) -> Self::Result {
        MessageResult(SyncToken(self.consumed_counter))
    }
}

/// Sets the provider balance from a real balance fetched after `token`.
#[derive(Debug, Clone, Copy)]
pub struct ApplySync {
    pub real: ProviderCredits,
    pub token: SyncToken,
}

/// What a sync changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOutcome {
    pub real: ProviderCredits,
    pub previous: ProviderCredits,
    pub balance: ProviderCredits,
    pub drift: Option<i64>,
}

impl Message for ApplySync {
    type Result = Result<SyncOutcome, EngineError>;
}

impl Handler<ApplySync> for InventoryActor {
    type Result = ResponseActFuture<Self, Result<SyncOutcome, EngineError>>;

    fn handle(&mut self, message: ApplySync, _: &mut Self::Context) -> Self::Result {
        let decided = self.decide_sync(message);
        let (next, writes, outcome) = match decided {
            Ok(decided) => decided,
            Err(error) => return Box::pin(fut::ready(Err(error))),
        };
        let durable = match self.commit(next, writes) {
            Ok(durable) => durable,
            Err(error) => return Box::pin(fut::ready(Err(error))),
        };
        Box::pin(
            durable
                .into_actor(self)
                .map(move |result, actor, _| match result {
                    Ok(Ok(())) => {
                        actor.health.mark_synced();
                        Ok(outcome)
                    }
                    Ok(Err(failed)) => Err(actor.storage_failed(&failed.0)),
                    Err(_) => Err(actor.storage_failed("the commit loop stopped")),
                }),
        )
    }
}

impl InventoryActor {
    fn decide_sync(
        &self,
        message: ApplySync,
    ) -> Result<(InventoryRecord, WriteSet, SyncOutcome), EngineError> {
        if self.health.storage_failed() {
            return Err(EngineError::NotReady("storage failed; restart required"));
        }
        let consumed = self.consumed_counter.saturating_sub(message.token.0);
        let consumed_in_flight = ProviderCredits::new(consumed)?;
        let previous = self.state.provider_balance;
        let balance = message.real.saturating_sub(consumed_in_flight);
        // What the provider should have reported if nothing drifted: today's
        // database balance plus what was consumed after the request left.
        let expected = previous.checked_add(consumed_in_flight)?;
        let drift = self
            .state
            .last_sync
            .map(|_| signed(message.real).saturating_sub(signed(expected)));
        let at_ms = self.clock.now_ms();
        let mut next = self.state.clone();
        next.provider_balance = balance;
        next.last_sync = Some(SyncRecord {
            at_ms,
            real: message.real,
            drift,
        });
        next.next_seq = next
            .next_seq
            .checked_add(1)
            .ok_or(EngineError::Storage("ledger sequence".into()))?;
        self.assert_invariants(&next);
        let entry = self.entry(
            &next,
            None,
            None,
            EntryKind::ProviderSync {
                real: message.real,
                previous,
                consumed_in_flight,
                drift,
            },
        );
        let mut writes = WriteSet::default();
        let codec =
            |error: crate::store::codec::CodecError| EngineError::Storage(error.to_string());
        writes
            .put(keys::ledger(self.state.next_seq), &entry)
            .map_err(codec)?;
        writes.put(keys::INVENTORY, &next).map_err(codec)?;
        Ok((
            next,
            writes,
            SyncOutcome {
                real: message.real,
                previous,
                balance,
                drift,
            },
        ))
    }
}

/// Quantities are bounded by 2^53, so they always fit an `i64`.
fn signed(credits: ProviderCredits) -> i64 {
    i64::try_from(credits.get()).unwrap_or(i64::MAX)
}
