//! Values between the guest's `spin:postgres/postgres@4.0.0` types and `tokio-postgres`, as Spin's
//! `factor-outbound-pg` converts them (`types.rs`, `types/*.rs`), and the maps from the older
//! interfaces (`spin:postgres@3.0.0`, `fermyon:spin/postgres@2.0.0`) to those of 4.0.0 and back
//! (Spin's `spin-world` conversions): every version runs through the one 4.0.0 client, so the
//! versions differ only where their types do.

use anyhow::{anyhow, Context};
use bytes::{Buf, BufMut, BytesMut};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};
use tokio_postgres::Row;

use crate::bindings::imports::fermyon::spin2_0_0::rdbms_types as v2;
use crate::bindings::imports::spin::postgres3_0_0::postgres as v3;
use crate::bindings::imports::spin::postgres4_0_0::postgres as v4;
use v4::{DbDataType, DbValue, ParameterValue, RangeBoundKind};

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// The column type the guest is told, from the column's Postgres type.
pub fn convert_data_type(pg_type: &Type) -> DbDataType {
    match *pg_type {
        Type::BOOL => DbDataType::Boolean,
        Type::BYTEA => DbDataType::Binary,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => DbDataType::Str,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::UUID => DbDataType::Uuid,
        Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_RANGE => DbDataType::RangeInt32,
        Type::INT8_RANGE => DbDataType::RangeInt64,
        Type::NUM_RANGE => DbDataType::RangeDecimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DbDataType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => DbDataType::ArrayStr,
        Type::INTERVAL => DbDataType::Interval,
        _ => DbDataType::Other(pg_type.name().to_owned()),
    }
}

/// Reads column `index` as `T`, mapping a NULL to `db-null`.
fn value<'a, T: FromSql<'a>>(
    row: &'a Row,
    index: usize,
    convert: impl FnOnce(T) -> anyhow::Result<DbValue>,
) -> anyhow::Result<DbValue> {
    match row.try_get::<_, Option<T>>(index)? {
        Some(v) => convert(v),
        None => Ok(DbValue::DbNull),
    }
}

/// One value of a row. `timestamptz` is read as a naive date-time, which `tokio-postgres`
/// refuses, so such a column fails the query, as in Spin.
pub fn convert_entry(row: &Row, index: usize) -> anyhow::Result<DbValue> {
    let column = &row.columns()[index];
    match *column.type_() {
        Type::BOOL => value(row, index, |v| Ok(DbValue::Boolean(v))),
        Type::BYTEA => value(row, index, |v| Ok(DbValue::Binary(v))),
        Type::FLOAT4 => value(row, index, |v| Ok(DbValue::Floating32(v))),
        Type::FLOAT8 => value(row, index, |v| Ok(DbValue::Floating64(v))),
        Type::INT2 => value(row, index, |v| Ok(DbValue::Int16(v))),
        Type::INT4 => value(row, index, |v| Ok(DbValue::Int32(v))),
        Type::INT8 => value(row, index, |v| Ok(DbValue::Int64(v))),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => value(row, index, |v| Ok(DbValue::Str(v))),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => value(row, index, |v: chrono::NaiveDateTime| {
            datetime_pg_to_wit(v).map(DbValue::Datetime)
        }),
        Type::DATE => value(row, index, |v| date_pg_to_wit(v).map(DbValue::Date)),
        Type::TIME => value(row, index, |v| time_pg_to_wit(v).map(DbValue::Time)),
        Type::UUID => value(row, index, |v: uuid::Uuid| Ok(DbValue::Uuid(v.to_string()))),
        Type::JSONB => value(row, index, |v: serde_json::Value| {
            serde_json::to_vec(&v)
                .context("invalid JSON from database")
                .map(DbValue::Jsonb)
        }),
        Type::NUMERIC => value(row, index, |v: rust_decimal::Decimal| {
            Ok(DbValue::Decimal(v.to_string()))
        }),
        Type::INT4_RANGE => value(row, index, |v| Ok(DbValue::RangeInt32(range_pg_to_wit(v)))),
        Type::INT8_RANGE => value(row, index, |v| Ok(DbValue::RangeInt64(range_pg_to_wit(v)))),
        Type::NUM_RANGE => value(row, index, |v: postgres_range::Range<RangeableDecimal>| {
            let bound = |b: &(RangeableDecimal, RangeBoundKind)| (b.0 .0.to_string(), b.1);
            let (lower, upper) = range_pg_to_wit(v);
            Ok(DbValue::RangeDecimal((
                lower.as_ref().map(bound),
                upper.as_ref().map(bound),
            )))
        }),
        Type::INT4_ARRAY => value(row, index, |v| Ok(DbValue::ArrayInt32(v))),
        Type::INT8_ARRAY => value(row, index, |v| Ok(DbValue::ArrayInt64(v))),
        Type::NUMERIC_ARRAY => value(row, index, |v: Vec<Option<rust_decimal::Decimal>>| {
            Ok(DbValue::ArrayDecimal(
                v.into_iter().map(|d| d.map(|d| d.to_string())).collect(),
            ))
        }),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
            value(row, index, |v| Ok(DbValue::ArrayStr(v)))
        }
        Type::INTERVAL => value(row, index, |v: Interval| Ok(DbValue::Interval(v.0))),
        _ => value(row, index, |v: Other| Ok(DbValue::Unsupported(v.0))),
    }
}

