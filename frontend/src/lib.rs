//! Slipway's web dashboard: a client-side rendered Leptos app compiled to
//! wasm and served by the server from `static/` (see `xtask build-frontend`).
//!
//! Map: [`api`] is the only module that talks HTTP; [`app`] holds the route table,
//! the session context and the top navigation; [`router`] follows the URL; one file per page in
//! [`pages`]; shared widgets in [`components`]; event streams (SSE) in [`sse`].
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod api;
pub mod app;
pub mod components;
pub mod pages;
pub mod router;
pub mod sse;

use wasm_bindgen::prelude::wasm_bindgen;

/// Entry point, run by `init()` in `static/index.html`.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
