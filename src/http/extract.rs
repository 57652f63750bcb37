//! Reading requests: JSON bodies with their limits, the `Idempotency-Key`
//! header, the API key and its scopes. Everything here turns bad input into an
//! [`ApiError`] that names the field.

use actix_web::http::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::access::{hash_key, Caller};
use crate::actors::inventory::Fingerprint;
use crate::domain::{IdempotencyKey, Needs, Scopes};

/// The largest request body accepted (SPEC §9).
pub const BODY_BYTES_MAX: usize = 64 * 1024;

pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads a JSON body of at most [`BODY_BYTES_MAX`] bytes into `T`, within
/// the configured `body_timeout` (SPEC §9.2).
///
/// # Errors
/// 415 for another content type, 413 for a larger body, 408 for a body
/// still arriving after `body_timeout`, 400 naming the field for anything
/// that does not deserialise (unknown fields included).
pub async fn json_body<T: DeserializeOwned>(request: &HttpRequest, payload: web::Payload) -> Result<T, ApiError> {
    let wait = request.app_data::<web::Data<AppState>>().map_or(BODY_TIMEOUT_DEFAULT, |state| state.body_timeout);
    match tokio::time::timeout(wait, read_json(request, payload)).await {
        Ok(parsed) => parsed,
        Err(_) => Err(ApiError::RequestTimeout),
    }
}

/// SPEC §9.2's default `body_timeout_ms`, for a handler mounted without state.
const BODY_TIMEOUT_DEFAULT: std::time::Duration = std::time::Duration::from_millis(5_000);

async fn read_json<T: DeserializeOwned>(request: &HttpRequest, mut payload: web::Payload) -> Result<T, ApiError> {
    if !is_json(request.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > BODY_BYTES_MAX) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(BODY_BYTES_MAX));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| ApiError::invalid("body", error))?;
        if body.len().saturating_add(chunk.len()) > BODY_BYTES_MAX {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    parse_json(&body)
}

/// Parses a JSON object into `T`, naming the offending field on failure.
/// The pure part of [`json_body`], and a fuzzing target.
///
/// # Errors
/// 400 `invalid_request` naming the field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // serde would also read a struct from a JSON array; the API takes objects only.
    if body.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid("body", "must be a JSON object"));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::invalid(field, error.inner())
    })
}

/// The `Idempotency-Key` header, if present.
///
/// # Errors
/// 400 `invalid_request` for a malformed key.
pub fn idempotency_key(request: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = request.headers().get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| ApiError::invalid(IDEMPOTENCY_KEY_HEADER, "must be printable ASCII"))?;
    IdempotencyKey::parse(text).map(Some).map_err(|error| ApiError::invalid(IDEMPOTENCY_KEY_HEADER, error))
}

/// The `Idempotency-Key` header of a route that requires it.
///
/// # Errors
/// 400 `missing_idempotency_key`, or 400 `invalid_request` for a bad key.
pub fn required_idempotency_key(request: &HttpRequest) -> Result<IdempotencyKey, ApiError> {
    idempotency_key(request)?.ok_or(ApiError::MissingIdempotencyKey)
}

/// SHA-256 over length-prefixed parts: two different requests never share a
/// fingerprint by concatenating alike.
pub fn fingerprint(parts: &[&[u8]]) -> Fingerprint {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// The bearer key of `Authorization: Bearer <key>`, if any.
fn bearer(request: &HttpRequest) -> Option<&str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim()).filter(|key| !key.is_empty())
}

/// Checks a bearer token against one expected hash, in constant time,
/// counting a failure against the caller's address in `failures` (as
/// [`authorize`] does).
///
/// # Errors
/// 401 `unauthorized` when missing or wrong; 429 `rate_limited` from a
/// blocked address.
pub fn require_token(
    request: &HttpRequest,
    expected: &crate::access::KeyHash,
    failures: Option<&crate::access::FailedAuthentications>,
) -> Result<(), ApiError> {
    let guard = Guard::check(request, failures)?;
    let presented = bearer(request);
    if presented.is_some_and(|presented| bool::from(hash_key(presented).ct_eq(expected))) {
        Ok(())
    } else {
        Err(guard.failed())
    }
}

/// The failed-authentication limit of one request's address (SPEC §9.2):
/// a blocked address is refused before its key is looked at, and a failure
/// counts against it.
struct Guard<'a> {
    failures: Option<(&'a crate::access::FailedAuthentications, std::net::IpAddr)>,
    now: std::time::Instant,
}

