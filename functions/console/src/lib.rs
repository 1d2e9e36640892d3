//! The console component: serves the operator console, a static single-page app under
//! `/console/...` (files in `static/`, embedded at build time). It calls no other function
//! and holds no secret: the browser calls the functions' own APIs with the token the
//! operator types in, so the component needs no store and no outbound host.

pub mod assets;
pub mod http;

pub const SERVICE: &str = "console";

/// The component's export. Only built for Wasm: natively the crate is a library whose
/// routing is unit-tested.
#[cfg(target_arch = "wasm32")]
mod exports {
    use spin_sdk::http::{Request, ResponseOutparam};

    #[spin_sdk::http_component]
    async fn handle_http(req: Request, out: ResponseOutparam) {
        let response = super::http::answer(&req);
        if let Err(e) = shop_kit::reply::send(out, response) {
            eprintln!("console: response not sent: {e:#}");
        }
    }
}
