//! Changes to a wallet: purchase, capture, spend, refund, sent by the engine
//! facade, decided on the newest state of the wallet (see `hot.rs`).

use actix::prelude::*;

use super::change::{credited, debited, id_from_seq, outcome_label, ready, Consumption, Decision, Reply};
use super::hot::{LoadTicket, LoadedWallet};
use super::{Books, Inputs};
use super::{Fingerprint, InventoryActor};
use crate::actors::EngineError;
use crate::domain::{HoldId, PackageId, Reason, ScopedKey, SpendId, UserCredits, UserId};
use crate::store::records::{
    CaptureReceipt, EntryKind, HoldRecord, HoldState, Operation, PurchaseReceipt, Receipt, RefundReceipt, SpendReceipt,
    SpendRecord, SpendState, WalletRecord,
};

// ---------------------------------------------------------------------------
// Changes to a wallet: decided on the hot wallet, or on the one the engine
// read from the store when the inventory asked it to (see `hot.rs`).

/// What the engine asks the inventory to do to a user's wallet.
#[derive(Debug, Clone)]
pub enum WalletCommand {
    Purchase { package_id: PackageId, key: ScopedKey, fingerprint: Fingerprint },
    Capture { hold_id: HoldId },
    Spend { credits: UserCredits, reason: Option<Reason>, key: ScopedKey, fingerprint: Fingerprint },
    Refund { spend_id: SpendId },
}

/// A wallet command for `user`, with the wallet read from the store when
/// the inventory asked for it (see `hot.rs`).
#[derive(Debug)]
pub struct WalletChange {
    pub user: UserId,
    pub loaded: Option<LoadedWallet>,
    pub command: WalletCommand,
}

/// The answer to a wallet command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalletReceipt {
    Purchase(PurchaseReceipt),
    Capture(CaptureReceipt),
    Spend(SpendReceipt),
    Refund(RefundReceipt),
}

/// What the inventory did with a wallet command.
#[derive(Debug)]
pub enum WalletAnswer {
    /// Decided (and durable, if it changed anything).
    Done(WalletReceipt),
    /// Nothing yet: the wallet is not in memory. Read it from the store and
    /// send the command back with it and this ticket.
    Load(LoadTicket, WalletCommand),
}

impl Message for WalletChange {
    type Result = Result<WalletAnswer, EngineError>;
}

impl Handler<WalletChange> for InventoryActor {
    type Result = Reply<WalletAnswer>;

    fn handle(&mut self, message: WalletChange, ctx: &mut Self::Context) -> Self::Result {
        self.expire_due(ctx);
        let WalletChange { user, loaded, command } = message;
        let counted = match &command {
            WalletCommand::Purchase { package_id, .. } => Some(self.package_label(package_id)),
            _ => None,
        };
        let operation = match &command {
            WalletCommand::Purchase { .. } => "purchase",
            WalletCommand::Capture { .. } => "capture",
            WalletCommand::Spend { .. } => "spend",
            WalletCommand::Refund { .. } => "refund",
        };
        let decision = match self.books.ensure_ready(&self.inputs()) {
            Err(error) => Err(error),
            Ok(()) => {
                // A cold wallet on a local store is read here, at once: not
                // hot means every change to it is applied to the store.
                let loaded = match loaded {
                    None if !self.books.wallets.is_hot(&user) => match self.store.local_wallet(&user) {
                        Some(Ok(wallet)) => Some(LoadedWallet {
                            wallet: wallet.unwrap_or_default(),
                            ticket: self.books.wallets.ticket(),
                        }),
                        Some(Err(error)) => return ready(Err(error.into())),
                        None => None,
                    },
                    loaded => loaded,
                };
                let wallet = match self.books.wallets.wallet(&user, loaded, self.clock.monotonic_ms()) {
                    Ok(wallet) => wallet,
                    Err(ticket) => return ready(Ok(WalletAnswer::Load(ticket, command))),
                };
                let inputs = self.inputs();
                match command {
                    WalletCommand::Purchase { package_id, key, fingerprint } => {
                        self.books.decide_purchase(&inputs, &user, wallet, &package_id, &key, fingerprint)
                    }
                    WalletCommand::Capture { hold_id } => self.books.decide_capture(&inputs, &user, wallet, &hold_id),
                    WalletCommand::Spend { credits, reason, key, fingerprint } => {
                        self.books.decide_spend(&inputs, &user, wallet, credits, reason, &key, fingerprint)
                    }
                    WalletCommand::Refund { spend_id } => self.books.decide_refund(&inputs, &user, wallet, &spend_id),
                }
            }
        };
        let decision = self.note_refusal(decision);
        let outcome = outcome_label(&decision);
        match (operation, counted) {
            ("purchase", Some(package)) => {
                metrics::counter!("creditd_purchases_total", "package" => package, "outcome" => outcome).increment(1);
            }
            ("capture", _) => {
                metrics::counter!("creditd_holds_total", "operation" => "capture", "outcome" => outcome).increment(1);
            }
            ("spend", _) => metrics::counter!("creditd_spends_total", "outcome" => outcome).increment(1),
            _ => metrics::counter!("creditd_refunds_total", "outcome" => outcome).increment(1),
        }
        Box::pin(self.respond(decision).map(|answer, _, _| answer.map(WalletAnswer::Done)))
    }
}

