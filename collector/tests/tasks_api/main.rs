//! The task routes over real HTTP, in process, with SQLite in a temp dir: who may see and do
//! what, remote checks (going offline never passes), inspectors' decisions, the anomaly
//! lifecycle from ingest's commit to the public feed, rule-pack updates and the audit log.

mod anomaly;
mod audit;
mod checks;
mod helpers;
mod joint;
mod notify;
mod openapi;
mod people;
mod roles;
mod rule_packs;
