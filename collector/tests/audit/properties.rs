//! Any single-byte change to any entry's body is detected.

use std::sync::OnceLock;

use proptest::prelude::*;
use spotcheck_collector::audit::{self, AuditEntry};

use crate::helpers::{append_n, fresh};

/// One chain for all cases: building a store per case would only slow the property down.
fn chain() -> &'static [AuditEntry] {
    static CHAIN: OnceLock<Vec<AuditEntry>> = OnceLock::new();
    CHAIN.get_or_init(|| {
        let (_dir, mut conn) = fresh();
        append_n(&mut conn, 8)
    })
}

proptest! {
    #[test]
    fn any_single_byte_change_to_any_body_is_detected_at_that_entry(
        which in 0usize..8,
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut entries = chain().to_vec();
        prop_assert!(audit::verify(&entries, None).is_ok());
        let seq = entries[which].seq;
        let mut bytes = entries[which].body.clone().into_bytes();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        // A change that leaves invalid UTF-8 cannot be stored as text; it reaches a verifier
        // as replacement characters, still a changed body.
        entries[which].body = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        let report = audit::verify(&entries, None);
        let named = report.problems.iter().any(|p| matches!(p,
            audit::Problem::HashMismatch { seq: s, .. } if *s == seq));
        prop_assert!(named, "{:?}", report.problems);
    }
}
