//! Request bodies and headers into domain types: arbitrary bytes never panic,
//! and whatever parses respects the domain's rules.
#![no_main]

use creditd::domain::{HoldId, IdempotencyKey, PackageId, Reason, UserCredits, UserId};
use creditd::http::dto::{DisableRequest, HoldRequest, PackageUpdateRequest, PurchaseRequest, SpendRequest};
use creditd::http::extract::parse_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = parse_json::<PurchaseRequest>(data) {
        if let (Ok(user), Ok(package)) = (UserId::parse(&request.user_id), PackageId::parse(&request.package_id)) {
            assert!(user.as_str().len() <= 128 && package.as_str().len() <= 128);
        }
    }
    if let Ok(request) = parse_json::<SpendRequest>(data) {
        if let Ok(credits) = UserCredits::positive_from_i64(request.credits) {
            assert!(credits.get() >= 1 && credits.get() <= creditd::domain::QUANTITY_MAX);
        }
        let _ = request.reason.as_deref().map(Reason::parse);
        let _ = UserId::parse(&request.user_id);
    }
    let _ = parse_json::<HoldRequest>(data);
    let _ = parse_json::<DisableRequest>(data);
    let _ = parse_json::<PackageUpdateRequest>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = IdempotencyKey::parse(text);
        let _ = HoldId::parse(text);
        let _ = creditd::provider::parse_balance(data);
    }
    let _ = creditd::provider::parse_balance(data);
});
