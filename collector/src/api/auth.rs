//! Who is calling: the admin (a supervisor at the bureau) with the admin token, or an
//! inspector with a token the admin issued for them. Public routes need neither.
//!
//! An inspector token is `inspector.{id}.{mac}`, the MAC being HMAC-SHA256 of the inspector id
//! keyed with the admin token: the collector keeps no token table, a token cannot be forged
//! without the admin token, and replacing `admin.token` revokes every inspector token at once.

use axum::http::{header, HeaderMap};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{ApiError, AppState};

/// The caller of an authenticated route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The bureau: sees and manages everything.
    Admin,
    /// An inspector: sees and decides only on the tasks assigned to them.
    Inspector(String),
}

const PREFIX: &str = "inspector.";

fn mac(admin_token: &str, inspector: &str) -> Hmac<Sha256> {
    let mut m =
        Hmac::<Sha256>::new_from_slice(admin_token.as_bytes()).expect("HMAC takes any key length");
    m.update(b"spotcheck inspector token v1\0");
    m.update(inspector.as_bytes());
    m
}

/// The token for `inspector`.
pub fn inspector_token(admin_token: &str, inspector: &str) -> String {
    let tag = mac(admin_token, inspector).finalize().into_bytes();
    format!("{PREFIX}{inspector}.{}", hex::encode(tag))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Compares without an early exit, so timing does not reveal a matching prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.iter()
        .zip(b)
        .fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y))
        == 0
}

/// The caller, or `Unauthorized`.
pub fn principal(s: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let given = bearer(headers).ok_or(ApiError::Unauthorized)?;
    if same(given.as_bytes(), s.admin_token.as_bytes()) {
        return Ok(Principal::Admin);
    }
    if let Some(rest) = given.strip_prefix(PREFIX) {
        if let Some((id, tag)) = rest.rsplit_once('.') {
            if let Ok(tag) = hex::decode(tag) {
                if mac(&s.admin_token, id).verify_slice(&tag).is_ok() {
                    return Ok(Principal::Inspector(id.to_owned()));
                }
            }
        }
    }
    Err(ApiError::Unauthorized)
}

/// The admin only.
pub fn admin(s: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match principal(s, headers)? {
        Principal::Admin => Ok(()),
        Principal::Inspector(_) => Err(ApiError::Forbidden(
            "this endpoint is for the bureau (the admin token); inspector tokens cannot use it"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_for_its_inspector_and_key() {
        let t = inspector_token("k1", "hb-001");
        let tag = hex::decode(t.rsplit_once('.').unwrap().1).unwrap();
        assert!(mac("k1", "hb-001").verify_slice(&tag).is_ok());
        assert!(mac("k1", "hb-002").verify_slice(&tag).is_err());
        assert!(mac("k2", "hb-001").verify_slice(&tag).is_err());
    }
}
