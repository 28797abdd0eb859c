//! Join tokens in Swarm's shape: `SWMTKN-1-<CA digest>-<secret>`.
//!
//! The two halves do different jobs (SwarmKit `ca/config.go`, docs "how-swarm-mode-works/pki"):
//! - the digest (SHA-256 of the root CA certificate, base 36, 50 characters) lets the joining
//!   node check the CA a manager presents before trusting anything it says, with no
//!   trust-on-first-use;
//! - the secret (128 random bits, base 36, 25 characters) is what the manager checks before
//!   issuing a certificate, and which role it grants: workers and managers have one each.
//!
//! Rotating a token changes its secret; the old one stops working for new joins, nodes already
//! in the swarm are unaffected. A CA rotation changes every token's digest.

use std::fmt;
use std::str::FromStr;

use subtle::ConstantTimeEq;

use super::base36::{self, DecodeError};
use super::ca::CaDigest;
use super::identity::Role;
use super::random::{self, ID_LEN, RandomError};

/// `SWMTKN`: a token is recognisable in logs and by secret scanners, as Swarm's.
pub const TOKEN_PREFIX: &str = "SWMTKN";
/// Token format version; `2` is SwarmKit's FIPS variant, which hive does not make.
const TOKEN_VERSION: &str = "1";
/// Base-36 characters of a SHA-256 digest: ceil(log36(2^256)) = 50 (SwarmKit `base36DigestLen`).
pub const DIGEST_LEN: usize = 50;
/// Base-36 characters of the secret (SwarmKit `maxGeneratedSecretLength`).
pub const SECRET_LEN: usize = ID_LEN;

/// Which part of a token a parse error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPart {
    /// The CA digest, third field.
    Digest,
    /// The secret, fourth field.
    Secret,
}

impl fmt::Display for TokenPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenPart::Digest => "CA digest",
            TokenPart::Secret => "secret",
        })
    }
}

/// One join token. `Display` prints the whole token (it is meant to be shown to the
/// operator); `Debug` hides the secret so tokens do not leak into logs.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JoinToken {
    ca_digest: CaDigest,
    /// Lowercase base 36, exactly [`SECRET_LEN`] characters.
    secret: String,
}

impl JoinToken {
    /// A new token for the CA with `ca_digest`, with a fresh random secret.
    pub fn generate(ca_digest: CaDigest) -> Result<JoinToken, TokenError> {
        Ok(JoinToken {
            ca_digest,
            secret: random::random_id()?,
        })
    }

    /// The same CA, a new secret: what `hive swarm join-token --rotate` stores.
    pub fn rotate(&self) -> Result<JoinToken, TokenError> {
        JoinToken::generate(self.ca_digest)
    }

    /// The root CA digest this token pins.
    pub fn ca_digest(&self) -> CaDigest {
        self.ca_digest
    }

    /// Checks, on the joining node, that the root CA certificate a manager presented
    /// (`presented_ca_der`, DER) is the one this token was made for.
    pub fn verify_ca(&self, presented_ca_der: &[u8]) -> Result<(), TokenError> {
        let presented = CaDigest::of_der(presented_ca_der);
        if presented == self.ca_digest {
            Ok(())
        } else {
            Err(TokenError::UntrustedCa {
                expected: self.ca_digest,
                presented,
            })
        }
    }

