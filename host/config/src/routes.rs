//! HTTP routing with Spin's semantics (`spin-http-routes`, which delegates matching to the
//! `routefinder` crate). Rules reproduced here:
//!
//! - `/x` matches `/x` (and `/x/`: leading and trailing slashes of the path are ignored).
//! - `/x/...` (or `/x/*`) matches `/x` and everything below it.
//! - `:name` matches one segment (or, before a `.`, the part of it up to the dot:
//!   `/files/:name.json`); the value is passed as `spin-path-match-<name>`, with `_` in the
//!   name written `-` ([`path_match_header`]: `:path_segment` gives
//!   `spin-path-match-path-segment`).
//! - Among matching routes, segments are compared left to right (literal text beats `:param`
//!   beats the trailing wildcard), then the route with fewer segments wins. So an exact route
//!   beats a wildcard and the longest wildcard prefix wins. Equally specific routes: the first
//!   in the manifest wins.
//! - Duplicate routes (same text): the last one in the manifest wins; the others are reported.
//! - `route = { private = true }` is never routed from outside, but the component can still be
//!   reached through service chaining ([`Router::chained`]).
//! - Paths under [`WELL_KNOWN_PREFIX`] are answered by the host before routing.

use crate::manifest::{HttpRoute, Manifest};
use anyhow::{bail, Result};
use indexmap::IndexMap;
use std::cmp::Ordering;
use std::fmt;

/// Prefix of the paths the host answers itself (`health`, `info`).
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// True if `path` is under [`WELL_KNOWN_PREFIX`] and so must not reach a component.
pub fn is_well_known(path: &str) -> bool {
    path.starts_with(WELL_KNOWN_PREFIX)
}

/// The result of routing a request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    /// Component to run.
    pub component_id: String,
    /// The route as Spin normalises it (leading `/` added, one trailing `/` removed), still
    /// with `/...`: Spin's `spin-matched-route` header.
    pub matched_route: String,
    /// The route exactly as written in the manifest: `spin-raw-component-route`.
    pub raw_route: String,
    /// `raw_route` without a trailing `/...`: `spin-component-route`.
    pub component_route: String,
    /// The part of the path matched by the trailing wildcard: `spin-path-info`
    /// (route `/foo/...`: `/foo` -> `""`, `/foo/` -> `"/"`, `/foo/bar` -> `"/bar"`,
    /// `/foo/bar/` -> `"/bar/"`; always `""` for routes without a wildcard).
    pub path_info: String,
    /// `:name` captures in route order, names as written in the route; each is passed as the
    /// header [`path_match_header`]`(name)`.
    pub params: Vec<(String, String)>,
}

impl RouteMatch {
    /// The `spin-path-match-*` headers of the `:name` captures: `(header name, value)`.
    pub fn path_match_headers(&self) -> impl Iterator<Item = (String, &str)> {
        self.params
            .iter()
            .map(|(name, value)| (path_match_header(name), value.as_str()))
    }
}

/// The header that carries the value of route parameter `:name`, as Spin's `trigger-http`
/// (`headers.rs`) names it: it builds `SPIN_PATH_MATCH_<NAME>` (the name in ASCII upper case),
/// then turns every `_` of the whole key into `-` and lowers it. So `:path_segment` is passed
/// as `spin-path-match-path-segment`, never `spin-path-match-path_segment`, and `:userId` as
/// `spin-path-match-userid` (the conformance suite's `request-shape` test checks the first).
pub fn path_match_header(name: &str) -> String {
    format!("spin-path-match-{name}")
        .replace('_', "-")
        .to_ascii_lowercase()
}

/// A route that appeared more than once; only the last occurrence is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateRoute {
    /// The route text.
    pub route: String,
    /// Component whose trigger is ignored.
    pub replaced_component: String,
    /// Component that serves the route.
    pub effective_component: String,
}

impl fmt::Display for DuplicateRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "route {} of component {} is a duplicate and will never be used (served by {})",
            self.route, self.replaced_component, self.effective_component
        )
    }
}

/// The HTTP router of one application.
#[derive(Clone, Debug)]
pub struct Router {
    routes: Vec<Route>,
    /// Every HTTP-triggered component, private ones included (chaining targets).
    components: Vec<String>,
}

#[derive(Clone, Debug)]
struct Route {
    component_id: String,
    raw: String,
    based: String,
    segments: Vec<Segment>,
    dots: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Slash,
    Dot,
    Exact(String),
    Param(String),
    Wildcard,
}