/// What a value counts towards Spin's 128 MiB limit on a buffered result (its `memory_size`).
pub fn memory_size(value: &DbValue) -> usize {
    let base = std::mem::size_of::<DbValue>();
    base + match value {
        DbValue::ArrayInt32(v) => v.len() * std::mem::size_of::<Option<i32>>(),
        DbValue::ArrayInt64(v) => v.len() * std::mem::size_of::<Option<i64>>(),
        DbValue::ArrayDecimal(v) | DbValue::ArrayStr(v) => v
            .iter()
            .map(|s| std::mem::size_of::<Option<String>>() + s.as_ref().map_or(0, String::len))
            .sum(),
        DbValue::Str(s) | DbValue::Uuid(s) | DbValue::Decimal(s) => s.len(),
        DbValue::Jsonb(b) | DbValue::Binary(b) | DbValue::Unsupported(b) => b.len(),
        _ => 0,
    }
}

/// A guest's parameter as a value `tokio-postgres` can bind. Spin binds `str` as text, `binary`
/// as `bytea` and so on: Postgres then refuses a parameter of a type its placeholder can't take.
pub fn to_sql_parameter(value: &ParameterValue) -> anyhow::Result<Box<dyn ToSql + Send + Sync>> {
    Ok(match value {
        ParameterValue::Boolean(v) => Box::new(*v),
        ParameterValue::Int32(v) => Box::new(*v),
        ParameterValue::Int64(v) => Box::new(*v),
        ParameterValue::Int8(v) => Box::new(*v),
        ParameterValue::Int16(v) => Box::new(*v),
        ParameterValue::Floating32(v) => Box::new(*v),
        ParameterValue::Floating64(v) => Box::new(*v),
        ParameterValue::Str(v) => Box::new(v.clone()),
        ParameterValue::Binary(v) => Box::new(v.clone()),
        ParameterValue::Date(v) => Box::new(date_wit_to_pg(v)?),
        ParameterValue::Time(v) => Box::new(time_wit_to_pg(v)?),
        ParameterValue::Datetime(v) => Box::new(datetime_wit_to_pg(v)?),
        ParameterValue::Timestamp(v) => Box::new(
            chrono::DateTime::<chrono::Utc>::from_timestamp(*v, 0)
                .ok_or_else(|| anyhow!("invalid epoch timestamp {v}"))?,
        ),
        ParameterValue::Uuid(v) => {
            Box::new(uuid::Uuid::parse_str(v).with_context(|| format!("invalid UUID {v}"))?)
        }
        ParameterValue::Jsonb(v) => Box::new(
            serde_json::from_slice::<serde_json::Value>(v)
                .with_context(|| format!("invalid JSON {}", String::from_utf8_lossy(v)))?,
        ),
        ParameterValue::Decimal(v) => Box::new(decimal(v)?),
        ParameterValue::RangeInt32((lower, upper)) => Box::new(range_wit_to_pg(*lower, *upper)),
        ParameterValue::RangeInt64((lower, upper)) => Box::new(range_wit_to_pg(*lower, *upper)),
        ParameterValue::RangeDecimal((lower, upper)) => {
            let bound = |b: &Option<(String, RangeBoundKind)>| {
                b.as_ref()
                    .map(|(v, kind)| decimal(v).map(|d| (RangeableDecimal(d), *kind)))
                    .transpose()
            };
            Box::new(range_wit_to_pg(bound(lower)?, bound(upper)?))
        }
        ParameterValue::ArrayInt32(v) => Box::new(v.clone()),
        ParameterValue::ArrayInt64(v) => Box::new(v.clone()),
        ParameterValue::ArrayDecimal(v) => Box::new(
            v.iter()
                .map(|d| d.as_deref().map(decimal).transpose())
                .collect::<anyhow::Result<Vec<_>>>()?,
        ),
        ParameterValue::ArrayStr(v) => Box::new(v.clone()),
        ParameterValue::Interval(v) => Box::new(Interval(*v)),
        ParameterValue::DbNull => Box::new(PgNull),
    })
}

