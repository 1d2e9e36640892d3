//! The two interface versions the guest calls: conversions between their types and the shared
//! ones, and each call handed to `SqliteState` and the connection it names.

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker, Resource};

use super::connection::{execute, with_connection, DbConnection, Rows, SqlValue};
use super::{OpenDatabase, OpenError, SqliteState};
use crate::bindings::imports::fermyon::spin2_0_0::sqlite as v2;
use crate::bindings::imports::spin::sqlite::sqlite as v3;

/// Links `fermyon:spin/sqlite@2.0.0` and `spin:sqlite/sqlite@3.0.0` to the [`SqliteState`] that
/// `get` finds in the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut SqliteState,
) -> Result<()> {
    v2::add_to_linker::<_, HasSelf<SqliteState>>(linker, get)?;
    v3::add_to_linker::<_, HasSelf<SqliteState>>(linker, get)?;
    Ok(())
}

/// Generates the conversions between one interface version's types and the shared ones.
macro_rules! version_conversions {
    ($v:ident, $to_error:ident, $from_value:ident, $to_result:ident) => {
        fn $to_error(error: OpenError) -> $v::Error {
            match error {
                OpenError::NoSuchDatabase => $v::Error::NoSuchDatabase,
                OpenError::AccessDenied => $v::Error::AccessDenied,
                OpenError::InvalidConnection => $v::Error::InvalidConnection,
                OpenError::Io(message) => $v::Error::Io(message),
            }
        }

        fn $from_value(value: $v::Value) -> SqlValue {
            match value {
                $v::Value::Integer(i) => SqlValue::Integer(i),
                $v::Value::Real(f) => SqlValue::Real(f),
                $v::Value::Text(s) => SqlValue::Text(s),
                $v::Value::Blob(b) => SqlValue::Blob(b),
                $v::Value::Null => SqlValue::Null,
            }
        }

        fn $to_result(rows: Rows) -> $v::QueryResult {
            let to_value = |value: SqlValue| match value {
                SqlValue::Integer(i) => $v::Value::Integer(i),
                SqlValue::Real(f) => $v::Value::Real(f),
                SqlValue::Text(s) => $v::Value::Text(s),
                SqlValue::Blob(b) => $v::Value::Blob(b),
                SqlValue::Null => $v::Value::Null,
            };
            $v::QueryResult {
                columns: rows.columns,
                rows: rows
                    .rows
                    .into_iter()
                    .map(|values| $v::RowResult {
                        values: values.into_iter().map(to_value).collect(),
                    })
                    .collect(),
            }
        }
    };
}

version_conversions!(v2, v2_error, v2_value, v2_result);
version_conversions!(v3, v3_error, v3_value, v3_result);

impl v2::Host for SqliteState {}

impl v2::HostConnection for SqliteState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenDatabase>, v2::Error>> {
        Ok(SqliteState::open(self, database).await.map_err(v2_error))
    }

    async fn execute(
        &mut self,
        handle: Resource<OpenDatabase>,
        statement: String,
        parameters: Vec<v2::Value>,
    ) -> wasmtime::Result<Result<v2::QueryResult, v2::Error>> {
        let parameters = parameters.into_iter().map(v2_value).collect();
        Ok(execute(self.connection(&handle), statement, parameters)
            .await
            .map(v2_result)
            .map_err(v2_error))
    }

    async fn drop(&mut self, handle: Resource<OpenDatabase>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl v3::Host for SqliteState {}

impl v3::HostConnection for SqliteState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenDatabase>, v3::Error>> {
        Ok(SqliteState::open(self, database).await.map_err(v3_error))
    }

    async fn execute(
        &mut self,
        handle: Resource<OpenDatabase>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> wasmtime::Result<Result<v3::QueryResult, v3::Error>> {
        let parameters = parameters.into_iter().map(v3_value).collect();
        Ok(execute(self.connection(&handle), statement, parameters)
            .await
            .map(v3_result)
            .map_err(v3_error))
    }

    async fn last_insert_rowid(&mut self, handle: Resource<OpenDatabase>) -> wasmtime::Result<i64> {
        with_connection(self.connection(&handle), |c, _| c.last_insert_rowid())
    }

    async fn changes(&mut self, handle: Resource<OpenDatabase>) -> wasmtime::Result<u64> {
        with_connection(self.connection(&handle), DbConnection::changes)
    }

    async fn drop(&mut self, handle: Resource<OpenDatabase>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}