impl Router {
    /// Builds the router from the manifest's `[[trigger.http]]` entries.
    pub fn from_manifest(manifest: &Manifest) -> Result<(Router, Vec<DuplicateRoute>)> {
        Self::build(
            manifest
                .triggers
                .http
                .iter()
                .map(|t| (t.component_id(), &t.route)),
        )
    }

    /// Builds a router from `(component id, route)` pairs in manifest order. Fails on routes
    /// `routefinder` cannot parse (named `*`, unnamed `:`, `*` not at the end).
    pub fn build<'a>(
        triggers: impl IntoIterator<Item = (&'a str, &'a HttpRoute)>,
    ) -> Result<(Router, Vec<DuplicateRoute>)> {
        let mut components: Vec<String> = Vec::new();
        let mut by_raw: IndexMap<&str, &str> = IndexMap::new();
        let mut duplicates = Vec::new();
        for (component_id, route) in triggers {
            if !components.iter().any(|c| c == component_id) {
                components.push(component_id.to_string());
            }
            let HttpRoute::Path(raw) = route else {
                continue;
            };
            if let Some(replaced) = by_raw.insert(raw.as_str(), component_id) {
                duplicates.push(DuplicateRoute {
                    route: if raw.is_empty() {
                        "/".into()
                    } else {
                        raw.clone()
                    },
                    replaced_component: replaced.to_string(),
                    effective_component: component_id.to_string(),
                });
            }
        }
        let routes = by_raw
            .into_iter()
            .map(|(raw, component_id)| Route::parse(raw, component_id))
            .collect::<Result<Vec<_>>>()?;
        Ok((Router { routes, components }, duplicates))
    }

    /// Routes a request path (without query string). `None` means 404.
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let mut best: Option<(&Route, Captures)> = None;
        for route in &self.routes {
            let Some(captures) = route.matches(path) else {
                continue;
            };
            let better = match &best {
                None => true,
                Some((current, _)) => route.specificity_cmp(current) == Ordering::Greater,
            };
            if better {
                best = Some((route, captures));
            }
        }
        let (route, captures) = best?;
        let path_info = match captures.wildcard {
            None => String::new(),
            Some(w) => match (w.is_empty(), path.ends_with('/')) {
                (true, false) => String::new(),
                (true, true) => "/".into(),
                (false, false) => format!("/{w}"),
                (false, true) => format!("/{w}/"),
            },
        };
        Some(RouteMatch {
            component_id: route.component_id.clone(),
            matched_route: route.based.clone(),
            raw_route: route.raw.clone(),
            component_route: strip_wildcard(&route.raw).to_string(),
            path_info,
            params: captures.params,
        })
    }

    /// The match Spin synthesises for a service-chaining request to `component_id`: as if the
    /// component's route were `/...`, with the whole `path` as path info. `None` if the
    /// component has no HTTP trigger (Spin cannot chain to it either).
    pub fn chained(&self, component_id: &str, path: &str) -> Option<RouteMatch> {
        self.components.iter().find(|c| *c == component_id)?;
        Some(RouteMatch {
            component_id: component_id.to_string(),
            matched_route: "/...".into(),
            raw_route: "/...".into(),
            component_route: String::new(),
            path_info: path.to_string(),
            params: Vec::new(),
        })
    }

    /// True if some route lies under [`WELL_KNOWN_PREFIX`]: such routes are never reached, and
    /// Spin logs an error about them.
    pub fn contains_reserved_route(&self) -> bool {
        self.routes.iter().any(|r| is_well_known(&r.based))
    }

    /// `(route as written, component id)` for every routable route, in manifest order.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.routes
            .iter()
            .map(|r| (r.raw.as_str(), r.component_id.as_str()))
    }
}

fn strip_wildcard(route: &str) -> &str {
    route.strip_suffix("/...").unwrap_or(route)
}

#[derive(Debug, Default)]
struct Captures {
    params: Vec<(String, String)>,
    wildcard: Option<String>,
}

impl Route {
    fn parse(raw: &str, component_id: &str) -> Result<Route> {
        // Spin: make absolute, drop one trailing slash, then `/...` means `/*`.
        let absolute = if raw.starts_with('/') {
            raw.to_string()
        } else {
            format!("/{raw}")
        };
        let based = absolute
            .strip_suffix('/')
            .map(str::to_string)
            .unwrap_or(absolute);
        let pattern = match based.strip_suffix("/...") {
            Some(prefix) => format!("{prefix}/*"),
            None => based.clone(),
        };
        let segments = parse_segments(&pattern).map_err(|why| {
            anyhow::anyhow!("invalid route {raw:?} of component {component_id}: {why}")
        })?;
        if let Some(i) = segments.iter().position(|s| *s == Segment::Wildcard) {
            if i + 1 != segments.len() {
                bail!("invalid route {raw:?} of component {component_id}: `*` or `...` must be the last segment");
            }
        }
        let dots = segments.iter().filter(|s| **s == Segment::Dot).count();
        Ok(Route {
            component_id: component_id.to_string(),
            raw: raw.to_string(),
            based,
            segments,
            dots,
        })
    }

