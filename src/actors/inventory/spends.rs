//! The end of an open spend (SPEC §5): completed by the enhancement service
//! when the provider did the work, or by time. A refund is a wallet change
//! (`wallets.rs`), since it gives the user's credits back.

use actix::prelude::*;

use super::change::{outcome_label, Decision, Reply};
use super::{Books, Inputs, InventoryActor};
use crate::actors::EngineError;
use crate::domain::SpendId;
use crate::store::records::{CompletedBy, CompletionReceipt, SpendState};

/// The provider did the work: the open spend is final.
#[derive(Debug, Clone)]
pub struct CompleteSpend(pub SpendId);

impl Message for CompleteSpend {
    type Result = Result<CompletionReceipt, EngineError>;
}

impl Handler<CompleteSpend> for InventoryActor {
    type Result = Reply<CompletionReceipt>;

    fn handle(&mut self, message: CompleteSpend, ctx: &mut Self::Context) -> Self::Result {
        self.expire_due(ctx);
        let decision = self.books.ensure_ready(&self.inputs()).and_then(|()| {
            let inputs = self.inputs();
            self.books.decide_complete(&inputs, &message.0)
        });
        metrics::counter!("creditd_spend_completions_total", "by" => "service", "outcome" => outcome_label(&decision))
            .increment(1);
        self.respond(decision)
    }
}

impl Books {
    /// Completes an open spend; a completed one answers the same again; a
    /// refunded one is `already_refunded`.
    pub(super) fn decide_complete(
        &self,
        inputs: &Inputs<'_>,
        spend_id: &SpendId,
    ) -> Result<Decision<CompletionReceipt>, EngineError> {
        let spend = self.spend(inputs, spend_id)?;
        let receipt =
            CompletionReceipt { spend_id: spend.spend_id.clone(), user_id: spend.user.clone(), credits: spend.credits };
        match spend.state {
            SpendState::Refunded(_) => Err(EngineError::AlreadyRefunded),
            SpendState::Completed { .. } => Ok(Decision::Replay(receipt)),
            SpendState::Open => {
                let mut change = self.begin(inputs);
                self.complete(&mut change, &spend, CompletedBy::Service)?;
                Ok(Decision::Apply(Box::new(change), receipt))
            }
        }
    }
}
