//! The webhook actor: delivers alert events to `CREDITD_ALERT_WEBHOOK_URL`
//! as JSON POSTs, one at a time, each retried with exponential backoff and
//! jitter up to [`ATTEMPTS_MAX`] times.
//!
//! It is entirely off the request paths: the alert actor hands it events with
//! `do_send` and never waits; its queue is bounded by [`QUEUE_MAX`] and drops
//! the oldest event when full (counted in metrics). A receiver that never
//! answers costs one [`ATTEMPT_TIMEOUT`] per attempt, and nothing else.
//!
//! Messages: [`Deliver`] (from the alert actor).

use std::collections::VecDeque;
use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;

use super::sync::backoff;
use crate::clock::rfc3339;
use crate::store::records::AlertEventRecord;

pub const QUEUE_MAX: usize = 1_000;
pub const ATTEMPTS_MAX: u32 = 6;
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The JSON an alert event is delivered as (the shape of SPEC §7).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AlertEventBody {
    pub id: u64,
    pub kind: String,
    pub state: &'static str,
    pub severity: String,
    pub message: String,
    pub at: String,
}

impl From<&AlertEventRecord> for AlertEventBody {
    fn from(event: &AlertEventRecord) -> Self {
        Self {
            id: event.id,
            kind: event.kind.clone(),
            state: if event.firing { "firing" } else { "cleared" },
            severity: event.severity.clone(),
            message: event.message.clone(),
            at: rfc3339(event.at_ms),
        }
    }
}

pub struct WebhookActor {
    client: reqwest::Client,
    url: String,
    queue: VecDeque<AlertEventRecord>,
    busy: bool,
}

impl WebhookActor {
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(url: String) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).connect_timeout(ATTEMPT_TIMEOUT).build()?;
        Ok(Self { client, url, queue: VecDeque::new(), busy: false })
    }

    fn deliver_next(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let Some(event) = self.queue.pop_front() else { return };
        self.busy = true;
        let (client, url, body) = (self.client.clone(), self.url.clone(), AlertEventBody::from(&event));
        let delivery = async move {
            for attempt in 0..ATTEMPTS_MAX {
                match client.post(&url).json(&body).send().await {
                    Ok(response) if response.status().is_success() => return true,
                    Ok(response) => {
                        tracing::warn!(status = response.status().as_u16(), attempt, "alert webhook refused")
                    }
                    Err(error) => tracing::warn!(error = %error.without_url(), attempt, "alert webhook unreachable"),
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
            false
        };
        ctx.spawn(delivery.into_actor(self).map(|delivered, actor, ctx| {
            let outcome = if delivered { "delivered" } else { "given_up" };
            metrics::counter!("creditd_alert_webhook_total", "outcome" => outcome).increment(1);
            actor.busy = false;
            actor.deliver_next(ctx);
        }));
    }
}

impl Actor for WebhookActor {
    type Context = Context<Self>;
}

/// Deliver one event (queued behind the earlier ones).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Deliver(pub AlertEventRecord);

impl Handler<Deliver> for WebhookActor {
    type Result = ();

    fn handle(&mut self, message: Deliver, ctx: &mut Self::Context) {
        if self.queue.len() >= QUEUE_MAX {
            self.queue.pop_front();
            metrics::counter!("creditd_alert_webhook_total", "outcome" => "dropped").increment(1);
        }
        self.queue.push_back(message.0);
        self.deliver_next(ctx);
    }
}
