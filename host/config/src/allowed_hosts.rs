//! `allowed_outbound_hosts`, with the rules of Spin's `spin-outbound-networking-config`
//! (`allowed_hosts.rs`):
//!
//! - Entries are `scheme://host[:port]`; the scheme is required and a path is an error.
//! - Scheme: a name or `*`. Host: `*`, `*.domain` (any subdomain), `self` (relative requests to
//!   the app itself), a CIDR range, or an exact name / IP. Port: `*`, a number, or `a..b` (end
//!   excluded); omitted means the scheme's default port (http 80, https 443, redis 6379,
//!   mysql 3306, postgres 5432, mqtt 1883), and a scheme without one needs an explicit port.
//! - A URL is allowed when scheme, host and port of one entry all match.
//! - Service chaining: `http://<component-id>.spin.internal` allows chaining to that component;
//!   `http://*.spin.internal` is expanded to every component of the app.
//! - Entries may contain `{{ variable }}` templates; a templated entry that expands to `""`,
//!   `"http://"` or `"https://"` is dropped (an "optional endpoint", as in Spin).
//!
//! The key-value and SQLite stores are not network destinations and are not checked here.

use crate::manifest::{Component, Manifest, TriggerType};
use crate::variables::{Template, Variables};
use anyhow::{anyhow, bail, Context as _, Result};
use ipnet::IpNet;
use std::ops::Range;
use url::Host;

/// Domain of service-chaining hosts (`<component-id>.spin.internal`).
pub const SERVICE_CHAINING_DOMAIN: &str = "spin.internal";
const CHAINING_SUFFIX: &str = ".spin.internal";

/// The component a service-chaining host names: `orders.spin.internal[:port]` -> `orders`.
pub fn chaining_target(host: &str) -> Option<&str> {
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let (first, rest) = host.split_once('.')?;
    (rest == SERVICE_CHAINING_DOMAIN).then_some(first)
}

/// The default port Spin assumes for a scheme when an entry or URL gives none.
pub fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "redis" => Some(6379),
        "mysql" => Some(3306),
        "postgres" => Some(5432),
        "mqtt" => Some(1883),
        _ => None,
    }
}

/// One parsed `allowed_outbound_hosts` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHost {
    original: String,
    scheme: Option<String>,
    host: HostSpec,
    port: PortSpec,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostSpec {
    Any,
    /// `*.example.com`, stored as `.example.com`.
    AnySubdomain(String),
    ToSelf,
    Literal(Host),
    Cidr(IpNet),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PortSpec {
    Any,
    Port(u16),
    Range(Range<u16>),
}

impl AllowedHost {
    /// Parses one entry (already template-expanded).
    pub fn parse(entry: &str) -> Result<AllowedHost> {
        let url = entry.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            if matches!(url, "*" | ":" | "" | "?") {
                bail!(
                    "{url:?} is not an allowed outbound host format: hosts must be in the form \
                     <scheme>://<host>[:<port>], with '*' wildcards allowed for each \
                     ('*://*:*' allows all outbound networking)"
                );
            }
            bail!("{url:?} does not contain a scheme (e.g., 'http://' or '*://')");
        };
        let (host, port) = match rest.rsplit_once(':') {
            None => (rest, ""),
            Some((h, "")) => (h, ""),
            // `rest` may itself be a host containing ':' (an IPv6 CIDR range).
            Some(_) if HostSpec::parse(rest).is_ok() => (rest, ""),
            Some((h, tail)) => match tail.split_once('/') {
                Some((_, path)) if !path.is_empty() => {
                    bail!("{url:?} has a path but is not allowed to")
                }
                Some((port, _)) => (h, port),
                None => (h, tail),
            },
        };
        let port = PortSpec::parse(port, scheme)
            .with_context(|| format!("{url:?}: invalid port {port:?}"))?;
        let scheme_spec = match scheme {
            "*" => None,
            s if s.starts_with('{') => bail!("{url:?}: scheme lists are not supported"),
            s if s.is_empty() || !s.chars().all(|c| c.is_alphabetic()) => {
                bail!("{url:?}: invalid scheme {s:?}: only alphabetic characters are allowed")
            }
            s => Some(s.to_string()),
        };
        let host =
            HostSpec::parse(host).with_context(|| format!("{url:?}: invalid host {host:?}"))?;
        Ok(AllowedHost {
            original: entry.to_string(),
            scheme: scheme_spec,
            host,
            port,
        })
    }

    /// True for `*.spin.internal` and `<something>.spin.internal` hosts.
    pub fn is_for_service_chaining(&self) -> bool {
        match &self.host {
            HostSpec::Literal(Host::Domain(d)) => d.ends_with(CHAINING_SUFFIX),
            HostSpec::AnySubdomain(suffix) => suffix == CHAINING_SUFFIX,
            _ => false,
        }
    }

    fn allows(&self, scheme: &str, host: &Host, port: Option<u16>) -> bool {
        self.scheme.as_deref().is_none_or(|s| s == scheme)
            && self.host.allows(host)
            && self.port.allows(port.or_else(|| well_known_port(scheme)))
    }
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.original)
    }
}

