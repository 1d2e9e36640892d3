//! Answers every request with `200 ok` and touches nothing else: what a fresh instance per
//! request costs on its own, with none of the app's code. `bench/run.sh` serves it on shop-host
//! (and on `wasmtime serve` when that is installed) next to the native server, so the ratio that
//! no Wasm route can beat on the machine is measured, not inferred.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn answer(_request: Request) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body("ok")
        .build()
}
