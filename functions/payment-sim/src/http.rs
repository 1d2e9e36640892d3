//! HTTP transport of the payment simulator: `/payment-sim/...` routes.

use shop_kit::body::parse_object;
use shop_kit::web::{self, Ctx};
use shop_kit::Failure;
use spin_sdk::http::{Method, Request, Response};

use crate::domain::{ChargeRequest, Faults, RefundRequest};
use crate::service::ProviderStore;
use crate::{store::KvProvider, Service, SERVICE};

/// Routes one request; every failure becomes the one JSON error shape.
pub async fn handle(req: Request) -> Response {
    let ctx = Ctx::from_request(SERVICE, &req);
    match route(&ctx, &req) {
        Ok(response) => response,
        Err(failure) => ctx.failure(failure),
    }
}

fn service() -> anyhow::Result<Service> {
    Ok(Service::new(KvProvider::open()?))
}

/// A uniform random number in `[0, 1)`.
fn roll() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    f64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        / (f64::from(u32::MAX) + 1.0)
}

/// Applies the injected latency and failures to a provider call.
fn faulty(service: &Service) -> Result<(), Failure> {
    let faults = service.store.faults()?;
    if faults.latency_ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(faults.latency_ms));
    }
    Ok(service.check_faults(&faults, roll())?)
}

fn route(ctx: &Ctx, req: &Request) -> Result<Response, Failure> {
    let segments = web::segments(req);
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (parts.as_slice(), req.method().clone()) {
        (["payment-sim", "health"], Method::Get) => Ok(web::health(SERVICE)),
        (["payment-sim", "events"], Method::Get) => {
            // The simulator publishes no events; its feed is always empty.
            let (after, _) = shop_kit::outbox::feed_params(&web::query(req))?;
            Ok(web::json(200, &shop_kit::outbox::feed_json(&[], after)))
        }
        (["payment-sim", "charges"], Method::Post) => {
            let charge = ChargeRequest::parse(&parse_object(req.body())?)?;
            let service = service()?;
            faulty(&service)?;
            let (charge, new) = service.charge(charge)?;
            if new {
                ctx.log.info(
                    &format!("charge {} {:?}", charge.provider_ref, charge.status),
                    Some(&charge.idempotency_key),
                );
            }
            Ok(web::json(if new { 201 } else { 200 }, &charge))
        }
        (["payment-sim", "charges", key], Method::Get) => {
            Ok(web::json(200, &service()?.get_charge(key)?))
        }
        (["payment-sim", "refunds"], Method::Post) => {
            let refund = RefundRequest::parse(&parse_object(req.body())?)?;
            let service = service()?;
            faulty(&service)?;
            Ok(web::json(200, &service.refund(refund)?))
        }
        (["payment-sim", "faults"], Method::Get) => Ok(web::json(200, &service()?.store.faults()?)),
        (["payment-sim", "faults"], Method::Put) => {
            ctx.require_admin(req)?;
            let body = parse_object(req.body())?;
            let service = service()?;
            let faults = Faults::parse(&body, service.store.faults()?)?;
            service.store.set_faults(&faults)?;
            ctx.log.info(&format!("faults set: {faults:?}"), None);
            Ok(web::json(200, &faults))
        }
        (["payment-sim", "health" | "events"], _) => Ok(web::method_not_allowed(SERVICE, "GET")),
        (["payment-sim", "charges" | "refunds"], _) => Ok(web::method_not_allowed(SERVICE, "POST")),
        (["payment-sim", "charges", _], _) => Ok(web::method_not_allowed(SERVICE, "GET")),
        (["payment-sim", "faults"], _) => Ok(web::method_not_allowed(SERVICE, "GET, PUT")),
        _ => Ok(web::no_route(SERVICE)),
    }
}
