-- PostgreSQL schema of billing, version 2: its own tables, after the event-delivery tables of
-- version 1 (crates/shop-kit/migrations/postgres/0001_event_delivery.sql). Together they are
-- what the SQLite migrations 0001..0004 build (every integer is BIGINT, the app binding int8).

-- One row per order billing has heard of. `status` is the payment's state (none until
-- charged, then captured, declined or refunded). `cancelled` remembers an OrderCancelled so
-- a later StockReserved is not charged and a capture is refunded.
CREATE TABLE payments (
    order_id TEXT PRIMARY KEY,
    amount_cents BIGINT,
    currency TEXT NOT NULL DEFAULT 'USD',
    status TEXT NOT NULL DEFAULT 'none',
    provider_ref TEXT,
    cancelled BIGINT NOT NULL DEFAULT 0
);
-- Captured payments of cancelled orders: the refunds still owed.
CREATE INDEX payments_owed_refunds ON payments (order_id) WHERE cancelled = 1 AND status = 'captured';
