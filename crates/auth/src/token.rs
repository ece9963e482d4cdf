//! Signed tokens (JWT, ES256): registry access tokens in the shape of the
//! Docker token specification, refresh tokens, and dashboard sessions.
//!
//! The key is generated at first start and kept in the data directory
//! (`auth/token-key.p8`, mode 0600). Verification pins the algorithm, the
//! issuer and the audience (the service), so `alg: none`, a key-confusion
//! HS256 token or a token minted for another service are refused.

use crate::policy::Action;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::path::Path;

/// The `iss` of every token this server signs.
pub const ISSUER: &str = "drydock";

/// What a token is for (`typ` claim); one kind is never accepted as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
    Session,
}

/// One entry of the `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// A requested scope: `repository:team/app:pull,push` or
/// `registry:catalog:*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Scope {
    /// Parse one scope. The resource type may carry a class in
    /// parentheses (`repository(plugin)`), which is ignored. The name may
    /// contain colons (a registry host with a port), so the actions are
    /// after the last colon.
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split('(').next().unwrap_or(kind);
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Scope {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    /// Parse every scope in `scope` parameters (each may hold several,
    /// space-separated).
    pub fn parse_all<'a>(params: impl IntoIterator<Item = &'a str>) -> Vec<Scope> {
        params
            .into_iter()
            .flat_map(|p| p.split(' '))
            .filter_map(Scope::parse)
            .collect()
    }
}

/// The claims of every token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    pub typ: TokenKind,
    /// Registry access (access tokens).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<AccessEntry>,
    /// Credential generation (refresh and session tokens): a password
    /// change makes older tokens invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// CSRF token bound to a dashboard session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf: Option<String>,
}

impl Claims {
    /// Whether the `access` claim grants `action` on repository `repo`.
    /// `*` in a token's actions stands for every action.
    pub fn grants(&self, repo: &str, action: Action) -> bool {
        self.access.iter().any(|e| {
            e.kind == "repository"
                && e.name == repo
                && e.actions.iter().any(|a| a == "*" || a == action.as_str())
        })
    }

    /// Whether the token may list the catalog.
    pub fn grants_catalog(&self) -> bool {
        self.access
            .iter()
            .any(|e| e.kind == "registry" && e.name == "catalog")
    }
}

/// Why a token was refused. Deliberately terse: the reason goes to logs,
/// the client only learns that the token is invalid.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token invalid: {0}")]
    Invalid(String),
    #[error("token key: {0}")]
    Key(String),
}

/// The signing key pair.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    validation_base: Validation,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("kid", &self.kid).finish()
    }
}

impl Keys {
    /// Load the key at `path`, generating it (mode 0600) when missing.
    pub fn load_or_create(path: &Path) -> Result<Keys, TokenError> {
        let pkcs8 = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|_| TokenError::Key("cannot generate a key".into()))?;
                write_private(path, doc.as_ref())
                    .map_err(|e| TokenError::Key(format!("{}: {e}", path.display())))?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(TokenError::Key(format!("{}: {e}", path.display()))),
        };
        Keys::from_pkcs8(&pkcs8)
    }

    /// From a PKCS#8 P-256 private key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Keys, TokenError> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|e| TokenError::Key(format!("not a P-256 PKCS#8 key: {e}")))?;
        let public = pair.public_key().as_ref().to_vec();
        let kid = hex::encode(&sha2::Sha256::digest(&public)[..16]);
        let mut validation_base = Validation::new(Algorithm::ES256);
        validation_base.set_issuer(&[ISSUER]);
        validation_base.leeway = 5;
        validation_base.validate_nbf = true;
        validation_base.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Ok(Keys {
            encoding: EncodingKey::from_ec_der(pkcs8),
            decoding: DecodingKey::from_ec_der(&public),
            kid,
            validation_base,
        })
    }

    /// Sign claims.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| TokenError::Key(e.to_string()))
    }

    /// Verify a token of `kind` for `audience`.
    pub fn verify(
        &self,
        token: &str,
        audience: &str,
        kind: TokenKind,
    ) -> Result<Claims, TokenError> {
        let mut v = self.validation_base.clone();
        v.set_audience(&[audience]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        if data.claims.typ != kind {
            return Err(TokenError::Invalid(format!(
                "a {:?} token where a {kind:?} token was expected",
                data.claims.typ
            )));
        }
        Ok(data.claims)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let s = Scope::parse("repository:team/app:pull,push").unwrap();
        assert_eq!(
            (s.kind.as_str(), s.name.as_str()),
            ("repository", "team/app")
        );
        assert_eq!(s.actions, vec!["pull", "push"]);
        let s = Scope::parse("repository(plugin):x:pull").unwrap();
        assert_eq!(s.kind, "repository");
        let s = Scope::parse("registry:catalog:*").unwrap();
        assert_eq!(s.actions, vec!["*"]);
        assert!(Scope::parse("nonsense").is_none());
        assert_eq!(
            Scope::parse_all(["repository:a:pull repository:b:push", "registry:catalog:*"]).len(),
            3
        );
    }
}
