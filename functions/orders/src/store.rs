//! SQL adapter (SQLite or PostgreSQL, `shop_kit::sql`) of the `OrderStore` port (database label `orders`).

use shop_events::ShopEvent;
use shop_kit::inbox::sql::SqlBacked;
use shop_kit::migrate::Migration;
use shop_kit::outbox;
use shop_kit::sql::{i, t, text, Db, Schema};

use crate::domain::Order;
use crate::service::{ListQuery, OrderStore};

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init",
        sql: include_str!("../../../migrations/orders/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_status_index",
        sql: include_str!("../../../migrations/orders/0002_status_index.sql"),
    },
    Migration {
        version: 3,
        name: "0003_dead_letters",
        sql: include_str!("../../../migrations/orders/0003_dead_letters.sql"),
    },
    Migration {
        version: 4,
        name: "0004_relay_lease",
        sql: include_str!("../../../migrations/orders/0004_relay_lease.sql"),
    },
    Migration {
        version: 5,
        name: "0005_partitioned_delivery",
        sql: include_str!("../../../migrations/orders/0005_partitioned_delivery.sql"),
    },
    Migration {
        version: 6,
        name: "0006_consumer_streams",
        sql: include_str!("../../../migrations/orders/0006_consumer_streams.sql"),
    },
    Migration {
        version: 7,
        name: "0007_relay_cursor",
        sql: include_str!("../../../migrations/orders/0007_relay_cursor.sql"),
    },
];

/// Both stores' schemas: the SQLite history above; on PostgreSQL, the shared event-delivery
/// tables, then the function's own.
pub const SCHEMA: Schema = Schema {
    sqlite: MIGRATIONS,
    postgres: &shop_kit::sql::postgres_migrations(
        include_str!("../../../migrations/orders/postgres/0002_orders.sql"),
        include_str!("../../../migrations/orders/postgres/0003_consumer_streams.sql"),
    ),
};

pub struct SqlOrders {
    pub db: Db,
}

impl SqlOrders {
    pub fn open() -> anyhow::Result<Self> {
        Ok(Self {
            db: Db::open("orders", &SCHEMA)?,
        })
    }

    /// The database alone, for publishing its outbox.
    pub fn into_db(self) -> Db {
        self.db
    }
}

fn doc(order: &Order) -> anyhow::Result<String> {
    Ok(serde_json::to_string(order)?)
}

impl SqlBacked for SqlOrders {
    fn db(&self) -> &Db {
        &self.db
    }
}

impl OrderStore for SqlOrders {
    fn transaction<T, E: From<anyhow::Error>>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        self.db.transaction(f)
    }

    fn get(&self, id: &str) -> anyhow::Result<Option<Order>> {
        let rows = self
            .db
            .exec("SELECT doc FROM orders WHERE id = ?", &[t(id)])?;
        rows.rows
            .first()
            .map(|row| Ok(serde_json::from_str(&text(row, 0))?))
            .transpose()
    }

    fn insert(&self, order: &Order) -> anyhow::Result<()> {
        self.db.exec(
            "INSERT INTO orders (id, customer_id, status, doc) VALUES (?, ?, ?, ?)",
            &[
                t(&order.id),
                t(&order.customer_id),
                t(order.status.as_str()),
                t(doc(order)?),
            ],
        )?;
        Ok(())
    }

    fn update(&self, order: &Order) -> anyhow::Result<()> {
        self.db.exec(
            "UPDATE orders SET status = ?, doc = ? WHERE id = ?",
            &[t(order.status.as_str()), t(doc(order)?), t(&order.id)],
        )?;
        Ok(())
    }

    fn list(&self, query: &ListQuery) -> anyhow::Result<Vec<Order>> {
        let mut sql = String::from("SELECT doc FROM orders WHERE 1 = 1");
        let mut params = Vec::new();
        if let Some(customer) = &query.customer_id {
            sql.push_str(" AND customer_id = ?");
            params.push(t(customer));
        }
        if let Some(status) = query.status {
            sql.push_str(" AND status = ?");
            params.push(t(status.as_str()));
        }
        if let Some(cursor) = &query.cursor {
            sql.push_str(" AND id < ?");
            params.push(t(cursor));
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        params.push(i(query.limit as i64));
        self.db
            .exec(&sql, &params)?
            .rows
            .iter()
            .map(|row| Ok(serde_json::from_str(&text(row, 0))?))
            .collect()
    }

    fn idempotency_key(&self, key: &str) -> anyhow::Result<Option<(String, String)>> {
        let rows = self.db.exec(
            "SELECT request, order_id FROM idempotency_keys WHERE key = ?",
            &[t(key)],
        )?;
        Ok(rows.rows.first().map(|row| (text(row, 0), text(row, 1))))
    }

    fn remember_key(&self, key: &str, request: &str, order_id: &str) -> anyhow::Result<()> {
        self.db.exec(
            "INSERT INTO idempotency_keys (key, request, order_id) VALUES (?, ?, ?)",
            &[t(key), t(request), t(order_id)],
        )?;
        Ok(())
    }

    fn emit(&self, event: &ShopEvent, traceparent: &str) -> anyhow::Result<()> {
        outbox::append(&self.db, crate::SERVICE, event, traceparent)
    }
}
