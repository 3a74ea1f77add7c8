//! The task routes over real HTTP, in process, with SQLite in a temp dir: who may see and do
//! what, remote checks (going offline never passes), inspectors' decisions, the anomaly
//! lifecycle from ingest's commit to the public feed, rule-pack updates, the audit log and the
//! console's routes (queue pages, evidence, the live stream, public search, its files).

mod anomaly;
mod audit;
mod checks;
mod console;
mod helpers;
mod joint;
mod notify;
mod openapi;
mod people;
mod registry_import;
mod roles;
mod rule_packs;
#[path = "../common/test_store.rs"]
mod test_store;
