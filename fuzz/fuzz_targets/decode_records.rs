//! Stored records from arbitrary bytes: decoding never panics and never
//! allocates beyond the codec's limit; what decodes re-encodes to the same bytes.
#![no_main]

use creditd::store::codec::{decode, encode, Record};
use creditd::store::records::{
    AlertEventRecord, ApiKeyRecord, HoldRecord, IdempotencyRecord, InventoryRecord, LedgerEntry, MetaRecord, PackageOverride,
    SpendRecord, WalletRecord,
};
use libfuzzer_sys::fuzz_target;

fn round_trip<T: Record>(data: &[u8]) {
    if let Ok(record) = decode::<T>(data) {
        let bytes = encode(&record).expect("a decoded record encodes");
        let again: T = decode(&bytes).expect("an encoded record decodes");
        assert_eq!(encode(&again).expect("encodes"), bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<LedgerEntry>(data);
    round_trip::<InventoryRecord>(data);
    round_trip::<WalletRecord>(data);
    round_trip::<HoldRecord>(data);
    round_trip::<SpendRecord>(data);
    round_trip::<IdempotencyRecord>(data);
    round_trip::<AlertEventRecord>(data);
    round_trip::<MetaRecord>(data);
    round_trip::<PackageOverride>(data);
    round_trip::<ApiKeyRecord>(data);
});
