//! Set-up shared by the host's integration tests.

use std::path::PathBuf;

use testkit::{require_components, HostOptions};

/// A file under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Options to run this package's `shop-host` on fixture manifest `name`; fails (never skips)
/// when the test components have not been built.
pub fn options(name: &str) -> HostOptions {
    require_components(&["probe", "redis-sink"]);
    HostOptions::new(env!("CARGO_BIN_EXE_shop-host"), fixture(name))
}
