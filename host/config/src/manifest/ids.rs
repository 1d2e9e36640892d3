//! Identifier types with Spin's naming rules (`spin-serde`'s `KebabId` / `LowerSnakeId`), so that a
//! manifest this host accepts is one Spin accepts, and the TOML error points at the bad name.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Checks Spin's identifier rules: one or more words joined by `delim`; each word starts with an
/// ASCII letter, is ASCII alphanumeric, and is all lower case or all upper case (`lower_only`
/// forbids upper-case words).
pub(crate) fn check_id(id: &str, delim: char, lower_only: bool) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty".into());
    }
    let wrong = if delim == '-' { '_' } else { '-' };
    if id.contains(wrong) {
        return Err(format!(
            "words must be separated with {delim:?}, not {wrong:?}"
        ));
    }
    for word in id.split(delim) {
        let mut chars = word.chars();
        let Some(first) = chars.next() else {
            return Err(format!("{delim:?}-separated words must not be empty"));
        };
        if !first.is_ascii_alphabetic() {
            return Err(format!(
                "{delim:?}-separated words must start with an ASCII letter; got {first:?}"
            ));
        }
        let upper = first.is_ascii_uppercase();
        for ch in chars {
            if !ch.is_ascii_alphanumeric() {
                return Err(format!(
                    "{delim:?}-separated words may only contain alphanumeric ASCII; got {ch:?}"
                ));
            }
            if ch.is_ascii_alphabetic() && ch.is_ascii_uppercase() != upper {
                return Err(format!(
                    "{delim:?}-separated words must be all lowercase or all UPPERCASE; got {word:?}"
                ));
            }
        }
        if lower_only && upper {
            return Err(format!("must be all lowercase; got {id:?}"));
        }
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The identifier as written in the manifest.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(&value).map_err(|why| format!("invalid {} {value:?}: {why}", $what))?;
                Ok(Self(value))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A component id: kebab-case words (`orders`, `payment-sim`), as Spin requires.
    ComponentId,
    "component id",
    |s| check_id(s, '-', false)
);

id_type!(
    /// An application or component variable name: lower-case snake_case words (`api_key`).
    /// Spin requires this so names map onto `SPIN_VARIABLE_<NAME>` environment variables.
    VariableName,
    "variable name",
    |s| check_id(s, '_', true)
);

id_type!(
    /// A key-value store or SQLite database label: kebab-case or snake_case (`default`, `orders_db`).
    StoreLabel,
    "store label",
    |s| check_id(s, '-', false).or_else(|_| {
        check_id(s, '_', false).map_err(|_| "expected kebab-case or snake_case".to_string())
    })
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_ids() {
        assert!(ComponentId::try_from("payment-sim".to_string()).is_ok());
        assert!(ComponentId::try_from("orders2".to_string()).is_ok());
        assert!(ComponentId::try_from("HTTP-api".to_string()).is_ok());
        let err = ComponentId::try_from("bad_id".to_string()).unwrap_err();
        assert!(
            err.starts_with("invalid component id \"bad_id\":") && err.contains("not '_'"),
            "{err}"
        );
        let err = ComponentId::try_from("1-2-3".to_string()).unwrap_err();
        assert!(err.contains("start with an ASCII letter"), "{err}");
        let err = ComponentId::try_from("a--b".to_string()).unwrap_err();
        assert!(err.contains("must not be empty"), "{err}");
        let err = ComponentId::try_from("mIxed".to_string()).unwrap_err();
        assert!(err.contains("all lowercase or all UPPERCASE"), "{err}");
        assert!(ComponentId::try_from(String::new()).is_err());
    }

    #[test]
    fn variable_names() {
        assert!(VariableName::try_from("api_key2".to_string()).is_ok());
        for bad in ["API_KEY", "bad+name", "_x", "x_", "a__b", "2x", "a-b"] {
            assert!(
                VariableName::try_from(bad.to_string()).is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn store_labels() {
        for good in ["default", "orders-db", "orders_db"] {
            assert!(StoreLabel::try_from(good.to_string()).is_ok(), "{good}");
        }
        let err = StoreLabel::try_from("a_b-c".to_string()).unwrap_err();
        assert!(err.contains("kebab-case or snake_case"), "{err}");
    }
}
