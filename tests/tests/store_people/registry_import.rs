//! The registry import, with bad rows and in bulk, on both engines.

use super::*;

#[test]
fn a_registry_import_refuses_the_same_rows_and_writes_the_same_libraries_on_both() {
    let Some(b) = both("registry") else { return };
    let [s, p] = b.each().map(registry_imports);
    for (a, b) in s.iter().zip(&p) {
        assert_eq!(a, b);
    }
    assert_eq!(s.len(), p.len());
}
