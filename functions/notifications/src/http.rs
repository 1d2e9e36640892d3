//! HTTP transport of notifications: `/notifications/...` routes.

use serde_json::{json, Value};
use shop_kit::body::{check_order_id, is_plain_id};
use shop_kit::breaker;
use shop_kit::component::{Component, Consuming, Entry};
use shop_kit::routes::{Params, Route};
use shop_kit::web::{self, Ctx};
use shop_kit::{ApiError, Failure};
use spin_sdk::http::{Request, Response};

use crate::service::NotificationStore;
use crate::store::KvNotifications;
use crate::{open, Service, SERVICE, WEBHOOK_BREAKER};

/// What each of its own routes does (the common ones are `shop_kit::component`'s).
#[derive(Debug, Clone, Copy)]
pub enum Op {
    List,
    Breakers,
}

/// Every route notifications serves: drives the router, and the unit tests hold
/// `openapi.json` to it.
pub const ROUTES: &[Route<Entry<Op>>] = shop_kit::route_table!(
    "/notifications",
    consumer,
    [
        ("GET", "/notifications", Op::List),
        ("GET", "/notifications/breakers", Op::Breakers),
    ]
);

/// The API contract of notifications (OpenAPI 3.1), served at
/// `GET /notifications/openapi.json`.
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
        _params: &Params,
    ) -> Result<Response, Failure> {
        match op {
            Op::List => list(ctx, req),
            Op::Breakers => breaker::list_route(ctx, req, || {
                Ok(vec![(WEBHOOK_BREAKER, KvNotifications::open()?.breaker()?)])
            }),
        }
    }
}

impl Consuming for Http {
    type Consumer = Service;
    type Parked = KvNotifications;

    fn open(ctx: &Ctx) -> anyhow::Result<Service> {
        open(&ctx.trace)
    }

    fn parked(consumer: &Service) -> &KvNotifications {
        &consumer.store
    }

    /// Retries the notifications whose webhook call failed.
    async fn finish_deferred(consumer: &Service, _ctx: &Ctx, report: &mut Value) {
        report["redelivered"] = match consumer.redeliver().await {
            Ok(n) => n.into(),
            Err(e) => format!("{e:#}").into(),
        };
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
