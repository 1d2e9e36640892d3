//! What every function's HTTP side shares: the `wasi:http` entry point, which answers before
//! it publishes, and the common routes (health, OpenAPI document, event feed; for consumers
//! also sweep, deliveries and dead letters), declared and answered once here. A function
//! implements [`Component`] (and [`Consuming`] when it consumes events) and lists its own
//! routes after the common ones with [`route_table!`](crate::route_table).
//!
//! A consumer's common routes: `POST /<fn>/sweep` and the dead-letter routes (admin token),
//! `POST /<fn>/events/deliveries` and `POST /<fn>/events/wake` (delivery token, for
//! `event_delivery = "http"`).

use serde_json::{json, Value};
use spin_sdk::http::{Request, Response, ResponseOutparam};

use crate::config;
use crate::consume::Consumer;
use crate::deadletter::{self, ParkedStore};
use crate::publish::Look;
use crate::routes::{Params, Route};
use crate::sql::Db;
use crate::web::{self, Ctx};
use crate::{push, relay, reply, wake, ApiError, Failure};

/// A route every function (`Health`, `OpenApi`, `Events`) or every consumer (the others)
/// serves under its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Common {
    Health,
    OpenApi,
    Events,
    Sweep,
    Deliver,
    Wake,
    DeadLetters,
    Replay,
}

/// What a route of a function's table leads to: a common route or one of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<Op> {
    Common(Common),
    Own(Op),
}

/// A function's route table: the common routes under `$prefix`, then its own routes as
/// `(method, path, op)`. `basic` gives health, OpenAPI document and feed; `consumer` adds
/// sweep, deliveries and dead letters.
#[macro_export]
macro_rules! route_table {
    (@common $method:literal, $prefix:literal, $path:literal, $route:ident) => {
        $crate::routes::Route::new(
            $method,
            concat!($prefix, $path),
            $crate::component::Entry::Common($crate::component::Common::$route),
        )
    };
    ($prefix:literal, basic, [$(($method:literal, $path:literal, $op:expr)),* $(,)?]) => {
        &[
            $crate::route_table!(@common "GET", $prefix, "/health", Health),
            $crate::route_table!(@common "GET", $prefix, "/openapi.json", OpenApi),
            $crate::route_table!(@common "GET", $prefix, "/events", Events),
            $($crate::routes::Route::new($method, $path, $crate::component::Entry::Own($op))),*
        ]
    };
    ($prefix:literal, consumer, [$(($method:literal, $path:literal, $op:expr)),* $(,)?]) => {
        &[
            $crate::route_table!(@common "GET", $prefix, "/health", Health),
            $crate::route_table!(@common "GET", $prefix, "/openapi.json", OpenApi),
            $crate::route_table!(@common "GET", $prefix, "/events", Events),
            $crate::route_table!(@common "POST", $prefix, "/sweep", Sweep),
            $crate::route_table!(@common "POST", $prefix, "/events/deliveries", Deliver),
            $crate::route_table!(@common "POST", $prefix, "/events/wake", Wake),
            $crate::route_table!(@common "GET", $prefix, "/dead-letters", DeadLetters),
            $crate::route_table!(@common "POST", $prefix, "/dead-letters/{id}/replay", Replay),
            $($crate::routes::Route::new($method, $path, $crate::component::Entry::Own($op))),*
        ]
    };
}

/// A function's HTTP side as [`serve`] runs it.
#[allow(async_fn_in_trait)] // components are single-threaded; no Send bound is wanted
pub trait Component {
    const SERVICE: &'static str;
    /// The OpenAPI document served at `GET /<fn>/openapi.json`.
    const OPENAPI: &'static str;
    /// The function's own operations.
    type Op: Copy + 'static;
    /// Every route, common ones included (see [`route_table!`](crate::route_table)).
    const ROUTES: &'static [Route<Entry<Self::Op>>];
    /// Answers one of the function's own routes.
    async fn answer(
        ctx: &Ctx,
        req: &Request,
        op: Self::Op,
        params: &Params,
    ) -> Result<Response, Failure>;
    /// Where the function keeps the events it publishes; `None`: it publishes none.
    fn outbox() -> anyhow::Result<Option<Db>> {
        Ok(None)
    }
}

/// The consuming side of a function, served by [`serve_consumer`].
#[allow(async_fn_in_trait)] // components are single-threaded; no Send bound is wanted
pub trait Consuming: Component {
    type Consumer: Consumer;
    type Parked: ParkedStore;
    /// Opens the consumer within the request's trace.
    fn open(ctx: &Ctx) -> anyhow::Result<Self::Consumer>;
    /// Where `consumer` keeps its dead letters.
    fn parked(consumer: &Self::Consumer) -> &Self::Parked;
    /// Deferred work the sweep finishes besides catching up (billing: refunds owed;
    /// notifications: undelivered webhooks), added to its report.
    async fn finish_deferred(_consumer: &Self::Consumer, _ctx: &Ctx, _report: &mut Value) {}
}

