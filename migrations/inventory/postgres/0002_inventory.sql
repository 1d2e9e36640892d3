-- PostgreSQL schema of inventory, version 2: its own tables, after the event-delivery tables of
-- version 1 (crates/shop-kit/migrations/postgres/0001_event_delivery.sql). Together they are
-- what the SQLite migrations 0001..0004 build (every integer is BIGINT, the app binding int8).

-- Products and their stock.
CREATE TABLE products (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    available BIGINT NOT NULL CHECK (available >= 0),
    reserved BIGINT NOT NULL CHECK (reserved >= 0)
);

-- One row per order inventory has heard of: what it holds for it and in which state
-- (reserved, rejected, sold, released), so events may arrive in any order.
CREATE TABLE reservations (
    order_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    lines TEXT NOT NULL
);
