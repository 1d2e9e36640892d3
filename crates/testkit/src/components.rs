//! Locating the wasm of the host's test components.

use std::path::PathBuf;

/// The workspace root (fixtures name wasm files relative to it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Paths of the release wasm of the named test components; panics naming the build command when
/// one is missing, so a suite never passes by silently skipping what it could not run.
pub fn require_components(names: &[&str]) -> Vec<PathBuf> {
    let dir = workspace_root().join("target/wasm32-wasip2/release");
    let paths: Vec<PathBuf> = names
        .iter()
        .map(|name| dir.join(format!("{}.wasm", name.replace('-', "_"))))
        .collect();
    let missing: Vec<String> = paths
        .iter()
        .filter(|path| !path.is_file())
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "test component wasm missing: {}\nbuild them first: scripts/build-test-components.sh",
        missing.join(", ")
    );
    paths
}
