//! The one place where errors become HTTP answers (SPEC §9):
//! `{"error": {"code": "...", "message": "..."}}` with a stable code.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::actors::EngineError;

/// Every error an HTTP handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{field}: {reason}")]
    InvalidRequest { field: String, reason: String },
    #[error("the Idempotency-Key header is required")]
    MissingIdempotencyKey,
    #[error("missing or wrong admin token")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    SyncFailed(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::actors::sync::SyncError> for ApiError {
    fn from(error: crate::actors::sync::SyncError) -> Self {
        match error {
            crate::actors::sync::SyncError::Engine(engine) => Self::Engine(engine),
            crate::actors::sync::SyncError::Provider(provider) => Self::SyncFailed(provider.to_string()),
        }
    }
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::InvalidRequest { field: field.into(), reason: reason.to_string() }
    }

    /// The status and the contract code of SPEC §9.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidRequest { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::MissingIdempotencyKey => (StatusCode::BAD_REQUEST, "missing_idempotency_key"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::SyncFailed(_) => (StatusCode::BAD_GATEWAY, "sync_failed"),
            Self::Engine(error) => engine_status_and_code(error),
        }
    }

    /// The message for the client: the user-facing sentences of SPEC §5/§9
    /// where the spec fixes them; never a secret or an internal path.
    fn message(&self) -> String {
        match self {
            Self::Engine(error) => match error {
                EngineError::InsufficientCapacity => "Service temporarily unavailable".into(),
                EngineError::PackageDisabled(_) => "Temporarily unavailable".into(),
                EngineError::PurchasesDisabled => "Purchases are temporarily disabled".into(),
                EngineError::EnhancementUnavailable => "Enhancement temporarily unavailable".into(),
                EngineError::Storage(_) => "Storage is unavailable; the request was not applied".into(),
                EngineError::UnknownUser => "unknown user".into(),
                EngineError::Quantity(reason) => format!("credits: {reason}"),
                other => other.to_string(),
            },
            other => other.to_string(),
        }
    }
}

fn engine_status_and_code(error: &EngineError) -> (StatusCode, &'static str) {
    match error {
        EngineError::NotReady(_) | EngineError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
        EngineError::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        EngineError::UnknownPackage(_)
        | EngineError::UnknownUser
        | EngineError::UnknownHold(_)
        | EngineError::UnknownSpend(_) => (StatusCode::NOT_FOUND, "not_found"),
        EngineError::HoldCaptured => (StatusCode::CONFLICT, "hold_captured"),
        EngineError::HoldReleased => (StatusCode::CONFLICT, "hold_released"),
        EngineError::HoldExpired => (StatusCode::CONFLICT, "hold_expired"),
        EngineError::InsufficientFunds => (StatusCode::CONFLICT, "insufficient_funds"),
        EngineError::AlreadyRefunded => (StatusCode::CONFLICT, "already_refunded"),
        EngineError::EnhancementUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "enhancement_unavailable"),
        EngineError::PackageDisabled(_) => (StatusCode::CONFLICT, "package_disabled"),
        EngineError::InsufficientCapacity => (StatusCode::CONFLICT, "insufficient_capacity"),
        EngineError::PurchasesDisabled => (StatusCode::SERVICE_UNAVAILABLE, "purchases_disabled"),
        EngineError::IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
        EngineError::IdempotencyKeyInUse => (StatusCode::CONFLICT, "idempotency_key_in_use"),
        EngineError::Quantity(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(code, error = %self, "request failed");
        }
        HttpResponse::build(status).json(ErrorBody { error: ErrorDetail { code, message: self.message() } })
    }
}
