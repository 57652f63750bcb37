//! The API key routes of SPEC §9.1: `POST`, `GET /api/admin/keys` and
//! `DELETE /api/admin/keys/{id}`, with their JSON shapes.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use super::extract::{authorize, json_body};
use super::AppState;
use crate::clock::rfc3339;
use crate::domain::ApiKeyRecord;
use crate::domain::{KeyId, KeyName, Needs, Scope, Scopes};

type Answer = Result<HttpResponse, ApiError>;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// For people: who or what uses the key (printable, at most 128 bytes).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f]*[^\\s\\u0000-\\u001f\\u007f][^\\u0000-\\u001f\\u007f]*$"
    )]
    pub name: String,
    /// At least one scope (SPEC §9.1).
    #[schema(min_items = 1)]
    pub scopes: Vec<ScopeName>,
}

/// A scope as the API names it.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScopeName {
    Storefront,
    Enhancement,
    Read,
    Admin,
}

impl From<ScopeName> for Scope {
    fn from(name: ScopeName) -> Self {
        match name {
            ScopeName::Storefront => Self::Storefront,
            ScopeName::Enhancement => Self::Enhancement,
            ScopeName::Read => Self::Read,
            ScopeName::Admin => Self::Admin,
        }
    }
}

/// A key as listed: never the key itself.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyResponse {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    /// Coarse: moves at most once a minute.
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<ApiKeyRecord> for KeyResponse {
    fn from(record: ApiKeyRecord) -> Self {
        Self {
            id: record.id.into(),
            name: record.name.into(),
            scopes: record.scopes.list().into_iter().map(|scope| scope.as_str().to_owned()).collect(),
            created_at: rfc3339(record.created_at_ms),
            last_used_at: record.last_used_at_ms.map(rfc3339),
            revoked_at: record.revoked_at_ms.map(rfc3339),
        }
    }
}

/// A new key: the only answer that ever shows `key`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyCreatedResponse {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// `ck_` and 64 hex digits; shown once, stored only as its SHA-256.
    pub key: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeysResponse {
    pub keys: Vec<KeyResponse>,
}

#[utoipa::path(post, path = "/api/admin/keys", tag = "admin",
    summary = "Make an API key; the key is in this answer only",
    request_body(content = CreateKeyRequest, content_type = "application/json"),
    security(("bearer" = ["admin"])),
    responses(
        (status = 201, description = "Made", body = KeyCreatedResponse),
        (status = 400, description = "`invalid_request`: the message names the field (`name`, `scopes`)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `admin` scope", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the body did not arrive within `body_timeout_ms`; the connection is closed", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: a body over 64 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: a body that is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` or `overloaded` (nothing was applied), or `outcome_unknown` (the key may or may not exist: list the keys to see)", body = ErrorBody),
    ))]
pub async fn create_key(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> Answer {
    authorize(&request, &state, Needs::Admin)?;
    let body: CreateKeyRequest = json_body(&request, payload).await?;
    let name = KeyName::parse(body.name.trim()).map_err(|error| ApiError::invalid("name", error))?;
    let scopes =
        Scopes::new(body.scopes.into_iter().map(Scope::from)).map_err(|error| ApiError::invalid("scopes", error))?;
    let (record, key) = state.engine.create_api_key(name, scopes).await?;
    let listed = KeyResponse::from(record);
    Ok(HttpResponse::Created().json(KeyCreatedResponse {
        id: listed.id,
        name: listed.name,
        scopes: listed.scopes,
        key,
        created_at: listed.created_at,
    }))
}

#[utoipa::path(get, path = "/api/admin/keys", tag = "admin",
    summary = "Every API key, revoked ones included; never the key itself",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The keys, oldest first", body = KeysResponse),
        (status = 401, description = "`unauthorized`: no valid key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `admin` scope", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`overloaded`", body = ErrorBody),
    ))]
pub async fn list_keys(request: HttpRequest, state: web::Data<AppState>) -> Answer {
    authorize(&request, &state, Needs::Admin)?;
    let keys = state.engine.api_keys().await?;
    Ok(HttpResponse::Ok().json(KeysResponse { keys: keys.into_iter().map(KeyResponse::from).collect() }))
}

#[utoipa::path(delete, path = "/api/admin/keys/{id}", tag = "admin",
    summary = "Revoke an API key: from now on it answers 401, also after a restart",
    params(("id" = String, Path, min_length = 1, max_length = 128)),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Revoked (or already revoked)", body = KeyResponse),
        (status = 400, description = "`invalid_request`: a bad id", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `admin` scope", body = ErrorBody),
        (status = 404, description = "`not_found`: no key with this id", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` or `overloaded` (nothing was applied), or `outcome_unknown` (retry: a revocation is idempotent)", body = ErrorBody),
    ))]
pub async fn revoke_key(request: HttpRequest, path: web::Path<String>, state: web::Data<AppState>) -> Answer {
    authorize(&request, &state, Needs::Admin)?;
    let id = KeyId::parse(&path.into_inner()).map_err(|error| ApiError::invalid("id", error))?;
    let record = state.engine.revoke_api_key(id).await?;
    Ok(HttpResponse::Ok().json(KeyResponse::from(record)))
}
