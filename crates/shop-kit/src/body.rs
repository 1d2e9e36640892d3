//! JSON request bodies: size limit, object shape and field-by-field validation whose
//! errors name the offending field.

use serde_json::{Map, Value};

use crate::{ApiError, ErrorCode};

/// Largest request body any component accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Checks a request's `Content-Type`: bodies are JSON, so `application/json` or an
/// `application/*+json` type (parameters such as `charset` allowed). Anything else, or none,
/// is refused before the body is read, so a form or text body is never half-understood.
pub fn check_json_content_type(value: Option<&str>) -> Result<(), ApiError> {
    let json = value
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == mime::APPLICATION
                && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
        });
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "content-type: must be application/json, got {}",
                value.map_or("none".to_string(), |v| format!("`{v}`"))
            ),
        ))
    }
}

/// Parses a body that must be a JSON object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::invalid(
            "body",
            format!("larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("body", "must be a JSON object")),
        Err(e) => Err(ApiError::invalid("body", format!("invalid JSON: {e}"))),
    }
}

/// A JSON object under validation; `path` prefixes field names in error messages.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Self {
            map,
            path: String::new(),
        }
    }

    /// Validates a nested object found at `path` (e.g. `items[0]`).
    pub fn nested(value: &'a Value, path: String) -> Result<Self, ApiError> {
        match value {
            Value::Object(map) => Ok(Self { map, path }),
            _ => Err(ApiError::invalid(&path, "must be an object")),
        }
    }

    fn name(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    /// Rejects fields the API does not know, so typos do not pass silently.
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(unknown) => Err(ApiError::invalid(&self.name(unknown), "unknown field")),
            None => Ok(()),
        }
    }

    fn value(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// A required string whose length in characters lies in `min..=max`.
    pub fn string(&self, field: &str, min: usize, max: usize) -> Result<String, ApiError> {
        self.opt_string(field, min, max)?
            .ok_or_else(|| ApiError::invalid(&self.name(field), "is required"))
    }

    /// An optional string; when present its length must lie in `min..=max`.
    pub fn opt_string(
        &self,
        field: &str,
        min: usize,
        max: usize,
    ) -> Result<Option<String>, ApiError> {
        let Some(value) = self.value(field) else {
            return Ok(None);
        };
        let s = value
            .as_str()
            .ok_or_else(|| ApiError::invalid(&self.name(field), "must be a string"))?;
        let len = s.chars().count();
        if len < min || len > max {
            return Err(ApiError::invalid(
                &self.name(field),
                format!("length must be between {min} and {max}"),
            ));
        }
        Ok(Some(s.to_string()))
    }

    /// A required integer within `min..=max`.
    pub fn int(&self, field: &str, min: i64, max: i64) -> Result<i64, ApiError> {
        self.opt_int(field, min, max)?
            .ok_or_else(|| ApiError::invalid(&self.name(field), "is required"))
    }

    /// An optional integer; when present it must lie within `min..=max`.
    pub fn opt_int(&self, field: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(value) = self.value(field) else {
            return Ok(None);
        };
        let n = as_integer(value)
            .ok_or_else(|| ApiError::invalid(&self.name(field), "must be an integer"))?;
        if n < min || n > max {
            return Err(ApiError::invalid(
                &self.name(field),
                format!("must be between {min} and {max}"),
            ));
        }
        Ok(Some(n))
    }

    /// An optional number within `min..=max`.
    pub fn opt_number(&self, field: &str, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
        let Some(value) = self.value(field) else {
            return Ok(None);
        };
        let n = value
            .as_f64()
            .ok_or_else(|| ApiError::invalid(&self.name(field), "must be a number"))?;
        if !(min..=max).contains(&n) {
            return Err(ApiError::invalid(
                &self.name(field),
                format!("must be between {min} and {max}"),
            ));
        }
        Ok(Some(n))
    }

    /// An optional boolean.
    pub fn opt_bool(&self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.value(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::invalid(&self.name(field), "must be a boolean")),
        }
    }

    /// A required array with `min..=max` elements, each handed to `item` with its path.
    pub fn array<T>(
        &self,
        field: &str,
        min: usize,
        max: usize,
        mut item: impl FnMut(&'a Value, String) -> Result<T, ApiError>,
    ) -> Result<Vec<T>, ApiError> {
        let name = self.name(field);
        let values = self
            .value(field)
            .ok_or_else(|| ApiError::invalid(&name, "is required"))?
            .as_array()
            .ok_or_else(|| ApiError::invalid(&name, "must be an array"))?;
        if values.len() < min || values.len() > max {
            return Err(ApiError::invalid(
                &name,
                format!("must hold between {min} and {max} elements"),
            ));
        }
        values
            .iter()
            .enumerate()
            .map(|(i, v)| item(v, format!("{name}[{i}]")))
            .collect()
    }
}

