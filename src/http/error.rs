//! The one place where errors become HTTP answers (SPEC §9):
//! `{"error": {"code": "...", "message": "..."}}` with a stable code.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::actors::EngineError;

/// The error codes of SPEC §9: a contract, listed in the OpenAPI document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    MissingIdempotencyKey,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    InsufficientCapacity,
    PackageDisabled,
    InsufficientFunds,
    HoldCaptured,
    HoldReleased,
    HoldExpired,
    AlreadyRefunded,
    SpendCompleted,
    GrantClosed,
    IdempotencyKeyInUse,
    TooManyHolds,
    PayloadTooLarge,
    UnsupportedMediaType,
    IdempotencyKeyReused,
    RateLimited,
    SyncFailed,
    PurchasesDisabled,
    EnhancementUnavailable,
    NotReady,
    OutcomeUnknown,
    Overloaded,
    NotLeader,
}

/// Every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people: names the field for `invalid_request`, gives the
    /// user-facing sentence of SPEC §5 where there is one.
    pub message: String,
}

/// Every error an HTTP handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{field}: {reason}")]
    InvalidRequest { field: String, reason: String },
    #[error("the Idempotency-Key header is required")]
    MissingIdempotencyKey,
    #[error("a valid API key is required: Authorization: Bearer <key>")]
    Unauthorized,
    #[error("this API key lacks the scope this route needs ({0})")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed; this resource serves {allow}")]
    MethodNotAllowed { allow: String },
    #[error("the request body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("the request body did not arrive in time; the connection is closed")]
    RequestTimeout,
    #[error("too many requests (this API key's rate limit, or this address's failed authentications); retry after the Retry-After header's seconds")]
    RateLimited(std::time::Duration),
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    SyncFailed(String),
    /// This node is a standby in cluster mode (SPEC §12); the leader's
    /// `CREDITD_ADVERTISE_URL`, when one holds the lease.
    #[error("{}", not_leader_message(.0.as_deref()))]
    NotLeader(Option<String>),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn not_leader_message(leader: Option<&str>) -> String {
    match leader {
        Some(url) => format!("this node is a standby; the leader is at {url}"),
        None => "this node is a standby and no leader holds the lease right now; retry shortly".into(),
    }
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
    pub fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            Self::InvalidRequest { .. } => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            Self::MissingIdempotencyKey => (StatusCode::BAD_REQUEST, ErrorCode::MissingIdempotencyKey),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            Self::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
            Self::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, ErrorCode::RequestTimeout),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            Self::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorCode::UnsupportedMediaType),
            Self::SyncFailed(_) => (StatusCode::BAD_GATEWAY, ErrorCode::SyncFailed),
            Self::NotLeader(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotLeader),
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
                EngineError::OutcomeUnknown(_) => {
                    "The change was handed to storage but its durability could not be confirmed: \
                    it may or may not be applied; retry with the same Idempotency-Key to learn which"
                        .into()
                }
                EngineError::UnknownUser => "unknown user".into(),
                EngineError::Quantity(reason) => format!("credits: {reason}"),
                other => other.to_string(),
            },
            other => other.to_string(),
        }
    }
}

fn engine_status_and_code(error: &EngineError) -> (StatusCode, ErrorCode) {
    match error {
        EngineError::NotReady(_) | EngineError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotReady),
        EngineError::Overloaded(_) | EngineError::Stale => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Overloaded),
        EngineError::OutcomeUnknown(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::OutcomeUnknown),
        EngineError::UnknownPackage(_)
        | EngineError::UnknownUser
        | EngineError::UnknownHold(_)
        | EngineError::UnknownSpend(_)
        | EngineError::UnknownApiKey(_)
        | EngineError::UnknownGrant(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
        EngineError::GrantClosed => (StatusCode::CONFLICT, ErrorCode::GrantClosed),
        EngineError::HoldCaptured => (StatusCode::CONFLICT, ErrorCode::HoldCaptured),
        EngineError::HoldReleased => (StatusCode::CONFLICT, ErrorCode::HoldReleased),
        EngineError::HoldExpired => (StatusCode::CONFLICT, ErrorCode::HoldExpired),
        EngineError::InsufficientFunds => (StatusCode::CONFLICT, ErrorCode::InsufficientFunds),
        EngineError::AlreadyRefunded => (StatusCode::CONFLICT, ErrorCode::AlreadyRefunded),
        EngineError::SpendCompleted => (StatusCode::CONFLICT, ErrorCode::SpendCompleted),
        EngineError::EnhancementUnavailable => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::EnhancementUnavailable),
        EngineError::PackageDisabled(_) => (StatusCode::CONFLICT, ErrorCode::PackageDisabled),
        EngineError::InsufficientCapacity => (StatusCode::CONFLICT, ErrorCode::InsufficientCapacity),
        EngineError::PurchasesDisabled => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::PurchasesDisabled),
        EngineError::IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::IdempotencyKeyReused),
        EngineError::IdempotencyKeyInUse => (StatusCode::CONFLICT, ErrorCode::IdempotencyKeyInUse),
        EngineError::TooManyHolds(_) | EngineError::TooManyHoldsForKey(_) => {
            (StatusCode::CONFLICT, ErrorCode::TooManyHolds)
        }
        EngineError::Quantity(_) | EngineError::ExpiryPassed => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.status_and_code();
        if let Self::NotLeader(_) = self {
            // A standby's every answer, a load balancer's health check every
            // 100 ms included (SPEC §12): not worth more than debug.
            tracing::debug!(?code, error = %self, "request failed");
        } else if status.is_server_error() {
            tracing::warn!(?code, error = %self, "request failed");
        }
        let mut response = HttpResponse::build(status);
        if let Self::MethodNotAllowed { allow } = self {
            response.insert_header((actix_web::http::header::ALLOW, allow.as_str()));
        }
        if let Self::Unauthorized = self {
            response.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let Self::RateLimited(wait) = self {
            // Whole seconds, rounded up: a client that waits that long gets a token.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds.max(1).to_string()));
        }
        if let Self::RequestTimeout = self {
            // The rest of a trickled body would be read as the next request.
            response.force_close();
        }
        response.json(ErrorBody { error: ErrorDetail { code, message: self.message() } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_failures_are_503_not_ready_and_unconfirmed_changes_503_outcome_unknown() {
        for error in [EngineError::Storage("injected".into()), EngineError::NotReady("waiting")] {
            assert_eq!(
                ApiError::Engine(error).status_and_code(),
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotReady)
            );
        }
        let unknown = ApiError::Engine(EngineError::OutcomeUnknown("sync failed".into()));
        assert_eq!(unknown.status_and_code(), (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::OutcomeUnknown));
        assert!(unknown.message().contains("retry with the same Idempotency-Key"), "{}", unknown.message());
        let refused = ApiError::Engine(EngineError::InsufficientCapacity);
        assert_eq!(refused.status_and_code(), (StatusCode::CONFLICT, ErrorCode::InsufficientCapacity));
        assert_eq!(refused.message(), "Service temporarily unavailable");
    }
}
