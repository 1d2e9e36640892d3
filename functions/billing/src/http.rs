//! HTTP transport of billing: `/billing/...` routes.

use shop_kit::body::check_order_id;
use shop_kit::deadletter;
use shop_kit::routes::Route;
use shop_kit::web::{self, Ctx};
use shop_kit::Failure;
use spin_sdk::http::{Request, Response};

use crate::{events, open, store::SqlBilling, SERVICE};

/// The component's HTTP side: every failure becomes the one JSON error shape, and the outbox
/// is published after the response.
pub struct Http;

impl web::Component for Http {
    const SERVICE: &'static str = SERVICE;

    async fn route(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
        route(ctx, req).await
    }

    async fn publish(ctx: &Ctx) -> anyhow::Result<()> {
        events::publish(ctx).await
    }
}

/// What each route does.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Health,
    Events,
    Sweep,
    Deliver,
    OpenApi,
    DeadLetters,
    Replay,
    Payment,
}

/// Every route billing serves: drives the router, and the unit tests hold `openapi.json` to it.
pub const ROUTES: &[Route<Op>] = &[
    Route::new("GET", "/billing/health", Op::Health),
    Route::new("GET", "/billing/events", Op::Events),
    Route::new("POST", "/billing/sweep", Op::Sweep),
    Route::new("POST", "/billing/events/deliveries", Op::Deliver),
    Route::new("GET", "/billing/openapi.json", Op::OpenApi),
    Route::new("GET", "/billing/dead-letters", Op::DeadLetters),
    Route::new(
        "POST",
        "/billing/dead-letters/{source}/{seq}/replay",
        Op::Replay,
    ),
    Route::new("GET", "/billing/payments/{order_id}", Op::Payment),
];

/// The API contract of billing (OpenAPI 3.1), served at `GET /billing/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn route(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
    let (op, params) = match web::resolve(SERVICE, ROUTES, req) {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    match op {
        Op::Health => Ok(web::health(SERVICE)),
        Op::Events => web::serve_feed(ctx, req, &SqlBilling::open()?.db),
        Op::Sweep => {
            ctx.require_admin(req)?;
            Ok(web::json(200, &events::sweep(ctx).await?))
        }
        Op::Deliver => events::receive(ctx, req).await,
        Op::OpenApi => Ok(web::openapi(OPENAPI)),
        Op::DeadLetters => {
            let store = SqlBilling::open()?;
            deadletter::sql::list_route(ctx, req, &store.db)
        }
        Op::Replay => {
            let service = open(&ctx.trace)?;
            deadletter::sql::replay_route(ctx, req, &params, &service.store.db, &service).await
        }
        Op::Payment => {
            let order_id = params.get("order_id");
            check_order_id("order_id", order_id)?;
            Ok(web::json(200, &open(&ctx.trace)?.payment(order_id)?))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_describes_exactly_the_served_routes() {
        shop_kit::openapi::check_document(super::OPENAPI, super::ROUTES).unwrap();
    }
}
