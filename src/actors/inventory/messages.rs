//! The inventory's messages and how each is sequenced: decided by
//! `crate::decide`, then committed, adopted and answered by the actor.

use actix::prelude::*;

use super::{ready, InventoryActor, Reply};
use crate::actors::EngineError;
use crate::decide::{
    decide, outcome_label, ApplySync, CreateApiKey, Decision, Prefetched, PurchasesState, RevokeApiKey,
    SetPurchasesEnabled, SyncOutcome, SyncToken, UpdatePackage, UserCommand, UserReceipt,
};
use crate::domain::{Package, UserId};
use crate::store::records::{ApiKeyRecord, WalletRecord};

/// A command about `user`, with what the user's wallet actor read for it.
#[derive(Debug)]
pub struct Decide {
    pub user: UserId,
    pub command: UserCommand,
    pub prefetched: Prefetched,
}

/// What the inventory did with a [`Decide`].
#[derive(Debug)]
pub enum Decided {
    /// Decided (and durable, if it changed anything); the user's wallet as
    /// the change left it, if it moved it.
    Done(UserReceipt, Option<WalletRecord>),
    /// Not decided: a prefetched record may have moved while the command
    /// waited. Read again and send it back.
    Refetch(UserCommand),
}

impl Message for Decide {
    type Result = Result<Decided, EngineError>;
}

impl Handler<Decide> for InventoryActor {
    type Result = Reply<Decided>;

    fn handle(&mut self, message: Decide, ctx: &mut Self::Context) -> Self::Result {
        self.expire_due(ctx);
        let Decide { user, command, prefetched } = message;
        let now = self.now();
        let decision = self.note_refusal(decide(&self.books, &user, &command, &prefetched, &now));
        let outcome = outcome_label(&decision);
        // A refetch is not an outcome: the command comes back, and is counted then.
        let counted = !matches!(decision, Ok(Decision::Refetch));
        match &command {
            _ if !counted => {}
            UserCommand::Purchase { package_id, .. } => {
                let package = self.package_label(package_id);
                metrics::counter!("creditd_purchases_total", "package" => package, "outcome" => outcome).increment(1);
            }
            UserCommand::Spend { .. } => metrics::counter!("creditd_spends_total", "outcome" => outcome).increment(1),
            UserCommand::Refund { .. } => metrics::counter!("creditd_refunds_total", "outcome" => outcome).increment(1),
            UserCommand::Capture { .. } | UserCommand::Hold { .. } | UserCommand::Release { .. } => {
                let operation = match &command {
                    UserCommand::Capture { .. } => "capture",
                    UserCommand::Hold { .. } => "create",
                    _ => "release",
                };
                metrics::counter!("creditd_holds_total", "operation" => operation, "outcome" => outcome).increment(1);
            }
            UserCommand::Complete { .. } => {
                metrics::counter!("creditd_spend_completions_total", "by" => "service", "outcome" => outcome)
                    .increment(1);
            }
            UserCommand::Grant { .. } | UserCommand::Void { .. } | UserCommand::ExpireGrants => {
                let operation = match &command {
                    UserCommand::Grant { .. } => "create",
                    UserCommand::Void { .. } => "void",
                    _ => "expire",
                };
                metrics::counter!("creditd_grants_total", "operation" => operation, "outcome" => outcome).increment(1);
            }
        }
        let decision = decision.map(|decision| {
            let wallet = match &decision {
                Decision::Apply(change, _) => change.wallet.as_ref().map(|(_, wallet)| wallet.clone()),
                _ => None,
            };
            decision.map(|receipt| Decided::Done(receipt, wallet))
        });
        self.respond(decision, Some(Decided::Refetch(command)))
    }
}

/// The last ledger sequence number, answered once everything up to it is
/// durable: the point a consistent backup stops at.
#[derive(Debug, Clone, Copy)]
pub struct DurableSequence;

impl Message for DurableSequence {
    type Result = Result<u64, EngineError>;
}

impl Handler<DurableSequence> for InventoryActor {
    type Result = Reply<u64>;

    fn handle(&mut self, _: DurableSequence, _: &mut Self::Context) -> Self::Result {
        let last = self.books.state.next_seq.saturating_sub(1);
        self.after_durable(Ok(last))
    }
}

/// Marks the start of a provider request (SPEC §6); the token goes back in [`ApplySync`].
#[derive(Debug, Clone, Copy)]
pub struct BeginSync;

