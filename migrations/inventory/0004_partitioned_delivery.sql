-- Events are delivered per stream (source, partition by order id) and ordered per order
-- (docs/adr/0006). Existing events and positions become partition 0, so nothing is replayed.

-- The outbox: each event's stream and its gap-free seq within it (the envelope's seq).
ALTER TABLE outbox ADD COLUMN partition INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN pseq INTEGER;
UPDATE outbox SET pseq = seq;
CREATE UNIQUE INDEX outbox_by_stream ON outbox (partition, pseq);

-- Last event applied per upstream stream.
CREATE TABLE inbox_streams (
    source TEXT NOT NULL,
    partition INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (source, partition)
);
INSERT INTO inbox_streams (source, partition, last_seq) SELECT source, 0, last_seq FROM inbox;
DROP TABLE inbox;

-- Events that could not be applied on arrival: retried on their own schedule; later events
-- of the same order and source wait behind them.
CREATE TABLE pending_events (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    partition INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    order_key TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at INTEGER NOT NULL,
    error TEXT NOT NULL
);
CREATE INDEX pending_by_order ON pending_events (source, order_key, partition, seq);
CREATE INDEX pending_by_due ON pending_events (next_at);
DROP TABLE delivery_failures;

-- Dead letters, now named by event id.
CREATE TABLE parked_events (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    partition INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    order_key TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    parked_at TEXT NOT NULL
);
INSERT INTO parked_events
    SELECT json_extract(payload, '$.id'), source, 0, seq,
           coalesce(json_extract(payload, '$.data.order_id'), ''), type,
           json_set(payload, '$.partition', 0), error, attempts, parked_at
    FROM dead_letters;
DROP TABLE dead_letters;
ALTER TABLE parked_events RENAME TO dead_letters;

-- The wake that retries pending events on time: one row while a loop holds it.
CREATE TABLE wake (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    arm TEXT NOT NULL,
    until_ms INTEGER NOT NULL
);