/// An integer, also when written with a zero fraction (`2.0`): JSON and JSON Schema make no
/// difference, and clients generated from the OpenAPI documents may send either.
fn as_integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        let f = value.as_f64()?;
        // 2^63 is the first float beyond i64; `as` would saturate to i64::MAX.
        (f.fract() == 0.0 && f >= i64::MIN as f64 && f < 9_223_372_036_854_775_808.0)
            .then_some(f as i64)
    })
}

/// True for identifiers made of ASCII letters, digits, `_` and `-` (customer ids, tokens).
pub fn is_plain_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Validates a SKU: 1 to 64 characters of ASCII letters, digits, `-`, `_` and `.`,
/// starting with a letter or digit (e.g. `SKU-001`).
pub fn check_sku(field: &str, sku: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&sku.len())
        && sku.starts_with(|c: char| c.is_ascii_alphanumeric())
        && sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "must be 1-64 characters of letters, digits, '-', '_' or '.', starting with a letter or digit",
        ))
    }
}

/// Validates an order id: a hyphenated lower-case UUID, as orders issues them.
pub fn check_order_id(field: &str, id: &str) -> Result<(), ApiError> {
    let ok = id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(field, "must be an order id (UUID)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_json_content_types_are_accepted() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert_eq!(check_json_content_type(Some(ok)), Ok(()), "{ok}");
        }
        for bad in [
            None,
            Some(""),
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("text/json"),
            Some("application/jsonx"),
            Some("multipart/form-data; boundary=x"),
        ] {
            let error = check_json_content_type(bad).unwrap_err();
            assert_eq!(error.code, ErrorCode::UnsupportedMediaType, "{bad:?}");
            assert_eq!(error.code.status(), 415);
            assert!(
                error.message.starts_with("content-type: "),
                "{}",
                error.message
            );
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn bodies_must_be_small_json_objects() {
        assert!(parse_object(b"{}").is_ok());
        assert!(parse_object(b"[]").unwrap_err().message.starts_with("body"));
        assert!(parse_object(b"{").is_err());
        assert!(parse_object(&vec![b' '; MAX_BODY_BYTES + 1]).is_err());
    }

    #[test]
    fn field_errors_name_the_field() {
        let m = obj(json!({"name": 5, "n": 0, "items": [{"q": "x"}]}));
        let f = Fields::new(&m);
        assert!(f
            .string("name", 1, 3)
            .unwrap_err()
            .message
            .starts_with("name:"));
        assert!(f
            .string("missing", 1, 3)
            .unwrap_err()
            .message
            .contains("required"));
        assert!(f.int("n", 1, 10).unwrap_err().message.starts_with("n:"));
        let err = f
            .array("items", 1, 5, |v, path| {
                Fields::nested(v, path)?.int("q", 1, 2)
            })
            .unwrap_err();
        assert!(err.message.starts_with("items[0].q:"), "{}", err.message);
        assert!(f
            .only(&["name", "n"])
            .unwrap_err()
            .message
            .starts_with("items"));
    }

    #[test]
    fn ranges_are_inclusive() {
        let m = obj(json!({"a": "abc", "n": 1000, "r": 1.0, "e": []}));
        let f = Fields::new(&m);
        assert_eq!(f.string("a", 3, 3).unwrap(), "abc");
        assert_eq!(f.int("n", 1, 1000).unwrap(), 1000);
        let floats = obj(json!({"whole": 2.0, "half": 2.5, "huge": 1e19}));
        let floats = Fields::new(&floats);
        assert_eq!(floats.int("whole", 1, 3).unwrap(), 2);
        assert!(floats.int("half", 1, 3).is_err());
        assert!(floats.int("huge", 1, i64::MAX).is_err());
        assert_eq!(f.opt_number("r", 0.0, 1.0).unwrap(), Some(1.0));
        assert!(f.array("e", 1, 2, |_, _| Ok(())).is_err());
    }

    #[test]
    fn skus_and_ids_have_a_pattern() {
        assert!(check_sku("sku", "SKU-001").is_ok());
        assert!(check_sku("sku", "sku-1").is_ok());
        assert!(check_sku("sku", "a b").is_err());
        assert!(check_sku("sku", "-A").is_err());
        assert!(check_sku("sku", "").is_err());
        assert!(is_plain_id("cust_42-a"));
        assert!(check_order_id("id", "0190b5a4-7c3e-7d2a-9f00-1234567890ab").is_ok());
        assert!(check_order_id("id", "0190B5A4-7C3E-7D2A-9F00-1234567890AB").is_err());
        assert!(check_order_id("id", "nope").is_err());
        assert!(!is_plain_id("a b"));
    }
}