    /// Whether the secrets are equal, in time independent of where they differ, so that a
    /// caller probing the manager cannot learn a secret one character at a time.
    fn secret_matches(&self, other: &JoinToken) -> bool {
        self.secret.as_bytes().ct_eq(other.secret.as_bytes()).into()
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TOKEN_PREFIX}-{TOKEN_VERSION}-{}-{}",
            base36::encode(&self.ca_digest.0, DIGEST_LEN),
            self.secret
        )
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_digest", &self.ca_digest)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(token: &str) -> Result<Self, Self::Err> {
        let token = token.trim();
        let parts: Vec<&str> = token.split('-').collect();
        if parts.first() != Some(&TOKEN_PREFIX) {
            return Err(TokenError::WrongPrefix);
        }
        if let Some(version) = parts.get(1)
            && *version != TOKEN_VERSION
        {
            return Err(TokenError::UnsupportedVersion {
                version: (*version).to_owned(),
            });
        }
        let [_, _, digest, secret] = parts[..] else {
            return Err(TokenError::WrongShape { parts: parts.len() });
        };
        check_part(TokenPart::Digest, digest, DIGEST_LEN)?;
        check_part(TokenPart::Secret, secret, SECRET_LEN)?;
        let ca_digest = match base36::decode::<32>(digest) {
            Ok(bytes) => CaDigest(bytes),
            Err(DecodeError::Overflow) => return Err(TokenError::DigestOutOfRange),
            Err(DecodeError::InvalidChar(character)) => {
                return Err(TokenError::NotBase36 {
                    part: TokenPart::Digest,
                    character,
                });
            }
        };
        if base36::decode::<16>(secret) == Err(DecodeError::Overflow) {
            return Err(TokenError::SecretOutOfRange);
        }
        Ok(JoinToken {
            ca_digest,
            secret: secret.to_ascii_lowercase(),
        })
    }
}

/// Length and alphabet of one base-36 field.
fn check_part(part: TokenPart, text: &str, expected: usize) -> Result<(), TokenError> {
    if let Some(character) = text.chars().find(|c| !c.is_ascii_alphanumeric()) {
        return Err(TokenError::NotBase36 { part, character });
    }
    if text.len() != expected {
        return Err(TokenError::BadLength {
            part,
            expected,
            found: text.len(),
        });
    }
    Ok(())
}

impl TryFrom<String> for JoinToken {
    type Error = TokenError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<JoinToken> for String {
    fn from(token: JoinToken) -> Self {
        token.to_string()
    }
}

/// The cluster's current tokens, one per role, as kept in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinTokens {
    /// Grants the worker role.
    pub worker: JoinToken,
    /// Grants the manager role.
    pub manager: JoinToken,
}

impl JoinTokens {
    /// Fresh worker and manager tokens for the CA with `ca_digest` (at `swarm init`).
    pub fn generate(ca_digest: CaDigest) -> Result<JoinTokens, TokenError> {
        Ok(JoinTokens {
            worker: JoinToken::generate(ca_digest)?,
            manager: JoinToken::generate(ca_digest)?,
        })
    }

    /// The token for `role`, as `hive swarm join-token <role>` prints it.
    pub fn get(&self, role: Role) -> &JoinToken {
        match role {
            Role::Worker => &self.worker,
            Role::Manager => &self.manager,
        }
    }

    /// Replaces the token for `role` with one with a new secret; the old one stops working.
    pub fn rotate(&mut self, role: Role) -> Result<(), TokenError> {
        let slot = match role {
            Role::Worker => &mut self.worker,
            Role::Manager => &mut self.manager,
        };
        *slot = slot.rotate()?;
        Ok(())
    }

    /// On a manager: which role the token a joining node `presented` grants, or why it is
    /// refused. Both secrets are compared in constant time.
    pub fn role_for(&self, presented: &str) -> Result<Role, TokenError> {
        let presented: JoinToken = presented.parse()?;
        if presented.ca_digest != self.worker.ca_digest {
            return Err(TokenError::OtherSwarm);
        }
        // Evaluate both comparisons before branching, so timing does not say which matched.
        let is_worker = self.worker.secret_matches(&presented);
        let is_manager = self.manager.secret_matches(&presented);
        match (is_worker, is_manager) {
            (_, true) => Ok(Role::Manager),
            (true, false) => Ok(Role::Worker),
            (false, false) => Err(TokenError::NotCurrent),
        }
    }
}

/// The hint every refusal ends with: where to get a good token.
const GET_TOKEN: &str = "run `hive swarm join-token worker` (or `manager`) on a manager of the swarm to get the current token";

