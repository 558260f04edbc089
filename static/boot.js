// Loads the dashboard (wasm-bindgen, web target). A separate file, not an
// inline script, so the server's Content-Security-Policy can stay 'self'.
import init from "/pkg/slipway_frontend.js";

init({ module_or_path: "/pkg/slipway_frontend_bg.wasm" }).catch((e) => {
  const box = document.createElement("div");
  box.className = "boot-error";
  box.textContent = "The dashboard failed to load: " + String(e);
  document.body.replaceChildren(box);
});
