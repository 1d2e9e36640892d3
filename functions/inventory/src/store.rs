//! SQL adapter (SQLite or PostgreSQL, `shop_kit::sql`) of the `InventoryStore` port (database label `inventory`).

use shop_events::ShopEvent;
use shop_kit::inbox::sql::SqlBacked;
use shop_kit::migrate::Migration;
use shop_kit::outbox;
use shop_kit::sql::Row;
use shop_kit::sql::{i, int, t, text, Db, Schema};

use crate::domain::{Hold, HoldStatus, Product};
use crate::service::InventoryStore;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init",
        sql: include_str!("../../../migrations/inventory/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_dead_letters",
        sql: include_str!("../../../migrations/inventory/0002_dead_letters.sql"),
    },
    Migration {
        version: 3,
        name: "0003_relay_lease",
        sql: include_str!("../../../migrations/inventory/0003_relay_lease.sql"),
    },
    Migration {
        version: 4,
        name: "0004_partitioned_delivery",
        sql: include_str!("../../../migrations/inventory/0004_partitioned_delivery.sql"),
    },
    Migration {
        version: 5,
        name: "0005_consumer_streams",
        sql: include_str!("../../../migrations/inventory/0005_consumer_streams.sql"),
    },
    Migration {
        version: 6,
        name: "0006_relay_cursor",
        sql: include_str!("../../../migrations/inventory/0006_relay_cursor.sql"),
    },
];

/// Both stores' schemas: the SQLite history above; on PostgreSQL, the shared event-delivery
/// tables, then the function's own.
pub const SCHEMA: Schema = Schema {
    sqlite: MIGRATIONS,
    postgres: &shop_kit::sql::postgres_migrations(
        include_str!("../../../migrations/inventory/postgres/0002_inventory.sql"),
        include_str!("../../../migrations/inventory/postgres/0003_consumer_streams.sql"),
    ),
};

pub struct SqlInventory {
    pub db: Db,
}

impl SqlInventory {
    pub fn open() -> anyhow::Result<Self> {
        Ok(Self {
            db: Db::open("inventory", &SCHEMA)?,
        })
    }

    /// The database alone, for publishing its outbox.
    pub fn into_db(self) -> Db {
        self.db
    }
}

const PRODUCT_COLUMNS: &str = "sku, name, price_cents, available, reserved";

fn product(row: &Row) -> Product {
    Product {
        sku: text(row, 0),
        name: text(row, 1),
        price_cents: int(row, 2),
        available: int(row, 3),
        reserved: int(row, 4),
    }
}

impl SqlBacked for SqlInventory {
    fn db(&self) -> &Db {
        &self.db
    }
}

impl InventoryStore for SqlInventory {
    fn transaction<T, E: From<anyhow::Error>>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        self.db.transaction(f)
    }

    fn product(&self, sku: &str) -> anyhow::Result<Option<Product>> {
        let rows = self.db.exec(
            &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE sku = ?"),
            &[t(sku)],
        )?;
        Ok(rows.rows.first().map(product))
    }

    fn put_product(&self, p: &Product) -> anyhow::Result<()> {
        self.db.exec(
            "INSERT INTO products (sku, name, price_cents, available, reserved) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT(sku) DO UPDATE SET name = excluded.name, price_cents = excluded.price_cents, \
             available = excluded.available, reserved = excluded.reserved",
            &[t(&p.sku), t(&p.name), i(p.price_cents), i(p.available), i(p.reserved)],
        )?;
        Ok(())
    }

    fn products(&self) -> anyhow::Result<Vec<Product>> {
        let rows = self.db.exec(
            &format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY sku"),
            &[],
        )?;
        Ok(rows.rows.iter().map(product).collect())
    }

    fn hold(&self, order_id: &str) -> anyhow::Result<Option<Hold>> {
        let rows = self.db.exec(
            "SELECT status, lines FROM reservations WHERE order_id = ?",
            &[t(order_id)],
        )?;
        rows.rows
            .first()
            .map(|row| {
                Ok(Hold {
                    order_id: order_id.to_string(),
                    status: HoldStatus::parse(&text(row, 0))
                        .ok_or_else(|| anyhow::anyhow!("bad hold status {}", text(row, 0)))?,
                    lines: serde_json::from_str(&text(row, 1))?,
                })
            })
            .transpose()
    }

    fn put_hold(&self, hold: &Hold) -> anyhow::Result<()> {
        self.db.exec(
            "INSERT INTO reservations (order_id, status, lines) VALUES (?, ?, ?) \
             ON CONFLICT(order_id) DO UPDATE SET status = excluded.status, lines = excluded.lines",
            &[
                t(&hold.order_id),
                t(hold.status.as_str()),
                t(serde_json::to_string(&hold.lines)?),
            ],
        )?;
        Ok(())
    }

    fn emit(&self, event: &ShopEvent, traceparent: &str) -> anyhow::Result<()> {
        outbox::append(&self.db, crate::SERVICE, event, traceparent)
    }
}
