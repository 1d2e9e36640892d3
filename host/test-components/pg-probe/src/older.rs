//! `spin:postgres/postgres@3.0.0` and `fermyon:spin/postgres@2.0.0`: values and errors in their
//! debug form.

use serde_json::{json, Value};

use crate::{error, params, statement};

macro_rules! runner {
    ($name:ident, $module:path, [$($case:literal => $variant:ident($($conv:tt)*)),* $(,)?]) => {
        pub(crate) fn $name(address: &str, ops: &[Value]) -> Value {
            use $module as pg;
            let connection = match pg::Connection::open(address) {
                Ok(connection) => connection,
                Err(e) => return json!({ "open": error("debug", format!("{e:?}")) }),
            };
            let results: Vec<Value> = ops
                .iter()
                .map(|op| {
                    let (is_query, sql) = statement(op);
                    let params: Option<Vec<pg::ParameterValue>> = params(op)
                        .into_iter()
                        .map(|(name, v)| Some(match name.as_str() {
                            $($case => pg::ParameterValue::$variant($($conv)*(&v)?),)*
                            "db-null" => pg::ParameterValue::DbNull,
                            _ => return None,
                        }))
                        .collect();
                    let Some(params) = params else {
                        return error("probe", "unknown parameter");
                    };
                    if is_query {
                        match connection.query(sql, &params) {
                            Ok(rows) => json!({
                                "columns": rows.columns.iter().map(|c| json!([c.name, format!("{:?}", c.data_type)])).collect::<Vec<_>>(),
                                "rows": rows.rows.iter().map(|r| r.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>()).collect::<Vec<_>>(),
                            }),
                            Err(e) => error("debug", format!("{e:?}")),
                        }
                    } else {
                        match connection.execute(sql, &params) {
                            Ok(n) => json!({ "ok": n }),
                            Err(e) => error("debug", format!("{e:?}")),
                        }
                    }
                })
                .collect();
            json!({ "results": results })
        }
    };
}

fn int<T: TryFrom<i64>>(v: &Value) -> Option<T> {
    T::try_from(v.as_i64()?).ok()
}

fn uint<T: TryFrom<u64>>(v: &Value) -> Option<T> {
    T::try_from(v.as_u64()?).ok()
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn date(v: &Value) -> Option<(i32, u8, u8)> {
    Some((int(&v[0])?, uint(&v[1])?, uint(&v[2])?))
}

runner!(run_v3, spin_sdk::pg3, [
    "boolean" => Boolean(Value::as_bool),
    "int16" => Int16(int),
    "int32" => Int32(int),
    "int64" => Int64(Value::as_i64),
    "floating64" => Floating64(Value::as_f64),
    "str" => Str(text),
    "date" => Date(date),
    "timestamp" => Timestamp(Value::as_i64),
]);

runner!(run_v2, spin_sdk::pg, [
    "boolean" => Boolean(Value::as_bool),
    "int16" => Int16(int),
    "int32" => Int32(int),
    "int64" => Int64(Value::as_i64),
    "uint32" => Uint32(uint),
    "str" => Str(text),
]);
