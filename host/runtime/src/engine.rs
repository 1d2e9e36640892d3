//! The Wasmtime engine: configuration (pooling, async, epochs, code cache) and component loading.
//! Mirrors Spin's `crates/core`: one engine per app, one `InstancePre` per component, and a fresh
//! `Store` per request or message.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, Engine, InstanceAllocationStrategy,
    PoolingAllocationConfig, UpdateDeadline,
};

use crate::state::InstanceState;

/// How often the epoch advances; also how often a running guest yields to other tasks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Concurrent instances, as Spin's `SPIN_MAX_INSTANCE_COUNT` default.
const MAX_INSTANCES: u32 = 1000;

/// Bytes of each pooled memory, table and async stack slot kept resident between instances.
const KEEP_RESIDENT: usize = 4 << 20;

/// The most a linear memory may grow to: the pooling allocator's slot, and the default
/// `max_instance_memory` (see [`MemoryLimit`]).
const MAX_MEMORY: usize = 1 << 30;

/// Builds the engine (`build_engine`) and compiles the app's components with it.
///
/// The component model's concurrency support (the async ABI that WASI 0.3 types need) stays off
/// unless a component needs it: with it on, every store sets up task state and every host call
/// records a host task, about a tenth of the host's CPU time per request (BENCHMARKS.md). A set of
/// components that does not compile without it is compiled again on an engine that has it, so a
/// component importing WASI 0.3 interfaces still loads (their functions trap when called).
pub(crate) fn compile(
    state_dir: Option<&Path>,
    paths: &[PathBuf],
) -> Result<(Engine, Vec<Component>)> {
    let compile_with = |concurrency| -> Result<(Engine, Vec<Component>)> {
        let engine = build_engine(state_dir, concurrency)?;
        let components = paths
            .iter()
            .map(|path| load_component(&engine, path))
            .collect::<Result<_>>()?;
        Ok((engine, components))
    };
    compile_with(false).or_else(|_| compile_with(true))
}

/// Builds the engine. Compiled code is cached under `<state_dir>/cache` (when the app keeps
/// state on disk) so that a restart with unchanged `.wasm` files skips Cranelift and serves its
/// first request quickly.
fn build_engine(state_dir: Option<&Path>, concurrency: bool) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.concurrency_support(concurrency);
    if std::env::var_os("SHOP_HOST_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }

    if let Some(state_dir) = state_dir {
        let cache_dir = state_dir.join("cache");
        std::fs::create_dir_all(&cache_dir)
            .with_context(|| format!("cannot create the code cache {}", cache_dir.display()))?;
        let mut cache_config = CacheConfig::new();
        cache_config.with_directory(&cache_dir);
        config.cache(Some(Cache::new(cache_config).map_err(anyhow::Error::from)?));
    }

    let mut pooled = config.clone();
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config()));
    match Engine::new(&pooled) {
        Ok(engine) => Ok(engine),
        Err(err) => {
            // Some sandboxes refuse the large virtual reservations pooling needs; run without it.
            tracing::warn!(error = %err, "pooling allocator unavailable, using on-demand allocation");
            Engine::new(&config).map_err(Into::into)
        }
    }
}

fn pooling_config() -> PoolingAllocationConfig {
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(MAX_INSTANCES)
        .total_core_instances(MAX_INSTANCES * 4)
        .total_memories(MAX_INSTANCES * 2)
        .total_tables(MAX_INSTANCES * 4)
        .total_stacks(MAX_INSTANCES)
        .max_memory_size(MAX_MEMORY)
        // Reset the first MiBs of a reused slot with memset instead of giving them back to the
        // kernel: a fresh instance would otherwise page-fault its way back in on every request.
        // Where the kernel offers PAGEMAP_SCAN (Linux 6.7+), only the pages the last instance
        // dirtied are reset, not all of them: the memset was a tenth of a read's CPU time.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .async_stack_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);
    pooling
}

