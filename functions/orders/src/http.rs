//! HTTP transport of orders: `/orders/...` routes.

use serde_json::json;
use shop_kit::body::{check_order_id, is_plain_id, parse_object};
use shop_kit::web::{self, Ctx};
use shop_kit::{ApiError, Failure};
use spin_sdk::http::{Method, Request, Response};

use crate::domain::{NewOrder, Status, MAX_ID_LEN};
use crate::service::{ListQuery, Placed, MAX_PAGE};
use crate::{events, store::SqlOrders, Service, SERVICE};

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
    let method = req.method().clone();
    match (parts.as_slice(), method) {
        (["orders", "health"], Method::Get) => Ok(web::health(SERVICE)),
        (["orders", "events"], Method::Get) => web::serve_feed(ctx, req, &SqlOrders::open()?.db),
        (["orders", "sweep"], Method::Post) => {
            ctx.require_admin(req)?;
            Ok(web::json(200, &events::sweep(ctx).await?))
        }
        (["orders"], Method::Post) => place(ctx, req),
        (["orders"], Method::Get) => list(req),
        (["orders", id], Method::Get) if !is_reserved(id) => {
            Ok(web::json(200, &service()?.get(&order_id(id)?)?.view()))
        }
        (["orders", id, "cancel"], Method::Post) => cancel(ctx, id),
        (["orders"], _) => Ok(web::method_not_allowed(SERVICE, "GET, POST")),
        (["orders", "health" | "events"], _) => Ok(web::method_not_allowed(SERVICE, "GET")),
        (["orders", "sweep"], _) => Ok(web::method_not_allowed(SERVICE, "POST")),
        (["orders", _], _) => Ok(web::method_not_allowed(SERVICE, "GET")),
        (["orders", _, "cancel"], _) => Ok(web::method_not_allowed(SERVICE, "POST")),
        _ => Ok(web::no_route(SERVICE)),
    }
}

fn is_reserved(segment: &str) -> bool {
    matches!(segment, "health" | "events" | "sweep")
}

fn service() -> anyhow::Result<Service> {
    Ok(Service::new(SqlOrders::open()?))
}

/// Order ids are UUIDs; anything else is a malformed request, not a missing order.
fn order_id(raw: &str) -> Result<String, ApiError> {
    check_order_id("id", raw)?;
    Ok(raw.to_string())
}

fn place(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
    let key = web::header(req, "idempotency-key")
        .map(|k| {
            let ok = (1..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic());
            ok.then_some(k).ok_or_else(|| {
                ApiError::invalid("Idempotency-Key", "must be 1-128 visible ASCII characters")
            })
        })
        .transpose()?;
    let new = NewOrder::parse(&parse_object(req.body())?)?;
    let service = service()?;
    let (order, placed) = service.place(new, key, &ctx.trace)?;
    let mut response = web::json(201, &order.view());
    match placed {
        Placed::Created => {
            ctx.log.info("order placed", Some(&order.id));
            events::publish(ctx, &service.store);
        }
        Placed::Replayed => response.set_header("idempotent-replayed", "true"),
    }
    Ok(response)
}

fn list(req: &Request) -> Result<Response, Failure> {
    let mut query = ListQuery {
        limit: 20,
        ..ListQuery::default()
    };
    for (k, v) in web::query(req) {
        match k.as_str() {
            "customer_id" => {
                if v.is_empty() || v.len() > MAX_ID_LEN || !is_plain_id(&v) {
                    return Err(ApiError::invalid("customer_id", "must be a customer id").into());
                }
                query.customer_id = Some(v);
            }
            "status" => {
                query.status = Some(Status::parse(&v).ok_or_else(|| {
                    ApiError::invalid(
                        "status",
                        "must be pending, reserved, confirmed or cancelled",
                    )
                })?)
            }
            "limit" => {
                query.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid("limit", format!("must be between 1 and {MAX_PAGE}"))
                    })?
            }
            "cursor" => {
                query.cursor = Some(
                    order_id(&v)
                        .map_err(|_| ApiError::invalid("cursor", "is not a cursor of this list"))?,
                )
            }
            other => return Err(ApiError::invalid(other, "unknown query parameter").into()),
        }
    }
    let (orders, next_cursor) = service()?.list(&query)?;
    let orders: Vec<_> = orders.iter().map(|o| o.view()).collect();
    Ok(web::json(
        200,
        &json!({"orders": orders, "next_cursor": next_cursor}),
    ))
}

fn cancel(ctx: &Ctx, raw_id: &str) -> Result<Response, Failure> {
    let id = order_id(raw_id)?;
    let service = service()?;
    let order = service.cancel(&id, &ctx.trace)?;
    ctx.log.info("order cancelled by customer", Some(&order.id));
    events::publish(ctx, &service.store);
    Ok(web::json(200, &order.view()))
}
