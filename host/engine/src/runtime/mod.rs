//! The Wasm runtime: one engine (pooling allocator, epoch interruption, optional fuel), a
//! compile cache on disk, plugin loading with grant checks, and sandboxed invocation.
//!
//! Every invocation gets a fresh store and instance from the plugin's `InstancePre`, with:
//! - a wall-clock deadline (epoch ticks every millisecond; the guest yields to the executor
//!   on each tick and traps once the deadline has passed),
//! - fuel, when the workspace meters it,
//! - a memory limit (a growth past it traps),
//! - a host-call budget (enforced by the capability choke point),
//! - an output-size limit (checked on the returned proposal),
//! - a locked-down WASI context (no environment, arguments, files or network; stderr
//!   captured so a guest's panic message reaches the fault).

pub mod bind;
pub mod convert;
pub mod fault;
mod load;

pub use load::{LoadError, LoadedPlugin, PluginFile, PolicyPre};

use crate::bindings::types;
use crate::caps::{
    Answers, CallContext, HostCall, HostState, LogLine, MemoryLimiter, PluginIdentity, RunScope,
    Services,
};
use crate::config::RuntimeConfig;
use deskhost_protocol::json::JsonText;
use fault::{Fault, FaultKind, HostTrap};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// Epoch tick period: the granularity of deadlines and of guest yields.
const TICK: Duration = Duration::from_millis(1);
/// Captured stderr per call (a guest writing more traps with an output fault).
const STDERR_CAPACITY: usize = 64 * 1024;
/// Captured stderr kept in the run record (the panic text is extracted before the cut).
const MAX_STDERR_KEPT: usize = 4096;
/// Extra time for a call stuck in the host (the epoch only interrupts guest code).
const HOST_GRACE: Duration = Duration::from_millis(500);

/// Linear memories and tables the pool holds per instance, on average: a component may use
/// more of either (up to `max_memories_per_component` / `max_tables_per_component`) and then
/// takes more than one instance's share of the pool ([`pool_share`]).
const MEMORIES_PER_INSTANCE: u32 = 2;
const TABLES_PER_INSTANCE: u32 = 8;

/// What one instance of a component with `memories` linear memories and `tables` tables
/// takes from the pool, in instances: at least one, more when it needs more memories or
/// tables than an instance's share. An invocation holds that many permits, so the instances
/// alive at once never need more memories or tables than the pool has. (Core instances are
/// not counted: wasmtime does not say how many a component makes.)
pub(crate) fn pool_share(memories: u32, tables: u32) -> u32 {
    memories
        .div_ceil(MEMORIES_PER_INSTANCE)
        .max(tables.div_ceil(TABLES_PER_INSTANCE))
        .max(1)
}

/// Whether this kernel has the `PAGEMAP_SCAN` ioctl (Linux 6.7+), which lets an instance's
/// memory be reset by the pages its slot has written instead of the whole kept region.
pub fn pagemap_scan_available() -> bool {
    PoolingAllocationConfig::is_pagemap_scan_available()
}

/// The profiler `DESKHOST_PROFILER` names for plugin code: unset, empty or `none` for none;
/// `perfmap` (wasmtime writes `/tmp/perf-PID.map`, which `perf report` reads to name a
/// component's functions) or `jitdump` (for `perf inject --jit`). Anything else is refused,
/// naming the variable, rather than ignored.
fn profiler_from_env() -> wasmtime::Result<wasmtime::ProfilingStrategy> {
    use wasmtime::ProfilingStrategy;
    let Some(value) = std::env::var_os(PROFILER_ENV) else {
        return Ok(ProfilingStrategy::None);
    };
    Ok(match value.to_str() {
        Some("" | "none") => ProfilingStrategy::None,
        Some("perfmap") => ProfilingStrategy::PerfMap,
        Some("jitdump") => ProfilingStrategy::JitDump,
        _ => wasmtime::bail!(
            "{PROFILER_ENV}={value:?} is not a profiler: use perfmap or jitdump, or unset it"
        ),
    })
}

/// The environment variable naming a profiler for plugin code ([`profiler_from_env`]).
pub const PROFILER_ENV: &str = "DESKHOST_PROFILER";

/// The shared engine and compile cache.
pub struct Runtime {
    engine: Engine,
    cache_dir: PathBuf,
    fuel: bool,
    pagemap_scan: bool,
    stop: Arc<AtomicBool>,
    blob_limits: BlobLimits,
    /// One permit per instance the pool can hold: an invocation waits for its plugin's
    /// [`pool_share`] before it instantiates and gives it back after its store (and so its
    /// slots) is dropped. Without it, more invocations alive at once than the pool holds
    /// (tickets in flight beyond `pool_instances`, guests yielding at epoch ticks or waiting
    /// on host calls) fail with an instantiation fault instead of waiting.
    instances: Arc<Semaphore>,
    /// The pool's size in instances (the most permits one invocation can take).
    pool_instances: u32,
}

