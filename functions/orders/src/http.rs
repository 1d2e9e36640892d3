//! HTTP transport of orders: `/orders/...` routes.

use serde_json::json;
use shop_kit::body::{check_order_id, is_plain_id};
use shop_kit::component::{Component, Consuming, Entry};
use shop_kit::routes::{Params, Route};
use shop_kit::seal::Purpose;
use shop_kit::sql::Db;
use shop_kit::web::{self, Ctx};
use shop_kit::{ApiError, Failure};
use spin_sdk::http::{Request, Response};

use crate::domain::{NewOrder, Status, MAX_ID_LEN};
use crate::service::{ListQuery, Placed, MAX_PAGE};
use crate::{store::SqlOrders, Service, SERVICE};

/// What each of its own routes does (the common ones are `shop_kit::component`'s).
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Place,
    List,
    Get,
    Cancel,
}

/// Every route orders serves: drives the router, and the unit tests hold `openapi.json` to it.
pub const ROUTES: &[Route<Entry<Op>>] = shop_kit::route_table!(
    "/orders",
    consumer,
    [
        ("POST", "/orders", Op::Place),
        ("GET", "/orders", Op::List),
        ("GET", "/orders/{id}", Op::Get),
        ("POST", "/orders/{id}/cancel", Op::Cancel),
    ]
);

/// The API contract of orders (OpenAPI 3.1), served at `GET /orders/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The component's HTTP side: the common routes, its own, and publishing after the response.
pub struct Http;

impl Component for Http {
    const SERVICE: &'static str = SERVICE;
    const OPENAPI: &'static str = OPENAPI;
    type Op = Op;
    const ROUTES: &'static [Route<Entry<Op>>] = ROUTES;

    async fn answer(
        ctx: &Ctx,
        req: &Request,
        op: Op,
        params: &Params,
    ) -> Result<Response, Failure> {
        match op {
            Op::Place => place(ctx, req),
            Op::List => list(ctx, req),
            Op::Get => Ok(web::json(
                200,
                &service()?.get(&order_id(params.get("id"))?)?.view(),
            )),
            Op::Cancel => cancel(ctx, req, params.get("id")),
        }
    }

    fn outbox() -> anyhow::Result<Option<Db>> {
        Ok(Some(SqlOrders::open()?.into_db()))
    }
}

impl Consuming for Http {
    type Consumer = Service;
    type Parked = SqlOrders;

    fn open(_ctx: &Ctx) -> anyhow::Result<Service> {
        service()
    }

    fn parked(consumer: &Service) -> &SqlOrders {
        &consumer.store
    }
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
    // A key that is not text is rejected, not ignored: ignoring it would place a second order.
    let key = req
        .header("idempotency-key")
        .map(|v| v.as_str().unwrap_or_default())
        .map(|k| {
            let ok = (1..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic());
            ok.then_some(k).ok_or_else(|| {
                ApiError::invalid("Idempotency-Key", "must be 1-128 visible ASCII characters")
            })
        })
        .transpose()?;
    let new = NewOrder::parse(&web::json_object(req)?)?;
    let service = service()?;
    let (order, placed) = service.place(new, key, &ctx.trace)?;
    let mut body = serde_json::to_value(order.view()).map_err(anyhow::Error::from)?;
    if let Some(keys) = shop_kit::config::internal_keys() {
        body["cancel_token"] = keys.token(Purpose::CancelToken, &order.id).into();
    }
    let mut response = web::json(201, &body);
    match placed {
        Placed::Created => {
            ctx.log.info("order placed", Some(&order.id));
            ctx.publish_after_response();
        }
        Placed::Replayed => response.set_header("idempotent-replayed", "true"),
    }
    Ok(response)
}

/// `GET /orders`: one customer's orders to anyone who names the customer, every order to
/// admins only.
fn list(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
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
    if query.customer_id.is_none() {
        ctx.require_admin(req)?;
    }
    let (orders, next_cursor) = service()?.list(&query)?;
    let orders: Vec<_> = orders.iter().map(|o| o.view()).collect();
    Ok(web::json(
        200,
        &json!({"orders": orders, "next_cursor": next_cursor}),
    ))
}

/// `POST /orders/{id}/cancel`, by whoever placed the order (the `cancel_token` its
/// `POST /orders` answered, as a bearer token) or an admin.
fn cancel(ctx: &Ctx, req: &Request, raw_id: &str) -> Result<Response, Failure> {
    let id = order_id(raw_id)?;
    ctx.require_token_or_admin(
        req,
        shop_kit::config::internal_keys().as_ref(),
        (Purpose::CancelToken, &id),
        "the order's cancel_token (Authorization: Bearer) or the admin bearer token",
    )?;
    let service = service()?;
    let order = service.cancel(&id, &ctx.trace)?;
    ctx.log.info("order cancelled by customer", Some(&order.id));
    ctx.publish_after_response();
    Ok(web::json(200, &order.view()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_describes_exactly_the_served_routes() {
        shop_kit::openapi::check_document(super::OPENAPI, super::ROUTES).unwrap();
    }
}
