//! The OpenAPI 3 document, generated from the handlers' annotations
//! (utoipa), and a small self-contained page that renders it: no CDN, so it
//! works offline.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes::{admin, availability, feeds, reservations, stock, streams};

#[derive(OpenApi)]
#[openapi(
    info(title = "omnistock", description = "Real-time inventory availability for omnichannel retail. Errors are application/problem+json with a stable `code`."),
    paths(
        availability::sku_availability, availability::position, availability::batch, availability::nearby,
        reservations::create, reservations::get, reservations::commit, reservations::release, reservations::extend, reservations::transfer,
        stock::count, stock::display, stock::sale, stock::return_units, stock::receipt, stock::incoming, stock::adjustment, stock::movement_batch, stock::import,
        admin::put_location, admin::list_locations, admin::put_group, admin::put_policy,
        admin::create_key, admin::list_keys, admin::revoke_key, admin::journal, admin::audit,
        feeds::google, feeds::meta, streams::availability,
    ),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON, built once.
pub fn document() -> String {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            ApiDoc::openapi()
                .to_pretty_json()
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        })
        .clone()
}

pub const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>omnistock API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} .op{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.2rem;font-weight:600;text-transform:uppercase}
.get{color:#0a6}.post{color:#06c}.put{color:#a60}.delete{color:#c22}
code,pre{background:#f5f5f5;border-radius:4px;padding:0 .25rem} pre{padding:.5rem;overflow:auto}
details summary{cursor:pointer}
</style></head><body>
<h1>omnistock API</h1><p>Rendered from <a href="/openapi.json">/openapi.json</a>. Send <code>Authorization: Bearer KEY</code>.</p>
<div id="ops">Loading…</div>
<script>
fetch('/openapi.json').then(r=>r.json()).then(doc=>{
  const out=[];
  for(const [path,item] of Object.entries(doc.paths)){
    for(const [method,op] of Object.entries(item)){
      const params=(op.parameters||[]).map(p=>`<code>${p.name}</code> (${p.in})`).join(', ');
      const responses=Object.entries(op.responses||{}).map(([s,r])=>`<code>${s}</code> ${r.description||''}`).join('<br>');
      const body=op.requestBody?`<details><summary>request body</summary><pre>${JSON.stringify(op.requestBody.content,null,1)}</pre></details>`:'';
      out.push(`<div class="op"><span class="m ${method}">${method}</span><code>${path}</code><p>${op.summary||op.description||''}</p>${params?'<p>parameters: '+params+'</p>':''}${body}<p>${responses}</p></div>`);
    }
  }
  out.push(`<details><summary>schemas</summary><pre>${JSON.stringify((doc.components||{}).schemas,null,1)}</pre></details>`);
  document.getElementById('ops').innerHTML=out.join('');
});
</script></body></html>"#;