/// `max_instance_memory`, as Spin's `StoreLimitsAsync` (`crates/core/src/limits.rs`): a linear
/// memory may not grow past it, so the guest's `memory.grow` fails (a Rust guest then aborts
/// and its instance traps: 500, or a failed message), and the refusal is logged, as Spin logs
/// it. Spin sets no limit unless `--max-instance-memory` or the runtime config's
/// `max_instance_memory` does, and its pooling slots stop a memory at 4 GiB; this host's slots
/// stop one at [`MAX_MEMORY`] (1 GiB), which is therefore the default here, enforced by this
/// limiter as well so that the engine without pooling allows no more.
pub(crate) struct MemoryLimit {
    max: usize,
}

impl MemoryLimit {
    /// A limit of `max` bytes per linear memory (at most [`MAX_MEMORY`]), or the default.
    pub(crate) fn new(max: Option<usize>) -> Self {
        Self {
            max: max.unwrap_or(MAX_MEMORY).min(MAX_MEMORY),
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max;
        if !allowed {
            tracing::warn!(
                error.r#type = "memory_limit_exceeded",
                current,
                desired,
                maximum,
                max_instance_memory = self.max,
                "instance memory limit exceeded"
            );
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// Advances the engine's epoch on a thread until the returned guard is dropped.
pub(crate) fn start_epoch_ticker(engine: &Engine) -> EpochTicker {
    let stop = Arc::new(AtomicBool::new(false));
    let engine = engine.clone();
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .expect("spawn the epoch thread");
    EpochTicker { stop }
}

/// Stops the epoch thread on drop.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Makes a store's guest yield at epoch ticks (see `on_tick`) and trap once `deadline` has
/// passed. Epochs only reach running Wasm: a guest waiting in a host call (a sleep, an outbound
/// request) is stopped by [`until_deadline`] instead.
pub(crate) fn set_deadline(store: &mut wasmtime::Store<InstanceState>, deadline: Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |store| {
        Ok(on_tick(
            Instant::now() >= deadline,
            store.data().sqlite.in_transaction(),
        ))
    });
}

/// A guest call (instantiation and export, host calls included) that was still running at its
/// instance's deadline, and was dropped there.
#[derive(Debug)]
pub(crate) struct DeadlinePassed;

impl std::fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the instance ran past its deadline (--instance-timeout-secs) and was stopped")
    }
}

impl std::error::Error for DeadlinePassed {}

/// Runs `call` until `deadline` (the instance's, see `InstanceState::deadline`), on the wall
/// clock. The epoch deadline cannot stop a guest that waits in a host call; dropping the call's
/// future here ends it wherever it is (Wasmtime unwinds the guest's stack), and the store with
/// it: its connections, outbound requests and open SQLite transaction (rolled back) go too.
pub(crate) async fn until_deadline<F: std::future::Future>(
    deadline: Instant,
    call: F,
) -> Result<F::Output, DeadlinePassed> {
    tokio::time::timeout_at(deadline.into(), call)
        .await
        .map_err(|_| DeadlinePassed)
}

/// What a running guest does at an epoch tick: trap past its deadline; otherwise yield to the
/// other tasks, unless it is inside a SQLite transaction. A guest that yields there keeps the
/// database's lock while it waits for its turn again, and every writer queues behind it: under
/// load those waits were most of the tail of `POST /orders` latency.
fn on_tick(past_deadline: bool, in_transaction: bool) -> UpdateDeadline {
    if past_deadline {
        UpdateDeadline::Interrupt
    } else if in_transaction {
        UpdateDeadline::Continue(1)
    } else {
        UpdateDeadline::Yield(1)
    }
}

/// Compiles (or loads from the cache) one component, naming the file on failure. A core module
/// is made a component first (`componentize`), as Spin does.
fn load_component(engine: &Engine, path: &Path) -> Result<Component> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read component {}: run `shop-host build` (or cargo build --release --target wasm32-wasip2) first",
            path.display()
        )
    })?;
    let bytes = componentize(bytes).with_context(|| {
        format!(
            "{} is a core module that cannot be made a component",
            path.display()
        )
    })?;
    Component::new(engine, &bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{} is not a valid WebAssembly component", path.display()))
}

/// The preamble of a core module: magic, then version 1. (A component's has layer 1 and another
/// version; this check is all Spin's loader makes too.)
const CORE_MODULE_PREAMBLE: [u8; 8] = *b"\0asm\x01\0\0\0";

