//! The libraries: import with line-numbered errors, atomically, with a dry run; plans and
//! impossible draws that change nothing.

mod import;
mod plans;
