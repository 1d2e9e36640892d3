-- PostgreSQL schema of orders, version 2: its own tables, after the event-delivery tables of
-- version 1 (crates/shop-kit/migrations/postgres/0001_event_delivery.sql). Together they are
-- what the SQLite migrations 0001..0005 build (every integer is BIGINT, the app binding int8).

-- One row per order: the order document (lines, prices, history) is JSON in `doc`, with the
-- columns that queries filter on kept beside it. orders_by_status lets GET /orders?status=
-- page through one status without scanning every order.
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id, id);
CREATE INDEX orders_by_status ON orders (status, id);

-- Idempotency-Key of POST /orders: the canonical request it was first used with.
CREATE TABLE idempotency_keys (
    key TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    order_id TEXT NOT NULL
);
