//! `spin:postgres/postgres@4.0.0`, every value as tagged JSON.

use serde_json::{json, Value};
use spin_sdk::pg4::{
    Connection, DbValue, Interval, ParameterValue, PgError, QueryError, RangeBoundKind,
};

use crate::{error, params, statement};

pub(crate) fn run(address: &str, ops: &[Value]) -> Value {
    let connection = match Connection::open(address) {
        Ok(connection) => connection,
        Err(e) => return json!({ "open": error_json(e) }),
    };
    let results: Vec<Value> = ops
        .iter()
        .map(|op| {
            let (is_query, sql) = statement(op);
            let params = match params(op).into_iter().map(param).collect::<Option<Vec<_>>>() {
                Some(params) => params,
                None => return error("probe", "unknown parameter"),
            };
            if is_query {
                match connection.query(sql, &params) {
                    Ok(rows) => json!({
                        "columns": rows.columns.iter().map(|c| json!([c.name, format!("{:?}", c.data_type)])).collect::<Vec<_>>(),
                        "rows": rows.rows.iter().map(|r| r.iter().map(value).collect::<Vec<_>>()).collect::<Vec<_>>(),
                    }),
                    Err(e) => error_json(e),
                }
            } else {
                match connection.execute(sql, &params) {
                    Ok(n) => json!({ "ok": n }),
                    Err(e) => error_json(e),
                }
            }
        })
        .collect();
    json!({ "results": results })
}

fn error_json(e: PgError) -> Value {
    match e {
        PgError::ConnectionFailed(d) => error("connection-failed", d),
        PgError::BadParameter(d) => error("bad-parameter", d),
        PgError::ValueConversionFailed(d) => error("value-conversion-failed", d),
        PgError::Other(d) => error("other", d),
        PgError::QueryFailed(QueryError::Text(t)) => error("query-failed", json!({ "text": t })),
        PgError::QueryFailed(QueryError::DbError(db)) => error(
            "query-failed",
            json!({ "db-error": {
                "as-text": db.as_text, "severity": db.severity, "code": db.code,
                "message": db.message, "detail": db.detail, "extras": db.extras,
            }}),
        ),
    }
}

fn kind(k: RangeBoundKind) -> &'static str {
    match k {
        RangeBoundKind::Inclusive => "inclusive",
        RangeBoundKind::Exclusive => "exclusive",
    }
}

fn bound<T: Into<Value>>(b: Option<(T, RangeBoundKind)>) -> Value {
    b.map_or(Value::Null, |(v, k)| json!([v.into(), kind(k)]))
}

fn value(v: &DbValue) -> Value {
    match v.clone() {
        DbValue::Boolean(b) => json!({ "boolean": b }),
        DbValue::Int8(i) => json!({ "int8": i }),
        DbValue::Int16(i) => json!({ "int16": i }),
        DbValue::Int32(i) => json!({ "int32": i }),
        DbValue::Int64(i) => json!({ "int64": i }),
        DbValue::Floating32(f) => json!({ "floating32": f }),
        DbValue::Floating64(f) => json!({ "floating64": f }),
        DbValue::Str(s) => json!({ "str": s }),
        DbValue::Binary(b) => json!({ "binary": b }),
        DbValue::Date(d) => json!({ "date": [d.0, d.1, d.2] }),
        DbValue::Time(t) => json!({ "time": [t.0, t.1, t.2, t.3] }),
        DbValue::Datetime(t) => json!({ "datetime": [t.0, t.1, t.2, t.3, t.4, t.5, t.6] }),
        DbValue::Timestamp(t) => json!({ "timestamp": t }),
        DbValue::Uuid(s) => json!({ "uuid": s }),
        DbValue::Jsonb(b) => json!({ "jsonb": String::from_utf8_lossy(&b) }),
        DbValue::Decimal(s) => json!({ "decimal": s }),
        DbValue::RangeInt32((l, u)) => json!({ "range-int32": [bound(l), bound(u)] }),
        DbValue::RangeInt64((l, u)) => json!({ "range-int64": [bound(l), bound(u)] }),
        DbValue::RangeDecimal((l, u)) => json!({ "range-decimal": [bound(l), bound(u)] }),
        DbValue::ArrayInt32(a) => json!({ "array-int32": a }),
        DbValue::ArrayInt64(a) => json!({ "array-int64": a }),
        DbValue::ArrayDecimal(a) => json!({ "array-decimal": a }),
        DbValue::ArrayStr(a) => json!({ "array-str": a }),
        DbValue::Interval(i) => {
            json!({ "interval": { "micros": i.micros, "days": i.days, "months": i.months } })
        }
        DbValue::DbNull => json!({ "db-null": null }),
        DbValue::Unsupported(b) => json!({ "unsupported": b }),
    }
}

