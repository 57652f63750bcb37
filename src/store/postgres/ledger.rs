//! Ledger entries as rows of the `ledger` table, and back: one typed column
//! per field, the columns a kind does not use left NULL.

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::big;
use crate::domain::{
    Currency, GrantId, GrantKind, HoldId, IdempotencyKey, KeyId, KeyName, Money, PackageId, ProviderCredits, Reason,
    Scope, Scopes, SpendId, UserCredits, UserId,
};
use crate::store::records::{CompletedBy, EntryKind, LedgerEntry};

/// Selects entries with times as milliseconds since the epoch.
pub const SELECT: &str = "SELECT seq, (extract(epoch FROM at) * 1000)::BIGINT, kind, user_id, idempotency_key, \
     caller, package_id, credits, price_minor_units, purchase_id, hold_id, spend_id, \
     (extract(epoch FROM expires_at) * 1000)::BIGINT, reason, enabled, real_balance, previous_balance, \
     held_back, drift, key_id, key_name, scopes, key_hash, provider_balance_after, reserved_after, \
     wallet_after, completed_by, grant_id, grant_kind, grants::TEXT, breakage_minor_units, expires_after_days FROM ledger";

/// A row that does not make a valid entry.
#[derive(Debug, thiserror::Error)]
#[error("ledger entry {seq}: {reason}")]
pub struct BadRow {
    pub seq: i64,
    pub reason: String,
}

/// One entry's values, as owned SQL parameters.
#[derive(Debug, Default)]
struct Values {
    seq: i64,
    at_ms: i64,
    kind: &'static str,
    user_id: Option<String>,
    idempotency_key: Option<String>,
    caller: Option<String>,
    package_id: Option<String>,
    credits: Option<i64>,
    price_minor_units: Option<i64>,
    purchase_id: Option<String>,
    hold_id: Option<String>,
    spend_id: Option<String>,
    expires_at_ms: Option<i64>,
    reason: Option<String>,
    enabled: Option<bool>,
    real_balance: Option<i64>,
    previous_balance: Option<i64>,
    held_back: Option<i64>,
    drift: Option<i64>,
    key_id: Option<String>,
    key_name: Option<String>,
    scopes: Option<Vec<String>>,
    key_hash: Option<Vec<u8>>,
    provider_balance_after: i64,
    reserved_after: i64,
    wallet_after: Option<i64>,
    completed_by: Option<&'static str>,
    grant_id: Option<i64>,
    grant_kind: Option<&'static str>,
    grants: Option<String>,
    breakage_minor_units: Option<i64>,
    expires_after_days: Option<i32>,
}

/// Inserts many entries in one statement: one array per column
/// ([`Columns::params`]); an entry's scopes travel as one comma-separated text.
pub const INSERT_MANY: &str = "INSERT INTO ledger (seq, at, kind, user_id, idempotency_key, caller, package_id, \
     credits, price_minor_units, purchase_id, hold_id, spend_id, expires_at, reason, enabled, real_balance, \
     previous_balance, held_back, drift, key_id, key_name, scopes, key_hash, provider_balance_after, \
     reserved_after, wallet_after, completed_by, grant_id, grant_kind, grants, breakage_minor_units, expires_after_days) SELECT seq, to_timestamp(at_ms / 1000.0), kind, user_id, idempotency_key, \
     caller, package_id, credits, price_minor_units, purchase_id, hold_id, spend_id, \
     to_timestamp(expires_at_ms / 1000.0), reason, enabled, real_balance, previous_balance, held_back, \
     drift, key_id, key_name, string_to_array(scopes, ','), key_hash, provider_balance_after, reserved_after, \
     wallet_after, completed_by, grant_id, grant_kind, grants::JSONB, breakage, days FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], \
     $7::TEXT[], $8::BIGINT[], $9::BIGINT[], $10::TEXT[], $11::TEXT[], $12::TEXT[], $13::BIGINT[], $14::TEXT[], \
     $15::BOOLEAN[], $16::BIGINT[], $17::BIGINT[], $18::BIGINT[], $19::BIGINT[], $20::TEXT[], $21::TEXT[], \
     $22::TEXT[], $23::BYTEA[], $24::BIGINT[], $25::BIGINT[], $26::BIGINT[], $27::TEXT[], $28::BIGINT[], $29::TEXT[], $30::TEXT[], \
     $31::BIGINT[], $32::INTEGER[]) AS entry (seq, at_ms, kind, \
     user_id, idempotency_key, caller, package_id, credits, price_minor_units, purchase_id, hold_id, spend_id, \
     expires_at_ms, reason, enabled, real_balance, previous_balance, held_back, drift, key_id, \
     key_name, scopes, key_hash, provider_balance_after, reserved_after, wallet_after, completed_by, grant_id, \
     grant_kind, grants, breakage, days)";

