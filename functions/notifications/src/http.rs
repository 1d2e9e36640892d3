//! HTTP transport of notifications: `/notifications/...` routes.

use serde_json::json;
use shop_kit::body::{check_order_id, is_plain_id};
use shop_kit::deadletter;
use shop_kit::routes::Route;
use shop_kit::web::{self, Ctx};
use shop_kit::{ApiError, Failure};
use spin_sdk::http::{Request, Response};

use crate::{events, open, SERVICE};

/// The component's HTTP side: every failure becomes the one JSON error shape.
pub struct Http;

impl web::Component for Http {
    const SERVICE: &'static str = SERVICE;

    async fn route(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
        route(ctx, req).await
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
    List,
}

/// Every route notifications serves: drives the router, and the unit tests hold
/// `openapi.json` to it.
pub const ROUTES: &[Route<Op>] = &[
    Route::new("GET", "/notifications/health", Op::Health),
    Route::new("GET", "/notifications/events", Op::Events),
    Route::new("POST", "/notifications/sweep", Op::Sweep),
    Route::new("POST", "/notifications/events/deliveries", Op::Deliver),
    Route::new("GET", "/notifications/openapi.json", Op::OpenApi),
    Route::new("GET", "/notifications/dead-letters", Op::DeadLetters),
    Route::new(
        "POST",
        "/notifications/dead-letters/{source}/{seq}/replay",
        Op::Replay,
    ),
    Route::new("GET", "/notifications", Op::List),
];

/// The API contract of notifications (OpenAPI 3.1), served at
/// `GET /notifications/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn route(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
    let (op, params) = match web::resolve(SERVICE, ROUTES, req) {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    match op {
        Op::Health => Ok(web::health(SERVICE)),
        Op::Events => {
            // Notifications publish no events; the feed is always empty.
            let (after, _) = shop_kit::outbox::feed_params(&web::query(req))?;
            Ok(web::json(200, &shop_kit::outbox::feed_json(&[], after)))
        }
        Op::Sweep => {
            ctx.require_admin(req)?;
            Ok(web::json(200, &events::sweep(ctx).await?))
        }
        Op::Deliver => events::receive(ctx, req).await,
        Op::OpenApi => Ok(web::openapi(OPENAPI)),
        Op::DeadLetters => {
            deadletter::list_route(ctx, req, &crate::store::KvNotifications::open()?)
        }
        Op::Replay => {
            let service = open(&ctx.trace)?;
            deadletter::replay_route(ctx, req, &params, &service.store, &service).await
        }
        Op::List => list(ctx, req),
    }
}
fn list(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
    let mut order_id = None;
    let mut customer_id = None;
    for (k, v) in web::query(req) {
        match k.as_str() {
            "order_id" => {
                check_order_id("order_id", &v)?;
                order_id = Some(v);
            }
            "customer_id" => {
                if v.is_empty() || v.len() > 64 || !is_plain_id(&v) {
                    return Err(ApiError::invalid("customer_id", "must be a customer id").into());
                }
                customer_id = Some(v);
            }
            other => return Err(ApiError::invalid(other, "unknown query parameter").into()),
        }
    }
    let notifications = open(&ctx.trace)?.list(order_id.as_deref(), customer_id.as_deref())?;
    Ok(web::json(200, &json!({ "notifications": notifications })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_describes_exactly_the_served_routes() {
        shop_kit::openapi::check_document(super::OPENAPI, super::ROUTES).unwrap();
    }
}
