//! HTTP transport of billing: `/billing/...` routes.

use serde_json::{json, Value};
use shop_kit::body::check_order_id;
use shop_kit::breaker;
use shop_kit::component::{Component, Consuming, Entry};
use shop_kit::routes::{Params, Route};
use shop_kit::sql::Db;
use shop_kit::web::{self, Ctx};
use shop_kit::Failure;
use spin_sdk::http::{Request, Response};

use crate::{open, provider_breaker, store::SqlBilling, Service, PROVIDER_BREAKER, SERVICE};

/// What each of its own routes does (the common ones are `shop_kit::component`'s).
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Payment,
    Breakers,
}

/// Every route billing serves: drives the router, and the unit tests hold `openapi.json` to it.
pub const ROUTES: &[Route<Entry<Op>>] = shop_kit::route_table!(
    "/billing",
    consumer,
    [
        ("GET", "/billing/payments/{order_id}", Op::Payment),
        ("GET", "/billing/breakers", Op::Breakers),
    ]
);

/// The API contract of billing (OpenAPI 3.1), served at `GET /billing/openapi.json`.
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
            Op::Payment => {
                let order_id = params.get("order_id");
                check_order_id("order_id", order_id)?;
                Ok(web::json(200, &open(&ctx.trace)?.payment(order_id)?))
            }
            Op::Breakers => breaker::list_route(ctx, req, || {
                Ok(vec![(PROVIDER_BREAKER, provider_breaker()?.snapshot())])
            }),
        }
    }

    fn outbox() -> anyhow::Result<Option<Db>> {
        Ok(Some(SqlBilling::open()?.into_db()))
    }
}

impl Consuming for Http {
    type Consumer = Service;
    type Parked = SqlBilling;

    fn open(ctx: &Ctx) -> anyhow::Result<Service> {
        open(&ctx.trace)
    }

    fn parked(consumer: &Service) -> &SqlBilling {
        &consumer.store
    }

    /// Settles the refunds that could not be made when their orders were cancelled.
    async fn finish_deferred(consumer: &Service, ctx: &Ctx, report: &mut Value) {
        report["refunds"] = match consumer.settle_owed_refunds(&ctx.trace).await {
            Ok(n) => json!({"settled": n}),
            Err(e) => json!({"error": format!("{e:#}")}),
        };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_describes_exactly_the_served_routes() {
        shop_kit::openapi::check_document(super::OPENAPI, super::ROUTES).unwrap();
    }
}
