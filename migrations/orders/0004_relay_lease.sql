-- Who is publishing the outbox right now (see `outbox::publish_to_redis`): one row per source
-- while an instance holds the lease; expires_at (Unix milliseconds) lets another take over
-- from an instance that stopped mid-publish.
CREATE TABLE relay_lease (
    source TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
