-- The outbox relay's lease: while a row exists and has not expired, one relay is publishing
-- this outbox and others leave their events to it (shop-kit `lease`). expires_at is in
-- milliseconds since the Unix epoch.
CREATE TABLE relay_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