impl HostSpec {
    fn parse(host: &str) -> Result<HostSpec> {
        let host = host.trim();
        match host {
            "*" => return Ok(HostSpec::Any),
            "self" | "self.alt" => return Ok(HostSpec::ToSelf),
            _ => {}
        }
        if host.starts_with('{') {
            bail!("host lists are not supported");
        }
        if let Ok(net) = host.parse::<IpNet>() {
            return Ok(HostSpec::Cidr(net.trunc()));
        }
        let host = host.strip_suffix('/').unwrap_or(host);
        if host.contains('/') {
            bail!("must not include a path");
        }
        if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                bail!("wildcards are allowed only as prefixes");
            }
            return match Host::parse(domain)? {
                Host::Domain(d) => Ok(HostSpec::AnySubdomain(format!(".{d}"))),
                _ => bail!("wildcard suffix must be a domain"),
            };
        }
        if host.contains('*') {
            bail!("wildcards are allowed only as subdomains");
        }
        Ok(HostSpec::Literal(Host::parse(host)?))
    }

    fn allows(&self, host: &Host) -> bool {
        match (self, host) {
            (HostSpec::Any, _) => true,
            (HostSpec::AnySubdomain(suffix), Host::Domain(d)) => d.ends_with(suffix.as_str()),
            (HostSpec::Literal(literal), host) => literal == host,
            (HostSpec::Cidr(net), Host::Ipv4(ip)) => net.contains(&std::net::IpAddr::V4(*ip)),
            (HostSpec::Cidr(net), Host::Ipv6(ip)) => net.contains(&std::net::IpAddr::V6(*ip)),
            // `self` only allows relative URLs; see `allows_relative`.
            (HostSpec::AnySubdomain(_) | HostSpec::Cidr(_) | HostSpec::ToSelf, _) => false,
        }
    }
}

impl PortSpec {
    fn parse(port: &str, scheme: &str) -> Result<PortSpec> {
        if port.is_empty() {
            return well_known_port(scheme).map(PortSpec::Port).ok_or_else(|| {
                anyhow!(
                    "no port was provided and the scheme {scheme:?} does not have a known \
                     default port number"
                )
            });
        }
        if port == "*" {
            return Ok(PortSpec::Any);
        }
        if port.starts_with('{') {
            bail!("port lists are not supported");
        }
        if let Some((start, end)) = port.split_once("..") {
            let number = |s: &str| {
                s.parse::<u16>()
                    .with_context(|| format!("port range {port:?} contains non-number"))
            };
            return Ok(PortSpec::Range(number(start)?..number(end)?));
        }
        Ok(PortSpec::Port(port.parse().with_context(|| {
            format!("port {port:?} is not a number")
        })?))
    }

    fn allows(&self, port: Option<u16>) -> bool {
        match (self, port) {
            (PortSpec::Any, _) => true,
            (PortSpec::Port(p), Some(port)) => *p == port,
            (PortSpec::Range(r), Some(port)) => r.contains(&port),
            (_, None) => false,
        }
    }
}

/// The parsed `allowed_outbound_hosts` of one component.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    hosts: Vec<AllowedHost>,
}

impl AllowedHosts {
    /// Parses template-expanded entries; `http://*.spin.internal` is expanded to one entry per
    /// id in `component_ids` (the app's components).
    pub fn new<S: AsRef<str>>(entries: &[S], component_ids: &[&str]) -> Result<AllowedHosts> {
        if entries.len() == 1 && entries[0].as_ref() == "insecure:allow-all" {
            bail!("'insecure:allow-all' is not allowed - use '*://*:*' instead if you really want to allow all outbound traffic");
        }
        let mut hosts = Vec::new();
        for entry in entries {
            let host = AllowedHost::parse(entry.as_ref())?;
            match &host.host {
                HostSpec::AnySubdomain(suffix) if suffix == CHAINING_SUFFIX => {
                    for id in component_ids {
                        let mut one = host.clone();
                        one.host =
                            HostSpec::Literal(Host::Domain(format!("{id}{CHAINING_SUFFIX}")));
                        hosts.push(one);
                    }
                }
                _ => hosts.push(host),
            }
        }
        Ok(AllowedHosts { hosts })
    }