/// The operator's ceilings on the files a manifest names (`[runtime]` in deskhost.toml).
#[derive(Clone, Copy, Debug)]
pub struct BlobLimits {
    /// Largest settings document, bytes.
    pub settings_bytes: u64,
    /// Largest data file, bytes.
    pub data_bytes: u64,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache_dir", &self.cache_dir)
            .field("fuel", &self.fuel)
            .finish()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// An engine configured by `config`, caching compiled components in `cache_dir`.
    pub fn new(config: &RuntimeConfig, cache_dir: &Path) -> wasmtime::Result<Self> {
        let mut pool = PoolingAllocationConfig::new();
        let instances = config.pool_instances;
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * MEMORIES_PER_INSTANCE)
            .total_tables(instances * TABLES_PER_INSTANCE)
            .total_stacks(instances)
            .max_core_instances_per_component(64)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_memory_size(config.max_memory_mib as usize * 1024 * 1024)
            // Keep the first 64 MiB of each slot resident between instances (no madvise and
            // page faults per call). Without PAGEMAP_SCAN wasmtime copies that whole region
            // (up to the memory's size) back by hand when a store is dropped. With it (Linux
            // 6.7+, `Enabled::Auto` falls back when the kernel lacks it) the kernel walks the
            // slot's page table and wasmtime resets the pages that are neither the untouched
            // image nor the zero page. Without userfaultfd write protection the kernel cannot
            // tell this call's writes from earlier ones, so that is every page the slot ever
            // wrote, and the walk visits every resident page, the bound model's included
            // (measured: keeping 256 KiB resident costs the same after the call as 64 MiB;
            // the triage plugin writes less than that).
            // `Runtime::pagemap_scan` says which applies; `deskhost bench triage` measures
            // both.
            .linear_memory_keep_resident(64 * 1024 * 1024)
            .table_keep_resident(1024 * 1024)
            .pagemap_scan(if config.pagemap_scan {
                wasmtime::Enabled::Auto
            } else {
                wasmtime::Enabled::No
            });
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .consume_fuel(config.fuel_metering)
            .memory_init_cow(true)
            .profiler(profiler_from_env()?)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = engine.clone();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("deskhost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticker.increment_epoch();
                }
            })?;
        Ok(Self {
            engine,
            cache_dir: cache_dir.to_path_buf(),
            fuel: config.fuel_metering,
            pagemap_scan: config.pagemap_scan
                && PoolingAllocationConfig::is_pagemap_scan_available(),
            stop,
            instances: Arc::new(Semaphore::new(instances as usize)),
            pool_instances: instances,
            blob_limits: BlobLimits {
                settings_bytes: u64::from(config.max_settings_kib) * 1024,
                data_bytes: u64::from(config.max_data_mib) * 1024 * 1024,
            },
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether fuel is metered.
    pub fn fuel_metering(&self) -> bool {
        self.fuel
    }

    /// Whether instance memory is reset by PAGEMAP_SCAN (configured and the kernel has it).
    pub fn pagemap_scan(&self) -> bool {
        self.pagemap_scan
    }

    /// Where compiled components are cached.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Invokes `plugin` on `input` in a fresh instance, with all limits on.
    pub async fn invoke(
        &self,
        plugin: &LoadedPlugin,
        services: Arc<Services>,
        scope: RunScope,
        input: PolicyInput<'_>,
        answers: Answers,
    ) -> Invocation {
        let share = plugin.pool_share.clamp(1, self.pool_instances.max(1));
        // Declared before the store, so dropped after it: the slot is free again first.
        let Ok(_instance) = self.instances.acquire_many(share).await else {
            return Invocation::failed(Fault::new(
                FaultKind::HostError,
                "no instance permit: the runtime is shutting down",
            ));
        };
        let identity = plugin.identity.clone();
        let limits = identity.limits.clone();
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let seed = determinism_seed(&scope.ticket.content_hash, &identity.digest);
        let wasi = locked_down_wasi(&stderr, seed, scope.clock_ms);
        let limiter = MemoryLimiter {
            limit: plugin.memory_limit_bytes,
            peak: 0,
        };
        let mut call = CallContext::new(identity.clone(), scope, services);
        call.answers = answers;
        let state = HostState::new(wasi, limiter, call);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        if self.fuel
            && let Err(e) = store.set_fuel(limits.fuel)
        {
            return Invocation::failed(Fault::new(
                FaultKind::HostError,
                format!("cannot set fuel: {e}"),
            ));
        }
        let started = Instant::now();
        let deadline = started + Duration::from_millis(limits.wall_ms);
        let wall_ms = limits.wall_ms;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(HostTrap::Deadline { ms: wall_ms }))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        let call = async {
            let instantiated = Instant::now();
            let output = match &plugin.pre {
                PolicyPre::Triage(pre) => {
                    let PolicyInput::Triage { ticket } = input else {
                        return Err(wrong_input(plugin));
                    };
                    let instance = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(Stage::Instantiate)?;
                    let t = instantiated.elapsed();
                    instance
                        .call_triage(&mut store, ticket)
                        .await
                        .map(|r| (r.map(PolicyOutput::Triage), t))
                }
                PolicyPre::Reply(pre) => {
                    let PolicyInput::Reply { ticket, triage } = input else {
                        return Err(wrong_input(plugin));
                    };
                    let instance = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(Stage::Instantiate)?;
                    let t = instantiated.elapsed();
                    instance
                        .call_reply(&mut store, ticket, triage)
                        .await
                        .map(|r| (r.map(PolicyOutput::Reply), t))
                }
                PolicyPre::Escalation(pre) => {
                    let PolicyInput::Escalation {
                        ticket,
                        triage,
                        reply,
                    } = input
                    else {
                        return Err(wrong_input(plugin));
                    };
                    let instance = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(Stage::Instantiate)?;
                    let t = instantiated.elapsed();
                    instance
                        .call_escalate(&mut store, ticket, triage, reply)
                        .await
                        .map(|r| (r.map(PolicyOutput::Escalation), t))
                }
            };
            output.map_err(Stage::Call)
        };
        let outcome = tokio::time::timeout(Duration::from_millis(wall_ms) + HOST_GRACE, call).await;
        let wall = started.elapsed();

        let stderr_text = String::from_utf8_lossy(&stderr.contents()).into_owned();
        let (result, instantiate_us) = match outcome {
            Err(_) => (
                Err(Fault::new(
                    FaultKind::Deadline,
                    format!("the call did not return within {wall_ms} ms (stuck in a host call)"),
                )),
                0,
            ),
            Ok(Err(Stage::Instantiate(e))) => {
                let mut f = fault::classify(&e, &stderr_text);
                if f.kind == FaultKind::HostError || f.kind == FaultKind::GuestTrap {
                    f.kind = FaultKind::Instantiation;
                }
                (Err(f), 0)
            }
            Ok(Err(Stage::Call(e))) => (Err(fault::classify(&e, &stderr_text)), 0),
            Ok(Err(Stage::Input(f))) => (Err(f), 0),
            Ok(Ok((Err(plugin_error), t))) => (
                Err(Fault::from_plugin_error(
                    &plugin_error.code,
                    &plugin_error.message,
                )),
                t.as_micros() as u64,
            ),
            Ok(Ok((Ok(output), t))) => {
                let size = output.json_size();
                let limit = limits.output_kib as usize * 1024;
                if size > limit {
                    (
                        Err(Fault::new(
                            FaultKind::OutputTooLarge,
                            format!(
                                "the proposal is {size} bytes as JSON; limits.output_kib allows {limit}"
                            ),
                        )),
                        t.as_micros() as u64,
                    )
                } else {
                    (Ok(output), t.as_micros() as u64)
                }
            }
        };
        let fuel_used = if self.fuel {
            store
                .get_fuel()
                .ok()
                .map(|left| limits.fuel.saturating_sub(left))
        } else {
            None
        };
        let mut state = store.into_data();
        state.call.close_logs();
        Invocation {
            stats: InvocationStats {
                wall_us: wall.as_micros() as u64,
                instantiate_us,
                fuel_used,
                host_calls: state.call.calls.len() as u32,
                memory_peak_bytes: state.limiter.peak as u64,
            },
            result,
            calls: state.call.calls,
            logs: state.call.logs,
            stderr: crate::sanitize::truncate(&stderr_text, MAX_STDERR_KEPT).into_owned(),
        }
    }
}

