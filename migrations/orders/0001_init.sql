-- orders: one row per order; the order document (lines, prices, history) is JSON in `doc`,
-- with the columns that queries filter on kept beside it.
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id, id);

-- Idempotency-Key of POST /orders: the canonical request it was first used with.
CREATE TABLE idempotency_keys (
    key TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    order_id TEXT NOT NULL
);

-- Transactional outbox, served as GET /orders/events; seq is gap-free.
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