impl Message for BeginSync {
    type Result = SyncToken;
}

impl Handler<BeginSync> for InventoryActor {
    type Result = MessageResult<BeginSync>;

    fn handle(&mut self, _: BeginSync, ctx: &mut Self::Context) -> Self::Result {
        // A spend whose time ran out before the request left completed then,
        // not while the request was in flight.
        self.expire_due(ctx);
        MessageResult(self.books.begin_sync())
    }
}

impl Message for ApplySync {
    type Result = Result<SyncOutcome, EngineError>;
}

impl Handler<ApplySync> for InventoryActor {
    type Result = Reply<SyncOutcome>;

    fn handle(&mut self, message: ApplySync, ctx: &mut Self::Context) -> Self::Result {
        self.expire_due(ctx);
        let (change, outcome) = match self.books.decide_sync(&self.now(), message) {
            Ok(decided) => decided,
            Err(error) => return ready(Err(error)),
        };
        self.books.end_sync();
        Box::pin(self.finish(change, outcome).map(|result, actor, _| {
            if result.is_ok() {
                actor.health.mark_synced();
                actor.observe(false, false);
            }
            result
        }))
    }
}

impl Message for SetPurchasesEnabled {
    type Result = Result<PurchasesState, EngineError>;
}

impl Handler<SetPurchasesEnabled> for InventoryActor {
    type Result = Reply<PurchasesState>;

    fn handle(&mut self, message: SetPurchasesEnabled, _: &mut Self::Context) -> Self::Result {
        let decision = self.books.decide_kill_switch(&self.now(), message);
        self.respond(decision, None)
    }
}

impl Message for UpdatePackage {
    type Result = Result<Package, EngineError>;
}

impl Handler<UpdatePackage> for InventoryActor {
    type Result = Reply<Package>;

    fn handle(&mut self, message: UpdatePackage, _: &mut Self::Context) -> Self::Result {
        let decision = self.books.decide_package(&self.now(), &message);
        self.respond(decision, None)
    }
}

impl Message for CreateApiKey {
    type Result = Result<ApiKeyRecord, EngineError>;
}

impl Handler<CreateApiKey> for InventoryActor {
    type Result = Reply<ApiKeyRecord>;

    fn handle(&mut self, message: CreateApiKey, _: &mut Self::Context) -> Self::Result {
        let decision = self.books.decide_create_key(&self.now(), message);
        self.respond(decision, None)
    }
}

impl Message for RevokeApiKey {
    type Result = Result<ApiKeyRecord, EngineError>;
}

impl Handler<RevokeApiKey> for InventoryActor {
    type Result = Reply<ApiKeyRecord>;

    fn handle(&mut self, message: RevokeApiKey, _: &mut Self::Context) -> Self::Result {
        let decision = self.books.decide_revoke_key(&self.now(), &message.id);
        self.respond(decision, None)
    }
}

/// Every key, revoked ones included, oldest first, with its latest use.
#[derive(Debug, Clone, Copy)]
pub struct ListApiKeys;

impl Message for ListApiKeys {
    type Result = Vec<ApiKeyRecord>;
}

impl Handler<ListApiKeys> for InventoryActor {
    type Result = MessageResult<ListApiKeys>;

    fn handle(&mut self, _: ListApiKeys, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.books.keys.listed())
    }
}

/// The users whose grants have passed their `expiresAt` and are not closed
/// yet (SPEC §13), at most `limit`: the engine's sweep closes them through
/// each user's wallet actor.
#[derive(Debug, Clone, Copy)]
pub struct DueGrants {
    pub limit: usize,
}

/// [`DueGrants`]'s answer.
#[derive(Debug, Clone)]
pub struct GrantsDue {
    pub users: Vec<UserId>,
    /// The next `expiresAt` of a grant not closed, after now (wall clock,
    /// ms): when the sweep should look again, if sooner than its interval.
    pub next_deadline_ms: Option<u64>,
}

impl Message for DueGrants {
    type Result = GrantsDue;
}

impl Handler<DueGrants> for InventoryActor {
    type Result = MessageResult<DueGrants>;

    fn handle(&mut self, message: DueGrants, _: &mut Self::Context) -> Self::Result {
        let now_ms = self.now().now_ms;
        MessageResult(GrantsDue {
            users: self.books.due_grant_users(now_ms, message.limit),
            next_deadline_ms: self.books.next_grant_deadline(now_ms),
        })
    }
}
