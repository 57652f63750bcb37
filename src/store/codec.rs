//! The one place where stored records are encoded and decoded.
//!
//! Every record starts with a format version byte, then its bincode 2
//! encoding (standard configuration, serde path). Each record type has its
//! own version ([`Record::VERSION`]); a record written by an older version
//! decodes through [`Record::upgrade`]. Decoding refuses an unknown version,
//! trailing bytes, and anything that would allocate more than
//! [`RECORD_BYTES_MAX`]: a damaged record becomes an error, never a panic.

use serde::{de::DeserializeOwned, Serialize};

/// The version of every record type that has never changed its layout.
pub const FORMAT_VERSION: u8 = 1;

/// A stored record type and the version of its layout.
pub trait Record: Serialize + DeserializeOwned {
    /// The version written in front of this type's records today.
    const VERSION: u8 = FORMAT_VERSION;

    /// Decodes the body of a record written with an older `version`.
    ///
    /// # Errors
    /// [`CodecError::UnknownVersion`] unless the type knows that version.
    fn upgrade(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        let _ = body;
        Err(CodecError::UnknownVersion(version))
    }
}

/// Decodes a whole body as `T`, refusing trailing bytes.
///
/// # Errors
/// The reason the bytes are not a valid `T`.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    let (record, read) = bincode::serde::decode_from_slice(body, configuration())?;
    let trailing = body.len().saturating_sub(read);
    if trailing != 0 {
        return Err(CodecError::TrailingBytes(trailing));
    }
    Ok(record)
}

/// No stored record is larger; a length prefix claiming more is corruption.
pub const RECORD_BYTES_MAX: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty record")]
    Empty,
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    #[error("record does not decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("record has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("record does not encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

fn configuration() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<RECORD_BYTES_MAX>()
}

/// Encodes a record behind its version byte.
///
/// # Errors
/// [`CodecError::Encode`] if the record is larger than [`RECORD_BYTES_MAX`].
pub fn encode<T: Record>(record: &T) -> Result<Vec<u8>, CodecError> {
    let mut bytes = Vec::with_capacity(64);
    bytes.push(T::VERSION);
    bincode::serde::encode_into_std_write(record, &mut bytes, configuration())?;
    if bytes.len() > RECORD_BYTES_MAX {
        return Err(CodecError::Encode(bincode::error::EncodeError::Other("record too large")));
    }
    Ok(bytes)
}

/// Decodes a record written by [`encode`].
///
/// # Errors
/// The reason the bytes are not a valid record of this version.
pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version == T::VERSION {
        decode_body(body)
    } else {
        T::upgrade(version, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{
        AlertEventRecord, HoldRecord, IdempotencyRecord, InventoryRecord, LedgerEntry, MetaRecord, PackageOverride,
        PruneCursor, SpendRecord, WalletRecord,
    };
    use proptest::prelude::*;

    #[test]
    fn every_record_starts_with_the_version_byte() {
        let bytes = encode(&WalletRecord::default()).expect("encodes");
        assert_eq!(bytes[0], WalletRecord::VERSION);
        assert_eq!(encode(&PruneCursor { last_seq: 1 }).expect("encodes")[0], FORMAT_VERSION);
        assert_eq!(decode::<WalletRecord>(&bytes).expect("decodes"), WalletRecord::default());
    }

    #[test]
    fn an_unknown_version_or_trailing_bytes_are_refused() {
        let mut bytes = encode(&WalletRecord::default()).expect("encodes");
        bytes.push(0);
        assert!(matches!(decode::<WalletRecord>(&bytes), Err(CodecError::TrailingBytes(1))));
        bytes[0] = 9;
        assert!(matches!(decode::<WalletRecord>(&bytes), Err(CodecError::UnknownVersion(9))));
        assert!(matches!(decode::<WalletRecord>(&[]), Err(CodecError::Empty)));
    }

    proptest! {
        #[test]
        /// The CI stand-in for the `decode_records` fuzz target.
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<LedgerEntry>(&bytes);
            let _ = decode::<InventoryRecord>(&bytes);
            let _ = decode::<WalletRecord>(&bytes);
            let _ = decode::<HoldRecord>(&bytes);
            let _ = decode::<SpendRecord>(&bytes);
            let _ = decode::<IdempotencyRecord>(&bytes);
            let _ = decode::<AlertEventRecord>(&bytes);
            let _ = decode::<MetaRecord>(&bytes);
            let _ = decode::<PackageOverride>(&bytes);
        }

        /// A length prefix claiming more than the limit is refused, not allocated.
        #[test]
        fn huge_length_prefixes_are_refused(claimed in (RECORD_BYTES_MAX as u64)..u64::MAX) {
            let mut bytes = vec![FORMAT_VERSION, 1];
            bytes.push(253);
            bytes.extend_from_slice(&claimed.to_le_bytes());
            prop_assert!(decode::<AlertEventRecord>(&bytes).is_err());
        }
    }
}
