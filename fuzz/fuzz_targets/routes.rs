//! Input: route patterns one per line, then a last line with the request path. Building the
//! router and matching the path never panics, and a match names a component of the table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spin_host_config::manifest::HttpRoute;
use spin_host_config::routes::Router;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines: Vec<&str> = text.lines().collect();
    let Some(path) = lines.pop() else {
        return;
    };
    let routes: Vec<(String, HttpRoute)> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let route = if *line == "private" {
                HttpRoute::Private
            } else {
                HttpRoute::Path(line.to_string())
            };
            (format!("c{i}"), route)
        })
        .collect();
    let Ok((router, _)) = Router::build(routes.iter().map(|(id, r)| (id.as_str(), r))) else {
        return;
    };
    if let Some(found) = router.route(path) {
        assert!(routes.iter().any(|(id, _)| *id == found.component_id));
    }
    for (id, _) in &routes {
        let _ = router.chained(id, path);
    }
});
