//! Who may do what (SPEC §9.1): the scopes of an API key.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::{KeyId, KeyName};

/// An API key (SPEC §9.1): what it may do and when it was made, used and
/// revoked. The key itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: KeyId,
    pub name: KeyName,
    pub scopes: Scopes,
    pub key_hash: [u8; 32],
    pub created_at_ms: u64,
    /// Kept coarsely (about once a minute), not written on every request.
    pub last_used_at_ms: Option<u64>,
    pub revoked_at_ms: Option<u64>,
}

/// Who is calling: the key's id and scopes (the configured admin token is
/// a key with the `admin` scope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: KeyId,
    pub scopes: Scopes,
}

impl Caller {
    /// Whether this caller may capture or release a hold, or complete or
    /// refund a spend, that `owner` made (SPEC §9.1): the key that made it
    /// may, and so may any admin key. A hold or spend whose maker is not
    /// known (made before makers were recorded) is finished by an admin or
    /// by time alone.
    pub fn may_finish(&self, owner: Option<&KeyId>) -> bool {
        self.scopes.contains(Scope::Admin) || owner == Some(&self.id)
    }
}

/// One permission an API key carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Purchase, holds (create, capture, release), wallet read.
    Storefront,
    /// Spend, refund, wallet read.
    Enhancement,
    /// Wallet read.
    Read,
    /// Every `/api/admin/*` route and everything above.
    Admin,
}

/// A scope name that is not one of §9.1's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}; the scopes are storefront, enhancement, read and admin")]
pub struct UnknownScope(pub String);

impl Scope {
    pub const ALL: [Self; 4] = [Self::Storefront, Self::Enhancement, Self::Read, Self::Admin];

    /// The wire name of SPEC §9.1.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Storefront => "storefront",
            Self::Enhancement => "enhancement",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }

    /// # Errors
    /// [`UnknownScope`] for any other name.
    pub fn parse(name: &str) -> Result<Self, UnknownScope> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == name).ok_or_else(|| UnknownScope(name.to_owned()))
    }

    fn bit(self) -> u8 {
        match self {
            Self::Storefront => 1,
            Self::Enhancement => 2,
            Self::Read => 4,
            Self::Admin => 8,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route needs: a key with any one of these scopes (admin always does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Purchase and holds.
    Storefront,
    /// Spend and refund.
    Enhancement,
    /// A wallet: storefront, enhancement or read.
    WalletRead,
    /// `/api/admin/*`.
    Admin,
}

/// The set of scopes of one key; never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<Scope>", into = "Vec<Scope>")]
pub struct Scopes(u8);

/// A key must carry at least one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a key needs at least one scope")]
pub struct NoScopes;

impl Scopes {
    /// The configured admin token's scopes.
    pub const ADMIN: Self = Self(8);

    /// # Errors
    /// [`NoScopes`] for an empty list; duplicates count once.
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Result<Self, NoScopes> {
        let bits = scopes.into_iter().fold(0, |bits, scope| bits | scope.bit());
        if bits == 0 {
            Err(NoScopes)
        } else {
            Ok(Self(bits))
        }
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether a key with these scopes may use a route that `needs`.
    pub fn allow(self, needs: Needs) -> bool {
        self.contains(Scope::Admin)
            || match needs {
                Needs::Storefront => self.contains(Scope::Storefront),
                Needs::Enhancement => self.contains(Scope::Enhancement),
                Needs::WalletRead => {
                    self.contains(Scope::Storefront) || self.contains(Scope::Enhancement) || self.contains(Scope::Read)
                }
                Needs::Admin => false,
            }
    }

    /// The scopes in the order of §9.1's table.
    pub fn list(self) -> Vec<Scope> {
        Scope::ALL.into_iter().filter(|scope| self.contains(*scope)).collect()
    }
}

impl TryFrom<Vec<Scope>> for Scopes {
    type Error = NoScopes;
    fn try_from(scopes: Vec<Scope>) -> Result<Self, Self::Error> {
        Self::new(scopes)
    }
}

impl From<Scopes> for Vec<Scope> {
    fn from(scopes: Scopes) -> Self {
        scopes.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §9.1's table, row by row.
    #[test]
    fn each_scope_allows_what_the_table_says_and_nothing_more() {
        let only = |scope| Scopes::new([scope]).expect("one scope");
        let table = [
            (Scope::Storefront, [true, false, true, false]),
            (Scope::Enhancement, [false, true, true, false]),
            (Scope::Read, [false, false, true, false]),
            (Scope::Admin, [true, true, true, true]),
        ];
        for (scope, allowed) in table {
            let needs = [Needs::Storefront, Needs::Enhancement, Needs::WalletRead, Needs::Admin];
            for (need, allow) in needs.into_iter().zip(allowed) {
                assert_eq!(only(scope).allow(need), allow, "{scope} for {need:?}");
            }
        }
        let both = Scopes::new([Scope::Storefront, Scope::Enhancement]).expect("two");
        assert!(both.allow(Needs::Storefront) && both.allow(Needs::Enhancement) && !both.allow(Needs::Admin));
        assert_eq!(Scopes::ADMIN, only(Scope::Admin));
    }

    #[test]
    fn scopes_parse_by_their_wire_names_and_a_key_needs_one() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Ok(scope));
        }
        assert_eq!(Scope::parse("Admin"), Err(UnknownScope("Admin".into())));
        assert_eq!(Scopes::new([]), Err(NoScopes));
        let twice = Scopes::new([Scope::Read, Scope::Read, Scope::Storefront]).expect("dups count once");
        assert_eq!(twice.list(), vec![Scope::Storefront, Scope::Read]);
        assert_eq!(
            ["storefront", "enhancement", "read", "admin"],
            Scope::ALL.map(Scope::as_str),
            "the wire names of §9.1"
        );
    }
}