/// A join token that is malformed, for another swarm, or no longer valid.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Does not start with `SWMTKN-`.
    #[error("invalid join token: it must start with `SWMTKN-1-`; {GET_TOKEN}")]
    WrongPrefix,
    /// A version other than 1.
    #[error(
        "invalid join token: version `{version}` is not supported (hive makes `SWMTKN-1-` tokens); {GET_TOKEN}"
    )]
    UnsupportedVersion {
        /// The version field found.
        version: String,
    },
    /// Not four `-`-separated fields.
    #[error(
        "invalid join token: expected 4 fields `SWMTKN-1-<CA digest>-<secret>`, found {parts}; copy the whole token, or {GET_TOKEN}"
    )]
    WrongShape {
        /// How many fields there were.
        parts: usize,
    },
    /// A field of the wrong length (often a truncated copy-paste).
    #[error(
        "invalid join token: the {part} must be {expected} characters, found {found}; copy the whole token, or {GET_TOKEN}"
    )]
    BadLength {
        /// Which field.
        part: TokenPart,
        /// Its required length.
        expected: usize,
        /// Its actual length.
        found: usize,
    },
    /// A character outside `0-9a-z`.
    #[error(
        "invalid join token: the {part} contains {character:?}, which is not base 36 (0-9, a-z); {GET_TOKEN}"
    )]
    NotBase36 {
        /// Which field.
        part: TokenPart,
        /// The first bad character.
        character: char,
    },
    /// 50 base-36 characters that are more than 256 bits.
    #[error("invalid join token: the CA digest is not a SHA-256 value; {GET_TOKEN}")]
    DigestOutOfRange,
    /// 25 base-36 characters that are more than 128 bits.
    #[error("invalid join token: the secret is not a 128-bit value; {GET_TOKEN}")]
    SecretOutOfRange,
    /// On the joining node: the manager's root CA is not the one the token pins.
    #[error(
        "the manager presented root CA {presented}, but the join token is for root CA {expected}: this is not the swarm the token belongs to (wrong address, a rotated CA, or someone in the middle); check the manager address, or {GET_TOKEN}"
    )]
    UntrustedCa {
        /// Digest from the token.
        expected: CaDigest,
        /// Digest of what the manager presented.
        presented: CaDigest,
    },
    /// On the manager: the token's CA digest is not this swarm's.
    #[error(
        "the join token belongs to a different swarm, or was made before this swarm's CA was rotated; {GET_TOKEN}"
    )]
    OtherSwarm,
    /// On the manager: right swarm, but the secret is neither current token's.
    #[error(
        "the join token is not valid: it was rotated or never issued by this swarm; {GET_TOKEN}"
    )]
    NotCurrent,
    /// No randomness for a new secret.
    #[error(transparent)]
    Random(#[from] RandomError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: u8) -> CaDigest {
        CaDigest([byte; 32])
    }

    #[test]
    fn format_is_swarms_and_round_trips() {
        let token = JoinToken::generate(digest(0xab)).unwrap();
        let text = token.to_string();
        let parts: Vec<&str> = text.split('-').collect();
        assert_eq!(parts[0], "SWMTKN");
        assert_eq!(parts[1], "1");
        assert_eq!(parts[2].len(), 50);
        assert_eq!(parts[3].len(), 25);
        assert_eq!(text.parse::<JoinToken>().unwrap(), token);
        // Pasted with surrounding whitespace, or upper-cased by a terminal: still the token.
        assert_eq!(format!("  {text}\n").parse::<JoinToken>().unwrap(), token);
        assert_eq!(text.to_uppercase().parse::<JoinToken>().unwrap(), token);
    }

    #[test]
    fn digest_is_zero_padded_like_swarmkit() {
        let token = JoinToken::generate(digest(0)).unwrap();
        assert!(
            token
                .to_string()
                .starts_with(&format!("SWMTKN-1-{}-", "0".repeat(50)))
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let token = JoinToken::generate(digest(1)).unwrap();
        let secret = token.to_string().rsplit('-').next().unwrap().to_owned();
        assert!(!format!("{token:?}").contains(&secret));
    }

    #[test]
    fn serde_uses_the_token_text() {
        let token = JoinToken::generate(digest(2)).unwrap();
        let json = serde_json::to_string(&token).unwrap();
        assert_eq!(json, format!("\"{token}\""));
        assert_eq!(serde_json::from_str::<JoinToken>(&json).unwrap(), token);
        assert!(serde_json::from_str::<JoinToken>("\"SWMTKN-1-x\"").is_err());
    }

    fn parse_err(text: &str) -> String {
        text.parse::<JoinToken>().unwrap_err().to_string()
    }

    #[test]
    fn malformed_tokens_are_refused_with_the_reason() {
        let good = JoinToken::generate(digest(3)).unwrap().to_string();
        let (head, secret) = good.rsplit_once('-').unwrap();

        assert!(
            parse_err(&good.replacen("SWMTKN", "SWMKEY", 1))
                .starts_with("invalid join token: it must start with `SWMTKN-1-`")
        );
        assert!(parse_err("").starts_with("invalid join token: it must start with"));
        assert!(
            parse_err(&good.replacen("SWMTKN-1", "SWMTKN-2", 1))
                .contains("version `2` is not supported")
        );
        assert!(parse_err(head).contains("expected 4 fields"));
        assert!(parse_err(&format!("{good}-extra")).contains("found 5"));
        assert!(
            parse_err(&format!("{head}-{}", &secret[..20]))
                .contains("the secret must be 25 characters, found 20")
        );
        let short_digest = good.replacen("SWMTKN-1-0", "SWMTKN-1-", 1);
        assert!(parse_err(&short_digest).contains("the CA digest must be 50 characters, found 49"));
        assert!(
            parse_err(&format!("{head}-{}_", &secret[..24])).contains("the secret contains '_'")
        );
        let too_big = format!("SWMTKN-1-{}-{secret}", "z".repeat(50));
        assert!(parse_err(&too_big).contains("not a SHA-256 value"));
        let secret_too_big = format!("{head}-{}", "z".repeat(25));
        assert!(parse_err(&secret_too_big).contains("not a 128-bit value"));
        // Every refusal says what to do.
        assert!(parse_err("junk").ends_with("to get the current token"));
    }

    #[test]
    fn verify_ca_accepts_only_the_pinned_certificate() {
        let ca_der = b"pretend this is the root CA DER";
        let token = JoinToken::generate(CaDigest::of_der(ca_der)).unwrap();
        token.verify_ca(ca_der).unwrap();
        let err = token.verify_ca(b"another swarm's CA").unwrap_err();
        assert!(matches!(err, TokenError::UntrustedCa { .. }));
        assert!(
            err.to_string()
                .contains("this is not the swarm the token belongs to"),
            "{err}"
        );
    }

    #[test]
    fn each_token_grants_its_role() {
        let tokens = JoinTokens::generate(digest(4)).unwrap();
        assert_ne!(tokens.worker, tokens.manager);
        assert_eq!(
            tokens.role_for(&tokens.worker.to_string()).unwrap(),
            Role::Worker
        );
        assert_eq!(
            tokens.role_for(&tokens.manager.to_string()).unwrap(),
            Role::Manager
        );
        assert_eq!(tokens.get(Role::Manager), &tokens.manager);
    }

    #[test]
    fn rotated_token_is_refused_and_the_other_role_is_unaffected() {
        let mut tokens = JoinTokens::generate(digest(5)).unwrap();
        let old_worker = tokens.worker.to_string();
        let manager = tokens.manager.to_string();
        tokens.rotate(Role::Worker).unwrap();
        assert_eq!(tokens.worker.ca_digest(), digest(5));
        let err = tokens.role_for(&old_worker).unwrap_err();
        assert!(matches!(err, TokenError::NotCurrent));
        assert_eq!(
            err.to_string(),
            "the join token is not valid: it was rotated or never issued by this swarm; run `hive swarm join-token worker` (or `manager`) on a manager of the swarm to get the current token"
        );
        assert_eq!(
            tokens.role_for(&tokens.worker.to_string()).unwrap(),
            Role::Worker
        );
        assert_eq!(tokens.role_for(&manager).unwrap(), Role::Manager);
    }

    #[test]
    fn token_of_another_swarm_is_refused() {
        let ours = JoinTokens::generate(digest(6)).unwrap();
        let theirs = JoinTokens::generate(digest(7)).unwrap();
        let err = ours.role_for(&theirs.worker.to_string()).unwrap_err();
        assert!(matches!(err, TokenError::OtherSwarm));
        assert!(err.to_string().contains("belongs to a different swarm"));
        let err = ours.role_for("SWMTKN-1-nope").unwrap_err();
        assert!(matches!(err, TokenError::WrongShape { parts: 3 }));
    }
}
