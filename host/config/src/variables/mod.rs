//! Application and component variables, resolved once at start-up as Spin's local providers do:
//! manifest `default` < environment `SPIN_VARIABLE_<NAME>` (name upper-cased) < `--variable
//! name=value`. Component variables are templates over application variables (`"{{ name }}"`)
//! and are expanded per component; a component reads only its own keys.
//!
//! Differences from Spin: `.env` files are not read (only the process environment), and a
//! `--variable` naming no `[variables]` entry is an error here (Spin ignores it), since it is
//! almost always a typo.

mod template;

pub use template::Template;

use crate::manifest::{Manifest, VariableName};
use anyhow::{anyhow, bail, Context as _, Result};
use indexmap::IndexMap;
use std::collections::HashSet;

/// Prefix of the environment variables Spin reads variable values from.
pub const ENV_PREFIX: &str = "SPIN_VARIABLE_";

/// The environment variable that supplies application variable `name`.
pub fn env_var_name(name: &str) -> String {
    format!("{ENV_PREFIX}{}", name.to_ascii_uppercase())
}

/// Checks a variable name against Spin's rules (lower-case letters, digits, single underscores
/// between words, starting with a letter). Components asking for an invalid name get Spin's
/// `invalid-name` error.
pub fn check_name(name: &str) -> Result<(), String> {
    VariableName::try_from(name.to_string()).map(drop)
}

/// Parses a `--variable name=value` argument.
pub fn parse_assignment(arg: &str) -> Result<(String, String)> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| anyhow!("--variable {arg:?}: expected NAME=VALUE"))?;
    check_name(name).map_err(|why| anyhow!("--variable {arg:?}: {why}"))?;
    Ok((name.to_string(), value.to_string()))
}

/// Resolved variable values for one run of an application.
#[derive(Clone, Debug)]
pub struct Variables {
    /// Application variable -> value.
    values: IndexMap<String, String>,
    /// Application variables marked `secret = true`.
    secrets: HashSet<String>,
    /// Component id -> key -> (expanded value, refers to a secret).
    components: IndexMap<String, IndexMap<String, (String, bool)>>,
}

impl Variables {
    /// Resolves from the process environment and the `--variable` overrides.
    pub fn from_env(manifest: &Manifest, overrides: &[(String, String)]) -> Result<Variables> {
        Self::resolve(manifest, |k| std::env::var(k).ok(), overrides)
    }

    /// Resolves with `env` standing for the environment (given the full `SPIN_VARIABLE_…`
    /// name). Fails naming every required variable without a value, any override that names
    /// no variable, and any template that refers to an unknown variable.
    pub fn resolve(
        manifest: &Manifest,
        env: impl Fn(&str) -> Option<String>,
        overrides: &[(String, String)],
    ) -> Result<Variables> {
        for (name, _) in overrides {
            if !manifest.variables.contains_key(name.as_str()) {
                bail!("--variable {name}: the manifest has no variable {name:?} in [variables]");
            }
        }
        let mut values = IndexMap::new();
        let mut missing = Vec::new();
        for (name, var) in &manifest.variables {
            let overridden = overrides.iter().rev().find(|(k, _)| k == name.as_str());
            let value = match overridden {
                Some((_, v)) => Some(v.clone()),
                None => env(&env_var_name(name)).or_else(|| var.default.clone()),
            };
            match value {
                Some(v) => {
                    values.insert(name.to_string(), v);
                }
                None => missing.push(name.as_str()),
            }
        }
        if !missing.is_empty() {
            let hints: Vec<String> = missing
                .iter()
                .map(|n| format!("{n} ({} or --variable {n}=...)", env_var_name(n)))
                .collect();
            bail!("required variable(s) not set: {}", hints.join(", "));
        }
        let secrets: HashSet<String> = manifest
            .variables
            .iter()
            .filter(|(_, v)| v.secret)
            .map(|(n, _)| n.to_string())
            .collect();

        let mut resolved = Variables {
            values,
            secrets,
            components: IndexMap::new(),
        };
        for (id, component) in &manifest.components {
            let mut keys = IndexMap::new();
            for (key, text) in &component.variables {
                let template = Template::parse(text)
                    .with_context(|| format!("[component.{id}.variables] {key}"))?;
                let secret = template.variables().any(|n| resolved.is_secret(n));
                let value = resolved
                    .render(&template)
                    .with_context(|| format!("[component.{id}.variables] {key}"))?;
                keys.insert(key.to_string(), (value, secret));
            }
            resolved.components.insert(id.to_string(), keys);
        }
        Ok(resolved)
    }

    /// The value of application variable `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// True if application variable `name` is marked `secret = true`: never log its value.
    pub fn is_secret(&self, name: &str) -> bool {
        self.secrets.contains(name)
    }

    /// Component variable `key` of `component_id`, expanded; `None` if that component has no
    /// such key (Spin's `undefined`). Components never see application variables directly.
    pub fn component_value(&self, component_id: &str, key: &str) -> Option<&str> {
        self.components
            .get(component_id)?
            .get(key)
            .map(|(v, _)| v.as_str())
    }

    /// True if component variable `key` of `component_id` is built from a secret variable.
    pub fn component_value_is_secret(&self, component_id: &str, key: &str) -> bool {
        self.components
            .get(component_id)
            .and_then(|keys| keys.get(key))
            .is_some_and(|(_, secret)| *secret)
    }

    /// Expands a template over application variables (Redis addresses and channels,
    /// `allowed_outbound_hosts` entries). Errors name the unknown variable.
    pub fn expand(&self, text: &str) -> Result<String> {
        self.render(&Template::parse(text)?)
            .with_context(|| format!("in template {text:?}"))
    }

    fn render(&self, template: &Template) -> Result<String> {
        template.render(|name| self.get(name))
    }
}

#[cfg(test)]
mod tests;