impl<'a> Guard<'a> {
    /// # Errors
    /// 429 `rate_limited` while the request's address is blocked.
    fn check(
        request: &HttpRequest,
        failures: Option<&'a crate::access::FailedAuthentications>,
    ) -> Result<Self, ApiError> {
        let address = request.peer_addr().map(|peer| peer.ip());
        let guard = Self { failures: failures.zip(address), now: std::time::Instant::now() };
        match guard.failures.and_then(|(failures, address)| failures.blocked(address, guard.now)) {
            Some(wait) => Err(ApiError::RateLimited(wait)),
            None => Ok(guard),
        }
    }

    /// The answer to a failed authentication, counted: 401, or 429 when it
    /// was one too many.
    fn failed(&self) -> ApiError {
        match self.failures.and_then(|(failures, address)| failures.failed(address, self.now)) {
            Some(wait) => ApiError::RateLimited(wait),
            None => ApiError::Unauthorized,
        }
    }
}

/// Who calls, if the route allows them (SPEC §9.1): the configured admin
/// token, or a live API key with a scope that `needs`. The presented key is
/// hashed first and looked up and compared by its hash, in constant time:
/// neither its content nor its length leaks through timing, and it is
/// never logged.
///
/// More than 20 failed authentications in a second from one address block
/// it for the next second (SPEC §9.2): guessing keys is slowed to 20 a
/// second an address. The address is the connection's peer: behind a proxy,
/// every client shares the proxy's.
///
/// # Errors
/// 401 `unauthorized` without a valid key; 429 `rate_limited` from a
/// blocked address, or past the key's `rate_limit_per_key`; 403
/// `forbidden` without the scope.
pub fn authorize(request: &HttpRequest, state: &AppState, needs: Needs) -> Result<Caller, ApiError> {
    let guard = Guard::check(request, Some(&state.auth_failures))?;
    let failed = || guard.failed();
    let presented = bearer(request).ok_or_else(failed)?;
    let hash = hash_key(presented);
    let (caller, bucket) = if bool::from(hash.ct_eq(&state.admin_key_hash)) {
        (Caller { id: state.admin_key_id.clone(), scopes: Scopes::ADMIN }, None)
    } else {
        let key = state.engine.authenticate(&hash).ok_or_else(failed)?;
        (Caller { id: key.id.clone(), scopes: key.scopes }, Some(key))
    };
    if state.rate_limit_per_key > 0 {
        let bucket = bucket.as_ref().map_or(&state.admin_bucket, |key| &key.bucket);
        bucket.take(state.rate_limit_per_key, std::time::Instant::now()).map_err(ApiError::RateLimited)?;
    }
    if caller.scopes.allow(needs) {
        Ok(caller)
    } else {
        Err(ApiError::Forbidden(match needs {
            Needs::Storefront => "storefront",
            Needs::Enhancement => "enhancement",
            Needs::WalletRead => "storefront, enhancement or read",
            Needs::Admin => "admin",
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{UserCredits, UserId};
    use crate::http::dto::{HoldRequest, PurchaseRequest, SpendRequest};
    use proptest::prelude::*;

    #[test]
    fn errors_name_the_field() {
        let error = parse_json::<SpendRequest>(br#"{"userId":"a","credits":"x"}"#).expect_err("wrong type");
        assert!(error.to_string().starts_with("credits:"), "{error}");
        let error = parse_json::<PurchaseRequest>(br#"{"userId":"a"}"#).expect_err("missing");
        assert!(error.to_string().contains("packageId"), "{error}");
    }

    proptest! {
        /// The CI stand-in for the `parse_requests` fuzz target: arbitrary
        /// bytes never panic, and what parses respects the domain rules.
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(request) = parse_json::<SpendRequest>(&body) {
                if let Ok(credits) = UserCredits::positive_from_i64(request.credits) {
                    prop_assert!(credits.get() >= 1);
                }
                let _ = UserId::parse(&request.user_id);
            }
            let _ = parse_json::<PurchaseRequest>(&body);
            let _ = parse_json::<HoldRequest>(&body);
            let _ = crate::provider::parse_balance(&body);
        }

        #[test]
        fn json_shaped_bodies_never_panic(user in ".{0,200}", credits in any::<i64>(), extra in proptest::option::of("[a-z]{1,8}")) {
            let mut body = serde_json::json!({"userId": user, "credits": credits});
            if let Some(field) = extra {
                body[field] = serde_json::json!(1);
            }
            let bytes = serde_json::to_vec(&body).expect("encodes");
            if let Ok(request) = parse_json::<SpendRequest>(&bytes) {
                prop_assert_eq!(request.credits, credits);
            }
        }
    }
}
