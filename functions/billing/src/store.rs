//! SQL adapter (SQLite or PostgreSQL, `shop_kit::sql`) of the `BillingStore` port (database label `billing`).

use shop_events::ShopEvent;
use shop_kit::inbox::sql::SqlBacked;
use shop_kit::migrate::Migration;
use shop_kit::outbox;
use shop_kit::sql::{i, opt_i, opt_int, opt_text, t, text, Db, Schema};
use shop_kit::sql::{Row, Value};

use crate::domain::{Payment, PaymentStatus};
use crate::service::BillingStore;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init",
        sql: include_str!("../../../migrations/billing/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_dead_letters",
        sql: include_str!("../../../migrations/billing/0002_dead_letters.sql"),
    },
    Migration {
        version: 3,
        name: "0003_relay_lease",
        sql: include_str!("../../../migrations/billing/0003_relay_lease.sql"),
    },
    Migration {
        version: 4,
        name: "0004_partitioned_delivery",
        sql: include_str!("../../../migrations/billing/0004_partitioned_delivery.sql"),
    },
    Migration {
        version: 5,
        name: "0005_consumer_streams",
        sql: include_str!("../../../migrations/billing/0005_consumer_streams.sql"),
    },
    Migration {
        version: 6,
        name: "0006_relay_cursor",
        sql: include_str!("../../../migrations/billing/0006_relay_cursor.sql"),
    },
];

/// Both stores' schemas: the SQLite history above; on PostgreSQL, the shared event-delivery
/// tables, then the function's own.
pub const SCHEMA: Schema = Schema {
    sqlite: MIGRATIONS,
    postgres: &shop_kit::sql::postgres_migrations(
        include_str!("../../../migrations/billing/postgres/0002_billing.sql"),
        include_str!("../../../migrations/billing/postgres/0003_consumer_streams.sql"),
    ),
};

pub struct SqlBilling {
    pub db: Db,
}

impl SqlBilling {
    pub fn open() -> anyhow::Result<Self> {
        Ok(Self {
            db: Db::open("billing", &SCHEMA)?,
        })
    }

    /// The database alone, for publishing its outbox.
    pub fn into_db(self) -> Db {
        self.db
    }
}

const COLUMNS: &str = "order_id, amount_cents, currency, status, provider_ref, cancelled";

fn payment(row: &Row) -> anyhow::Result<Payment> {
    let status = text(row, 3);
    Ok(Payment {
        order_id: text(row, 0),
        amount_cents: opt_int(row, 1),
        currency: text(row, 2),
        status: PaymentStatus::parse(&status)
            .ok_or_else(|| anyhow::anyhow!("bad payment status {status}"))?,
        provider_ref: opt_text(row, 4),
        cancelled: opt_int(row, 5) == Some(1),
    })
}

impl SqlBacked for SqlBilling {
    fn db(&self) -> &Db {
        &self.db
    }
}

impl BillingStore for SqlBilling {
    fn transaction<T, E: From<anyhow::Error>>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        self.db.transaction(f)
    }

    fn payment(&self, order_id: &str) -> anyhow::Result<Option<Payment>> {
        let rows = self.db.exec(
            &format!("SELECT {COLUMNS} FROM payments WHERE order_id = ?"),
            &[t(order_id)],
        )?;
        rows.rows.first().map(payment).transpose()
    }

    fn put_payment(&self, p: &Payment) -> anyhow::Result<()> {
        self.db.exec(
            "INSERT INTO payments (order_id, amount_cents, currency, status, provider_ref, cancelled) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(order_id) DO UPDATE SET \
             amount_cents = excluded.amount_cents, currency = excluded.currency, status = excluded.status, \
             provider_ref = excluded.provider_ref, cancelled = excluded.cancelled",
            &[
                t(&p.order_id),
                opt_i(p.amount_cents),
                t(&p.currency),
                t(p.status.as_str()),
                p.provider_ref.clone().map(Value::Text).unwrap_or(Value::Null),
                i(i64::from(p.cancelled)),
            ],
        )?;
        Ok(())
    }

    fn owed_refunds(&self) -> anyhow::Result<Vec<Payment>> {
        let rows = self.db.exec(
            &format!("SELECT {COLUMNS} FROM payments WHERE cancelled = 1 AND status = 'captured'"),
            &[],
        )?;
        rows.rows.iter().map(payment).collect()
    }

    fn emit(&self, event: &ShopEvent, traceparent: &str) -> anyhow::Result<()> {
        outbox::append(&self.db, crate::SERVICE, event, traceparent)
    }
}
