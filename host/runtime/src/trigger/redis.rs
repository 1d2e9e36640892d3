//! The Redis trigger, as Spin's `trigger-redis`: one subscriber per Redis address, subscribed to
//! every channel of the manifest on it. For each message, every component bound to the channel
//! runs concurrently, each in a fresh instance, and the next message waits until they all finish
//! (in arrival order, per address; the subscriber keeps reading meanwhile). A handler error is logged and counted, never retried.
//! Subscribers and their instances run on worker threads of their own (`background`).
//!
//! Difference from Spin: when the connection drops, Spin's trigger ends; this host reconnects
//! with exponential backoff and logs it, because a dev host that silently stops consuming is
//! worse. Messages published while disconnected are lost either way (pub/sub is at-most-once).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::app::{App, AppComponent};
use crate::bindings::inbound_redis::RedisHandlerPre;
use crate::metrics::Metrics;
use crate::state::InstanceState;
use crate::stdio::LogContext;
use crate::telemetry;
use crate::trigger::background::Background;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The components bound to one channel.
type Handlers = Vec<(Arc<AppComponent>, RedisHandlerPre<InstanceState>)>;

pub struct RedisTrigger {
    /// address -> channel -> handlers
    subscriptions: BTreeMap<String, BTreeMap<String, Handlers>>,
    metrics: Arc<Metrics>,
    /// Where the subscribers, and so the handlers' instances, run (see `background`).
    workers: Background,
}

impl RedisTrigger {
    /// Groups `[[trigger.redis]]` by address (per-trigger or `[application.trigger.redis]`,
    /// variables expanded) and channel.
    pub fn new(app: &App, metrics: Arc<Metrics>) -> Result<Option<Self>> {
        let triggers = &app.manifest.triggers.redis;
        if triggers.is_empty() {
            return Ok(None);
        }
        let default_address = app
            .manifest
            .application
            .trigger
            .redis
            .as_ref()
            .map(|r| r.address.as_str());
        let mut pres: HashMap<String, RedisHandlerPre<InstanceState>> = HashMap::new();
        let mut subscriptions: BTreeMap<String, BTreeMap<String, Handlers>> = BTreeMap::new();
        for trigger in triggers {
            let id = trigger.component_id();
            let address = trigger
                .address
                .as_deref()
                .or(default_address)
                .with_context(|| format!("redis trigger for component `{id}` has no address: set [application.trigger.redis] address or the trigger's address"))?;
            let address = app.expand(address)?;
            let channel = app.expand(&trigger.channel)?;
            let component = app.component(id)?.clone();
            let pre = match pres.get(id) {
                Some(pre) => pre.clone(),
                None => {
                    let pre = RedisHandlerPre::new(component.pre.clone())
                        .map_err(anyhow::Error::from)
                        .with_context(|| format!("component `{id}` is bound to a Redis channel but does not export fermyon:spin/inbound-redis"))?;
                    pres.insert(id.to_string(), pre.clone());
                    pre
                }
            };
            subscriptions
                .entry(address)
                .or_default()
                .entry(channel)
                .or_default()
                .push((component, pre));
        }
        Ok(Some(Self {
            subscriptions,
            metrics,
            workers: Background::start()?,
        }))
    }

    /// Runs every subscriber until `shutdown` flips to true; the message in hand is finished first.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<()> {
        let metrics = self.metrics;
        let workers = self.workers.handle();
        let tasks = self.subscriptions.into_iter().map(|(address, channels)| {
            let shutdown = shutdown.clone();
            let metrics = metrics.clone();
            workers.spawn(subscribe(address, Arc::new(channels), metrics, shutdown))
        });
        for task in futures::future::join_all(tasks).await {
            task?;
        }
        Ok(())
    }
}

/// Messages read from an address but not yet handled. A bound keeps a stalled handler from
/// holding unbounded memory: once full, reading waits and Redis buffers, as it does for Spin.
const QUEUE: usize = 10_000;

/// One address: a reader that connects, subscribes and reconnects with backoff, and a handler
/// that runs the messages one at a time in arrival order. Reading apart from handling lets the
/// subscriptions come back as soon as Redis does, even while a handler is still running (for
/// instance retrying a publish that waits on those very subscriptions).
async fn subscribe(
    address: String,
    channels: Arc<BTreeMap<String, Handlers>>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (queue, mut received) = mpsc::channel::<(String, Vec<u8>)>(QUEUE);
    let handler = {
        let channels = channels.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = received.recv() => next,
                    _ = wait_for(&mut shutdown) => return,
                };
                let Some((channel, payload)) = next else {
                    return;
                };
                if let Some(handlers) = channels.get(&channel) {
                    handle_message(&channel, handlers, payload, &metrics).await;
                }
            }
        })
    };
    read(&address, &channels, queue, &mut shutdown).await;
    let _ = handler.await;
}

