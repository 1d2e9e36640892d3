-- PostgreSQL schema of billing, version 3: each consumer gets its own streams of billing'
-- events, holding only the types it takes (docs/adr/0010), as SQLite migration
-- 0005_consumer_streams.sql does. Existing events keep their number in the stream of
-- every consumer of the time (orders, inventory), so no consumer's position moves.
CREATE TABLE outbox_streams (
    consumer TEXT NOT NULL,
    partition BIGINT NOT NULL,
    pseq BIGINT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (consumer, partition, pseq)
);
CREATE INDEX outbox_streams_by_position ON outbox_streams (position);
INSERT INTO outbox_streams (consumer, partition, pseq, position)
    SELECT c.consumer, o.partition, o.pseq, o.seq
    FROM outbox o CROSS JOIN (VALUES ('orders'), ('inventory')) AS c (consumer);
ALTER TABLE outbox DROP COLUMN pseq;