fn decimal(value: &str) -> anyhow::Result<rust_decimal::Decimal> {
    rust_decimal::Decimal::from_str_exact(value).with_context(|| format!("invalid decimal {value}"))
}

type WitBound<T> = Option<(T, RangeBoundKind)>;

fn range_pg_to_wit<T: Clone + postgres_range::Normalizable + PartialOrd>(
    range: postgres_range::Range<T>,
) -> (WitBound<T>, WitBound<T>) {
    fn kind(bound: postgres_range::BoundType) -> RangeBoundKind {
        match bound {
            postgres_range::BoundType::Inclusive => RangeBoundKind::Inclusive,
            postgres_range::BoundType::Exclusive => RangeBoundKind::Exclusive,
        }
    }
    (
        range.lower().map(|b| (b.value.clone(), kind(b.type_))),
        range.upper().map(|b| (b.value.clone(), kind(b.type_))),
    )
}

fn range_wit_to_pg<T: postgres_range::Normalizable + PartialOrd>(
    lower: WitBound<T>,
    upper: WitBound<T>,
) -> postgres_range::Range<T> {
    fn bound<S: postgres_range::BoundSided, T: PartialOrd>(
        (value, kind): (T, RangeBoundKind),
    ) -> postgres_range::RangeBound<S, T> {
        let kind = match kind {
            RangeBoundKind::Inclusive => postgres_range::BoundType::Inclusive,
            RangeBoundKind::Exclusive => postgres_range::BoundType::Exclusive,
        };
        postgres_range::RangeBound::new(value, kind)
    }
    postgres_range::Range::new(lower.map(bound), upper.map(bound))
}

fn datetime_pg_to_wit(v: chrono::NaiveDateTime) -> anyhow::Result<(i32, u8, u8, u8, u8, u8, u32)> {
    let (y, mo, d) = date_pg_to_wit(v.date())?;
    let (h, mi, s, ns) = time_pg_to_wit(v.time())?;
    Ok((y, mo, d, h, mi, s, ns))
}

fn datetime_wit_to_pg(
    (y, mon, d, h, min, s, ns): &(i32, u8, u8, u8, u8, u8, u32),
) -> anyhow::Result<chrono::NaiveDateTime> {
    let date = date_wit_to_pg(&(*y, *mon, *d))?;
    let time = time_wit_to_pg(&(*h, *min, *s, *ns))?;
    Ok(chrono::NaiveDateTime::new(date, time))
}

fn date_pg_to_wit(v: chrono::NaiveDate) -> anyhow::Result<(i32, u8, u8)> {
    use chrono::Datelike;
    Ok((v.year(), v.month().try_into()?, v.day().try_into()?))
}

fn date_wit_to_pg((y, mon, d): &(i32, u8, u8)) -> anyhow::Result<chrono::NaiveDate> {
    chrono::NaiveDate::from_ymd_opt(*y, (*mon).into(), (*d).into())
        .ok_or_else(|| anyhow!("invalid date y={y}, m={mon}, d={d}"))
}

fn time_pg_to_wit(v: chrono::NaiveTime) -> anyhow::Result<(u8, u8, u8, u32)> {
    use chrono::Timelike;
    Ok((
        v.hour().try_into()?,
        v.minute().try_into()?,
        v.second().try_into()?,
        v.nanosecond(),
    ))
}