enum Stage {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
    Input(Fault),
}

fn wrong_input(plugin: &LoadedPlugin) -> Stage {
    Stage::Input(Fault::new(
        FaultKind::HostError,
        format!(
            "host bug: wrong input for a {} plugin",
            plugin.identity.kind
        ),
    ))
}

fn locked_down_wasi(stderr: &MemoryOutputPipe, seed: u64, clock_ms: u64) -> WasiCtx {
    use rand::SeedableRng;
    // No env, args, preopens or sockets: WASI is linked because guests import it, not to
    // give them anything. stdout is discarded (capped), stderr captured. Randomness and the
    // wall clock are fixed per (ticket, plugin) and run, so a replay runs the same code path.
    WasiCtx::builder()
        .stdout(MemoryOutputPipe::new(STDERR_CAPACITY))
        .stderr(stderr.clone())
        .allow_ip_name_lookup(false)
        .allow_tcp(false)
        .allow_udp(false)
        .secure_random(rand::rngs::StdRng::seed_from_u64(seed))
        .insecure_random(rand::rngs::StdRng::seed_from_u64(seed.rotate_left(17)))
        .insecure_random_seed(u128::from(seed))
        .wall_clock(FixedClock(Duration::from_millis(clock_ms)))
        .monotonic_clock(StepClock::default())
        .build()
}