/// Many entries' values, one array per column, for [`INSERT_MANY`].
#[derive(Debug, Default)]
pub struct Columns {
    seq: Vec<i64>,
    at_ms: Vec<i64>,
    kind: Vec<&'static str>,
    user_id: Vec<Option<String>>,
    idempotency_key: Vec<Option<String>>,
    caller: Vec<Option<String>>,
    package_id: Vec<Option<String>>,
    credits: Vec<Option<i64>>,
    price_minor_units: Vec<Option<i64>>,
    purchase_id: Vec<Option<String>>,
    hold_id: Vec<Option<String>>,
    spend_id: Vec<Option<String>>,
    expires_at_ms: Vec<Option<i64>>,
    reason: Vec<Option<String>>,
    enabled: Vec<Option<bool>>,
    real_balance: Vec<Option<i64>>,
    previous_balance: Vec<Option<i64>>,
    held_back: Vec<Option<i64>>,
    drift: Vec<Option<i64>>,
    key_id: Vec<Option<String>>,
    key_name: Vec<Option<String>>,
    scopes: Vec<Option<String>>,
    key_hash: Vec<Option<Vec<u8>>>,
    provider_balance_after: Vec<i64>,
    reserved_after: Vec<i64>,
    wallet_after: Vec<Option<i64>>,
    completed_by: Vec<Option<&'static str>>,
    grant_id: Vec<Option<i64>>,
    grant_kind: Vec<Option<&'static str>>,
    grants: Vec<Option<String>>,
    breakage_minor_units: Vec<Option<i64>>,
    expires_after_days: Vec<Option<i32>>,
}

impl Columns {
    pub fn push(&mut self, entry: &LedgerEntry) {
        let row = values(entry);
        self.seq.push(row.seq);
        self.at_ms.push(row.at_ms);
        self.kind.push(row.kind);
        self.user_id.push(row.user_id);
        self.idempotency_key.push(row.idempotency_key);
        self.caller.push(row.caller);
        self.package_id.push(row.package_id);
        self.credits.push(row.credits);
        self.price_minor_units.push(row.price_minor_units);
        self.purchase_id.push(row.purchase_id);
        self.hold_id.push(row.hold_id);
        self.spend_id.push(row.spend_id);
        self.expires_at_ms.push(row.expires_at_ms);
        self.reason.push(row.reason);
        self.enabled.push(row.enabled);
        self.real_balance.push(row.real_balance);
        self.previous_balance.push(row.previous_balance);
        self.held_back.push(row.held_back);
        self.drift.push(row.drift);
        self.key_id.push(row.key_id);
        self.key_name.push(row.key_name);
        self.scopes.push(row.scopes.map(|scopes| scopes.join(",")));
        self.key_hash.push(row.key_hash);
        self.provider_balance_after.push(row.provider_balance_after);
        self.reserved_after.push(row.reserved_after);
        self.wallet_after.push(row.wallet_after);
        self.completed_by.push(row.completed_by);
        self.grant_id.push(row.grant_id);
        self.grant_kind.push(row.grant_kind);
        self.grants.push(row.grants);
        self.breakage_minor_units.push(row.breakage_minor_units);
        self.expires_after_days.push(row.expires_after_days);
    }

    pub fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    /// The parameters of [`INSERT_MANY`], in order.
    pub fn params(&self) -> [&(dyn ToSql + Sync); 32] {
        [
            &self.seq,
            &self.at_ms,
            &self.kind,
            &self.user_id,
            &self.idempotency_key,
            &self.caller,
            &self.package_id,
            &self.credits,
            &self.price_minor_units,
            &self.purchase_id,
            &self.hold_id,
            &self.spend_id,
            &self.expires_at_ms,
            &self.reason,
            &self.enabled,
            &self.real_balance,
            &self.previous_balance,
            &self.held_back,
            &self.drift,
            &self.key_id,
            &self.key_name,
            &self.scopes,
            &self.key_hash,
            &self.provider_balance_after,
            &self.reserved_after,
            &self.wallet_after,
            &self.completed_by,
            &self.grant_id,
            &self.grant_kind,
            &self.grants,
            &self.breakage_minor_units,
            &self.expires_after_days,
        ]
    }
}

