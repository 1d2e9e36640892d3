-- billing: one row per order billing has heard of. `status` is the payment's state
-- (none until charged, then captured, declined or refunded); `cancelled` remembers an
-- OrderCancelled so a later StockReserved is not charged and a capture is refunded.
CREATE TABLE payments (
    order_id TEXT PRIMARY KEY,
    amount_cents INTEGER,
    currency TEXT NOT NULL DEFAULT 'USD',
    status TEXT NOT NULL DEFAULT 'none',
    provider_ref TEXT,
    cancelled INTEGER NOT NULL DEFAULT 0
);
-- Captured payments of cancelled orders: the refunds still owed.
CREATE INDEX payments_owed_refunds ON payments (order_id) WHERE cancelled = 1 AND status = 'captured';

-- Transactional outbox, served as GET /billing/events; seq is gap-free.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    traceparent TEXT NOT NULL,
    data TEXT NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published = 0;

-- Last event applied per upstream source.
CREATE TABLE inbox (
    source TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL
);