/// The seed of a plugin call's WASI randomness: the ticket's content and the plugin's digest.
fn determinism_seed(content_hash: &str, digest: &str) -> u64 {
    let take = |s: &str| u64::from_str_radix(s.get(..16).unwrap_or("0"), 16).unwrap_or(0);
    take(content_hash) ^ take(digest).rotate_left(1)
}

/// The wall clock of a run: always the run's start time.
struct FixedClock(Duration);

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// A monotonic clock that advances one microsecond per reading.
#[derive(Default)]
struct StepClock(std::sync::atomic::AtomicU64);

impl wasmtime_wasi::HostMonotonicClock for StepClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        self.0.fetch_add(1_000, Ordering::Relaxed)
    }
}

/// What a policy is called with. Serialized (untagged: `{"ticket", "triage", "reply"}` as
/// the stage has them) it is the stage input replay feeds back.
#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(untagged)]
pub enum PolicyInput<'a> {
    /// `triage(ticket)`.
    Triage {
        /// The redacted ticket.
        ticket: &'a types::Ticket,
    },
    /// `reply(ticket, triage)`.
    Reply {
        /// The redacted ticket.
        ticket: &'a types::Ticket,
        /// The validated triage decision.
        triage: &'a types::TriageDecision,
    },
    /// `escalate(ticket, triage, reply)`.
    Escalation {
        /// The redacted ticket.
        ticket: &'a types::Ticket,
        /// The validated triage decision.
        triage: &'a types::TriageDecision,
        /// The reply proposal, if one was made.
        reply: Option<&'a types::ReplyProposal>,
    },
}

/// What a policy returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyOutput {
    /// A triage decision.
    Triage(types::TriageDecision),
    /// A reply proposal.
    Reply(types::ReplyProposal),
    /// An escalation packet.
    Escalation(types::EscalationSummary),
}

impl PolicyOutput {
    /// Size as JSON, the unit of `limits.output_kib`.
    pub fn json_size(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |v| v.len())
    }

    /// This output as JSON values, to compare with one read back from a run or a fixture.
    /// Two renderings, both this output: its text read back (confidences are `f32`, written
    /// as their shortest decimal, `0.9648`), and the value tree runs and fixtures stored
    /// before outputs were kept as text (the `f32` widened to `f64`, `0.9648000001907349`).
    pub fn json_values(&self) -> [serde_json::Value; 2] {
        let as_text = JsonText::of(self).to_value();
        let widened = serde_json::to_value(self).unwrap_or_default();
        [as_text, widened]
    }
}

pub use deskhost_protocol::run::InvocationStats;

/// The result of one invocation: output or fault, plus everything the audit needs.
#[derive(Debug)]
pub struct Invocation {
    /// The proposal, or the classified fault.
    pub result: Result<PolicyOutput, Fault>,
    /// Measurements.
    pub stats: InvocationStats,
    /// Host calls, in order (audit records and transcript).
    pub calls: Vec<HostCall>,
    /// Lines the plugin logged.
    pub logs: Vec<LogLine>,
    /// The guest's stderr.
    pub stderr: String,
}

impl Invocation {
    fn failed(fault: Fault) -> Self {
        Self {
            result: Err(fault),
            stats: InvocationStats::default(),
            calls: Vec::new(),
            logs: Vec::new(),
            stderr: String::new(),
        }
    }
}

/// Re-exported for the pipeline.
pub type Identity = Arc<PluginIdentity>;

#[cfg(test)]
mod tests {
    use super::pool_share;

    #[test]
    fn a_component_needing_more_than_an_instances_share_of_the_pool_takes_more() {
        assert_eq!(pool_share(0, 0), 1);
        assert_eq!(pool_share(1, 1), 1);
        assert_eq!(pool_share(2, 8), 1);
        assert_eq!(pool_share(3, 1), 2);
        assert_eq!(pool_share(1, 9), 2);
        assert_eq!(pool_share(4, 16), 2);
        assert_eq!(pool_share(4, 17), 3);
    }
}
