//! Reading requests: JSON bodies with their limits, the `Idempotency-Key`
//! header, the admin token. Everything here turns bad input into an
//! [`ApiError`] that names the field.

use actix_web::http::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::actors::inventory::Fingerprint;
use crate::config::Secret;
use crate::domain::IdempotencyKey;

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

/// Reads a JSON body of at most [`BODY_BYTES_MAX`] bytes into `T`.
///
/// # Errors
/// 415 for another content type, 413 for a larger body, 400 naming the
/// field for anything that does not deserialise (unknown fields included).
pub async fn json_body<T: DeserializeOwned>(request: &HttpRequest, mut payload: web::Payload) -> Result<T, ApiError> {
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

/// Checks `Authorization: Bearer <token>` in constant time: both sides are
/// hashed first, so neither the content nor the length of the token leaks
/// through timing.
///
/// # Errors
/// 401 `unauthorized` when missing or wrong.
pub fn require_admin(request: &HttpRequest, token: &Secret) -> Result<(), ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    let presented_hash = Sha256::digest(presented.trim().as_bytes());
    let expected_hash = Sha256::digest(token.expose().as_bytes());
    if bool::from(presented_hash.ct_eq(&expected_hash)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
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
