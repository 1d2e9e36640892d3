//! HTTP transport of inventory: `/inventory/...` routes.

use serde_json::json;
use shop_kit::body::check_sku;
use shop_kit::deadletter;
use shop_kit::routes::Route;
use shop_kit::web::{self, Ctx};
use shop_kit::Failure;
use spin_sdk::http::{Request, Response};

use crate::domain::ProductUpdate;
use crate::{events, store::SqlInventory, Service, SERVICE};

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

fn service() -> anyhow::Result<Service> {
    Ok(Service::new(SqlInventory::open()?))
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
    Products,
    Product,
    PutProduct,
}

/// Every route inventory serves: drives the router, and the unit tests hold `openapi.json` to it.
pub const ROUTES: &[Route<Op>] = &[
    Route::new("GET", "/inventory/health", Op::Health),
    Route::new("GET", "/inventory/events", Op::Events),
    Route::new("POST", "/inventory/sweep", Op::Sweep),
    Route::new("POST", "/inventory/events/deliveries", Op::Deliver),
    Route::new("GET", "/inventory/openapi.json", Op::OpenApi),
    Route::new("GET", "/inventory/dead-letters", Op::DeadLetters),
    Route::new(
        "POST",
        "/inventory/dead-letters/{source}/{seq}/replay",
        Op::Replay,
    ),
    Route::new("GET", "/inventory/products", Op::Products),
    Route::new("GET", "/inventory/products/{sku}", Op::Product),
    Route::new("PUT", "/inventory/products/{sku}", Op::PutProduct),
];

/// The API contract of inventory (OpenAPI 3.1), served at `GET /inventory/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn route(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
    let (op, params) = match web::resolve(SERVICE, ROUTES, req) {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    match op {
        Op::Health => Ok(web::health(SERVICE)),
        Op::Events => web::serve_feed(ctx, req, &SqlInventory::open()?.db),
        Op::Sweep => {
            ctx.require_admin(req)?;
            Ok(web::json(200, &events::sweep(ctx).await?))
        }
        Op::Deliver => events::receive(ctx, req).await,
        Op::OpenApi => Ok(web::openapi(OPENAPI)),
        Op::DeadLetters => {
            let store = SqlInventory::open()?;
            deadletter::sql::list_route(ctx, req, &store.db)
        }
        Op::Replay => {
            let service = service()?;
            deadletter::sql::replay_route(ctx, req, &params, &service.store.db, &service).await
        }
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_describes_exactly_the_served_routes() {
        shop_kit::openapi::check_document(super::OPENAPI, super::ROUTES).unwrap();
    }
}