/// `POST /<consumer>/events/deliveries` (delivery token): applies one event exactly as a
/// Redis message would be applied, gap filling included, and publishes the consumer's own
/// outbox after the response. Answers 200 once the event is applied, was already, or is kept
/// pending to be retried; 503 when it could not even be recorded, so that the producer keeps
/// it for a later attempt.
async fn receive<C: Consuming>(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
    crate::auth::check_bearer(web::header(req, "authorization"), &config::delivery_token())?;
    let upstream = crate::subscriptions::upstream(ctx.service);
    let env = push::envelope(web::json_object(req)?, &upstream)?;
    crate::seal::authentic(config::internal_keys().as_ref(), &env, ctx.service).map_err(
        |reason| {
            let field = match reason {
                crate::seal::Forged::Misaddressed => "consumer",
                _ => "mac",
            };
            ApiError::invalid(field, reason)
        },
    )?;
    let consumer = C::open(ctx)?;
    let done = relay::deliver(ctx.service, &env, &consumer)
        .await
        .map_err(|e| ApiError::unavailable(format!("{} not recorded: {e:#}", env.label())))?;
    // What the event (and any gap filled before it) caused goes out after the response.
    ctx.publish_after_response();
    Ok(web::json(
        200,
        &json!({"delivered": {"source": env.source, "partition": env.partition, "seq": env.seq,
                              "applied": done.applied, "deferred": done.deferred}}),
    ))
}

/// `POST /<consumer>/events/wake` (delivery token): answers 202, then runs the wake loop.
fn wake_route(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
    crate::auth::check_bearer(web::header(req, "authorization"), &config::delivery_token())?;
    crate::body::check_json_content_type(web::header(req, "content-type"))?;
    let arm = wake::parse(req.body())
        .ok_or_else(|| ApiError::invalid("wake", "the body must be {\"wake\": \"<arm>\"}"))?;
    ctx.wake_after_response(arm);
    Ok(web::json(202, &json!({"accepted": true})))
}

/// Answers a consumer's common routes (see the module's documentation).
async fn consume<C: Consuming>(
    ctx: &Ctx,
    req: &Request,
    route: Common,
    params: &Params,
) -> Result<Response, Failure> {
    match route {
        Common::Deliver => receive::<C>(ctx, req).await,
        Common::Wake => wake_route(ctx, req),
        Common::Sweep => {
            ctx.require_admin(req)?;
            let consumer = C::open(ctx)?;
            let mut report = relay::catch_up(ctx, &consumer).await;
            C::finish_deferred(&consumer, ctx, &mut report).await;
            // After the deferred work, so that what it produced goes out too.
            report["published"] = match C::outbox()? {
                Some(db) => relay::publish(ctx.service, &db, &ctx.log, Look::All)
                    .await
                    .into(),
                None => Value::Null,
            };
            Ok(web::json(200, &report))
        }
        Common::DeadLetters => deadletter::list_route(ctx, req, C::parked(&C::open(ctx)?)),
        Common::Replay => {
            let consumer = C::open(ctx)?;
            let response =
                deadletter::replay_route(ctx, req, params, C::parked(&consumer), &consumer).await?;
            ctx.publish_after_response();
            Ok(response)
        }
        Common::Health | Common::OpenApi | Common::Events => Ok(web::no_route(ctx.service)),
    }
}

/// Answers for a function that consumes nothing: its table lists no consumer routes.
async fn consume_nothing(
    ctx: &Ctx,
    _req: &Request,
    _route: Common,
    _params: &Params,
) -> Result<Response, Failure> {
    Ok(web::no_route(ctx.service))
}

async fn route<C: Component>(
    ctx: &Ctx,
    req: &Request,
    consume: impl AsyncFn(&Ctx, &Request, Common, &Params) -> Result<Response, Failure>,
) -> Result<Response, Failure> {
    let (op, params) = match web::resolve(C::SERVICE, C::ROUTES, req) {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    match op {
        Entry::Own(op) => C::answer(ctx, req, op, &params).await,
        Entry::Common(Common::Health) => Ok(web::health(C::SERVICE)),
        Entry::Common(Common::OpenApi) => Ok(web::openapi(C::OPENAPI)),
        Entry::Common(Common::Events) => web::serve_feed(ctx, req, C::outbox()?.as_ref()),
        Entry::Common(other) => consume(ctx, req, other, &params).await,
    }
}

/// The `wasi:http` handler of a function that consumes no events (see [`serve_with`]).
pub async fn serve<C: Component>(req: Request, out: ResponseOutparam) {
    serve_with::<C>(req, out, consume_nothing).await;
}

/// The `wasi:http` handler of a consumer (see [`serve_with`]); after the response it also
/// runs the wake loop when the request was a wake.
pub async fn serve_consumer<C: Consuming>(req: Request, out: ResponseOutparam) {
    let ctx = serve_with::<C>(req, out, consume::<C>).await;
    let Some(arm) = ctx.take_wake() else {
        return;
    };
    let result = match C::open(&ctx) {
        Ok(consumer) => relay::run_wake(C::SERVICE, &arm, &consumer).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        ctx.log.warn(&format!("wake loop ended: {e:#}"), None);
    }
}

/// Answers (every failure in the one error shape), and only then publishes what the request
/// produced. The host (ours and Spin) keeps the instance running until the handler returns,
/// so the saga's next steps start without the client waiting for them.
async fn serve_with<C: Component>(
    req: Request,
    out: ResponseOutparam,
    consume: impl AsyncFn(&Ctx, &Request, Common, &Params) -> Result<Response, Failure>,
) -> Ctx {
    let ctx = Ctx::from_request(C::SERVICE, &req);
    let response = match route::<C>(&ctx, &req, consume).await {
        Ok(response) => response,
        Err(failure) => ctx.failure(failure),
    };
    if let Err(e) = reply::send(out, response) {
        ctx.log.warn(&format!("response not sent: {e:#}"), None);
    }
    if ctx.wants_publish() {
        match C::outbox() {
            Ok(Some(db)) => {
                relay::publish(C::SERVICE, &db, &ctx.log, Look::Own).await;
            }
            Ok(None) => {}
            Err(e) => ctx.log.warn(&format!("publishing deferred: {e:#}"), None),
        }
    }
    ctx
}
