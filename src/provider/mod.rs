//! NanoBanana, the upstream provider (SPEC §6): the real client, and a fake
//! that is a real HTTP server on loopback for `demo` and the tests.

pub mod fake;

use std::time::Duration;

use crate::config::Secret;
use crate::domain::ProviderCredits;

/// The balance endpoint, relative to the base URL.
pub const BALANCE_PATH: &str = "/api/v1/common/credit";

/// The largest answer body read from the provider.
const RESPONSE_BYTES_MAX: usize = 64 * 1024;

/// Why a balance could not be fetched. Never carries the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("cannot reach the provider: {0}")]
    Transport(String),
    #[error("the provider rejected the API key (401)")]
    Unauthorized,
    #[error("the provider account has no credits or is suspended (402)")]
    PaymentRequired,
    #[error("the provider is rate limiting (429)")]
    RateLimited,
    #[error("the provider answered HTTP {0}")]
    Status(u16),
    #[error("the provider answered code {code}: {message}")]
    ErrorCode { code: i64, message: String },
    #[error("the provider's answer is malformed: {0}")]
    Malformed(String),
}

impl ProviderError {
    /// Errors that no retry will fix until an operator acts (SPEC §6).
    pub fn is_critical(&self) -> bool {
        matches!(self, Self::Unauthorized | Self::PaymentRequired)
    }
}

/// The client of NanoBanana's balance endpoint.
#[derive(Clone)]
pub struct NanoBananaClient {
    http: reqwest::Client,
    url: String,
    key: Secret,
}

impl std::fmt::Debug for NanoBananaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NanoBananaClient").field("url", &self.url).finish_non_exhaustive()
    }
}

impl NanoBananaClient {
    /// # Errors
    /// [`ProviderError::Transport`] when the HTTP client cannot be built.
    pub fn new(base_url: &str, key: Secret, timeout: Duration) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("creditd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ProviderError::Transport(error.to_string()))?;
        let url = format!("{}{BALANCE_PATH}", base_url.trim_end_matches('/'));
        Ok(Self { http, url, key })
    }

    /// Fetches the real balance. Both the HTTP status and the body's `code`
    /// must say success, and `data` must be a non-negative integer.
    ///
    /// # Errors
    /// The [`ProviderError`] that describes the failure.
    pub async fn balance(&self) -> Result<ProviderCredits, ProviderError> {
        let mut response = self.http.get(&self.url).bearer_auth(self.key.expose()).send().await.map_err(transport)?;
        match response.status().as_u16() {
            200 => {}
            401 => return Err(ProviderError::Unauthorized),
            402 => return Err(ProviderError::PaymentRequired),
            429 => return Err(ProviderError::RateLimited),
            other => return Err(ProviderError::Status(other)),
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len().saturating_add(chunk.len()) > RESPONSE_BYTES_MAX {
                return Err(ProviderError::Malformed("answer larger than 64 KiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        parse_balance(&body)
    }
}

fn transport(error: reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout
    } else {
        // Without the URL: error chains are logged, and the URL is configuration.
        ProviderError::Transport(error.without_url().to_string())
    }
}

/// Parses `{"code": 200, "msg": "success", "data": <integer>}`.
///
/// # Errors
/// [`ProviderError::ErrorCode`] for another `code`, [`ProviderError::Malformed`]
/// for any other shape.
pub fn parse_balance(body: &[u8]) -> Result<ProviderCredits, ProviderError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| ProviderError::Malformed(format!("not JSON: {error}")))?;
    let object = value.as_object().ok_or_else(|| ProviderError::Malformed("not a JSON object".into()))?;
    let code = object
        .get("code")
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| ProviderError::Malformed("missing integer `code`".into()))?;
    if code != 200 {
        let message = object.get("msg").and_then(serde_json::Value::as_str).unwrap_or("").chars().take(200).collect();
        return Err(ProviderError::ErrorCode { code, message });
    }
    let data = object.get("data").ok_or_else(|| ProviderError::Malformed("missing `data`".into()))?;
    let balance = data.as_u64().ok_or_else(|| {
        ProviderError::Malformed(match data.as_i64() {
            Some(_) => "negative `data`".into(),
            None => format!("`data` is not an integer: {}", truncate(&data.to_string())),
        })
    })?;
    ProviderCredits::new(balance).map_err(|error| ProviderError::Malformed(format!("`data`: {error}")))
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_code_200_with_a_non_negative_integer_is_a_balance() {
        assert_eq!(parse_balance(br#"{"code":200,"msg":"success","data":938}"#).map(ProviderCredits::get), Ok(938));
        assert!(matches!(
            parse_balance(br#"{"code":500,"msg":"internal","data":938}"#),
            Err(ProviderError::ErrorCode { code: 500, .. })
        ));
        for body in [
            &br#"{"code":200,"msg":"success","data":-1}"#[..],
            br#"{"code":200,"msg":"success","data":1.5}"#,
            br#"{"code":200,"msg":"success","data":"938"}"#,
            br#"{"code":200,"msg":"success"}"#,
            br#"{"msg":"success","data":1}"#,
            b"<html>",
            b"[]",
        ] {
            assert!(
                matches!(parse_balance(body), Err(ProviderError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
