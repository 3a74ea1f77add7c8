//! The SQLite schema, as numbered migrations applied in order; `PRAGMA user_version` records
//! how many have run. Never edit a released migration: append a new one.

/// Every migration, in order. Index + 1 is the schema version it produces.
pub const MIGRATIONS: &[&str] = &[
    // 1: ingest.
    "
    CREATE TABLE agents (
        id      INTEGER PRIMARY KEY,
        name    TEXT NOT NULL UNIQUE,
        entity  TEXT NOT NULL,
        domain  TEXT NOT NULL
    );
    CREATE TABLE entities (
        id      INTEGER PRIMARY KEY,
        name    TEXT NOT NULL UNIQUE,
        domain  TEXT NOT NULL
    );
    CREATE TABLE metrics (
        id      INTEGER PRIMARY KEY,
        name    TEXT NOT NULL,
        unit    TEXT NOT NULL,
        UNIQUE (name, unit)
    );
    -- One row per committed batch: the dedupe key (agent, seq).
    CREATE TABLE batches (
        agent       INTEGER NOT NULL,
        seq         INTEGER NOT NULL,
        stream      TEXT NOT NULL,
        items       INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (agent, seq)
    ) WITHOUT ROWID;
    CREATE TABLE readings (
        entity  INTEGER NOT NULL,
        metric  INTEGER NOT NULL,
        ts_ms   INTEGER NOT NULL,
        value   REAL NOT NULL,
        quality INTEGER NOT NULL,
        agent   INTEGER NOT NULL,
        seq     INTEGER NOT NULL
    );
    CREATE INDEX readings_by_series ON readings (entity, metric, ts_ms);
    CREATE TABLE events (
        entity    INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        record_id TEXT NOT NULL,
        ts_ms     INTEGER NOT NULL,
        end_ms    INTEGER,
        agent     INTEGER NOT NULL,
        seq       INTEGER NOT NULL,
        body      TEXT NOT NULL
    );
    CREATE INDEX events_by_entity ON events (entity, kind, ts_ms);
    -- Everything rejected, with its reason and the payload as received.
    CREATE TABLE dead_letters (
        id          INTEGER PRIMARY KEY,
        received_ms INTEGER NOT NULL,
        topic       TEXT NOT NULL,
        agent       TEXT,
        seq         INTEGER,
        code        TEXT NOT NULL,
        reason      TEXT NOT NULL,
        payload     BLOB NOT NULL
    );
    CREATE UNIQUE INDEX dead_letters_once ON dead_letters (agent, seq) WHERE agent IS NOT NULL AND seq IS NOT NULL;
    ",
];