fn time_wit_to_pg((h, min, s, ns): &(u8, u8, u8, u32)) -> anyhow::Result<chrono::NaiveTime> {
    chrono::NaiveTime::from_hms_nano_opt((*h).into(), (*min).into(), (*s).into(), *ns)
        .ok_or_else(|| anyhow!("invalid time {h}:{min}:{s}:{ns}"))
}

/// A decimal that can bound a range: `numrange` is continuous, so bounds are kept as written.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
struct RangeableDecimal(rust_decimal::Decimal);

impl ToSql for RangeableDecimal {
    tokio_postgres::types::to_sql_checked!();
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.0.to_sql(ty, out)
    }
    fn accepts(ty: &Type) -> bool {
        <rust_decimal::Decimal as ToSql>::accepts(ty)
    }
}

impl FromSql<'_> for RangeableDecimal {
    fn from_sql(ty: &Type, raw: &[u8]) -> Result<Self, BoxError> {
        rust_decimal::Decimal::from_sql(ty, raw).map(Self)
    }
    fn accepts(ty: &Type) -> bool {
        <rust_decimal::Decimal as FromSql>::accepts(ty)
    }
}

impl postgres_range::Normalizable for RangeableDecimal {
    fn normalize<S: postgres_range::BoundSided>(
        bound: postgres_range::RangeBound<S, Self>,
    ) -> postgres_range::RangeBound<S, Self> {
        bound
    }
}

/// `interval` in Postgres's binary form: microseconds, days, months.
struct Interval(v4::Interval);

