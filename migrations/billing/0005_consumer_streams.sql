-- Each consumer gets its own streams of billing' events, holding only the types it takes
-- (docs/adr/0010): the stream position of each event moves from the outbox to
-- outbox_streams, one row per consumer that takes the event. Existing events keep their
-- number in the stream of every consumer of the time (orders, inventory), each of which
-- received them all, so every consumer's position stays valid and nothing is replayed.
CREATE TABLE outbox_streams (
    consumer TEXT NOT NULL,
    partition INTEGER NOT NULL,
    pseq INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (consumer, partition, pseq)
);
CREATE INDEX outbox_streams_by_position ON outbox_streams (position);
INSERT INTO outbox_streams (consumer, partition, pseq, position)
    SELECT c.column1, o.partition, o.pseq, o.seq
    FROM outbox o CROSS JOIN (VALUES ('orders'), ('inventory')) c;
DROP INDEX outbox_by_stream;
ALTER TABLE outbox DROP COLUMN pseq;