impl Books {
    pub(super) fn decide_purchase(
        &self,
        inputs: &Inputs<'_>,
        user: &UserId,
        wallet: WalletRecord,
        package_id: &PackageId,
        key: &ScopedKey,
        fingerprint: Fingerprint,
    ) -> Result<Decision<WalletReceipt>, EngineError> {
        match self.check_key(inputs, Operation::Purchase, key, &fingerprint)? {
            Some(Receipt::Purchase(receipt)) => return Ok(Decision::Replay(WalletReceipt::Purchase(receipt))),
            Some(_) => return Err(EngineError::IdempotencyKeyReused),
            None => {}
        }
        let (package, needed) = self.sellable_package(package_id)?;
        let mut wallet = credited(wallet, package.credits)?;
        let mut change = self.begin(inputs);
        change.sale = true;
        change.next.reserved = change.next.reserved.checked_add(needed)?;
        change.next.wallets_total = change.next.wallets_total.checked_add(package.credits)?;
        change.next.revenue =
            change.next.revenue.checked_add(package.price).map_err(|_| EngineError::Overloaded("revenue overflow"))?;
        assert!(change.next.reserved <= change.next.provider_balance, "a sale never reserves more than the balance");
        let purchase_id = format!("pur_{}", change.next_seq());
        let kind = EntryKind::Purchase {
            purchase_id: purchase_id.clone(),
            package_id: package.id.clone(),
            credits: package.credits,
            price: package.price,
        };
        let seq = change.record(Some(user), Some(key), kind, Some(wallet.balance))?;
        change.put_wallet(user, &mut wallet, seq)?;
        let receipt = PurchaseReceipt {
            purchase_id,
            user_id: user.clone(),
            package_id: package.id,
            credits: package.credits,
            balance: wallet.balance,
        };
        change.remember(Operation::Purchase, key, fingerprint, Receipt::Purchase(receipt.clone()))?;
        Ok(Decision::Apply(Box::new(change), WalletReceipt::Purchase(receipt)))
    }

    pub(super) fn decide_capture(
        &self,
        inputs: &Inputs<'_>,
        user: &UserId,
        wallet: WalletRecord,
        hold_id: &HoldId,
    ) -> Result<Decision<WalletReceipt>, EngineError> {
        let hold = self.hold(inputs, hold_id)?;
        if &hold.user != user {
            return Err(EngineError::UnknownHold(hold_id.clone()));
        }
        let mut change = self.begin(inputs);
        match &hold.state {
            HoldState::Captured(receipt) => return Ok(Decision::Replay(WalletReceipt::Capture(receipt.clone()))),
            HoldState::Released => return Err(EngineError::HoldReleased),
            HoldState::Expired => return Err(EngineError::HoldExpired),
            HoldState::Open if self.is_due(&hold.hold_id, change.monotonic_ms) => return Err(EngineError::HoldExpired),
            HoldState::Open => {}
        }
        let mut wallet = credited(wallet, hold.credits)?;
        change.next.holds_total = change.next.holds_total.checked_sub(hold.credits)?;
        change.next.wallets_total = change.next.wallets_total.checked_add(hold.credits)?;
        change.next.revenue =
            change.next.revenue.checked_add(hold.price).map_err(|_| EngineError::Overloaded("revenue overflow"))?;
        let kind = EntryKind::HoldCaptured {
            hold_id: hold.hold_id.clone(),
            package_id: hold.package_id.clone(),
            credits: hold.credits,
            price: hold.price,
        };
        let seq = change.record(Some(user), None, kind, Some(wallet.balance))?;
        change.put_wallet(user, &mut wallet, seq)?;
        let receipt = CaptureReceipt {
            hold_id: hold.hold_id.clone(),
            user_id: user.clone(),
            package_id: hold.package_id.clone(),
            credits: hold.credits,
            balance: wallet.balance,
        };
        change.put_hold(HoldRecord { state: HoldState::Captured(receipt.clone()), ..hold })?;
        Ok(Decision::Apply(Box::new(change), WalletReceipt::Capture(receipt)))
    }