    fn matches(&self, path: &str) -> Option<Captures> {
        let mut rest = path.trim_matches('/');
        let mut captures = Captures::default();
        for (i, segment) in self.segments.iter().enumerate() {
            let next = self.segments.get(i + 1);
            match segment {
                Segment::Exact(text) => rest = rest.strip_prefix(text.as_str())?,
                Segment::Dot => rest = rest.strip_prefix('.')?,
                Segment::Slash => match (rest.strip_prefix('/'), next) {
                    (Some(after), Some(_)) => rest = after,
                    (None, None | Some(Segment::Wildcard)) if rest.is_empty() => {}
                    _ => return None,
                },
                Segment::Param(name) => {
                    if rest.is_empty() {
                        return None;
                    }
                    let end = if next == Some(&Segment::Dot) {
                        let stop = rest.find(['.', '/'])?;
                        if !rest[stop..].starts_with('.') {
                            return None;
                        }
                        stop
                    } else {
                        rest.find('/').unwrap_or(rest.len())
                    };
                    captures
                        .params
                        .push((name.clone(), rest[..end].to_string()));
                    rest = &rest[end..];
                }
                Segment::Wildcard => {
                    captures.wildcard = Some(rest.to_string());
                    rest = "";
                }
            }
        }
        (rest.is_empty() || rest == "/").then_some(captures)
    }

    /// `Greater` if `self` is the more specific route: segment by segment, then more dots,
    /// then fewer segments.
    fn specificity_cmp(&self, other: &Route) -> Ordering {
        self.segments
            .iter()
            .zip(&other.segments)
            .map(|(a, b)| segment_cmp(a, b))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| {
                self.dots
                    .cmp(&other.dots)
                    .then(other.segments.len().cmp(&self.segments.len()))
            })
    }
}

/// routefinder's segment precedence: literal text and dots over `:param` over `*`; separators
/// compare equal to each other.
fn segment_cmp(a: &Segment, b: &Segment) -> Ordering {
    use Segment::*;
    match (a, b) {
        (Exact(_), Exact(_))
        | (Param(_), Param(_))
        | (Wildcard, Wildcard)
        | (Slash | Dot, Slash | Dot) => Ordering::Equal,
        (Dot | Exact(_), _) => Ordering::Greater,
        (Param(_), Exact(_)) | (Wildcard, Exact(_) | Param(_)) => Ordering::Less,
        (Param(_) | Wildcard, _) => Ordering::Greater,
        (Slash, _) => Ordering::Less,
    }
}

/// Splits a pattern into segments the way routefinder does: `/` and `.` separate sections;
/// `:x` is a parameter, `*` the wildcard, anything else literal. A `.` after literal text
/// stays part of that text; after anything else it becomes a `Dot` segment.
fn parse_segments(pattern: &str) -> Result<Vec<Segment>, String> {
    let trimmed = pattern.trim_matches('/');
    let mut segments: Vec<Segment> = Vec::new();
    let mut separator: Option<char> = None;
    let mut rest = trimmed;
    loop {
        let end = rest.find(['/', '.']).unwrap_or(rest.len());
        let section = &rest[..end];
        let segment = match section {
            "" => None,
            "*" => Some(Segment::Wildcard),
            ":" => return Err("params must be named".into()),
            s if s.starts_with('*') => {
                return Err(format!(
                    "a wildcard doesn't need a name: replace `{s}` with `*`"
                ))
            }
            s if s.starts_with(':') => Some(Segment::Param(s[1..].to_string())),
            s => Some(Segment::Exact(s.to_string())),
        };
        if separator == Some('.') {
            match segments.last_mut() {
                Some(Segment::Exact(text)) => text.push('.'),
                _ => segments.push(Segment::Dot),
            }
        }
        if let Some(segment) = segment {
            if separator == Some('/') {
                segments.push(Segment::Slash);
            }
            segments.push(segment);
        }
        if end == rest.len() {
            break;
        }
        separator = rest[end..].chars().next();
        rest = &rest[end + 1..];
    }
    Ok(segments)
}

#[cfg(test)]
mod tests;
