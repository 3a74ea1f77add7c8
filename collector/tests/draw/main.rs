//! The draw: properties, test vectors, verification of edited records.

mod helpers;
mod properties;
mod vectors;