    // The command's fields, as the other decisions take theirs.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide_spend(
        &self,
        inputs: &Inputs<'_>,
        user: &UserId,
        wallet: WalletRecord,
        credits: UserCredits,
        reason: Option<Reason>,
        key: &ScopedKey,
        fingerprint: Fingerprint,
    ) -> Result<Decision<WalletReceipt>, EngineError> {
        match self.check_key(inputs, Operation::Spend, key, &fingerprint)? {
            Some(Receipt::Spend(receipt)) => return Ok(Decision::Replay(WalletReceipt::Spend(receipt))),
            Some(_) => return Err(EngineError::IdempotencyKeyReused),
            None => {}
        }
        if wallet.version == 0 {
            return Err(EngineError::UnknownUser);
        }
        let mut wallet = debited(wallet, credits)?;
        let provider = self.ratio.backing(credits)?;
        if provider > self.state.provider_balance {
            return Err(EngineError::EnhancementUnavailable);
        }
        let mut change = self.begin(inputs);
        change.next.provider_balance = change.next.provider_balance.checked_sub(provider)?;
        change.next.reserved = change.next.reserved.checked_sub(provider)?;
        change.next.wallets_total = change.next.wallets_total.checked_sub(credits)?;
        change.next.consumed_total = change.next.consumed_total.checked_add(provider)?;
        change.next.open_spends = change.next.open_spends.checked_add(credits)?;
        change.consumption = Consumption::Spent(provider);
        let spend_id = id_from_seq("spend", change.next_seq(), SpendId::parse)?;
        let kind = EntryKind::Spend { spend_id: spend_id.clone(), credits, reason };
        let seq = change.record(Some(user), Some(key), kind, Some(wallet.balance))?;
        change.put_wallet(user, &mut wallet, seq)?;
        change.put_spend(SpendRecord {
            spend_id: spend_id.clone(),
            user: user.clone(),
            credits,
            seq,
            created_at_ms: change.at_ms,
            state: SpendState::Open,
        });
        let receipt = SpendReceipt { spend_id, user_id: user.clone(), credits, balance: wallet.balance };
        change.remember(Operation::Spend, key, fingerprint, Receipt::Spend(receipt.clone()))?;
        Ok(Decision::Apply(Box::new(change), WalletReceipt::Spend(receipt)))
    }

    pub(super) fn decide_refund(
        &self,
        inputs: &Inputs<'_>,
        user: &UserId,
        wallet: WalletRecord,
        spend_id: &SpendId,
    ) -> Result<Decision<WalletReceipt>, EngineError> {
        let spend = self.spend(inputs, spend_id)?;
        if &spend.user != user {
            return Err(EngineError::UnknownSpend(spend_id.clone()));
        }
        match spend.state {
            SpendState::Refunded(_) => return Err(EngineError::AlreadyRefunded),
            SpendState::Completed { .. } => return Err(EngineError::SpendCompleted),
            SpendState::Open if self.spend_is_due(spend_id, inputs.monotonic_ms) => {
                return Err(EngineError::SpendCompleted)
            }
            SpendState::Open => {}
        }
        let mut wallet = credited(wallet, spend.credits)?;
        let provider = self.ratio.backing(spend.credits)?;
        let mut change = self.begin(inputs);
        change.next.provider_balance = change.next.provider_balance.checked_add(provider)?;
        change.next.reserved = change.next.reserved.checked_add(provider)?;
        change.next.wallets_total = change.next.wallets_total.checked_add(spend.credits)?;
        change.next.consumed_total = change.next.consumed_total.saturating_sub(provider);
        change.next.open_spends = change.next.open_spends.checked_sub(spend.credits)?;
        // Made before the last sync: that sync held it back, and the refund
        // gives back exactly that (SPEC §6).
        if self.state.last_sync.is_some_and(|sync| spend.seq < sync.seq) {
            change.next.held_back = change.next.held_back.checked_sub(provider)?;
        }
        change.consumption = Consumption::Refunded(provider);
        let kind = EntryKind::Refund { spend_id: spend_id.clone(), credits: spend.credits };
        let seq = change.record(Some(user), None, kind, Some(wallet.balance))?;
        change.put_wallet(user, &mut wallet, seq)?;
        let receipt = RefundReceipt {
            spend_id: spend_id.clone(),
            user_id: user.clone(),
            credits: spend.credits,
            balance: wallet.balance,
        };
        change.put_spend(SpendRecord { state: SpendState::Refunded(receipt.clone()), ..spend });
        Ok(Decision::Apply(Box::new(change), WalletReceipt::Refund(receipt)))
    }
}

// ---------------------------------------------------------------------------
// Holds (SPEC §5): created and released here; captured through the wallet.
