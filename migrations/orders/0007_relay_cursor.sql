-- The relay's state in one row that always exists (shop-kit `lease`, docs/adr/0011): its lease
-- (holder; expires_at in milliseconds since the Unix epoch, free once past, 0 when released)
-- and the outbox position up to which every event reached its consumers. A published page then
-- costs one row's update, not a flag set on each of its events and an index of the unsent
-- kept up to date; and a writer claims the lease in the transaction that writes its event.
CREATE TABLE outbox_relay (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    sent_through INTEGER NOT NULL
);
INSERT INTO outbox_relay (id, holder, expires_at, sent_through)
    SELECT 1, '', 0, coalesce((SELECT min(seq) FROM outbox WHERE published = 0) - 1,
                              (SELECT max(seq) FROM outbox), 0);
DROP TABLE relay_lease;
DROP INDEX outbox_unpublished;
ALTER TABLE outbox DROP COLUMN published;