/// The values of `entry`'s row.
fn values(entry: &LedgerEntry) -> Values {
    let mut row = Values {
        seq: big(entry.seq),
        at_ms: big(entry.at_ms),
        kind: entry.kind.name(),
        user_id: entry.user.as_ref().map(|user| user.as_str().to_owned()),
        idempotency_key: entry.idempotency_key.as_ref().map(|key| key.as_str().to_owned()),
        caller: entry.caller.as_ref().map(|caller| caller.as_str().to_owned()),
        provider_balance_after: big(entry.provider_balance_after.get()),
        reserved_after: big(entry.reserved_after.get()),
        wallet_after: entry.wallet_after.map(|credits| big(credits.get())),
        grants: entry.grants.as_ref().and_then(|effect| serde_json::to_string(effect).ok()),
        ..Values::default()
    };
    let text = |value: &str| Some(value.to_owned());
    match &entry.kind {
        EntryKind::Purchase { purchase_id, package_id, credits, price } => {
            row.purchase_id = text(purchase_id);
            row.package_id = text(package_id.as_str());
            row.credits = Some(big(credits.get()));
            row.price_minor_units = Some(big(price.minor_units()));
        }
        EntryKind::ProviderSync { real, previous, held_back, drift } => {
            row.real_balance = Some(big(real.get()));
            row.previous_balance = Some(big(previous.get()));
            row.held_back = Some(big(held_back.get()));
            row.drift = *drift;
        }
        EntryKind::HoldCreated { hold_id, package_id, credits, price, expires_at_ms } => {
            row.hold_id = text(hold_id.as_str());
            row.package_id = text(package_id.as_str());
            row.credits = Some(big(credits.get()));
            row.price_minor_units = Some(big(price.minor_units()));
            row.expires_at_ms = Some(big(*expires_at_ms));
        }
        EntryKind::HoldCaptured { hold_id, package_id, credits, price } => {
            row.hold_id = text(hold_id.as_str());
            row.package_id = text(package_id.as_str());
            row.credits = Some(big(credits.get()));
            row.price_minor_units = Some(big(price.minor_units()));
        }
        EntryKind::HoldReleased { hold_id, credits } => {
            row.hold_id = text(hold_id.as_str());
            row.credits = Some(big(credits.get()));
        }
        EntryKind::HoldExpired { hold_id, credits, expires_at_ms } => {
            row.hold_id = text(hold_id.as_str());
            row.credits = Some(big(credits.get()));
            row.expires_at_ms = Some(big(*expires_at_ms));
        }
        EntryKind::Spend { spend_id, credits, reason } => {
            row.spend_id = text(spend_id.as_str());
            row.credits = Some(big(credits.get()));
            row.reason = reason.as_ref().map(|reason| reason.as_str().to_owned());
        }
        EntryKind::Refund { spend_id, credits } => {
            row.spend_id = text(spend_id.as_str());
            row.credits = Some(big(credits.get()));
        }
        EntryKind::PurchasesDisabled { reason } => {
            row.reason = text(reason);
            row.enabled = Some(false);
        }
        EntryKind::PurchasesEnabled => row.enabled = Some(true),
        EntryKind::PackageChanged { package_id, enabled, credits, price } => {
            row.package_id = text(package_id.as_str());
            row.enabled = Some(*enabled);
            row.credits = Some(big(credits.get()));
            row.price_minor_units = Some(big(price.minor_units()));
        }
        EntryKind::ApiKeyCreated { key_id, name, scopes, key_hash } => {
            row.key_id = text(key_id.as_str());
            row.key_name = text(name.as_str());
            row.scopes = Some(scopes.list().into_iter().map(|scope| scope.as_str().to_owned()).collect());
            row.key_hash = Some(key_hash.to_vec());
        }
        EntryKind::ApiKeyRevoked { key_id } => row.key_id = text(key_id.as_str()),
        EntryKind::SpendCompleted { spend_id, credits, by } => {
            row.spend_id = text(spend_id.as_str());
            row.credits = Some(big(credits.get()));
            row.completed_by = Some(by.name());
        }
        EntryKind::GrantCreated { kind, credits, expires_at_ms, reason } => {
            row.grant_kind = Some(kind.as_str());
            row.credits = Some(big(credits.get()));
            row.expires_at_ms = expires_at_ms.map(big);
            row.reason = text(reason.as_str());
        }
        EntryKind::GrantExpired { grant_id, kind, credits, breakage, expires_at_ms } => {
            row.grant_id = Some(big(grant_id.0));
            row.grant_kind = Some(kind.as_str());
            row.credits = Some(big(credits.get()));
            row.breakage_minor_units = Some(big(breakage.minor_units()));
            row.expires_at_ms = Some(big(*expires_at_ms));
        }
        EntryKind::GrantVoided { grant_id, kind, credits, reason } => {
            row.grant_id = Some(big(grant_id.0));
            row.grant_kind = Some(kind.as_str());
            row.credits = Some(big(credits.get()));
            row.reason = text(reason.as_str());
        }
        EntryKind::PackageExpiryChanged { package_id, expires_after_days } => {
            row.package_id = text(package_id.as_str());
            row.expires_after_days = expires_after_days.and_then(|days| i32::try_from(days).ok());
        }
    }
    row
}

