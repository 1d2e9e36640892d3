//! HTTP transport of notifications: `/notifications/...` routes.

use serde_json::json;
use shop_kit::body::{check_order_id, is_plain_id};
use shop_kit::web::{self, Ctx};
use shop_kit::{ApiError, Failure};
use spin_sdk::http::{Method, Request, Response};

use crate::{events, open, SERVICE};

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
        (["notifications", "health"], Method::Get) => Ok(web::health(SERVICE)),
        (["notifications", "events"], Method::Get) => {
            // Notifications publish no events; the feed is always empty.
            let (after, _) = shop_kit::outbox::feed_params(&web::query(req))?;
            Ok(web::json(200, &shop_kit::outbox::feed_json(&[], after)))
        }
        (["notifications", "sweep"], Method::Post) => {
            ctx.require_admin(req)?;
            Ok(web::json(200, &events::sweep(ctx).await?))
        }
        (["notifications"], Method::Get) => list(ctx, req),
        (["notifications"], _) => Ok(web::method_not_allowed(SERVICE, "GET")),
        (["notifications", "health" | "events"], _) => Ok(web::method_not_allowed(SERVICE, "GET")),
        (["notifications", "sweep"], _) => Ok(web::method_not_allowed(SERVICE, "POST")),
        _ => Ok(web::no_route(SERVICE)),
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
