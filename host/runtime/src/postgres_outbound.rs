//! Outbound PostgreSQL: `spin:postgres/postgres@4.0.0`, `spin:postgres/postgres@3.0.0` and
//! `fermyon:spin/postgres@2.0.0`, as Spin's `factor-outbound-pg` serves them. All three run
//! through one 4.0.0 implementation; the older ones map their types onto it
//! ([`crate::postgres_types`]), as Spin does.
//!
//! `open` takes a connection string (`host=... port=... user=...` or `postgres://...`) and checks
//! every host in it against `allowed_outbound_hosts` (scheme `postgres`, default port 5432);
//! a refused one fails with Spin's `connection-failed("address postgres://host:port is not
//! permitted")`. `sslmode=disable` connects in plain text; any other mode (the default is
//! `prefer`) offers TLS through native-tls with the system's roots, as Spin does, so a server
//! with a certificate the system does not trust fails the `open`.
//!
//! Each handle holds a connection of its own from a pool per address (at most 64 connections,
//! pools of 16 addresses per component), kept by deadpool-postgres as Spin keeps them: a
//! connection a handle is done with is reset (`DISCARD`-style clean-up) before the next
//! handle gets it. Beyond Spin, the reset first rolls back any transaction the last handle
//! left open, and a connection whose statement was cancelled (its instance stopped at the
//! deadline) is closed instead of pooled: an instance stopped between `BEGIN` and `COMMIT` must
//! not hand its transaction, and the locks it holds, to the next request.

// The interface's error carries a whole database error record; it is returned, not propagated.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures::TryStreamExt;
use tokio_postgres::config::SslMode;
use tracing::instrument;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use crate::bindings::imports::fermyon::spin2_0_0::{postgres as spin_pg2, rdbms_types as v2};
use crate::bindings::imports::spin::postgres3_0_0::postgres as v3;
use crate::bindings::imports::spin::postgres4_0_0::postgres as v4;
use crate::outbound_http::OutboundRules;
use crate::postgres_types::{
    convert_data_type, convert_entry, memory_size, to_sql_parameter, v2_error, v2_param,
    v2_row_set, v3_error, v3_param, v3_row_set,
};

/// Connections per address, as Spin's `CONNECTION_POOL_SIZE`.
const CONNECTION_POOL_SIZE: usize = 64;
/// Addresses a component keeps pools for, as Spin's `CONNECTION_POOL_CACHE_CAPACITY`.
const CONNECTION_POOL_CACHE_CAPACITY: usize = 16;
/// The most a query's rows may take in the host before the query fails (Spin's
/// `MAX_HOST_BUFFERED_BYTES`).
const MAX_RESULT_BYTES: usize = 128 << 20;

/// How a pooled connection is reset for its next handle: `ROLLBACK` (only a warning when no
/// transaction is open) ends what an instance stopped mid-transaction left open, then
/// deadpool's `Clean` steps, which alone would carry the open transaction over.
const RESET_SQL: &str = "ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
    UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES;";

/// A component's connection pools, one per connection string (Spin keeps them per component).
#[derive(Default)]
pub struct PostgresPools {
    by_address: Mutex<HashMap<String, deadpool_postgres::Pool>>,
}

impl PostgresPools {
    /// A connection to `address` from its pool (made now if there is none).
    async fn connect(&self, address: &str) -> anyhow::Result<deadpool_postgres::Object> {
        let pool = self
            .pool(address)
            .context("establishing PostgreSQL connection pool")?;
        Ok(pool.get().await?)
    }

    fn pool(&self, address: &str) -> anyhow::Result<deadpool_postgres::Pool> {
        // The map holds pool handles only; one left by a panicking thread is still sound.
        let mut pools = self
            .by_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(pool) = pools.get(address) {
            return Ok(pool.clone());
        }
        let pool = create_pool(address)?;
        if pools.len() >= CONNECTION_POOL_CACHE_CAPACITY {
            // Spin's cache evicts by frequency; any one will do here: its idle connections
            // close, and handles still holding one keep it.
            if let Some(evicted) = pools.keys().next().cloned() {
                pools.remove(&evicted);
            }
        }
        pools.insert(address.to_string(), pool.clone());
        Ok(pool)
    }
}

