//! `SHOP_HOST_PERFMAP=1` names guest functions for `perf` (how BENCHMARKS.md's profiles of
//! guest code were taken); without it the host writes no map.

mod support;

use std::path::PathBuf;

use testkit::Host;

fn perf_map(host: &Host) -> PathBuf {
    PathBuf::from(format!("/tmp/perf-{}.map", host.pid()))
}

#[test]
fn the_perf_map_names_guest_functions_only_when_asked() {
    let host =
        Host::start(support::options("catch-all.toml").process_env("SHOP_HOST_PERFMAP", "1"));
    assert_eq!(host.get("/anything").status, 200);
    let map = perf_map(&host);
    let text = std::fs::read_to_string(&map).expect("perf map written");
    let _ = std::fs::remove_file(&map);
    assert!(
        text.lines().any(|line| line.contains("probe::")),
        "no guest function of the probe component in {}",
        map.display()
    );

    let plain = Host::start(support::options("catch-all.toml"));
    assert_eq!(plain.get("/anything").status, 200);
    assert!(!perf_map(&plain).exists(), "a map written unasked");
}
