//! `{{ name }}` templates, as in Spin's `spin-expressions` crate: text outside `{{ }}` is literal,
//! the text between `{{` and the next `}}` is a variable name with surrounding whitespace ignored.

use crate::manifest::VariableName;
use anyhow::{anyhow, bail, Result};

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(String),
}

impl Template {
    /// Parses `text`; fails on an unmatched `{{` or a name that is not a valid variable name.
    pub fn parse(text: &str) -> Result<Template> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find("{{") {
                Some(0) => {
                    let Some((expr, after)) = rest[2..].split_once("}}") else {
                        bail!("unmatched '{{{{' in template {text:?}");
                    };
                    let name = expr.trim();
                    VariableName::try_from(name.to_string())
                        .map_err(|why| anyhow!("in template {text:?}: {why}"))?;
                    parts.push(Part::Var(name.to_string()));
                    rest = after;
                }
                Some(i) => {
                    parts.push(Part::Lit(rest[..i].to_string()));
                    rest = &rest[i..];
                }
                None => {
                    parts.push(Part::Lit(rest.to_string()));
                    rest = "";
                }
            }
        }
        Ok(Template { parts })
    }

    /// The variable names the template refers to, in order of appearance.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(name) => Some(name.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// True if the template contains no `{{ }}` expressions.
    pub fn is_literal(&self) -> bool {
        self.variables().next().is_none()
    }

    /// Substitutes each variable with `lookup(name)`; an unknown name is an error naming it.
    pub fn render<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> Result<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(text) => out.push_str(text),
                Part::Var(name) => {
                    out.push_str(lookup(name).ok_or_else(|| anyhow!("unknown variable {name:?}"))?)
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str, vars: &[(&'static str, &'static str)]) -> Result<String> {
        Template::parse(text)?.render(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| *v))
    }

    #[test]
    fn renders_with_and_without_whitespace() {
        let vars = [("host", "example.com"), ("port", "8080")];
        assert_eq!(
            render("https://{{host}}:{{ port }}/x", &vars).unwrap(),
            "https://example.com:8080/x"
        );
        assert_eq!(render("{{  host\t}}", &vars).unwrap(), "example.com");
        assert_eq!(
            render("{{ host }}{{ port }}", &vars).unwrap(),
            "example.com8080"
        );
        assert_eq!(render("plain } }} text", &vars).unwrap(), "plain } }} text");
        assert_eq!(render("", &vars).unwrap(), "");
    }

    #[test]
    fn lists_variables() {
        let t = Template::parse("a{{ x }}b{{y}}").unwrap();
        assert_eq!(t.variables().collect::<Vec<_>>(), ["x", "y"]);
        assert!(!t.is_literal());
        assert!(Template::parse("redis://localhost").unwrap().is_literal());
    }

    #[test]
    fn errors_name_the_problem() {
        let e = render("{{ nope }}", &[]).unwrap_err().to_string();
        assert_eq!(e, "unknown variable \"nope\"");
        let e = render("{{ ok }} {{ unmatched", &[("ok", "1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unmatched '{{'"), "{e}");
        let e = render("{{ Bad-Name }}", &[]).unwrap_err().to_string();
        assert!(e.contains("invalid variable name \"Bad-Name\""), "{e}");
        let e = render("{{ }}", &[]).unwrap_err().to_string();
        assert!(e.contains("invalid variable name \"\""), "{e}");
    }
}