fn create_pool(address: &str) -> anyhow::Result<deadpool_postgres::Pool> {
    let config = address
        .parse::<tokio_postgres::Config>()
        .context("parsing Postgres connection string")?;
    let manager_config = deadpool_postgres::ManagerConfig {
        recycling_method: deadpool_postgres::RecyclingMethod::Custom(RESET_SQL.into()),
    };
    let manager = if config.get_ssl_mode() == SslMode::Disable {
        deadpool_postgres::Manager::from_config(config, tokio_postgres::NoTls, manager_config)
    } else {
        let connector = native_tls::TlsConnector::builder().build()?;
        let connector = postgres_native_tls::MakeTlsConnector::new(connector);
        deadpool_postgres::Manager::from_config(config, connector, manager_config)
    };
    deadpool_postgres::Pool::builder(manager)
        .max_size(CONNECTION_POOL_SIZE)
        .build()
        .context("building Postgres connection pool")
}

/// An open connection (the guest's `connection` resource, in every version).
pub struct OpenConnection {
    /// Shared with a call in flight, which must not hold the (non-`Sync`) resource table;
    /// `None` only once dropped.
    client: Option<Arc<deadpool_postgres::Object>>,
    /// Set while a statement runs; still set when the call was cancelled mid-statement.
    busy: Arc<AtomicBool>,
}