fn int<T: TryFrom<i64>>(v: &Value) -> Option<T> {
    T::try_from(v.as_i64()?).ok()
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn range_bound<T>(
    v: &Value,
    parse: impl Fn(&Value) -> Option<T>,
) -> Option<Option<(T, RangeBoundKind)>> {
    if v.is_null() {
        return Some(None);
    }
    let k = match v[1].as_str()? {
        "inclusive" => RangeBoundKind::Inclusive,
        _ => RangeBoundKind::Exclusive,
    };
    Some(Some((parse(&v[0])?, k)))
}

fn list<T>(v: &Value, parse: impl Fn(&Value) -> Option<T>) -> Option<Vec<Option<T>>> {
    v.as_array()?
        .iter()
        .map(|e| {
            if e.is_null() {
                Some(None)
            } else {
                parse(e).map(Some)
            }
        })
        .collect()
}

fn ints<const N: usize>(v: &Value) -> Option<[i64; N]> {
    let a = v.as_array()?;
    let mut out = [0; N];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = a.get(i)?.as_i64()?;
    }
    Some(out)
}

pub(crate) fn param((name, v): (String, Value)) -> Option<ParameterValue> {
    Some(match name.as_str() {
        "boolean" => ParameterValue::Boolean(v.as_bool()?),
        "int8" => ParameterValue::Int8(int(&v)?),
        "int16" => ParameterValue::Int16(int(&v)?),
        "int32" => ParameterValue::Int32(int(&v)?),
        "int64" => ParameterValue::Int64(v.as_i64()?),
        "floating32" => ParameterValue::Floating32(v.as_f64()? as f32),
        "floating64" => ParameterValue::Floating64(v.as_f64()?),
        "str" => ParameterValue::Str(text(&v)?),
        "binary" => ParameterValue::Binary(list(&v, int)?.into_iter().collect::<Option<_>>()?),
        "date" => {
            let [y, m, d] = ints(&v)?;
            ParameterValue::Date((y as i32, m as u8, d as u8))
        }
        "time" => {
            let [h, m, s, ns] = ints(&v)?;
            ParameterValue::Time((h as u8, m as u8, s as u8, ns as u32))
        }
        "datetime" => {
            let [y, mo, d, h, mi, s, ns] = ints(&v)?;
            ParameterValue::Datetime((
                y as i32, mo as u8, d as u8, h as u8, mi as u8, s as u8, ns as u32,
            ))
        }
        "timestamp" => ParameterValue::Timestamp(v.as_i64()?),
        "uuid" => ParameterValue::Uuid(text(&v)?),
        "jsonb" => ParameterValue::Jsonb(text(&v)?.into_bytes()),
        "decimal" => ParameterValue::Decimal(text(&v)?),
        "range-int32" => {
            ParameterValue::RangeInt32((range_bound(&v[0], int)?, range_bound(&v[1], int)?))
        }
        "range-int64" => {
            ParameterValue::RangeInt64((range_bound(&v[0], int)?, range_bound(&v[1], int)?))
        }
        "range-decimal" => {
            ParameterValue::RangeDecimal((range_bound(&v[0], text)?, range_bound(&v[1], text)?))
        }
        "array-int32" => ParameterValue::ArrayInt32(list(&v, int)?),
        "array-int64" => ParameterValue::ArrayInt64(list(&v, int)?),
        "array-decimal" => ParameterValue::ArrayDecimal(list(&v, text)?),
        "array-str" => ParameterValue::ArrayStr(list(&v, text)?),
        "interval" => ParameterValue::Interval(Interval {
            micros: v["micros"].as_i64()?,
            days: int(&v["days"])?,
            months: int(&v["months"])?,
        }),
        "db-null" => ParameterValue::DbNull,
        _ => return None,
    })
}
