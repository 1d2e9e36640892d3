//! `fermyon:spin/variables@2.0.0`: a component reads only its own `[component.<id>.variables]`
//! keys, expanded at start-up by `spin-host-config` (providers: manifest default <
//! `SPIN_VARIABLE_<NAME>` < `--variable`), with Spin's error variants.

use std::sync::Arc;

use anyhow::Result;
use spin_host_config::variables::{check_name, Variables};
use wasmtime::component::{HasSelf, Linker};

use crate::bindings::imports::fermyon::spin2_0_0::variables::{self, Error};

/// Per-instance state.
pub struct VariablesState {
    component: Arc<str>,
    variables: Arc<Variables>,
}

impl VariablesState {
    pub fn new(component: Arc<str>, variables: Arc<Variables>) -> Self {
        Self {
            component,
            variables,
        }
    }

    fn get(&self, name: &str) -> Result<String, Error> {
        check_name(name).map_err(Error::InvalidName)?;
        self.variables
            .component_value(&self.component, name)
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Undefined(format!(
                    "no variable for {:?}.{name:?}",
                    self.component.as_ref()
                ))
            })
    }
}

/// Links `fermyon:spin/variables@2.0.0` to the [`VariablesState`] that `get` finds in the store's
/// data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut VariablesState,
) -> Result<()> {
    variables::add_to_linker::<_, HasSelf<VariablesState>>(linker, get)?;
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
    use spin_host_config::manifest::Manifest;

    #[test]
    fn a_component_reads_only_its_own_keys() {
        let manifest = Manifest::from_toml_str(
            r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
api_host = { default = "x.example" }
[[trigger.http]]
route = "/..."
component = "orders"
[component.orders]
source = "orders.wasm"
[component.orders.variables]
api_url = "http://{{ api_host }}"
"#,
        )
        .unwrap();
        let variables = Arc::new(Variables::resolve(&manifest, |_| None, &[]).unwrap());
        let state = VariablesState::new("orders".into(), variables);
        assert_eq!(state.get("api_url").unwrap(), "http://x.example");
        assert!(matches!(state.get("api_host"), Err(Error::Undefined(_))));
        assert!(matches!(state.get("Bad-Name"), Err(Error::InvalidName(_))));
    }
}
