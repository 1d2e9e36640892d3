-- inventory: products and their stock.
CREATE TABLE products (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    available INTEGER NOT NULL CHECK (available >= 0),
    reserved INTEGER NOT NULL CHECK (reserved >= 0)
);

-- One row per order inventory has heard of: what it holds for it and in which state
-- (reserved, rejected, sold, released), so events may arrive in any order.
CREATE TABLE reservations (
    order_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    lines TEXT NOT NULL
);

-- Transactional outbox, served as GET /inventory/events; seq is gap-free.
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
