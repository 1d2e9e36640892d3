//! `fermyon:spin/redis@2.0.0`: outbound Redis, checked against the component's
//! `allowed_outbound_hosts` (scheme `redis`, default port 6379) as Spin's `factor-outbound-redis`.
//! A denied or unparsable address is `invalid-address`, as in Spin.
//! Each operation runs in a client span named as Spin names it (`spin_outbound_redis.*`).
//!
//! Spin connects for every `open`. Here the typed operations (`publish`, `get`, `set`, ...) of
//! every instance share one multiplexed connection per address: a TCP connection and the
//! Redis handshake per instance that publishes cost more than the publish. Those commands leave
//! no state on the connection and never block it, so sharing it shows nowhere; nor do script
//! calls (`EVAL`, `FCALL` and their kin) through `execute`. `execute` runs any other command,
//! `SELECT`, `MULTI` or `BLPOP` included, so a handle's first such `execute` gets the handle a
//! connection of its own, which then serves all that handle does, as Spin's would.
//! A shared connection that fails is forgotten, and the next `open` connects again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ::redis::aio::MultiplexedConnection;
use ::redis::{FromRedisValue, ToRedisArgs, Value};
use anyhow::Result;
use tracing::instrument;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use crate::bindings::imports::fermyon::spin2_0_0::redis::{
    self as spin_redis, Error, RedisParameter, RedisResult,
};
use crate::outbound_http::OutboundRules;

/// The connections every instance's typed operations share, one per address.
#[derive(Default)]
pub struct SharedConnections {
    by_address: Mutex<HashMap<String, MultiplexedConnection>>,
}

impl SharedConnections {
    /// The shared connection to `address`, connecting first if there is none.
    async fn get(&self, address: &str) -> Result<MultiplexedConnection, Error> {
        if let Some(connection) = self.lock().get(address) {
            return Ok(connection.clone());
        }
        let connection = connect(address).await?;
        self.lock().insert(address.to_string(), connection.clone());
        Ok(connection)
    }

