//! Checks that need the whole manifest (cross-references, required combinations) or that refuse
//! Spin features this host does not implement. Spin does the equivalent in `spin-loader`.

use super::{ComponentRef, HttpExecutor, HttpRoute, Manifest};
use crate::variables::Template;
use anyhow::{bail, Context as _, Result};

pub(super) fn validate(m: &Manifest) -> Result<()> {
    for (name, var) in &m.variables {
        if var.required == var.default.is_some() {
            bail!("[variables] {name}: must be `required` OR have a `default`");
        }
    }
    for (id, c) in &m.components {
        let unsupported = |key: &str, why: &str| -> Result<()> {
            bail!("[component.{id}] {key}: not supported by this host ({why})")
        };
        if !c.allowed_http_hosts.is_empty() {
            unsupported(
                "allowed_http_hosts",
                "deprecated in Spin; use allowed_outbound_hosts = [\"https://host\"]",
            )?;
        }
        if !c.ai_models.is_empty() {
            unsupported("ai_models", "no Serverless AI")?;
        }
        if !c.dependencies.is_empty() || c.dependencies_inherit_configuration.is_some() {
            unsupported("dependencies", "no component composition")?;
        }
        if !c.profile.is_empty() {
            unsupported("profile", "no build/run profiles")?;
        }
        for (key, text) in &c.variables {
            check_template(m, text).with_context(|| format!("[component.{id}.variables] {key}"))?;
        }
        for text in &c.allowed_outbound_hosts {
            check_template(m, text)
                .with_context(|| format!("[component.{id}] allowed_outbound_hosts"))?;
        }
    }
    if let Some(redis) = &m.application.trigger.redis {
        check_template(m, &redis.address).context("[application.trigger.redis] address")?;
    }
    for (i, t) in m.triggers.http.iter().enumerate() {
        let what = match &t.route {
            HttpRoute::Path(route) => format!("[[trigger.http]] #{} (route {route:?})", i + 1),
            HttpRoute::Private => format!("[[trigger.http]] #{} (private route)", i + 1),
        };
        if t.static_response.is_some() {
            bail!("{what}: static_response is not supported by this host; use a component");
        }
        if let Some(HttpExecutor::Wagi(_)) = t.executor {
            bail!("{what}: executor type \"wagi\" is not supported by this host; use a wasi:http component");
        }
        match &t.component {
            None => bail!("{what}: missing field `component`"),
            Some(c) => check_ref(m, &what, c)?,
        }
    }
    let default_address = m.application.trigger.redis.as_ref().map(|r| &r.address);
    for (i, t) in m.triggers.redis.iter().enumerate() {
        let what = format!("[[trigger.redis]] #{} (channel {:?})", i + 1, t.channel);
        check_ref(m, &what, &t.component)?;
        check_template(m, &t.channel).with_context(|| format!("{what}: channel"))?;
        if let Some(address) = &t.address {
            check_template(m, address).with_context(|| format!("{what}: address"))?;
        }
        if t.address.is_none() && default_address.is_none() {
            bail!(
                "{what}: no Redis address; set `address` on the trigger or \
                 `address` in [application.trigger.redis]"
            );
        }
    }
    Ok(())
}

fn check_ref(m: &Manifest, what: &str, c: &ComponentRef) -> Result<()> {
    match c {
        ComponentRef::Inline(_) => bail!(
            "{what}: inline components are not supported by this host; \
             define a [component.<id>] table and write component = \"<id>\""
        ),
        ComponentRef::Id(id) if !m.components.contains_key(id.as_str()) => bail!(
            "{what}: component {:?} does not exist; there is no [component.{id}] table",
            id.as_str()
        ),
        ComponentRef::Id(_) => Ok(()),
    }
}

/// Spin checks at load time that templates only name declared `[variables]`.
fn check_template(m: &Manifest, text: &str) -> Result<()> {
    let template = Template::parse(text)?;
    for name in template.variables() {
        if !m.variables.contains_key(name) {
            bail!(
                "template {text:?} refers to unknown variable {name:?}; declare it in [variables]"
            );
        }
    }
    Ok(())
}
