//! HTTP transport of inventory: `/inventory/...` routes.

use serde_json::json;
use shop_kit::body::{check_sku, parse_object};
use shop_kit::web::{self, Ctx};
use shop_kit::Failure;
use spin_sdk::http::{Method, Request, Response};

use crate::domain::ProductUpdate;
use crate::{events, store::SqlInventory, Service, SERVICE};

/// Routes one request; every failure becomes the one JSON error shape.
pub async fn handle(req: Request) -> Response {
    let ctx = Ctx::from_request(SERVICE, &req);
    match route(&ctx, &req).await {
        Ok(response) => response,
        Err(failure) => ctx.failure(failure),
    }
}

fn service() -> anyhow::Result<Service> {
    Ok(Service::new(SqlInventory::open()?))
}

async fn route(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
    let segments = web::segments(req);
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (parts.as_slice(), req.method().clone()) {
        (["inventory", "health"], Method::Get) => Ok(web::health(SERVICE)),
        (["inventory", "events"], Method::Get) => {
            web::serve_feed(ctx, req, &SqlInventory::open()?.db)
        }
        (["inventory", "sweep"], Method::Post) => {
            ctx.require_admin(req)?;
            Ok(web::json(200, &events::sweep(ctx).await?))
        }
        (["inventory", "products"], Method::Get) => {
            let products = service()?.products()?;
            Ok(web::json(200, &json!({ "products": products })))
        }
        (["inventory", "products", sku], Method::Get) => {
            check_sku("sku", sku)?;
            Ok(web::json(200, &service()?.product(sku)?))
        }
        (["inventory", "products", sku], Method::Put) => {
            ctx.require_admin(req)?;
            check_sku("sku", sku)?;
            let update = ProductUpdate::parse(&parse_object(req.body())?)?;
            let (product, created) = service()?.put_product(sku, update)?;
            ctx.log.info(
                &format!("product {sku} stocked: {} available", product.available),
                None,
            );
            Ok(web::json(if created { 201 } else { 200 }, &product))
        }
        (["inventory", "health" | "events" | "products"], _) => {
            Ok(web::method_not_allowed(SERVICE, "GET"))
        }
        (["inventory", "sweep"], _) => Ok(web::method_not_allowed(SERVICE, "POST")),
        (["inventory", "products", _], _) => Ok(web::method_not_allowed(SERVICE, "GET, PUT")),
        _ => Ok(web::no_route(SERVICE)),
    }
}