/// Makes a core module a component, as Spin's loader does (`spin-componentize`) for modules
/// built with wit-bindgen (their `component-type` section names the world): encoded by
/// wit-component, with the WASI preview 1 adapter when the module imports
/// `wasi_snapshot_preview1` (modules built for `wasm32-wasip1`). Components pass through.
/// Modules of Spin 1's pre-component ABI, which Spin adapts with adapters of its own, are not
/// supported (ADR 0003).
pub fn componentize(bytes: Vec<u8>) -> Result<Vec<u8>> {
    if !bytes.starts_with(&CORE_MODULE_PREAMBLE) {
        return Ok(bytes);
    }
    use wasi_preview1_component_adapter_provider as adapters;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&bytes)?
        // Linked in only when the module imports it.
        .adapter(
            adapters::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            adapters::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
}

/// Spin interfaces (and WASI versions) a component may import that this host does not implement:
/// llm, mysql, wasi:config, spin:postgres other than 3.0.0 and 4.0.0, spin:mqtt, wasi:keyvalue
/// other than 0.2.0-draft2, the unversioned `fermyon:spin` ones and WASI 0.3 previews. They are
/// linked as functions that trap with a message naming the import, so a component that imports
/// but never calls them still runs.
///
/// (Wasmtime's `define_unknown_imports_as_traps` can't be used: it also shadows WASI imports of
/// older patch versions, such as `wasi:http/types@0.2.0`, that the linker serves by semver.)
pub(crate) fn stub_unsupported_imports(
    linker: &mut Linker<InstanceState>,
    engine: &Engine,
    component: &Component,
) -> Result<()> {
    use wasmtime::component::types::ComponentItem;
    use wasmtime::component::ResourceType;
    for (name, item) in component.component_type().imports(engine) {
        if is_implemented(name) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let mut stub = linker.instance(name)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let import = format!("{name}#{export}");
                    stub.func_new(export, move |_, _, _, _| {
                        wasmtime::bail!("`{import}` is not supported by this host (shop-host)")
                    })?;
                }
                ComponentItem::Resource(_) => {
                    stub.resource(export, ResourceType::host::<()>(), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Whether the shared linker serves this import (WASI 0.2.x by semver, and Spin's interfaces).
fn is_implemented(name: &str) -> bool {
    const SPIN: &[&str] = &[
        "fermyon:spin/key-value@2.0.0",
        "fermyon:spin/sqlite@2.0.0",
        "fermyon:spin/redis@2.0.0",
        "fermyon:spin/mqtt@2.0.0",
        "fermyon:spin/variables@2.0.0",
        "spin:sqlite/sqlite@3.0.0",
        "spin:postgres/postgres@4.0.0",
        "spin:postgres/postgres@3.0.0",
        "fermyon:spin/postgres@2.0.0",
        // Types only, shared with mysql: served for postgres, harmless for a mysql import.
        "fermyon:spin/rdbms-types@2.0.0",
        "wasi:keyvalue/store@0.2.0-draft2",
        "wasi:keyvalue/atomics@0.2.0-draft2",
        "wasi:keyvalue/batch@0.2.0-draft2",
    ];
    const WASI: [&str; 7] = [
        "wasi:cli/",
        "wasi:io/",
        "wasi:clocks/",
        "wasi:filesystem/",
        "wasi:random/",
        "wasi:sockets/",
        "wasi:http/",
    ];
    SPIN.contains(&name)
        || (WASI.iter().any(|prefix| name.starts_with(prefix)) && name.contains("@0.2."))
}

/// The linker every component shares: WASI, wasi:http and Spin's interfaces.
pub(crate) fn build_linker(engine: &Engine) -> Result<Linker<InstanceState>> {
    let mut linker = Linker::new(engine);
    crate::state::add_to_linker(&mut linker)?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::{compile, is_implemented, on_tick};
    use wasmtime::UpdateDeadline;

    /// Compiles components written as WAT text, which Wasmtime reads as well as binaries (no state
    /// dir, so no code cache); returns whether the engine has concurrency support.
    fn compiled_with_concurrency(wats: &[&str]) -> bool {
        let dir = testkit::tempfile::tempdir().unwrap();
        let paths: Vec<_> = wats
            .iter()
            .enumerate()
            .map(|(i, wat)| {
                let path = dir.path().join(format!("c{i}.wasm"));
                std::fs::write(&path, wat).unwrap();
                path
            })
            .collect();
        let (engine, components) = compile(None, &paths).unwrap();
        assert_eq!(components.len(), wats.len());
        engine.get_concurrency_support()
    }

    /// A component importing a function that returns a stream, as WASI 0.3 interfaces do.
    const STREAMING_IMPORT: &str = r#"(component
        (import "wasi:demo/streams@0.3.0" (instance
            (type $bytes (stream u8))
            (export "read" (func (result $bytes)))
        ))
    )"#;
    const PLAIN: &str = r#"(component
        (import "wasi:demo/plain@0.2.0" (instance (export "now" (func (result u64)))))
    )"#;

    #[test]
    fn concurrency_support_is_on_only_when_a_component_needs_it() {
        assert!(!compiled_with_concurrency(&[PLAIN]));
        assert!(compiled_with_concurrency(&[PLAIN, STREAMING_IMPORT]));
    }

    #[test]
    fn a_component_that_compiles_on_no_engine_is_still_an_error() {
        let dir = testkit::tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.wasm");
        std::fs::write(&path, b"\0asm not really").unwrap();
        let err = compile(None, &[path]).unwrap_err();
        assert!(format!("{err:#}").contains("broken.wasm is not a valid WebAssembly component"));
    }

    #[test]
    fn a_guest_yields_at_a_tick_unless_inside_a_transaction_and_traps_past_its_deadline() {
        assert!(matches!(on_tick(false, false), UpdateDeadline::Yield(1)));
        assert!(matches!(on_tick(false, true), UpdateDeadline::Continue(1)));
        assert!(matches!(on_tick(true, true), UpdateDeadline::Interrupt));
        assert!(matches!(on_tick(true, false), UpdateDeadline::Interrupt));
    }

    #[test]
    fn memory_may_grow_to_the_limit_and_no_further() {
        use super::{MemoryLimit, MAX_MEMORY};
        use wasmtime::ResourceLimiter;
        let mut limit = MemoryLimit::new(Some(32 << 20));
        assert!(limit.memory_growing(0, 32 << 20, None).unwrap());
        assert!(!limit
            .memory_growing(32 << 20, (32 << 20) + 65536, None)
            .unwrap());
        let mut default = MemoryLimit::new(None);
        assert!(default.memory_growing(0, MAX_MEMORY, None).unwrap());
        assert!(!default.memory_growing(0, MAX_MEMORY + 65536, None).unwrap());
        let mut beyond_the_slot = MemoryLimit::new(Some(4 << 30));
        assert!(!beyond_the_slot
            .memory_growing(0, MAX_MEMORY + 65536, None)
            .unwrap());
    }

    #[test]
    fn only_served_interfaces_count_as_implemented() {
        assert!(is_implemented("wasi:http/types@0.2.0"));
        assert!(is_implemented("wasi:io/streams@0.2.6"));
        assert!(is_implemented("fermyon:spin/key-value@2.0.0"));
        assert!(is_implemented("fermyon:spin/mqtt@2.0.0"));
        assert!(!is_implemented("spin:mqtt/mqtt@3.0.0"));
        assert!(!is_implemented("fermyon:spin/llm@2.0.0"));
        assert!(is_implemented("spin:postgres/postgres@4.0.0"));
        assert!(is_implemented("spin:postgres/postgres@3.0.0"));
        assert!(is_implemented("fermyon:spin/postgres@2.0.0"));
        assert!(!is_implemented("fermyon:spin/postgres"));
        assert!(!is_implemented("spin:postgres/postgres@4.2.0"));
        assert!(!is_implemented("fermyon:spin/key-value"));
        assert!(!is_implemented("wasi:http/types@0.3.0-rc-2026-01-06"));
        assert!(is_implemented("wasi:keyvalue/store@0.2.0-draft2"));
        assert!(is_implemented("wasi:keyvalue/atomics@0.2.0-draft2"));
        assert!(is_implemented("wasi:keyvalue/batch@0.2.0-draft2"));
        assert!(!is_implemented("wasi:keyvalue/watcher@0.2.0-draft2"));
        assert!(!is_implemented("wasi:keyvalue/store@0.2.0-draft"));
    }
}