impl std::fmt::Debug for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ToSql for Interval {
    tokio_postgres::types::to_sql_checked!();
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_i64(self.0.micros);
        out.put_i32(self.0.days);
        out.put_i32(self.0.months);
        Ok(IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

impl FromSql<'_> for Interval {
    fn from_sql(_ty: &Type, mut raw: &[u8]) -> Result<Self, BoxError> {
        if raw.len() != 16 {
            return Err("unexpected binary format for Postgres INTERVAL".into());
        }
        let micros = raw.get_i64();
        let days = raw.get_i32();
        let months = raw.get_i32();
        Ok(Self(v4::Interval {
            micros,
            days,
            months,
        }))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

/// Any other type, returned to the guest as its raw binary form (`unsupported`).
struct Other(Vec<u8>);

impl FromSql<'_> for Other {
    fn from_sql(_ty: &Type, raw: &[u8]) -> Result<Self, BoxError> {
        Ok(Self(raw.to_owned()))
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// `db-null`: a NULL that any placeholder accepts. (`Option::<T>::None` would be checked
/// against the placeholder's type, and the guest gives no type with its null.)
#[derive(Debug)]
struct PgNull;

impl ToSql for PgNull {
    fn to_sql(&self, _ty: &Type, _out: &mut BytesMut) -> Result<IsNull, BoxError> {
        Ok(IsNull::Yes)
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
    fn to_sql_checked(&self, _ty: &Type, _out: &mut BytesMut) -> Result<IsNull, BoxError> {
        Ok(IsNull::Yes)
    }
}

// Older interfaces, mapped onto 4.0.0 as Spin maps them: types a version lacks read as
// `unsupported` / `other`, and a query error keeps only its text.

fn query_error_text(error: v4::QueryError) -> String {
    match error {
        v4::QueryError::Text(text) => text,
        v4::QueryError::DbError(e) => e.as_text,
    }
}

pub fn v3_param(value: v3::ParameterValue) -> ParameterValue {
    use v3::ParameterValue as P;
    match value {
        P::Boolean(b) => ParameterValue::Boolean(b),
        P::Int8(i) => ParameterValue::Int8(i),
        P::Int16(i) => ParameterValue::Int16(i),
        P::Int32(i) => ParameterValue::Int32(i),
        P::Int64(i) => ParameterValue::Int64(i),
        P::Floating32(r) => ParameterValue::Floating32(r),
        P::Floating64(r) => ParameterValue::Floating64(r),
        P::Str(s) => ParameterValue::Str(s),
        P::Binary(b) => ParameterValue::Binary(b),
        P::Date(d) => ParameterValue::Date(d),
        P::Datetime(dt) => ParameterValue::Datetime(dt),
        P::Time(t) => ParameterValue::Time(t),
        P::Timestamp(t) => ParameterValue::Timestamp(t),
        P::DbNull => ParameterValue::DbNull,
    }
}

pub fn v3_error(error: v4::Error) -> v3::Error {
    match error {
        v4::Error::ConnectionFailed(e) => v3::Error::ConnectionFailed(e),
        v4::Error::BadParameter(e) => v3::Error::BadParameter(e),
        v4::Error::QueryFailed(e) => v3::Error::QueryFailed(query_error_text(e)),
        v4::Error::ValueConversionFailed(e) => v3::Error::ValueConversionFailed(e),
        v4::Error::Other(e) => v3::Error::Other(e),
    }
}

pub fn v3_row_set(rows: v4::RowSet) -> v3::RowSet {
    let data_type = |t: DbDataType| match t {
        DbDataType::Boolean => v3::DbDataType::Boolean,
        DbDataType::Int8 => v3::DbDataType::Int8,
        DbDataType::Int16 => v3::DbDataType::Int16,
        DbDataType::Int32 => v3::DbDataType::Int32,
        DbDataType::Int64 => v3::DbDataType::Int64,
        DbDataType::Floating32 => v3::DbDataType::Floating32,
        DbDataType::Floating64 => v3::DbDataType::Floating64,
        DbDataType::Str => v3::DbDataType::Str,
        DbDataType::Binary => v3::DbDataType::Binary,
        DbDataType::Date => v3::DbDataType::Date,
        DbDataType::Datetime => v3::DbDataType::Datetime,
        DbDataType::Time => v3::DbDataType::Time,
        DbDataType::Timestamp => v3::DbDataType::Timestamp,
        _ => v3::DbDataType::Other,
    };
    let value = |v: DbValue| match v {
        DbValue::Boolean(b) => v3::DbValue::Boolean(b),
        DbValue::Int8(i) => v3::DbValue::Int8(i),
        DbValue::Int16(i) => v3::DbValue::Int16(i),
        DbValue::Int32(i) => v3::DbValue::Int32(i),
        DbValue::Int64(i) => v3::DbValue::Int64(i),
        DbValue::Floating32(r) => v3::DbValue::Floating32(r),
        DbValue::Floating64(r) => v3::DbValue::Floating64(r),
        DbValue::Str(s) => v3::DbValue::Str(s),
        DbValue::Binary(b) => v3::DbValue::Binary(b),
        DbValue::Date(d) => v3::DbValue::Date(d),
        DbValue::Datetime(dt) => v3::DbValue::Datetime(dt),
        DbValue::Time(t) => v3::DbValue::Time(t),
        DbValue::Timestamp(t) => v3::DbValue::Timestamp(t),
        DbValue::DbNull => v3::DbValue::DbNull,
        _ => v3::DbValue::Unsupported,
    };
    v3::RowSet {
        columns: rows
            .columns
            .into_iter()
            .map(|c| v3::Column {
                name: c.name,
                data_type: data_type(c.data_type),
            })
            .collect(),
        rows: rows
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(value).collect())
            .collect(),
    }
}

/// `fermyon:spin/rdbms-types` parameters; Postgres has no unsigned integers.
pub fn v2_param(value: v2::ParameterValue) -> Result<ParameterValue, v2::Error> {
    use v2::ParameterValue as P;
    Ok(match value {
        P::Boolean(b) => ParameterValue::Boolean(b),
        P::Int8(i) => ParameterValue::Int8(i),
        P::Int16(i) => ParameterValue::Int16(i),
        P::Int32(i) => ParameterValue::Int32(i),
        P::Int64(i) => ParameterValue::Int64(i),
        P::Uint8(_) | P::Uint16(_) | P::Uint32(_) | P::Uint64(_) => {
            return Err(v2::Error::ValueConversionFailed(
                "Postgres does not support unsigned integers".to_owned(),
            ))
        }
        P::Floating32(r) => ParameterValue::Floating32(r),
        P::Floating64(r) => ParameterValue::Floating64(r),
        P::Str(s) => ParameterValue::Str(s),
        P::Binary(b) => ParameterValue::Binary(b),
        P::DbNull => ParameterValue::DbNull,
    })
}

pub fn v2_error(error: v4::Error) -> v2::Error {
    match error {
        v4::Error::ConnectionFailed(e) => v2::Error::ConnectionFailed(e),
        v4::Error::BadParameter(e) => v2::Error::BadParameter(e),
        v4::Error::QueryFailed(e) => v2::Error::QueryFailed(query_error_text(e)),
        v4::Error::ValueConversionFailed(e) => v2::Error::ValueConversionFailed(e),
        v4::Error::Other(e) => v2::Error::Other(e),
    }
}

pub fn v2_row_set(rows: v4::RowSet) -> v2::RowSet {
    let data_type = |t: DbDataType| match t {
        DbDataType::Boolean => v2::DbDataType::Boolean,
        DbDataType::Int8 => v2::DbDataType::Int8,
        DbDataType::Int16 => v2::DbDataType::Int16,
        DbDataType::Int32 => v2::DbDataType::Int32,
        DbDataType::Int64 => v2::DbDataType::Int64,
        DbDataType::Floating32 => v2::DbDataType::Floating32,
        DbDataType::Floating64 => v2::DbDataType::Floating64,
        DbDataType::Str => v2::DbDataType::Str,
        DbDataType::Binary => v2::DbDataType::Binary,
        _ => v2::DbDataType::Other,
    };
    let value = |v: DbValue| match v {
        DbValue::Boolean(b) => v2::DbValue::Boolean(b),
        DbValue::Int8(i) => v2::DbValue::Int8(i),
        DbValue::Int16(i) => v2::DbValue::Int16(i),
        DbValue::Int32(i) => v2::DbValue::Int32(i),
        DbValue::Int64(i) => v2::DbValue::Int64(i),
        DbValue::Floating32(r) => v2::DbValue::Floating32(r),
        DbValue::Floating64(r) => v2::DbValue::Floating64(r),
        DbValue::Str(s) => v2::DbValue::Str(s),
        DbValue::Binary(b) => v2::DbValue::Binary(b),
        DbValue::DbNull => v2::DbValue::DbNull,
        _ => v2::DbValue::Unsupported,
    };
    v2::RowSet {
        columns: rows
            .columns
            .into_iter()
            .map(|c| v2::Column {
                name: c.name,
                data_type: data_type(c.data_type),
            })
            .collect(),
        rows: rows
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(value).collect())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_parameter_is_seconds_since_the_epoch() {
        let param = to_sql_parameter(&ParameterValue::Timestamp(-86_400)).unwrap();
        assert_eq!(format!("{param:?}"), "1969-12-31T00:00:00Z");
    }

    #[test]
    fn malformed_parameters_are_refused_with_spins_texts() {
        let error = |p| format!("{:#}", to_sql_parameter(&p).err().unwrap());
        assert!(error(ParameterValue::Uuid("nope".into())).starts_with("invalid UUID nope"));
        assert!(error(ParameterValue::Decimal("1.2.3".into())).starts_with("invalid decimal 1.2.3"));
        assert!(error(ParameterValue::Date((2024, 2, 30)))
            .starts_with("invalid date y=2024, m=2, d=30"));
        assert!(error(ParameterValue::Jsonb(b"{".to_vec())).starts_with("invalid JSON {"));
    }

    #[test]
    fn unsigned_integers_are_refused_for_postgres_2() {
        assert!(matches!(
            v2_param(v2::ParameterValue::Uint8(1)),
            Err(v2::Error::ValueConversionFailed(m)) if m == "Postgres does not support unsigned integers"
        ));
    }

    #[test]
    fn types_older_interfaces_lack_read_as_unsupported() {
        let rows = v4::RowSet {
            columns: vec![v4::Column {
                name: "u".into(),
                data_type: DbDataType::Uuid,
            }],
            rows: vec![vec![DbValue::Uuid("x".into()), DbValue::Date((2000, 1, 2))]],
        };
        let v3 = v3_row_set(rows.clone());
        assert!(matches!(v3.columns[0].data_type, v3::DbDataType::Other));
        assert!(matches!(
            v3.rows[0][..],
            [v3::DbValue::Unsupported, v3::DbValue::Date((2000, 1, 2))]
        ));
        let v2 = v2_row_set(rows);
        assert!(matches!(
            v2.rows[0][..],
            [v2::DbValue::Unsupported, v2::DbValue::Unsupported]
        ));
    }
}
