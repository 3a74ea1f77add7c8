//! The schema, as numbered migrations applied in order, for each engine: SQLite's here
//! (`PRAGMA user_version` records how many have run), PostgreSQL's in [`postgres`], the same
//! tables and columns version by version. Never edit a released migration: append a new one
//! to both lists.

pub mod postgres;

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
    -- Readings, one row per (batch, metric): see store/chunk.rs for the BLOB format.
    CREATE TABLE reading_chunks (
        entity  INTEGER NOT NULL,
        metric  INTEGER NOT NULL,
        t0      INTEGER NOT NULL,   -- earliest ts_ms in the chunk
        t1      INTEGER NOT NULL,   -- latest ts_ms in the chunk
        agent   INTEGER NOT NULL,
        seq     INTEGER NOT NULL,
        n       INTEGER NOT NULL,   -- readings in the chunk
        data    BLOB NOT NULL
    );
    CREATE INDEX reading_chunks_by_series ON reading_chunks (entity, metric, t0);
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
    // 2: the item list, the two libraries, plans, draws and tasks (issue 4).
    "
    CREATE TABLE registry_items (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        department  TEXT NOT NULL,
        legal_basis TEXT NOT NULL,
        kind        TEXT NOT NULL,
        method      TEXT NOT NULL,
        rule_pack   TEXT
    );
    -- agents: JSON array of agent ids bound to the entity (ingest still reads the config).
    CREATE TABLE registry_entities (
        code     TEXT PRIMARY KEY,
        name     TEXT NOT NULL,
        domain   TEXT NOT NULL,
        district TEXT NOT NULL,
        address  TEXT NOT NULL,
        contact  TEXT NOT NULL,
        risk     TEXT NOT NULL,
        agents   TEXT NOT NULL
    );
    -- fields, conflicts: JSON arrays (domains; credit codes).
    CREATE TABLE registry_inspectors (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        certificate TEXT NOT NULL UNIQUE,
        department  TEXT NOT NULL,
        fields      TEXT NOT NULL,
        active      INTEGER NOT NULL,
        conflicts   TEXT NOT NULL
    );
    CREATE TABLE plans (
        id   TEXT PRIMARY KEY,
        body TEXT NOT NULL
    );
    -- One row per draw: committed (seed secret, record NULL), then revealed (record set).
    CREATE TABLE draws (
        id           TEXT PRIMARY KEY,
        plan         TEXT,
        commitment   TEXT NOT NULL,
        parameters   TEXT NOT NULL,
        digests      TEXT NOT NULL,
        committed_ms INTEGER NOT NULL,
        seed         TEXT NOT NULL,
        revealed_ms  INTEGER,
        record       TEXT
    );
    CREATE TABLE tasks (
        id           INTEGER PRIMARY KEY,
        draw         TEXT,
        kind         TEXT NOT NULL,
        entity       TEXT NOT NULL,
        department   TEXT NOT NULL,
        item         TEXT NOT NULL,
        window_start TEXT NOT NULL,
        window_end   TEXT NOT NULL,
        status       TEXT NOT NULL,
        joint        INTEGER
    );
    CREATE INDEX tasks_by_entity ON tasks (entity, window_start);
    ",
    // 3: rules, anomaly tasks, remote checks, results, publication, audit (issue 5).
    "
    -- Task lifecycle. kind: random | joint | anomaly | referral.
    -- status: anomaly: open -> acknowledged -> resolved -> published;
    --         random/joint/referral: drawn -> checked (verdict recorded) -> resolved -> published.
    ALTER TABLE tasks ADD COLUMN rule TEXT;          -- anomaly: the rule key `pack/rule`
    ALTER TABLE tasks ADD COLUMN severity TEXT;      -- anomaly: low | medium | high | critical
    ALTER TABLE tasks ADD COLUMN opened_ms INTEGER;  -- when the task was created
    ALTER TABLE tasks ADD COLUMN detail TEXT;        -- why it was opened (anomaly: the breach)
    ALTER TABLE tasks ADD COLUMN cleared_ms INTEGER; -- anomaly: when the condition cleared
    ALTER TABLE tasks ADD COLUMN updated_ms INTEGER;
    ALTER TABLE tasks ADD COLUMN result TEXT;        -- the publication category (results::Category)
    ALTER TABLE tasks ADD COLUMN comment TEXT;
    ALTER TABLE tasks ADD COLUMN resolved_ms INTEGER;
    ALTER TABLE tasks ADD COLUMN published_ms INTEGER;
    -- At most one live anomaly task per (entity, rule): the dedupe key.
    CREATE UNIQUE INDEX tasks_one_live_anomaly ON tasks (entity, rule)
        WHERE kind = 'anomaly' AND status IN ('open', 'acknowledged');
    CREATE INDEX tasks_by_status ON tasks (status, kind);
    -- Notes on a task's history (condition cleared, acknowledged by, …).
    CREATE TABLE task_notes (
        task   INTEGER NOT NULL,
        ts_ms  INTEGER NOT NULL,
        kind   TEXT NOT NULL,
        text   TEXT NOT NULL
    );
    CREATE INDEX task_notes_by_task ON task_notes (task, ts_ms);
    -- Inspectors assigned to a task (from the draw record, or by hand).
    CREATE TABLE task_inspectors (
        task      INTEGER NOT NULL,
        inspector TEXT NOT NULL,
        PRIMARY KEY (task, inspector)
    ) WITHOUT ROWID;
    -- Every rule pack ever activated, by content hash, so a verdict's hash resolves to its text.
    CREATE TABLE rule_packs (
        hash      TEXT PRIMARY KEY,
        pack      TEXT NOT NULL,
        domain    TEXT NOT NULL,
        origin    TEXT NOT NULL,
        body      TEXT NOT NULL,
        loaded_ms INTEGER NOT NULL
    );
    -- The streaming rule engine's state per (entity, rule key), written in the same
    -- transaction as the readings that changed it.
    CREATE TABLE rule_state (
        entity TEXT NOT NULL,
        rule   TEXT NOT NULL,
        state  TEXT NOT NULL,
        PRIMARY KEY (entity, rule)
    ) WITHOUT ROWID;
    -- Remote checks: the verdict with its evidence, and the inspector's decision on it.
    CREATE TABLE checks (
        id              INTEGER PRIMARY KEY,
        task            INTEGER NOT NULL,
        pack_hash       TEXT NOT NULL,
        window_start_ms INTEGER NOT NULL,
        window_end_ms   INTEGER NOT NULL,
        outcome         TEXT NOT NULL,   -- compliant | violations | cannot_verify
        evidence        TEXT NOT NULL,   -- JSON
        checked_ms      INTEGER NOT NULL,
        decision        TEXT,            -- accepted | overridden
        decided_by      TEXT,
        reason          TEXT,
        decided_ms      INTEGER
    );
    CREATE INDEX checks_by_task ON checks (task, checked_ms);
    -- Append-only, hash-chained audit log: hash = SHA-256 over prev_hash and the entry.
    CREATE TABLE audit_log (
        seq       INTEGER PRIMARY KEY,
        ts_ms     INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        subject   TEXT NOT NULL,
        body      TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    );
    ",
    // 4: draws commit their conflicts and stratum lists with a secret salt key; the public
    // record waits for the end of the batch's inspection window (issue 10).
    "
    ALTER TABLE draws ADD COLUMN salt_key TEXT;    -- secret, 64 hex digits; NULL before v4
    ALTER TABLE draws ADD COLUMN window_end TEXT;  -- last day of the batch's window, YYYY-MM-DD
    ",
    // 5: people: users with roles, API tokens and console sessions (issue 10).
    "
    -- role: admin | supervisor (department set) | inspector (inspector set) | auditor.
    -- password: argon2id PHC string; NULL: no console login (API tokens only).
    CREATE TABLE users (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        role       TEXT NOT NULL,
        department TEXT,
        inspector  TEXT UNIQUE,
        password   TEXT,
        active     INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    );
    -- Named, expiring, revocable API tokens; only the SHA-256 of the secret is kept.
    CREATE TABLE api_tokens (
        id         INTEGER PRIMARY KEY,
        user       INTEGER NOT NULL REFERENCES users (id),
        name       TEXT NOT NULL,
        hash       TEXT NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        revoked_ms INTEGER,
        created_by TEXT NOT NULL
    );
    CREATE INDEX api_tokens_by_user ON api_tokens (user);
    -- Console sessions: SHA-256 of the cookie secret, the CSRF synchronizer token, expiry.
    CREATE TABLE sessions (
        hash       TEXT PRIMARY KEY,
        user       INTEGER NOT NULL REFERENCES users (id),
        csrf       TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_user ON sessions (user);
    ",
    // 6: per-agent credentials (issue 10).
    "
    -- One row per agent with a credential. The HMAC key is kept as is: the collector must
    -- hold it to verify batches and sign acks. The broker password is kept only as SHA-256.
    CREATE TABLE agent_credentials (
        agent         TEXT PRIMARY KEY,
        generation    INTEGER NOT NULL,
        key           BLOB NOT NULL,
        password_hash BLOB NOT NULL,
        issued_ms     INTEGER NOT NULL,
        revoked_ms    INTEGER
    );
    ",
    // 7: tasks typed by kind (issue 11): the plan batch of a drawn task, the joint plan and
    // its departments, who entered a referral; the partners' pools committed with a joint
    // draw; indexes for the task queue by inspector and for a draw's tasks.
    "
    ALTER TABLE tasks ADD COLUMN batch TEXT;        -- random/joint: the plan batch's label
    ALTER TABLE tasks ADD COLUMN joint_plan TEXT;   -- joint: the joint plan
    ALTER TABLE tasks ADD COLUMN departments TEXT;  -- joint: JSON array of the departments
    ALTER TABLE tasks ADD COLUMN entered_by TEXT;   -- referral: who entered it (user:ID, cli)
    CREATE INDEX tasks_by_draw ON tasks (draw, entity);
    CREATE INDEX task_inspectors_by_inspector ON task_inspectors (inspector, task);
    -- A joint draw: per partner department, the digests of its inspector pool and conflicts
    -- fixed at the commitment (JSON array), checked again at the reveal.
    ALTER TABLE draws ADD COLUMN partners TEXT;
    ",
    // 8: a password someone else set (the admin, for a new or locked-out user) is temporary:
    // its session can do nothing but choose the user's own password.
    "
    ALTER TABLE users ADD COLUMN password_temporary INTEGER NOT NULL DEFAULT 0;
    ",
    // 9: notifications (outbox, groups, messages, delivery log, saved routing), contacts
    // (issue 15).
    "
    -- The outbox: every event worth telling someone, written in the transaction that caused
    -- it. dedupe: time-driven events (deadlines, silence) carry a key so a scan never adds
    -- one twice. routed: the delivery worker has matched it against the routes.
    CREATE TABLE notify_outbox (
        id         INTEGER PRIMARY KEY,
        kind       TEXT NOT NULL,
        dedupe     TEXT UNIQUE,
        ts_ms      INTEGER NOT NULL,
        department TEXT,
        domain     TEXT,
        severity   TEXT,
        entity     TEXT,
        rule       TEXT,
        task       INTEGER,
        subject    TEXT NOT NULL,
        facts      TEXT NOT NULL,   -- JSON object
        routed     INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX notify_outbox_unrouted ON notify_outbox (id) WHERE routed = 0;
    -- An event waiting in a group of (route, channel, group key) until the group is flushed
    -- into a message; suppressed: the same thing was told within the repeat interval.
    CREATE TABLE notify_pending (
        event      INTEGER NOT NULL,
        route      TEXT NOT NULL,
        channel    TEXT NOT NULL,
        group_key  TEXT NOT NULL,
        identity   TEXT NOT NULL,
        message    INTEGER,
        suppressed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (event, route, channel)
    ) WITHOUT ROWID;
    CREATE INDEX notify_pending_by_group ON notify_pending (route, channel, group_key, identity);
    CREATE TABLE notify_groups (
        route        TEXT NOT NULL,
        channel      TEXT NOT NULL,
        group_key    TEXT NOT NULL,
        last_sent_ms INTEGER,
        PRIMARY KEY (route, channel, group_key)
    ) WITHOUT ROWID;
    -- Messages, persisted before they are sent. status: pending | sent | failed.
    CREATE TABLE notify_messages (
        id         INTEGER PRIMARY KEY,
        route      TEXT NOT NULL,
        channel    TEXT NOT NULL,
        group_key  TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        title      TEXT NOT NULL,
        text       TEXT NOT NULL,   -- Markdown
        recipients TEXT NOT NULL,   -- JSON
        events     INTEGER NOT NULL,
        status     TEXT NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        next_ms    INTEGER NOT NULL,
        sent_ms    INTEGER,
        last_error TEXT
    );
    CREATE INDEX notify_messages_due ON notify_messages (next_ms) WHERE status = 'pending';
    -- Every attempt to send (message NULL: a test send).
    CREATE TABLE notify_deliveries (
        id      INTEGER PRIMARY KEY,
        message INTEGER,
        channel TEXT NOT NULL,
        ts_ms   INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        ok      INTEGER NOT NULL,
        detail  TEXT NOT NULL
    );
    CREATE INDEX notify_deliveries_by_message ON notify_deliveries (message);
    -- Channels and routes saved through the API (the newest wins over the config file's).
    CREATE TABLE notify_config (
        id       INTEGER PRIMARY KEY,
        body     TEXT NOT NULL,
        saved_ms INTEGER NOT NULL,
        saved_by TEXT NOT NULL
    );
    -- Each department's liaison officers (联络员); until_ms set: replaced or removed.
    CREATE TABLE contacts (
        id         INTEGER PRIMARY KEY,
        department TEXT NOT NULL,
        name       TEXT NOT NULL,
        email      TEXT,
        phone      TEXT,
        since_ms   INTEGER NOT NULL,
        until_ms   INTEGER
    );
    CREATE INDEX contacts_by_department ON contacts (department) WHERE until_ms IS NULL;
    ",
    // 10: the console's live updates find changed tasks by their last change (issue 12).
    "
    CREATE INDEX tasks_by_updated ON tasks (updated_ms);
    ",
    // 11: every message accounted for (issue 16).
    "
    -- A digest of each batch's content (protocol Batch::digest), so that a sequence number
    -- reused with different content is told apart from a redelivery. NULL for older rows.
    ALTER TABLE batches ADD COLUMN digest BLOB;
    -- Dead-letter retention deletes by age.
    CREATE INDEX dead_letters_by_time ON dead_letters (received_ms);
    -- Sequence numbers an agent gave up without their being stored or dead-lettered (its
    -- spool overflowed): seen when a batch's `after` jumps past the highest stored number.
    CREATE TABLE seq_gaps (
        agent      TEXT NOT NULL,
        first      INTEGER NOT NULL,
        last       INTEGER NOT NULL,
        noticed_ms INTEGER NOT NULL
    );
    ",
    // 12: a notification message is claimed (by a worker, until a time) before it is sent,
    // so that two workers never send one message at once (docs/notifications.md).
    "
    ALTER TABLE notify_messages ADD COLUMN claimed_by TEXT;
    ALTER TABLE notify_messages ADD COLUMN claimed_until INTEGER;
    ",
    // 13: the work done once runs on one leader (store/leader.rs, docs/storage.md); the
    // time-series sink's cursor lives in the store, so a new leader's sink continues where
    // the old one stopped (docs/tsdb.md).
    "
    -- Where the sink stands, per target: reading chunks and event rows up to these row ids
    -- are delivered. Moved only after the server accepted (or refused for good) a batch.
    CREATE TABLE sink_cursors (
        target     TEXT NOT NULL PRIMARY KEY,
        chunk      INTEGER NOT NULL,
        event      INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    -- Each role's leadership term, raised by every collector that becomes its leader. The
    -- leader's work checks its term inside its transactions (PostgreSQL: holding the row
    -- FOR SHARE), so a new leader's raise waits for the old leader's work to end and the old
    -- leader's next transaction is refused. Unused on SQLite (one collector, always leader).
    CREATE TABLE leader_terms (
        role     TEXT NOT NULL PRIMARY KEY,
        term     INTEGER NOT NULL,
        holder   TEXT NOT NULL,
        since_ms INTEGER NOT NULL
    );
    ",
    // 14: an entity's event records newest first across kinds (the events endpoint) without
    // sorting all of them: the older index leads with the kind.
    "
    CREATE INDEX events_by_entity_time ON events (entity, ts_ms);
    ",
    // 15: the entity library as one B-tree keyed by the credit code (`WITHOUT ROWID`) instead
    // of a rowid table and its primary-key index, both of which an import writes for every
    // row (a million-row import, BENCHMARKS.md). Rows and columns unchanged. PostgreSQL keeps
    // its table (a heap and the key's index; it has no such choice): a no-op there.
    "
    CREATE TABLE registry_entities_by_code (
        code     TEXT PRIMARY KEY,
        name     TEXT NOT NULL,
        domain   TEXT NOT NULL,
        district TEXT NOT NULL,
        address  TEXT NOT NULL,
        contact  TEXT NOT NULL,
        risk     TEXT NOT NULL,
        agents   TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO registry_entities_by_code
        SELECT code, name, domain, district, address, contact, risk, agents
        FROM registry_entities;
    DROP TABLE registry_entities;
    ALTER TABLE registry_entities_by_code RENAME TO registry_entities;
    ",
    // 16: a revealed draw's public form as served, made on the first public request after its
    // window and kept until its record changes (a recusal sets it back to NULL): at a million
    // candidates it is 116 MB of JSON and 2 s of CPU to make (BENCHMARKS.md, issue 17).
    "
    ALTER TABLE draws ADD COLUMN public_record TEXT;
    ",
];
