//! Versioned schema migrations, embedded in each component and applied when it opens its
//! database. The schema version lives in SQLite's `PRAGMA user_version` or PostgreSQL's
//! `schema_version` table (`sql`), so a database that is up to date costs one read per instance,
//! inside its first transaction when that comes first.

/// One migration file, `migrations/<function>/NNNN_name.sql` (SQLite) or
/// `migrations/<function>/postgres/NNNN_name.sql`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// What a database must offer for migrations.
pub trait SchemaDb {
    fn user_version(&mut self) -> anyhow::Result<i64>;
    /// Applies `statements` and sets the version to `version` in one transaction, unless
    /// another instance got there first (the version is re-read inside the transaction).
    fn apply(&mut self, version: i64, statements: &[&str]) -> anyhow::Result<()>;
}

/// Splits a migration file into statements: `;` ends a statement, `--` starts a comment.
pub fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .map(|line| line.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Brings `db` to the newest version in `migrations`; returns the resulting version.
/// Migrations must be listed in increasing version order starting at 1.
pub fn migrate(db: &mut impl SchemaDb, migrations: &[Migration]) -> anyhow::Result<i64> {
    for (i, m) in migrations.iter().enumerate() {
        anyhow::ensure!(
            m.version == i as i64 + 1,
            "migration {} must have version {}",
            m.name,
            i + 1
        );
    }
    let current = db.user_version()?;
    anyhow::ensure!(
        current <= migrations.len() as i64,
        "database is at version {current}, newer than this component ({})",
        migrations.len()
    );
    for m in migrations.iter().filter(|m| m.version > current) {
        let stmts = statements(m.sql);
        let refs: Vec<&str> = stmts.iter().map(String::as_str).collect();
        db.apply(m.version, &refs)
            .map_err(|e| e.context(format!("migration {}", m.name)))?;
    }
    Ok(migrations.len() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A toy database: tables are names with rows of text; understands just enough SQL
    /// (`CREATE TABLE t`, `INSERT INTO t v`, `ALTER TABLE t ADD x`) to show data surviving.
    #[derive(Default)]
    struct Toy {
        version: i64,
        tables: BTreeMap<String, Vec<String>>,
        applied: Vec<i64>,
    }

    impl SchemaDb for Toy {
        fn user_version(&mut self) -> anyhow::Result<i64> {
            Ok(self.version)
        }
        fn apply(&mut self, version: i64, statements: &[&str]) -> anyhow::Result<()> {
            let mut tables = self.tables.clone();
            for s in statements {
                let words: Vec<&str> = s.split_whitespace().collect();
                match words.as_slice() {
                    ["CREATE", "TABLE", t] => {
                        tables.insert(t.to_string(), vec![]);
                    }
                    ["INSERT", "INTO", t, v] => tables
                        .get_mut(*t)
                        .ok_or_else(|| anyhow::anyhow!("no table {t}"))?
                        .push(v.to_string()),
                    ["ALTER", "TABLE", t, "ADD", x] => {
                        for row in tables
                            .get_mut(*t)
                            .ok_or_else(|| anyhow::anyhow!("no table {t}"))?
                        {
                            row.push_str(&format!("+{x}"));
                        }
                    }
                    _ => anyhow::bail!("unsupported: {s}"),
                }
            }
            self.tables = tables;
            self.version = version;
            self.applied.push(version);
            Ok(())
        }
    }

    const V1: Migration = Migration {
        version: 1,
        name: "0001_init",
        sql: "-- first\nCREATE TABLE orders;\n",
    };
    const V2: Migration = Migration {
        version: 2,
        name: "0002_more",
        sql: "ALTER TABLE orders ADD note; -- add a column\nCREATE TABLE notes;",
    };

    #[test]
    fn statements_are_split_and_comments_dropped() {
        assert_eq!(
            statements(V2.sql),
            vec!["ALTER TABLE orders ADD note", "CREATE TABLE notes"]
        );
    }

    #[test]
    fn a_fresh_database_gets_every_migration_once() {
        let mut db = Toy::default();
        assert_eq!(migrate(&mut db, &[V1, V2]).unwrap(), 2);
        assert_eq!(migrate(&mut db, &[V1, V2]).unwrap(), 2);
        assert_eq!(db.applied, vec![1, 2]);
    }

    #[test]
    fn upgrading_from_n_to_n_plus_1_keeps_the_data() {
        let mut db = Toy::default();
        migrate(&mut db, &[V1]).unwrap();
        db.apply(1, &["INSERT INTO orders o1"]).unwrap();
        assert_eq!(migrate(&mut db, &[V1, V2]).unwrap(), 2);
        assert_eq!(db.tables["orders"], vec!["o1+note"]);
        assert!(db.tables.contains_key("notes"));
        assert_eq!(db.applied, vec![1, 1, 2]);
    }

    #[test]
    fn misnumbered_or_newer_databases_are_refused() {
        let mut db = Toy::default();
        assert!(migrate(&mut db, &[V2]).is_err());
        db.version = 3;
        assert!(migrate(&mut db, &[V1, V2]).is_err());
    }
}
