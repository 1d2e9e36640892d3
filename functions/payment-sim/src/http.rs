//! HTTP transport of the payment simulator: `/payment-sim/...` routes.

use shop_kit::component::{Component, Entry};
use shop_kit::routes::{Params, Route};
use shop_kit::time::now_millis;
use shop_kit::web::{self, Ctx};
use shop_kit::{ApiError, Failure};
use spin_sdk::http::{Request, Response};

use crate::domain::{ChargeRequest, Faults, RefundRequest};
use crate::service::ProviderStore;
use crate::{store::KvProvider, Service, SERVICE};

fn service() -> anyhow::Result<Service> {
    Ok(Service::new(KvProvider::open()?))
}

/// A uniform random number in `[0, 1)`.
fn roll() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    f64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        / (f64::from(u32::MAX) + 1.0)
}

fn sleep(ms: u64) {
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Rolls the injected failure of a provider call: a failed call waits out the latency and
/// answers 503 having received nothing. Returns the faults, whose latency the caller applies.
fn faulty(service: &Service) -> Result<Faults, Failure> {
    let faults = service.store.faults()?;
    if let Err(e) = service.check_faults(&faults, roll()) {
        sleep(faults.latency_ms);
        return Err(e.into());
    }
    Ok(faults)
}

/// Checks the caller's secret key (`Authorization: Bearer <payment_provider_key>`), as a real
/// provider's API does on every call; with no key configured, nobody gets in.
fn require_key(req: &Request) -> Result<(), Failure> {
    let key = shop_kit::config::var_or("payment_provider_key", "");
    shop_kit::auth::check_bearer(web::header(req, "authorization"), &key).map_err(|_| {
        ApiError::credential_required("the API key (Authorization: Bearer <payment_provider_key>)")
    })?;
    Ok(())
}

/// What each of its own routes does (the common ones are `shop_kit::component`'s).
#[derive(Debug, Clone, Copy)]
pub enum Op {
    Charge,
    GetCharge,
    Refund,
    Faults,
    SetFaults,
}

/// Every route payment-sim serves: drives the router, and the unit tests hold
/// `openapi.json` to it.
pub const ROUTES: &[Route<Entry<Op>>] = shop_kit::route_table!(
    "/payment-sim",
    basic,
    [
        ("POST", "/payment-sim/charges", Op::Charge),
        ("GET", "/payment-sim/charges/{key}", Op::GetCharge),
        ("POST", "/payment-sim/refunds", Op::Refund),
        ("GET", "/payment-sim/faults", Op::Faults),
        ("PUT", "/payment-sim/faults", Op::SetFaults),
    ]
);

/// The API contract of payment-sim (OpenAPI 3.1), served at `GET /payment-sim/openapi.json`.
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
            Op::Faults | Op::SetFaults => ctx.require_admin(req)?,
            Op::Charge | Op::GetCharge | Op::Refund => require_key(req)?,
        }
        match op {
            Op::Charge => {
                let charge = ChargeRequest::parse(&web::json_object(req)?)?;
                let service = service()?;
                let faults = faulty(&service)?;
                // A new charge is recorded `processing` before the latency, so that a lookup
                // meanwhile sees it; every answer comes after the latency.
                let begun = service.begin_charge(charge, faults.latency_ms, now_millis());
                sleep(faults.latency_ms);
                let (charge, new) = begun?;
                if !new {
                    return Ok(web::json(200, &charge.view()));
                }
                let charge = service.settle_charge(charge)?;
                ctx.log.info(
                    &format!("charge {} {:?}", charge.provider_ref, charge.status),
                    Some(&charge.idempotency_key),
                );
                Ok(web::json(201, &charge.view()))
            }
            Op::GetCharge => {
                let charge = service()?.get_charge(params.get("key"), now_millis())?;
                Ok(web::json(200, &charge.view()))
            }
            Op::Refund => {
                let refund = RefundRequest::parse(&web::json_object(req)?)?;
                let service = service()?;
                sleep(faulty(&service)?.latency_ms);
                Ok(web::json(200, &service.refund(refund, now_millis())?))
            }
            Op::Faults => Ok(web::json(200, &service()?.store.faults()?)),
            Op::SetFaults => {
                let body = web::json_object(req)?;
                let service = service()?;
                let faults = Faults::parse(&body, service.store.faults()?)?;
                service.store.set_faults(&faults)?;
                ctx.log.info(&format!("faults set: {faults:?}"), None);
                Ok(web::json(200, &faults))
            }
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
