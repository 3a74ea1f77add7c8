//! The draw: properties, test vectors, verification of edited records, the public form, the
//! check against published commitments, and the Python reference's agreement.

mod helpers;
mod properties;
mod public;
mod python;
mod vectors;