    /// Drops the shared connection to `address` after a failure on it, so the next `open`
    /// connects again (a restarted Redis, say).
    fn forget(&self, address: &str) {
        self.lock().remove(address);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, MultiplexedConnection>> {
        // The map holds handles only; one left by a panicking thread is still sound.
        self.by_address
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn connect(address: &str) -> Result<MultiplexedConnection, Error> {
    let client = ::redis::Client::open(address).map_err(|_| Error::InvalidAddress)?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(other)
}

/// An opened connection (the guest's `connection` resource).
pub struct OpenConnection {
    address: String,
    shared: MultiplexedConnection,
    /// The handle's own connection, made by its first `execute`; everything after goes to it.
    own: Option<MultiplexedConnection>,
}

/// Per-instance state: the component's outbound rules, its open connections, and the host's
/// shared ones.
pub struct RedisState {
    rules: Arc<OutboundRules>,
    table: ResourceTable,
    shared: Arc<SharedConnections>,
}

/// Which connection a command went out on, to tell whether a failure concerns the shared one.
enum Route {
    Shared(String),
    Own,
}

impl RedisState {
    pub fn new(rules: Arc<OutboundRules>, shared: Arc<SharedConnections>) -> Self {
        Self {
            rules,
            table: ResourceTable::new(),
            shared,
        }
    }

    /// The connection for the handle's next command.
    fn connection(
        &self,
        handle: &Resource<OpenConnection>,
    ) -> Result<(MultiplexedConnection, Route), Error> {
        let open = self.table.get(handle).map_err(other)?;
        Ok(match &open.own {
            Some(own) => (own.clone(), Route::Own),
            None => (open.shared.clone(), Route::Shared(open.address.clone())),
        })
    }

    /// The handle's own connection, made now if it has none yet.
    async fn own_connection(
        &mut self,
        handle: &Resource<OpenConnection>,
    ) -> Result<(MultiplexedConnection, Route), Error> {
        let open = self.table.get(handle).map_err(other)?;
        if open.own.is_none() {
            let address = open.address.clone();
            let own = connect(&address).await?;
            self.table.get_mut(handle).map_err(other)?.own = Some(own);
        }
        self.connection(handle)
    }
}

/// Whether `execute` may send `command` on the shared connection: a script call runs whole on
/// the server, cannot block the connection (a script's commands never wait) and leaves nothing
/// on it (a `SELECT` inside a script ends with the script).
fn leaves_no_state(command: &str) -> bool {
    [
        "EVAL",
        "EVALSHA",
        "EVAL_RO",
        "EVALSHA_RO",
        "FCALL",
        "FCALL_RO",
    ]
    .iter()
    .any(|name| command.eq_ignore_ascii_case(name))
}

/// Links `fermyon:spin/redis@2.0.0` to the [`RedisState`] that `get` finds in the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut RedisState,
) -> Result<()> {
    spin_redis::add_to_linker::<_, HasSelf<RedisState>>(linker, get)?;
    Ok(())
}

/// Runs `command` on `connection`, turning Redis errors into the interface's error (type errors
/// kept apart). A shared connection is forgotten after any failure: a dead one fails every
/// command after, and telling that from a refused command is not worth the risk.
async fn run<T: FromRedisValue>(
    shared: &SharedConnections,
    connection: Result<(MultiplexedConnection, Route), Error>,
    command: ::redis::Cmd,
) -> Result<T, Error> {
    let (mut connection, route) = connection?;
    let result = command.query_async::<T>(&mut connection).await;
    if let (Err(_), Route::Shared(address)) = (&result, route) {
        shared.forget(&address);
    }
    result.map_err(|e| match e.kind() {
        ::redis::ErrorKind::TypeError => Error::TypeError,
        _ => other(e),
    })
}

fn other(error: impl std::fmt::Display) -> Error {
    Error::Other(error.to_string())
}

/// Spin's mapping of a Redis reply to `redis-result`s (arrays are flattened).
fn to_results(value: Value, out: &mut Vec<RedisResult>) -> Result<(), Error> {
    match value {
        Value::Nil => out.push(RedisResult::Nil),
        Value::Int(i) => out.push(RedisResult::Int64(i)),
        Value::BulkString(bytes) => out.push(RedisResult::Binary(bytes)),
        Value::SimpleString(s) => out.push(RedisResult::Status(s)),
        Value::Okay => out.push(RedisResult::Status("OK".into())),
        Value::Array(values) | Value::Set(values) => {
            for value in values {
                to_results(value, out)?;
            }
        }
        Value::Boolean(b) => out.push(RedisResult::Int64(i64::from(b))),
        Value::Double(d) => out.push(RedisResult::Binary(d.to_string().into_bytes())),
        Value::VerbatimString { text, .. } => out.push(RedisResult::Binary(text.into_bytes())),
        Value::ServerError(e) => return Err(other(format!("{e:?}"))),
        other_value => return Err(other(format!("unsupported reply {other_value:?}"))),
    }
    Ok(())
}

impl spin_redis::Host for RedisState {}

impl spin_redis::HostConnection for RedisState {
    #[instrument(name = "spin_outbound_redis.open_connection", skip_all, fields(otel.kind = "client", db.system.name = "redis"))]
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, Error>> {
        if !self.rules.allows_address(&address, "redis") {
            tracing::warn!(address = %address, "redis address denied by allowed_outbound_hosts");
            return Ok(Err(Error::InvalidAddress));
        }
        let shared = match self.shared.get(&address).await {
            Ok(shared) => shared,
            Err(e) => return Ok(Err(e)),
        };
        let open = OpenConnection {
            address,
            shared,
            own: None,
        };
        Ok(Ok(self.table.push(open)?))
    }

    #[instrument(name = "spin_outbound_redis.publish", skip_all, fields(otel.kind = "client", db.system.name = "redis", otel.name = "PUBLISH"))]
    async fn publish(
        &mut self,
        handle: Resource<OpenConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let mut command = ::redis::cmd("PUBLISH");
        command.arg(channel).arg(payload);
        Ok(run::<i64>(&self.shared, self.connection(&handle), command)
            .await
            .map(drop))
    }

    #[instrument(name = "spin_outbound_redis.get", skip_all, fields(otel.kind = "client", db.system.name = "redis", otel.name = "GET"))]
    async fn get(
        &mut self,
        handle: Resource<OpenConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let mut command = ::redis::cmd("GET");
        command.arg(key);
        Ok(run(&self.shared, self.connection(&handle), command).await)
    }

    #[instrument(name = "spin_outbound_redis.set", skip_all, fields(otel.kind = "client", db.system.name = "redis", otel.name = "SET"))]
    async fn set(
        &mut self,
        handle: Resource<OpenConnection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let mut command = ::redis::cmd("SET");
        command.arg(key).arg(value);
        Ok(run::<()>(&self.shared, self.connection(&handle), command).await)
    }

    #[instrument(name = "spin_outbound_redis.incr", skip_all, fields(otel.kind = "client", db.system.name = "redis", otel.name = "INCR"))]
    async fn incr(
        &mut self,
        handle: Resource<OpenConnection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, Error>> {
        let mut command = ::redis::cmd("INCR");
        command.arg(key);
        Ok(run(&self.shared, self.connection(&handle), command).await)
    }

    #[instrument(name = "spin_outbound_redis.del", skip_all, fields(otel.kind = "client", db.system.name = "redis", otel.name = "DEL"))]
    async fn del(
        &mut self,
        handle: Resource<OpenConnection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        let mut command = ::redis::cmd("DEL");
        command.arg(keys);
        Ok(run(&self.shared, self.connection(&handle), command).await)
    }

    #[instrument(name = "spin_outbound_redis.sadd", skip_all, fields(otel.kind = "client", db.system.name = "redis", otel.name = "SADD"))]
    async fn sadd(
        &mut self,
        handle: Resource<OpenConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        let mut command = ::redis::cmd("SADD");
        command.arg(key).arg(values);
        Ok(run(&self.shared, self.connection(&handle), command).await)
    }

    #[instrument(name = "spin_outbound_redis.smembers", skip_all, fields(otel.kind = "client", db.system.name = "redis", otel.name = "SMEMBERS"))]
    async fn smembers(
        &mut self,
        handle: Resource<OpenConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let mut command = ::redis::cmd("SMEMBERS");
        command.arg(key);
        Ok(run(&self.shared, self.connection(&handle), command).await)
    }

    #[instrument(name = "spin_outbound_redis.srem", skip_all, fields(otel.kind = "client", db.system.name = "redis", otel.name = "SREM"))]
    async fn srem(
        &mut self,
        handle: Resource<OpenConnection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        let mut command = ::redis::cmd("SREM");
        command.arg(key).arg(values);
        Ok(run(&self.shared, self.connection(&handle), command).await)
    }

    #[instrument(name = "spin_outbound_redis.execute", skip_all, fields(otel.kind = "client", db.system.name = "redis", otel.name = %command_name))]
    async fn execute(
        &mut self,
        handle: Resource<OpenConnection>,
        command_name: String,
        arguments: Vec<RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<RedisResult>, Error>> {
        let mut command = ::redis::cmd(&command_name);
        for argument in arguments {
            match argument {
                RedisParameter::Int64(i) => command.arg(i),
                RedisParameter::Binary(bytes) => command.arg(bytes.to_redis_args()),
            };
        }
        let connection = if leaves_no_state(&command_name) {
            self.connection(&handle)
        } else {
            self.own_connection(&handle).await
        };
        let value = match run::<Value>(&self.shared, connection, command).await {
            Ok(value) => value,
            Err(e) => return Ok(Err(e)),
        };
        let mut results = Vec::new();
        Ok(to_results(value, &mut results).map(|()| results))
    }

    async fn drop(&mut self, handle: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spin_host_config::allowed_hosts::AllowedHosts;
    use spin_redis::HostConnection;
    use testkit::RedisServer;

    /// An instance's Redis state, allowed to reach any Redis, sharing `shared`.
    fn instance(shared: &Arc<SharedConnections>) -> RedisState {
        let allowed = AllowedHosts::new(&["redis://*:*"], &[]).unwrap();
        RedisState::new(Arc::new(OutboundRules::new(allowed)), shared.clone())
    }

    fn borrow(handle: &Resource<OpenConnection>) -> Resource<OpenConnection> {
        Resource::new_borrow(handle.rep())
    }

    async fn open(state: &mut RedisState, server: &RedisServer) -> Resource<OpenConnection> {
        state.open(server.address()).await.unwrap().unwrap()
    }

    async fn get(
        state: &mut RedisState,
        handle: &Resource<OpenConnection>,
        key: &str,
    ) -> Option<Vec<u8>> {
        let value = state.get(borrow(handle), key.into()).await.unwrap();
        value.expect("GET succeeds")
    }

    async fn set(
        state: &mut RedisState,
        handle: &Resource<OpenConnection>,
        key: &str,
        value: &str,
    ) {
        state
            .set(borrow(handle), key.into(), value.as_bytes().to_vec())
            .await
            .unwrap()
            .expect("SET succeeds");
    }

    /// Connections the server has accepted so far.
    fn connections_accepted(server: &RedisServer) -> u64 {
        let client = ::redis::Client::open(server.address()).unwrap();
        let info: String = ::redis::cmd("INFO")
            .arg("stats")
            .query(&mut client.get_connection().unwrap())
            .unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix("total_connections_received:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[tokio::test]
    async fn instances_share_one_connection_for_typed_commands_and_scripts() {
        let server = RedisServer::start();
        let shared = Arc::new(SharedConnections::default());
        let before = connections_accepted(&server);
        for round in 0..5 {
            let mut state = instance(&shared);
            let handle = open(&mut state, &server).await;
            let key = format!("k{round}");
            set(&mut state, &handle, &key, "v").await;
            state
                .publish(borrow(&handle), "c".into(), b"m".to_vec())
                .await
                .unwrap()
                .unwrap();
            let replies = state
                .execute(
                    borrow(&handle),
                    "eval".into(),
                    vec![
                        RedisParameter::Binary(b"return redis.call('INCR', KEYS[1])".to_vec()),
                        RedisParameter::Int64(1),
                        RedisParameter::Binary(b"calls".to_vec()),
                    ],
                )
                .await
                .unwrap()
                .unwrap();
            assert!(matches!(replies[..], [RedisResult::Int64(n)] if n == round + 1));
            assert_eq!(server.get(&key).as_deref(), Some("v"));
        }
        // One for the shared connection, one per `server.get` and one for this count's own.
        assert_eq!(connections_accepted(&server) - before, 1 + 5 + 1);
    }

    #[tokio::test]
    async fn a_handle_that_executes_gets_a_connection_of_its_own() {
        let server = RedisServer::start();
        let shared = Arc::new(SharedConnections::default());
        let mut first = instance(&shared);
        let handle = open(&mut first, &server).await;
        first
            .execute(
                borrow(&handle),
                "SELECT".into(),
                vec![RedisParameter::Int64(1)],
            )
            .await
            .unwrap()
            .unwrap();
        set(&mut first, &handle, "where", "db1").await;
        let mut second = instance(&shared);
        let other = open(&mut second, &server).await;
        assert_eq!(
            get(&mut second, &other, "where").await,
            None,
            "the SELECT stayed on the first handle's connection"
        );
        assert_eq!(
            get(&mut first, &handle, "where").await,
            Some(b"db1".to_vec())
        );
    }

    #[tokio::test]
    async fn a_failed_shared_connection_is_replaced_by_the_next_open() {
        let mut server = RedisServer::start();
        let shared = Arc::new(SharedConnections::default());
        let mut state = instance(&shared);
        let handle = open(&mut state, &server).await;
        server.restart();
        let failed = state.get(borrow(&handle), "k".into()).await.unwrap();
        assert!(
            failed.is_err(),
            "the old connection is gone with the server"
        );
        let mut next = instance(&shared);
        let handle = open(&mut next, &server).await;
        // A new connection, to the restarted server.
        set(&mut next, &handle, "k", "back").await;
        assert_eq!(server.get("k").as_deref(), Some("back"));
    }

    #[test]
    fn replies_map_like_spin() {
        let mut out = Vec::new();
        to_results(
            Value::Array(vec![
                Value::Int(3),
                Value::Nil,
                Value::BulkString(b"x".to_vec()),
                Value::Okay,
            ]),
            &mut out,
        )
        .unwrap();
        assert!(matches!(out[0], RedisResult::Int64(3)));
        assert!(matches!(out[1], RedisResult::Nil));
        assert!(matches!(&out[2], RedisResult::Binary(b) if b == b"x"));
        assert!(matches!(&out[3], RedisResult::Status(s) if s == "OK"));
    }
}
