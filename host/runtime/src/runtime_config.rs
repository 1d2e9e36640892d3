//! Glue between `spin-host-config` (pure configuration) and the runtime: the runtime config's
//! store sections, variable resolution and templates, routes and allowed hosts.
//! TEMPORARY minimal implementations until spin-host-config lands its modules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use spin_host_config::manifest::Manifest;

/// Store sections of the runtime config: label -> file.
#[derive(Default)]
pub struct Stores {
    pub key_value: Vec<(String, PathBuf)>,
    pub sqlite: Vec<(String, PathBuf)>,
}

pub fn load(file: Option<&Path>, _state_dir: &Path) -> Result<Stores> {
    let Some(file) = file else {
        return Ok(Stores::default());
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read runtime config {}", file.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("invalid runtime config {}", file.display()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut stores = Stores::default();
    for (section, out) in [
        ("key_value_store", &mut stores.key_value),
        ("sqlite_database", &mut stores.sqlite),
    ] {
        let Some(entries) = table.get(section).and_then(|v| v.as_table()) else {
            continue;
        };
        for (label, entry) in entries {
            let kind = entry.get("type").and_then(|v| v.as_str()).unwrap_or("");
            if kind != "spin" {
                bail!("{}: [{section}.{label}] type = {kind:?} is not supported by this host (only \"spin\")", file.display());
            }
            let path = entry
                .get("path")
                .and_then(|v| v.as_str())
                .with_context(|| format!("{}: [{section}.{label}] needs a path", file.display()))?;
            out.push((label.clone(), base.join(path)));
        }
    }
    Ok(stores)
}

pub fn resolve_variables(
    manifest: &Manifest,
    env: &HashMap<String, String>,
    cli: &[(String, String)],
) -> Result<HashMap<String, String>> {
    let mut values = HashMap::new();
    for (name, variable) in &manifest.variables {
        let from_cli = cli
            .iter()
            .rev()
            .find(|(k, _)| k == name.as_str())
            .map(|(_, v)| v.clone());
        let from_env = env
            .get(&format!("SPIN_VARIABLE_{}", name.as_str().to_uppercase()))
            .cloned();
        match from_cli.or(from_env).or_else(|| variable.default.clone()) {
            Some(value) => {
                values.insert(name.to_string(), value);
            }
            None if variable.required => bail!(
                "required variable `{name}` has no value: set SPIN_VARIABLE_{} or pass --variable {name}=...",
                name.as_str().to_uppercase()
            ),
            None => {}
        }
    }
    Ok(values)
}

pub fn expand(template: &str, values: &HashMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .with_context(|| format!("unclosed {{{{ in {template:?}"))?;
        let name = after[..end].trim();
        let value = values
            .get(name)
            .with_context(|| format!("no value for variable `{name}`"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

pub fn allowed_hosts(
    _component: &str,
    entries: &[String],
    values: &HashMap<String, String>,
) -> Result<AllowedHosts> {
    let entries = entries
        .iter()
        .map(|e| expand(e, values))
        .collect::<Result<Vec<_>>>()?;
    Ok(AllowedHosts { entries })
}

pub struct AllowedHosts {
    entries: Vec<String>,
}

impl AllowedHosts {
    pub fn allows_url(&self, url: &url::Url) -> bool {
        let host = url.host_str().unwrap_or("");
        let port = url.port_or_known_default().unwrap_or(match url.scheme() {
            "redis" => 6379,
            _ => 0,
        });
        self.entries.iter().any(|entry| {
            let Some((scheme, rest)) = entry.split_once("://") else {
                return false;
            };
            let (h, p) = match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            let scheme_ok = scheme == "*" || scheme == url.scheme();
            let host_ok =
                h == "*" || h == host || h.strip_prefix('*').is_some_and(|s| host.ends_with(s));
            let port_ok = match p {
                Some("*") => true,
                Some(p) => p.parse::<u16>().ok() == Some(port),
                None => match scheme {
                    "http" => port == 80,
                    "https" => port == 443,
                    "redis" => port == 6379,
                    _ => true,
                },
            };
            scheme_ok && host_ok && port_ok
        })
    }
}

pub struct Router {
    routes: Vec<(String, String)>,
}

pub struct RouteMatch {
    component: String,
    raw: String,
    path_info: String,
    names: Vec<(String, String)>,
}

impl RouteMatch {
    pub fn component_id(&self) -> &str {
        &self.component
    }
    pub fn raw_route(&self) -> &str {
        &self.raw
    }
    pub fn path_info(&self) -> &str {
        &self.path_info
    }
    pub fn named_wildcards(&self) -> &[(String, String)] {
        &self.names
    }
}

impl Router {
    pub fn build<'a>(routes: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        Ok(Self {
            routes: routes
                .map(|(r, c)| (r.to_string(), c.to_string()))
                .collect(),
        })
    }

    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let mut best: Option<(usize, RouteMatch)> = None;
        for (route, component) in &self.routes {
            let (prefix, wild) = match route.strip_suffix("/...") {
                Some(p) => (p, true),
                None => (route.as_str(), false),
            };
            let score;
            let path_info;
            if wild {
                if path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty() {
                    score = prefix.len();
                    path_info = path[prefix.len()..].to_string();
                } else {
                    continue;
                }
            } else if path == prefix {
                score = usize::MAX;
                path_info = String::new();
            } else {
                continue;
            }
            if best.as_ref().is_none_or(|(s, _)| score >= *s) {
                best = Some((
                    score,
                    RouteMatch {
                        component: component.clone(),
                        raw: route.clone(),
                        path_info,
                        names: vec![],
                    },
                ));
            }
        }
        best.map(|(_, m)| m)
    }
}
