//! The webhook actor: delivers alert events to `CREDITD_ALERT_WEBHOOK_URL`
//! as JSON POSTs, one at a time, each retried with exponential backoff and
//! jitter up to [`ATTEMPTS_MAX`] times.
//!
//! It is entirely off the request paths: the alert actor hands it events with
//! `do_send` and never waits; its queue is bounded by [`QUEUE_MAX`] and drops
//! the oldest event when full (counted in metrics). A receiver that never
//! answers costs one [`ATTEMPT_TIMEOUT`] per attempt, and nothing else.
//!
//! With `alert_webhook_secret` set, every POST carries
//! `Creditd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
//! (in the manner of Stripe's `Stripe-Signature`): a receiver that knows the
//! secret rejects forgeries, and replays by the age of `t` (docs/webhooks.md).
//!
//! Messages: [`Deliver`] (from the alert actor).

use std::collections::VecDeque;
use std::time::Duration;

use actix::prelude::*;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::backoff::backoff;
use crate::clock::rfc3339;
use crate::store::records::AlertEventRecord;

pub const QUEUE_MAX: usize = 1_000;
pub const ATTEMPTS_MAX: u32 = 6;
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Creditd-Signature";

/// The signature header's value for `body` sent at `unix_seconds`:
/// `t=<unix_seconds>,v1=<hex HMAC-SHA256(secret, "<unix_seconds>.<body>")>`.
pub fn signature(secret: &[u8], unix_seconds: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC keys have no length limit"));
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("t={unix_seconds},v1={hex}")
}

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
    /// `alert_webhook_secret`: signs every POST when set.
    secret: Option<crate::config::Secret>,
    queue: VecDeque<AlertEventRecord>,
    busy: bool,
}

impl WebhookActor {
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(url: String, secret: Option<crate::config::Secret>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).connect_timeout(ATTEMPT_TIMEOUT).build()?;
        Ok(Self { client, url, secret, queue: VecDeque::new(), busy: false })
    }

    fn deliver_next(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let Some(event) = self.queue.pop_front() else { return };
        self.busy = true;
        let (client, url, secret) = (self.client.clone(), self.url.clone(), self.secret.clone());
        let body = serde_json::to_vec(&AlertEventBody::from(&event)).unwrap_or_default();
        let delivery = async move {
            for attempt in 0..ATTEMPTS_MAX {
                let mut request =
                    client.post(&url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
                if let Some(secret) = &secret {
                    // Signed at each attempt: a retry is as fresh as its timestamp says.
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    request =
                        request.header(SIGNATURE_HEADER, signature(secret.expose().as_bytes(), now.as_secs(), &body));
                }
                match request.send().await {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature is HMAC-SHA256 over "<t>.<body>" (RFC 4231's HMAC,
    /// checked here against a digest computed independently with openssl:
    /// `printf '1700000000.{"id":1}' | openssl dgst -sha256 -hmac whsec_test`).
    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        let signed = signature(b"whsec_test", 1_700_000_000, br#"{"id":1}"#);
        assert_eq!(signed, format!("t=1700000000,v1={}", OPENSSL_DIGEST));
        assert_ne!(signature(b"whsec_other", 1_700_000_000, br#"{"id":1}"#), signed, "another secret");
        assert_ne!(signature(b"whsec_test", 1_700_000_001, br#"{"id":1}"#), signed, "another time");
        assert_ne!(signature(b"whsec_test", 1_700_000_000, br#"{"id":2}"#), signed, "another body");
    }

    const OPENSSL_DIGEST: &str = "2f441ba4b3b2d50d28a9ab9d9fd8880376ecd1eb5d0435401553f5d8d0a5dcf8";
}