/// Reads a row of [`SELECT`] back into an entry; prices are in `currency`.
///
/// # Errors
/// A missing column for the kind, or a value the domain refuses.
pub fn entry(row: &Row, currency: Currency) -> Result<LedgerEntry, BadRow> {
    let seq: i64 = row.get(0);
    let bad = |reason: String| BadRow { seq, reason };
    let need = |index: usize, name: &str| -> Result<i64, BadRow> {
        row.get::<_, Option<i64>>(index).ok_or_else(|| bad(format!("{name} is missing")))
    };
    let need_text = |index: usize, name: &str| -> Result<String, BadRow> {
        row.get::<_, Option<String>>(index).ok_or_else(|| bad(format!("{name} is missing")))
    };
    let unsigned = |value: i64, name: &str| u64::try_from(value).map_err(|_| bad(format!("{name} is negative")));
    let credits = || -> Result<UserCredits, BadRow> {
        UserCredits::new(unsigned(need(7, "credits")?, "credits")?).map_err(|e| bad(format!("credits: {e}")))
    };
    let provider = |value: i64, name: &str| -> Result<ProviderCredits, BadRow> {
        ProviderCredits::new(unsigned(value, name)?).map_err(|e| bad(format!("{name}: {e}")))
    };
    let price = || -> Result<Money, BadRow> {
        Money::new(unsigned(need(8, "price")?, "price")?, currency).map_err(|e| bad(format!("price: {e:?}")))
    };
    let package = || PackageId::parse(&need_text(6, "package_id")?).map_err(|e| bad(format!("package_id: {e}")));
    let hold = || HoldId::parse(&need_text(10, "hold_id")?).map_err(|e| bad(format!("hold_id: {e}")));
    let spend = || SpendId::parse(&need_text(11, "spend_id")?).map_err(|e| bad(format!("spend_id: {e}")));
    let expires = || -> Result<u64, BadRow> { unsigned(need(12, "expires_at")?, "expires_at") };
    let key_id = || KeyId::parse(&need_text(19, "key_id")?).map_err(|e| bad(format!("key_id: {e}")));
    let grant_id = || -> Result<GrantId, BadRow> { Ok(GrantId(unsigned(need(27, "grant_id")?, "grant_id")?)) };
    let grant_kind = || match need_text(28, "grant_kind")?.as_str() {
        "paid" => Ok(GrantKind::Paid),
        "promotional" => Ok(GrantKind::Promotional),
        other => Err(bad(format!("grant_kind {other:?}"))),
    };
    let reason = || Reason::parse(&need_text(13, "reason")?).map_err(|e| bad(format!("reason: {e}")));
    let kind_name: String = row.get(2);
    let kind = match kind_name.as_str() {
        "purchase" => EntryKind::Purchase {
            purchase_id: need_text(9, "purchase_id")?,
            package_id: package()?,
            credits: credits()?,
            price: price()?,
        },
        "providerSync" => EntryKind::ProviderSync {
            real: provider(need(15, "real_balance")?, "real_balance")?,
            previous: provider(need(16, "previous_balance")?, "previous_balance")?,
            held_back: provider(need(17, "held_back")?, "held_back")?,
            drift: row.get(18),
        },
        "holdCreated" => EntryKind::HoldCreated {
            hold_id: hold()?,
            package_id: package()?,
            credits: credits()?,
            price: price()?,
            expires_at_ms: expires()?,
        },
        "holdCaptured" => {
            EntryKind::HoldCaptured { hold_id: hold()?, package_id: package()?, credits: credits()?, price: price()? }
        }
        "holdReleased" => EntryKind::HoldReleased { hold_id: hold()?, credits: credits()? },
        "holdExpired" => EntryKind::HoldExpired { hold_id: hold()?, credits: credits()?, expires_at_ms: expires()? },
        "spend" => EntryKind::Spend {
            spend_id: spend()?,
            credits: credits()?,
            reason: row
                .get::<_, Option<String>>(13)
                .map(|reason| Reason::parse(&reason))
                .transpose()
                .map_err(|e| bad(format!("reason: {e}")))?,
        },
        "refund" => EntryKind::Refund { spend_id: spend()?, credits: credits()? },
        "purchasesDisabled" => EntryKind::PurchasesDisabled { reason: need_text(13, "reason")? },
        "purchasesEnabled" => EntryKind::PurchasesEnabled,
        "packageChanged" => EntryKind::PackageChanged {
            package_id: package()?,
            enabled: row.get::<_, Option<bool>>(14).ok_or_else(|| bad("enabled is missing".into()))?,
            credits: credits()?,
            price: price()?,
        },
        "apiKeyCreated" => {
            let scopes: Vec<String> = row.get::<_, Option<Vec<String>>>(21).ok_or_else(|| bad("no scopes".into()))?;
            let scopes = scopes.iter().map(|scope| Scope::parse(scope)).collect::<Result<Vec<_>, _>>();
            let scopes = Scopes::new(scopes.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
            let hash: Vec<u8> = row.get::<_, Option<Vec<u8>>>(22).ok_or_else(|| bad("no key_hash".into()))?;
            EntryKind::ApiKeyCreated {
                key_id: key_id()?,
                name: KeyName::parse(&need_text(20, "key_name")?).map_err(|e| bad(format!("key_name: {e}")))?,
                scopes,
                key_hash: hash.try_into().map_err(|_| bad("key_hash is not 32 bytes".into()))?,
            }
        }
        "apiKeyRevoked" => EntryKind::ApiKeyRevoked { key_id: key_id()? },
        "spendCompleted" => EntryKind::SpendCompleted {
            spend_id: spend()?,
            credits: credits()?,
            by: match row.get::<_, Option<String>>(26).as_deref() {
                Some("service") => CompletedBy::Service,
                Some("time") => CompletedBy::Time,
                other => return Err(bad(format!("completed_by {other:?}"))),
            },
        },
        "grantCreated" => EntryKind::GrantCreated {
            kind: grant_kind()?,
            credits: credits()?,
            expires_at_ms: row.get::<_, Option<i64>>(12).map(|ms| unsigned(ms, "expires_at")).transpose()?,
            reason: reason()?,
        },
        "grantExpired" => EntryKind::GrantExpired {
            grant_id: grant_id()?,
            kind: grant_kind()?,
            credits: credits()?,
            breakage: Money::new(unsigned(need(30, "breakage")?, "breakage")?, currency)
                .map_err(|e| bad(format!("breakage: {e:?}")))?,
            expires_at_ms: expires()?,
        },
        "grantVoided" => EntryKind::GrantVoided {
            grant_id: grant_id()?,
            kind: grant_kind()?,
            credits: credits()?,
            reason: reason()?,
        },
        "packageExpiryChanged" => EntryKind::PackageExpiryChanged {
            package_id: package()?,
            expires_after_days: row
                .get::<_, Option<i32>>(31)
                .map(|days| u32::try_from(days).map_err(|_| bad(format!("expires_after_days {days}"))))
                .transpose()?,
        },
        other => return Err(bad(format!("unknown kind {other:?}"))),
    };
    let grants = row
        .get::<_, Option<String>>(29)
        .map(|json| serde_json::from_str(&json))
        .transpose()
        .map_err(|e| bad(format!("grants: {e}")))?;
    let text_id = |index: usize| row.get::<_, Option<String>>(index);
    Ok(LedgerEntry {
        seq: unsigned(seq, "seq")?,
        at_ms: unsigned(row.get(1), "at")?,
        user: text_id(3).map(|id| UserId::parse(&id)).transpose().map_err(|e| bad(format!("user_id: {e}")))?,
        idempotency_key: text_id(4)
            .map(|key| IdempotencyKey::parse(&key))
            .transpose()
            .map_err(|e| bad(format!("idempotency_key: {e}")))?,
        kind,
        provider_balance_after: provider(row.get(23), "provider_balance_after")?,
        reserved_after: provider(row.get(24), "reserved_after")?,
        wallet_after: row
            .get::<_, Option<i64>>(25)
            .map(|credits| UserCredits::new(unsigned(credits, "wallet_after")?).map_err(|e| bad(e.to_string())))
            .transpose()?,
        caller: text_id(5).map(|id| KeyId::parse(&id)).transpose().map_err(|e| bad(format!("caller: {e}")))?,
        grants,
    })
}
