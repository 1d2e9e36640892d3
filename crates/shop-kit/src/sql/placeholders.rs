//! SQLite's placeholders in PostgreSQL's form. Written by hand: the statements are the
//! project's own, and this is the one difference in how the two dialects take parameters.
//!
//! SQLite numbers `?N` explicitly and gives a bare `?` one more than the largest number used
//! before it; PostgreSQL wants `$N`. A `?` inside a quoted string or identifier is text and
//! stays.

use std::borrow::Cow;

/// `sql` with every placeholder as `$N`; borrowed when there is none.
pub fn numbered(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut largest = 0u32;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    digits.push(d);
                }
                let n = match digits.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => largest + 1,
                };
                largest = largest.max(n);
                out.push('$');
                out.push_str(&n.to_string());
                continue;
            }
            (None, _) => {}
        }
        out.push(c);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn bare_placeholders_count_up() {
        assert_eq!(
            numbered("UPDATE t SET a = ?, b = ? WHERE id = ?"),
            "UPDATE t SET a = $1, b = $2 WHERE id = $3"
        );
    }

    #[test]
    fn numbered_placeholders_keep_their_number_and_may_repeat() {
        assert_eq!(
            numbered("VALUES (?1, ?2, (SELECT max(x) FROM t WHERE p = ?2)) LIMIT ?10"),
            "VALUES ($1, $2, (SELECT max(x) FROM t WHERE p = $2)) LIMIT $10"
        );
    }

    #[test]
    fn a_bare_placeholder_follows_the_largest_number_before_it() {
        assert_eq!(numbered("?3, ?, ?1, ?"), "$3, $4, $1, $5");
    }

    #[test]
    fn quoted_question_marks_are_text() {
        assert_eq!(
            numbered("SELECT '?', \"a?\" FROM t WHERE x = ? AND y = 'it''s?'"),
            "SELECT '?', \"a?\" FROM t WHERE x = $1 AND y = 'it''s?'"
        );
        assert!(matches!(
            numbered("SELECT 1"),
            std::borrow::Cow::Borrowed("SELECT 1")
        ));
    }
}
