//! The audit log and publication: a chain verifies and every kind of tampering is caught
//! and named; the CLI's output and exit codes; the Python checker agrees with ours;
//! results are published with audit entries and the public feed carries no personal data.

mod chain;
mod cli;
mod helpers;
mod properties;
mod python;
mod results;