    /// The allowed hosts of `component_id`, with templates expanded from `variables`. Errors
    /// name the component and the entry.
    pub fn for_component(
        manifest: &Manifest,
        variables: &Variables,
        component_id: &str,
    ) -> Result<AllowedHosts> {
        let component = manifest
            .component(component_id)
            .ok_or_else(|| anyhow!("no component {component_id:?} in the manifest"))?;
        let mut expanded = Vec::new();
        for entry in &component.allowed_outbound_hosts {
            let context = || format!("[component.{component_id}] allowed_outbound_hosts {entry:?}");
            if Template::parse(entry).with_context(context)?.is_literal() {
                expanded.push(entry.clone());
                continue;
            }
            let value = variables.expand(entry).with_context(context)?;
            if !matches!(value.as_str(), "" | "http://" | "https://") {
                AllowedHost::parse(&value)
                    .with_context(|| format!("{} expands to {value:?}", context()))?;
                expanded.push(value);
            }
        }
        let ids: Vec<&str> = manifest.components.keys().map(|k| k.as_str()).collect();
        Self::new(&expanded, &ids)
            .with_context(|| format!("[component.{component_id}] allowed_outbound_hosts"))
    }

    /// Whether a request to `url` is allowed. A URL without a scheme (`example.com:6379`) is
    /// read with `default_scheme`; a URL that cannot be parsed is refused.
    pub fn allows_url(&self, url: &str, default_scheme: &str) -> bool {
        let parsed = match url::Url::parse(url) {
            Ok(u) if u.has_host() => Ok(u),
            _ => url::Url::parse(&format!("{default_scheme}://{url}")),
        };
        let Ok(parsed) = parsed else {
            return false;
        };
        // Re-parse the host: `url` keeps IP addresses of non-special schemes (redis://) opaque.
        let Some(Ok(host)) = parsed.host_str().map(Host::parse) else {
            return false;
        };
        self.allows(parsed.scheme(), &host, parsed.port())
    }

    /// Whether scheme, host and port (None: the scheme's default) are allowed.
    pub fn allows(&self, scheme: &str, host: &Host, port: Option<u16>) -> bool {
        self.hosts.iter().any(|h| h.allows(scheme, host, port))
    }

    /// Whether a `wasi:sockets` connection to `addr` over `scheme` (`tcp` or `udp`) is allowed,
    /// as Spin's `factor-outbound-networking` checks one: the address, written `ip:port`, is
    /// checked as the URL `<scheme>://ip:port`. So `*://127.0.0.1:7`, `tcp://10.0.0.0/8:*` or
    /// `*://*:*` allow a TCP connection to `127.0.0.1:7` (the first two by IP and CIDR
    /// range), while a name (`*://localhost:7`) never matches an IP address, `http://` entries
    /// never allow a socket, and an IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is
    /// matched as the IPv6 address it is.
    pub fn allows_socket(&self, scheme: &str, addr: std::net::SocketAddr) -> bool {
        let host = match addr.ip() {
            std::net::IpAddr::V4(ip) => Host::Ipv4(ip),
            std::net::IpAddr::V6(ip) => Host::Ipv6(ip),
        };
        self.allows(scheme, &host, Some(addr.port()))
    }

    /// Whether a relative URL (a request to the app itself) with one of `schemes` is allowed:
    /// needs a `self` or `*` host.
    pub fn allows_relative(&self, schemes: &[&str]) -> bool {
        self.hosts.iter().any(|h| {
            schemes
                .iter()
                .any(|s| h.scheme.as_deref().is_none_or(|own| own == *s))
                && matches!(h.host, HostSpec::Any | HostSpec::ToSelf)
        })
    }

    /// Whether this component may chain to `target_id` over `http://<target_id>.spin.internal`.
    pub fn allows_chaining_to(&self, target_id: &str) -> bool {
        self.allows(
            "http",
            &Host::Domain(format!("{target_id}{CHAINING_SUFFIX}")),
            None,
        )
    }

    /// The parsed entries.
    pub fn entries(&self) -> &[AllowedHost] {
        &self.hosts
    }
}

/// Whether a component's (unexpanded) `allowed_outbound_hosts` ask for service chaining: Spin
/// then gives the component the `local_service_chaining` host requirement.
pub fn requires_service_chaining(component: &Component) -> bool {
    component
        .allowed_outbound_hosts
        .iter()
        .any(|e| AllowedHost::parse(e).is_ok_and(|h| h.is_for_service_chaining()))
}

/// Refuses an app in which a component run by a non-HTTP trigger requires service chaining,
/// as Spin's Redis trigger refuses the `local_service_chaining` requirement.
pub fn check_service_chaining(manifest: &Manifest) -> Result<()> {
    for (id, component) in &manifest.components {
        if !requires_service_chaining(component) {
            continue;
        }
        for trigger in manifest.trigger_types_of(id) {
            if trigger != TriggerType::Http {
                bail!(
                    "This application requires the following features that are not available \
                     in the '{}' trigger: local_service_chaining (component {:?} allows \
                     *.spin.internal hosts but is run by a [[trigger.{}]]; only HTTP-triggered \
                     components may use service chaining)",
                    trigger.as_str(),
                    id.as_str(),
                    trigger.as_str(),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
