//! `fermyon:spin/variables@2.0.0`: a component reads only its own `[component.<id>.variables]`
//! keys, whose templates were expanded at start-up (providers: manifest default <
//! `SPIN_VARIABLE_<NAME>` < `--variable`), with Spin's error variants.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker};

use crate::bindings::imports::fermyon::spin2_0_0::variables::{self, Error};
use crate::state::InstanceState;

/// One component's variables: key -> expanded value.
pub type ComponentVariables = Arc<HashMap<String, String>>;

/// Per-instance state.
pub struct VariablesState {
    component: Arc<str>,
    values: ComponentVariables,
}

impl VariablesState {
    pub fn new(component: Arc<str>, values: ComponentVariables) -> Self {
        Self { component, values }
    }

    fn get(&self, name: &str) -> Result<String, Error> {
        check_name(name).map_err(Error::InvalidName)?;
        self.values.get(name).cloned().ok_or_else(|| {
            Error::Undefined(format!(
                "no variable for {:?}.{name:?}",
                self.component.as_ref()
            ))
        })
    }
}

/// Spin's rule for variable names: lower-case ASCII letters, digits and single underscores,
/// starting with a letter and not ending with an underscore.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("{name:?} must start with a lowercase ASCII letter"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "{name:?} may contain only lowercase ASCII letters, digits and '_', found {c:?}"
        ));
    }
    if name.contains("__") {
        return Err(format!(
            "{name:?} must not contain multiple consecutive underscores"
        ));
    }
    if name.ends_with('_') {
        return Err(format!("{name:?} must not end with an underscore"));
    }
    Ok(())
}

pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> Result<()> {
    variables::add_to_linker::<_, HasSelf<VariablesState>>(linker, |state| &mut state.variables)?;
    Ok(())
}

impl variables::Host for VariablesState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(VariablesState::get(self, &name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_reads_only_its_own_keys() {
        let values = Arc::new(HashMap::from([(
            "api_url".to_string(),
            "http://x".to_string(),
        )]));
        let state = VariablesState::new("orders".into(), values);
        assert_eq!(state.get("api_url").unwrap(), "http://x");
        assert!(matches!(state.get("admin_token"), Err(Error::Undefined(_))));
        assert!(matches!(state.get("Bad-Name"), Err(Error::InvalidName(_))));
    }

    #[test]
    fn names_follow_spin_rules() {
        assert!(check_name("a1_b").is_ok());
        for bad in ["", "1a", "a__b", "a_", "aB", "a-b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
