//! `GET /api/admin/backup` (SPEC §11): the ledger up to its last durable
//! sequence number, as a backup file, streamed page by page so that a long
//! ledger never sits in memory. The format is `backup`'s; this module only
//! pages through the engine.

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream;
use serde::Deserialize;

use super::error::{ApiError, ErrorBody};
use super::extract::authorize;
use super::AppState;
use crate::backup::{Header, Writer, FORMAT, VERSION};
use crate::domain::{Needs, QUANTITY_MAX};
use crate::engine::Engine;

/// Ledger entries read per page while streaming.
const PAGE_ENTRIES: usize = crate::domain::ledger::PAGE_MAX;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupQuery {
    pub after: Option<u64>,
}

/// Where the stream stands; `None` once the end line is out.
struct Progress {
    engine: Engine,
    writer: Writer,
    after: u64,
    up_to: u64,
}

/// The next chunk of the backup: a page of entry lines, then the end line.
async fn next_chunk(
    progress: Option<Box<Progress>>,
) -> Option<(Result<web::Bytes, actix_web::Error>, Option<Box<Progress>>)> {
    let Progress { engine, mut writer, after, up_to } = *progress?;
    if after >= up_to {
        return Some((Ok(web::Bytes::from(writer.end())), None));
    }
    match engine.backup_page(after, up_to, PAGE_ENTRIES).await {
        Ok(page) if !page.is_empty() => {
            let next = page.last().map_or(up_to, |(entry, _)| entry.seq);
            let mut bytes = Vec::new();
            for (entry, fingerprint) in page {
                bytes.extend(writer.entry(entry, fingerprint));
            }
            Some((Ok(web::Bytes::from(bytes)), Some(Box::new(Progress { engine, writer, after: next, up_to }))))
        }
        // A ledger shorter than the durable point it reported is a bug; a read
        // failure ends the stream without its end line, so the file never verifies.
        Ok(_) => Some((Err(actix_web::error::ErrorInternalServerError("the ledger ends early")), None)),
        Err(error) => Some((Err(ApiError::from(error).into()), None)),
    }
}

#[utoipa::path(get, path = "/api/admin/backup", tag = "admin",
    summary = "An online, consistent backup: the ledger up to its last durable entry (JSON lines, docs/backup.md)",
    params(
        ("after" = Option<u64>, Query, description = "Only entries after this sequence number: an incremental backup (default 0, a full one)", minimum = 0, maximum = 9007199254740991_i64),
    ),
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "The backup: a header line, one line per entry, an end line with the SHA-256 of what precedes it", content_type = "application/x-ndjson"),
        (status = 400, description = "`invalid_request`: a bad query, or `after` beyond the ledger's end", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = ErrorBody),
        (status = 403, description = "`forbidden`: the key lacks the `admin` scope", body = ErrorBody),
        (status = 429, description = "`rate_limited`: past the key's `rate_limit_per_key`, or more than 20 failed authentications in one second from this address; `Retry-After` says when to come back", body = ErrorBody),
        (status = 503, description = "`not_ready` or `overloaded`, or `outcome_unknown` (the last changes could not be confirmed durable)", body = ErrorBody),
    ))]
pub async fn backup(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize(&request, &state, Needs::Admin)?;
    let query = web::Query::<BackupQuery>::from_query(request.query_string())
        .map_err(|error| ApiError::invalid("query", error))?
        .into_inner();
    let after = query.after.unwrap_or(0);
    if after > QUANTITY_MAX {
        return Err(ApiError::invalid("after", format!("must be at most {QUANTITY_MAX}")));
    }
    let engine = state.engine.clone();
    let up_to = engine.durable_sequence().await?;
    if after > up_to {
        return Err(ApiError::invalid("after", format!("the ledger ends at {up_to}")));
    }
    let settings = engine.settings();
    let header = Header {
        format: FORMAT.to_owned(),
        version: VERSION,
        ratio: settings.ratio.get(),
        currency: settings.revenue_zero.currency().to_string(),
        after,
        up_to,
        created_at: crate::clock::rfc3339(crate::clock::Clock::now_ms(&crate::clock::SystemClock)),
    };
    let (writer, first) = Writer::start(&header);
    let head = stream::once(futures_util::future::ready(Ok::<_, actix_web::Error>(web::Bytes::from(first))));
    let rest = stream::unfold(Some(Box::new(Progress { engine, writer, after, up_to })), next_chunk);
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"creditd-backup-{after}-{up_to}.ndjson\""),
        ))
        .insert_header(("Cache-Control", "no-store"))
        .streaming(futures_util::StreamExt::chain(head, rest)))
}
