//! HTTP transport of billing: `/billing/...` routes.

use shop_kit::body::check_order_id;
use shop_kit::web::{self, Ctx};
use shop_kit::Failure;
use spin_sdk::http::{Method, Request, Response};

use crate::{events, open, store::SqlBilling, SERVICE};

/// Routes one request; every failure becomes the one JSON error shape.
pub async fn handle(req: Request) -> Response {
    let ctx = Ctx::from_request(SERVICE, &req);
    match route(&ctx, &req).await {
        Ok(response) => response,
        Err(failure) => ctx.failure(failure),
    }
}

async fn route(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
    let segments = web::segments(req);
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (parts.as_slice(), req.method().clone()) {
        (["billing", "health"], Method::Get) => Ok(web::health(SERVICE)),
        (["billing", "events"], Method::Get) => web::serve_feed(ctx, req, &SqlBilling::open()?.db),
        (["billing", "sweep"], Method::Post) => {
            ctx.require_admin(req)?;
            Ok(web::json(200, &events::sweep(ctx).await?))
        }
        (["billing", "payments", order_id], Method::Get) => {
            check_order_id("order_id", order_id)?;
            Ok(web::json(200, &open(&ctx.trace)?.payment(order_id)?))
        }
        (["billing", "health" | "events"], _) => Ok(web::method_not_allowed(SERVICE, "GET")),
        (["billing", "sweep"], _) => Ok(web::method_not_allowed(SERVICE, "POST")),
        (["billing", "payments", _], _) => Ok(web::method_not_allowed(SERVICE, "GET")),
        _ => Ok(web::no_route(SERVICE)),
    }
}
