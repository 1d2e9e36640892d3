//! `fermyon:spin/redis@2.0.0`: outbound Redis, checked against the component's
//! `allowed_outbound_hosts` (scheme `redis`, default port 6379) as Spin's `factor-outbound-redis`.
//! A denied or unparsable address is `invalid-address`, as in Spin.
//! Each operation runs in a client span named as Spin names it (`spin_outbound_redis.*`).

use std::collections::HashMap;
use std::sync::Arc;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncCommands, FromRedisValue, ToRedisArgs, Value};
use anyhow::Result;
use tracing::instrument;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use crate::bindings::imports::fermyon::spin2_0_0::redis::{
    self as spin_redis, Error, RedisParameter, RedisResult,
};
use crate::outbound_http::OutboundRules;
use crate::state::InstanceState;

/// An opened connection (the guest's `connection` resource).
pub struct OpenConnection {
    connection: MultiplexedConnection,
}

/// Per-instance state: the component's outbound rules, its open connections, and connections
/// already made in this instance, reused when the guest opens the same address again.
pub struct RedisState {
    rules: Arc<OutboundRules>,
    table: ResourceTable,
    by_address: HashMap<String, MultiplexedConnection>,
}

impl RedisState {
    pub fn new(rules: Arc<OutboundRules>) -> Self {
        Self {
            rules,
            table: ResourceTable::new(),
            by_address: HashMap::new(),
        }
    }

    fn connection(
        &self,
        handle: &Resource<OpenConnection>,
    ) -> Result<MultiplexedConnection, Error> {
        self.table
            .get(handle)
            .map(|open| open.connection.clone())
            .map_err(|e| Error::Other(e.to_string()))
    }
}

pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> Result<()> {
    spin_redis::add_to_linker::<_, HasSelf<RedisState>>(linker, |state| &mut state.redis)?;
    Ok(())
}

fn other(error: impl std::fmt::Display) -> Error {
    Error::Other(error.to_string())
}

/// Runs one command, turning Redis errors into the interface's error (type errors kept apart).
async fn run<T: FromRedisValue>(
    connection: Result<MultiplexedConnection, Error>,
    command: ::redis::Cmd,
) -> Result<T, Error> {
    let mut connection = connection?;
    command
        .query_async::<T>(&mut connection)
        .await
        .map_err(|e| match e.kind() {
            ::redis::ErrorKind::TypeError => Error::TypeError,
            _ => other(e),
        })
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
        let connection = match self.by_address.get(&address) {
            Some(connection) => connection.clone(),
            None => {
                let client = match ::redis::Client::open(address.as_str()) {
                    Ok(client) => client,
                    Err(_) => return Ok(Err(Error::InvalidAddress)),
                };
                match client.get_multiplexed_async_connection().await {
                    Ok(connection) => {
                        self.by_address.insert(address, connection.clone());
                        connection
                    }
                    Err(e) => return Ok(Err(other(e))),
                }
            }
        };
        Ok(Ok(self.table.push(OpenConnection { connection })?))
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
        Ok(run::<i64>(self.connection(&handle), command)
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
        Ok(run(self.connection(&handle), command).await)
    }

    #[instrument(name = "spin_outbound_redis.set", skip_all, fields(otel.kind = "client", db.system.name = "redis", otel.name = "SET"))]
    async fn set(
        &mut self,
        handle: Resource<OpenConnection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let result = match self.connection(&handle) {
            Ok(mut connection) => connection.set::<_, _, ()>(key, value).await.map_err(other),
            Err(e) => Err(e),
        };
        Ok(result)
    }

    #[instrument(name = "spin_outbound_redis.incr", skip_all, fields(otel.kind = "client", db.system.name = "redis", otel.name = "INCR"))]
    async fn incr(
        &mut self,
        handle: Resource<OpenConnection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, Error>> {
        let mut command = ::redis::cmd("INCR");
        command.arg(key);
        Ok(run(self.connection(&handle), command).await)
    }

    #[instrument(name = "spin_outbound_redis.del", skip_all, fields(otel.kind = "client", db.system.name = "redis", otel.name = "DEL"))]
    async fn del(
        &mut self,
        handle: Resource<OpenConnection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        let mut command = ::redis::cmd("DEL");
        command.arg(keys);
        Ok(run(self.connection(&handle), command).await)
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
        Ok(run(self.connection(&handle), command).await)
    }

    #[instrument(name = "spin_outbound_redis.smembers", skip_all, fields(otel.kind = "client", db.system.name = "redis", otel.name = "SMEMBERS"))]
    async fn smembers(
        &mut self,
        handle: Resource<OpenConnection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let mut command = ::redis::cmd("SMEMBERS");
        command.arg(key);
        Ok(run(self.connection(&handle), command).await)
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
        Ok(run(self.connection(&handle), command).await)
    }

    #[instrument(name = "spin_outbound_redis.execute", skip_all, fields(otel.kind = "client", db.system.name = "redis", otel.name = "EXECUTE"))]
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
        let value = match run::<Value>(self.connection(&handle), command).await {
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