impl Drop for OpenConnection {
    /// A connection left mid-statement is closed, not pooled: the server may still be running
    /// (or waiting for a lock for) the cancelled statement, which the next handle would wait
    /// behind. Closing it lets the server roll the session back.
    fn drop(&mut self) {
        if !self.busy.load(Ordering::Acquire) {
            return;
        }
        if let Some(Ok(object)) = self.client.take().map(Arc::try_unwrap) {
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

/// Per-instance state: the component's outbound rules and pools, and the instance's handles.
pub struct PostgresState {
    rules: Arc<OutboundRules>,
    pools: Arc<PostgresPools>,
    table: ResourceTable,
}

/// Links `spin:postgres/postgres@4.0.0`, `@3.0.0` and `fermyon:spin/postgres@2.0.0` to the
/// [`PostgresState`] that `get` finds in the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut PostgresState,
) -> anyhow::Result<()> {
    v4::add_to_linker::<_, HasSelf<PostgresState>>(linker, get)?;
    v3::add_to_linker::<_, HasSelf<PostgresState>>(linker, get)?;
    v2::add_to_linker::<_, HasSelf<PostgresState>>(linker, get)?;
    spin_pg2::add_to_linker::<_, HasSelf<PostgresState>>(linker, get)?;
    Ok(())
}

impl PostgresState {
    pub fn new(rules: Arc<OutboundRules>, pools: Arc<PostgresPools>) -> Self {
        Self {
            rules,
            pools,
            table: ResourceTable::new(),
        }
    }

    /// Spin's check of a connection string: each TCP host with its port (the one at the same
    /// index, or the only one) must be allowed as `postgres://host:port`.
    fn ensure_address_allowed(&self, address: &str) -> Result<(), v4::Error> {
        let config = address
            .parse::<tokio_postgres::Config>()
            .map_err(|e| v4::Error::ConnectionFailed(e.to_string()))?;
        let ports = config.get_ports();
        for (i, host) in config.get_hosts().iter().enumerate() {
            match host {
                tokio_postgres::config::Host::Tcp(host) => {
                    let port = ports
                        .get(i)
                        .or_else(|| (ports.len() == 1).then(|| &ports[0]));
                    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                    let url = format!("{host}{port}");
                    if !self.rules.allows_address(&url, "postgres") {
                        tracing::warn!(address = %url, "postgres address denied by allowed_outbound_hosts");
                        return Err(v4::Error::ConnectionFailed(format!(
                            "address postgres://{url} is not permitted"
                        )));
                    }
                }
                tokio_postgres::config::Host::Unix(_) => {
                    return Err(v4::Error::ConnectionFailed(
                        "Unix sockets are not supported on WebAssembly".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn open(&mut self, address: &str) -> Result<Resource<OpenConnection>, v4::Error> {
        self.ensure_address_allowed(address)?;
        let client = self
            .pools
            .connect(address)
            .await
            .map_err(|e| v4::Error::ConnectionFailed(format!("{e:?}")))?;
        self.table
            .push(OpenConnection {
                client: Some(Arc::new(client)),
                busy: Arc::default(),
            })
            .map_err(|_| v4::Error::ConnectionFailed("too many connections".into()))
    }

    /// The handle's connection, and its flag to set while a statement runs.
    fn client(
        &self,
        handle: &Resource<OpenConnection>,
    ) -> Result<(Arc<deadpool_postgres::Object>, Arc<AtomicBool>), v4::Error> {
        self.table
            .get(handle)
            .ok()
            .and_then(|open| Some((open.client.clone()?, open.busy.clone())))
            .ok_or_else(|| v4::Error::ConnectionFailed("no connection found".into()))
    }

    /// `&mut`: the resource table is not `Sync`, so a shared borrow would not be `Send`.
    async fn execute(
        &mut self,
        handle: &Resource<OpenConnection>,
        statement: &str,
        params: &[v4::ParameterValue],
    ) -> Result<u64, v4::Error> {
        let (client, busy) = self.client(handle)?;
        while_busy(&busy, execute(client, statement, params)).await
    }

    /// `&mut`: the resource table is not `Sync`, so a shared borrow would not be `Send`.
    async fn query(
        &mut self,
        handle: &Resource<OpenConnection>,
        statement: &str,
        params: &[v4::ParameterValue],
    ) -> Result<v4::RowSet, v4::Error> {
        let (client, busy) = self.client(handle)?;
        while_busy(&busy, query(client, statement, params)).await
    }

    fn close(&mut self, handle: Resource<OpenConnection>) -> wasmtime::Result<()> {
        // Dropping the pooled connection hands it back to its pool.
        self.table.delete(handle)?;
        Ok(())
    }
}

/// Runs `statement` with `busy` set, which stays set if the call is cancelled before it ends.
async fn while_busy<T>(busy: &AtomicBool, statement: impl std::future::Future<Output = T>) -> T {
    busy.store(true, Ordering::Release);
    let result = statement.await;
    busy.store(false, Ordering::Release);
    result
}

async fn execute(
    client: Arc<deadpool_postgres::Object>,
    statement: &str,
    params: &[v4::ParameterValue],
) -> Result<u64, v4::Error> {
    // Spin reports a parameter it cannot convert as `value-conversion-failed` here and as
    // `bad-parameter` in `query`.
    let params = params
        .iter()
        .map(to_sql_parameter)
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(|e| v4::Error::ValueConversionFailed(format!("{e:?}")))?;
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    client.execute(statement, &refs).await.map_err(query_failed)
}

/// Runs a query and buffers its rows. As in Spin, the columns are those of the first row
/// (none when there is no row), and an error while rows stream in is a `text` error.
async fn query(
    client: Arc<deadpool_postgres::Object>,
    statement: &str,
    params: &[v4::ParameterValue],
) -> Result<v4::RowSet, v4::Error> {
    let params = params
        .iter()
        .map(to_sql_parameter)
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(|e| v4::Error::BadParameter(format!("{e:?}")))?;
    let stream = client
        .query_raw(statement, params)
        .await
        .map_err(query_failed)?;
    let mut stream = std::pin::pin!(stream);
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    let mut bytes = std::mem::size_of::<v4::RowSet>();
    let streamed: anyhow::Result<()> = async {
        while let Some(row) = stream.try_next().await.map_err(query_failed_error)? {
            if rows.is_empty() {
                columns = row
                    .columns()
                    .iter()
                    .map(|c| v4::Column {
                        name: c.name().to_owned(),
                        data_type: convert_data_type(c.type_()),
                    })
                    .collect();
            }
            let values = (0..row.len())
                .map(|i| convert_entry(&row, i))
                .collect::<anyhow::Result<Vec<_>>>()
                .map_err(|e| {
                    query_failed_error(v4::Error::QueryFailed(v4::QueryError::Text(format!(
                        "{e:?}"
                    ))))
                })?;
            bytes += values.iter().map(memory_size).sum::<usize>();
            if bytes > MAX_RESULT_BYTES {
                anyhow::bail!("query result exceeds limit of {MAX_RESULT_BYTES} bytes")
            }
            rows.push(values);
        }
        Ok(())
    }
    .await;
    streamed.map_err(|e| v4::Error::QueryFailed(v4::QueryError::Text(format!("{e:?}"))))?;
    Ok(v4::RowSet { columns, rows })
}

/// A Postgres error as Spin reports it: structured when the server sent it.
fn query_failed(e: tokio_postgres::Error) -> v4::Error {
    let as_text = format!("{e:?}");
    v4::Error::QueryFailed(match e.as_db_error() {
        None => v4::QueryError::Text(as_text),
        Some(db) => v4::QueryError::DbError(v4::DbError {
            as_text,
            severity: db.severity().to_owned(),
            code: db.code().code().to_owned(),
            message: db.message().to_owned(),
            detail: db.detail().map(str::to_owned),
            extras: db_error_extras(db),
        }),
    })
}

/// The error of a row that failed to stream in, wrapped as Spin wraps it before it becomes text.
fn query_failed_error(e: impl Into<QueryFailed>) -> anyhow::Error {
    anyhow::Error::new(e.into())
}

/// An error of a streamed row as text that `anyhow` can carry: Spin puts its `v4::Error` into an
/// `anyhow::Error` and reports that error's debug form, which is the bindings' debug form.
struct QueryFailed(String);

impl From<tokio_postgres::Error> for QueryFailed {
    fn from(e: tokio_postgres::Error) -> Self {
        Self(format!("{:?}", query_failed(e)))
    }
}

impl From<v4::Error> for QueryFailed {
    fn from(e: v4::Error) -> Self {
        Self(format!("{e:?}"))
    }
}

impl std::fmt::Debug for QueryFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for QueryFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueryFailed {}

fn db_error_extras(db: &tokio_postgres::error::DbError) -> Vec<(String, String)> {
    let fields: [(&str, Option<String>); 10] = [
        ("column", db.column().map(str::to_owned)),
        ("constraint", db.constraint().map(str::to_owned)),
        ("routine", db.routine().map(str::to_owned)),
        ("hint", db.hint().map(str::to_owned)),
        ("table", db.table().map(str::to_owned)),
        ("datatype", db.datatype().map(str::to_owned)),
        ("schema", db.schema().map(str::to_owned)),
        ("file", db.file().map(str::to_owned)),
        ("line", db.line().map(|l| l.to_string())),
        ("where_", db.where_().map(str::to_owned)),
    ];
    fields
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value?)))
        .collect()
}

impl v4::Host for PostgresState {}

impl v4::HostConnection for PostgresState {
    #[instrument(name = "spin_outbound_pg.open", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, v4::Error>> {
        Ok(PostgresState::open(self, &address).await)
    }

    #[instrument(name = "spin_outbound_pg.query", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn query(
        &mut self,
        handle: Resource<OpenConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<Result<v4::RowSet, v4::Error>> {
        Ok(PostgresState::query(self, &handle, &statement, &params).await)
    }

    #[instrument(name = "spin_outbound_pg.execute", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn execute(
        &mut self,
        handle: Resource<OpenConnection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v4::Error>> {
        Ok(PostgresState::execute(self, &handle, &statement, &params).await)
    }

    async fn drop(&mut self, handle: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.close(handle)
    }
}

impl v3::Host for PostgresState {}

impl v3::HostConnection for PostgresState {
    #[instrument(name = "spin_outbound_pg.open", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, v3::Error>> {
        Ok(PostgresState::open(self, &address).await.map_err(v3_error))
    }

    #[instrument(name = "spin_outbound_pg.query", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn query(
        &mut self,
        handle: Resource<OpenConnection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<Result<v3::RowSet, v3::Error>> {
        let params: Vec<_> = params.into_iter().map(v3_param).collect();
        Ok(PostgresState::query(self, &handle, &statement, &params)
            .await
            .map(v3_row_set)
            .map_err(v3_error))
    }

    #[instrument(name = "spin_outbound_pg.execute", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn execute(
        &mut self,
        handle: Resource<OpenConnection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v3::Error>> {
        let params: Vec<_> = params.into_iter().map(v3_param).collect();
        Ok(PostgresState::execute(self, &handle, &statement, &params)
            .await
            .map_err(v3_error))
    }

    async fn drop(&mut self, handle: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.close(handle)
    }
}

impl v2::Host for PostgresState {}

impl spin_pg2::Host for PostgresState {}

impl spin_pg2::HostConnection for PostgresState {
    #[instrument(name = "spin_outbound_pg.open", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, v2::Error>> {
        Ok(PostgresState::open(self, &address).await.map_err(v2_error))
    }

    #[instrument(name = "spin_outbound_pg.query", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn query(
        &mut self,
        handle: Resource<OpenConnection>,
        statement: String,
        params: Vec<v2::ParameterValue>,
    ) -> wasmtime::Result<Result<v2::RowSet, v2::Error>> {
        let params = match params
            .into_iter()
            .map(v2_param)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(params) => params,
            Err(e) => return Ok(Err(e)),
        };
        Ok(PostgresState::query(self, &handle, &statement, &params)
            .await
            .map(v2_row_set)
            .map_err(v2_error))
    }

    #[instrument(name = "spin_outbound_pg.execute", skip_all, fields(otel.kind = "client", db.system.name = "postgresql"))]
    async fn execute(
        &mut self,
        handle: Resource<OpenConnection>,
        statement: String,
        params: Vec<v2::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v2::Error>> {
        let params = match params
            .into_iter()
            .map(v2_param)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(params) => params,
            Err(e) => return Ok(Err(e)),
        };
        Ok(PostgresState::execute(self, &handle, &statement, &params)
            .await
            .map_err(v2_error))
    }

    async fn drop(&mut self, handle: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.close(handle)
    }
}
