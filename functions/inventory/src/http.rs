//! HTTP transport of inventory: `/inventory/...` routes.

use serde_json::json;
use shop_kit::body::check_sku;
use shop_kit::component::{Component, Consuming, Entry};
use shop_kit::routes::{Params, Route};
use shop_kit::sql::Db;
use shop_kit::web::{self, Ctx};
use shop_kit::Failure;
use spin_sdk::http::{Request, Response};

use crate::domain::ProductUpdate;
use crate::{store::SqlInventory, Service, SERVICE};

fn service() -> anyhow::Result<Service> {
    Ok(Service::new(SqlInventory::open()?))
}

/// What each of its own routes does (the common ones are `shop_kit::component`'s).
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Products,
    Product,
    PutProduct,
}

/// Every route inventory serves: drives the router, and the unit tests hold `openapi.json` to it.
pub const ROUTES: &[Route<Entry<Op>>] = shop_kit::route_table!(
    "/inventory",
    consumer,
    [
        ("GET", "/inventory/products", Op::Products),
        ("GET", "/inventory/products/{sku}", Op::Product),
        ("PUT", "/inventory/products/{sku}", Op::PutProduct),
    ]
);

/// The API contract of inventory (OpenAPI 3.1), served at `GET /inventory/openapi.json`.
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
            Op::Products => {
                let products = service()?.products()?;
                Ok(web::json(200, &json!({ "products": products })))
            }
            Op::Product => {
                let sku = params.get("sku");
                check_sku("sku", sku)?;
                Ok(web::json(200, &service()?.product(sku)?))
            }
            Op::PutProduct => {
                ctx.require_admin(req)?;
                let sku = params.get("sku");
                check_sku("sku", sku)?;
                let update = ProductUpdate::parse(&web::json_object(req)?)?;
                let (product, created) = service()?.put_product(sku, update)?;
                ctx.log.info(
                    &format!("product {sku} stocked: {} available", product.available),
                    None,
                );
                Ok(web::json(if created { 201 } else { 200 }, &product))
            }
        }
    }

    fn outbox() -> anyhow::Result<Option<Db>> {
        Ok(Some(SqlInventory::open()?.into_db()))
    }
}

impl Consuming for Http {
    type Consumer = Service;
    type Parked = SqlInventory;

    fn open(_ctx: &Ctx) -> anyhow::Result<Service> {
        service()
    }

    fn parked(consumer: &Service) -> &SqlInventory {
        &consumer.store
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_describes_exactly_the_served_routes() {
        shop_kit::openapi::check_document(super::OPENAPI, super::ROUTES).unwrap();
    }
}