/// Reads `address`'s messages into `queue` until shutdown, reconnecting when the connection
/// drops.
async fn read(
    address: &str,
    channels: &BTreeMap<String, Handlers>,
    queue: mpsc::Sender<(String, Vec<u8>)>,
    shutdown: &mut watch::Receiver<bool>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut connected_before = false;
    while !*shutdown.borrow() {
        match connect(address, channels).await {
            Ok(mut pubsub) => {
                if connected_before {
                    tracing::warn!(address = %address, trigger = "redis", "reconnected to Redis and resubscribed (Spin would have exited)");
                } else {
                    tracing::info!(address = %address, trigger = "redis", channels = ?channels.keys().collect::<Vec<_>>(), "subscribed");
                }
                connected_before = true;
                backoff = FIRST_BACKOFF;
                let mut messages = pubsub.on_message();
                loop {
                    let message = tokio::select! {
                        message = messages.next() => message,
                        _ = wait_for(shutdown) => return,
                    };
                    let Some(message) = message else { break };
                    let item = (
                        message.get_channel_name().to_string(),
                        message.get_payload_bytes().to_vec(),
                    );
                    if queue.send(item).await.is_err() {
                        return;
                    }
                }
                tracing::warn!(address = %address, trigger = "redis", "lost the Redis connection; reconnecting");
            }
            Err(e) => {
                tracing::warn!(address = %address, trigger = "redis", error = format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "cannot subscribe to Redis; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = wait_for(shutdown) => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn wait_for(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn connect(
    address: &str,
    channels: &BTreeMap<String, Handlers>,
) -> Result<redis::aio::PubSub> {
    let client =
        redis::Client::open(address).with_context(|| format!("invalid Redis address {address}"))?;
    let mut pubsub = client.get_async_pubsub().await?;
    for channel in channels.keys() {
        pubsub.subscribe(channel).await?;
    }
    Ok(pubsub)
}

/// Runs every handler of the channel concurrently, each in a fresh instance, and waits for all.
/// As Spin's `spin_trigger_redis.handle_message`, the message has one span, here the child of
/// the envelope's `traceparent` (this host's extension), and each handler a span inside it.
async fn handle_message(
    channel: &str,
    handlers: &Handlers,
    payload: Vec<u8>,
    metrics: &Arc<Metrics>,
) {
    let span = tracing::info_span!(
        "spin_trigger_redis.handle_message",
        otel.name = format!("{channel} receive"),
        otel.kind = "consumer",
        messaging.operation = "receive",
        messaging.system = "redis",
        messaging.destination.name = channel,
    );
    telemetry::set_parent(&span, telemetry::envelope_traceparent(&payload).as_deref());
    let runs = handlers.iter().map(|(component, pre)| {
        let payload = payload.clone();
        let execute = tracing::info_span!(
            parent: &span,
            "spin_trigger_redis.execute_wasm",
            otel.name = format!("execute_wasm_component {}", component.id),
            component = component.id.as_ref(),
            otel.status_code = tracing::field::Empty,
        );
        let traceparent = telemetry::traceparent(&execute).map(Arc::from);
        async move {
            let started = Instant::now();
            let log = LogContext {
                component: component.id.clone(),
                trigger: "redis",
                route: channel.into(),
                traceparent,
                metrics: metrics.clone(),
            };
            let _in_flight = metrics.instance(&component.id, "redis");
            let mut store = component.new_store(log, None);
            let deadline = store.data().deadline;
            let outcome: Result<()> = crate::engine::until_deadline(deadline, async {
                let instantiating = Instant::now();
                let instance = pre.instantiate_async(&mut store).await?;
                metrics.instantiated(&component.id, "redis", instantiating.elapsed());
                match instance
                    .fermyon_spin_inbound_redis()
                    .call_handle_message(&mut store, &payload)
                    .await?
                {
                    Ok(()) => Ok(()),
                    Err(e) => anyhow::bail!("handler returned {e:?}"),
                }
            })
            .await
            .unwrap_or_else(|deadline| Err(deadline.into()));
            let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            metrics.redis_message(&component.id, channel, outcome.is_ok(), duration_ms);
            match outcome {
                Ok(()) => tracing::info!(component = %component.id, trigger = "redis", channel, duration_ms, "message handled"),
                Err(e) => {
                    tracing::Span::current().record("otel.status_code", "ERROR");
                    tracing::error!(component = %component.id, trigger = "redis", channel, duration_ms, error = format!("{e:#}"), "message handler failed (not retried)")
                }
            }
        }
        .instrument(execute)
    });
    futures::future::join_all(runs).instrument(span).await;
}
