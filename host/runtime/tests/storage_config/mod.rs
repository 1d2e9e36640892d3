//! Runtime config for the storage fixture, written to a temporary directory so that databases
//! never land in the source tree.

use std::fs;
use std::path::PathBuf;

use testkit::tempfile::{self, TempDir};

/// A runtime config defining stores and databases `extra` (granted to `probe`) and `ungranted`
/// (granted to nobody), and database `attaching` (granted to `probe`, with
/// `allow_attach_file = true`); keep the returned directory alive while the host runs.
pub fn storage_runtime_config() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir for runtime config");
    let path = dir.path().join("runtime-config.toml");
    let db = |name: &str| dir.path().join(name).display().to_string();
    let config = format!(
        r#"
[key_value_store.extra]
type = "spin"
path = "{extra_kv}"

[key_value_store.ungranted]
type = "spin"
path = "{ungranted_kv}"

[sqlite_database.extra]
type = "spin"
path = "{extra_db}"

[sqlite_database.ungranted]
type = "spin"
path = "{ungranted_db}"

[sqlite_database.attaching]
type = "spin"
path = "{attaching_db}"
allow_attach_file = true
"#,
        extra_kv = db("extra-kv.db"),
        ungranted_kv = db("ungranted-kv.db"),
        extra_db = db("extra.db"),
        ungranted_db = db("ungranted.db"),
        attaching_db = db("attaching.db"),
    );
    fs::write(&path, config).expect("write runtime config");
    (dir, path)
}
