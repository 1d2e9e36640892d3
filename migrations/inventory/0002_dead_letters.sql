-- Failed attempts at applying an event, counted outside the failed effect's transaction.
CREATE TABLE delivery_failures (
    source TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    PRIMARY KEY (source, seq)
);

-- Events that failed dead_letter_after times: parked, listed and replayable by an admin.
CREATE TABLE dead_letters (
    source TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    parked_at TEXT NOT NULL,
    PRIMARY KEY (source, seq)
);
