//! The OpenAPI 3 document, generated from the handlers' annotations
//! (utoipa), and a small self-contained page that renders it: no CDN, so it
//! works offline. `tests/openapi.rs` holds the document equal to what every
//! handler of the routing table reads.

use std::sync::OnceLock;

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use super::routes::{admin, availability, feeds, reservations, stock, streams, system};

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
        system::healthz, system::readyz, system::metrics, system::openapi_json, system::docs,
    ),
    modifiers(&BearerAuth, &OptionalBodies),
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

/// An optional JSON body (`request_body(content = Option<T>)`, read by
/// `OptionalApiJson<T>`) may be left out (`required: false`), but a JSON
/// `null` is refused like any other non-`T`: its schema is `T`, not utoipa's
/// "`T` or null".
struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{Schema, SchemaType, Type};
        let is_null = |schema: &RefOr<Schema>| matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null));
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let Some(body) = operation.request_body.as_mut() else {
                    continue;
                };
                for content in body.content.values_mut() {
                    if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema
                        && one_of.items.len() == 2
                        && one_of.items.iter().any(is_null)
                    {
                        content.schema = one_of.items.iter().find(|s| !is_null(s)).cloned();
                    }
                }
            }
        }
    }
}

/// The `Idempotency-Key` header every write that takes one documents
/// (`params(crate::http::openapi::IdempotencyKey)`); read by
/// [`super::IdempotencyHeader`].
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// Makes the request safe to retry: a retry with the same key (per API
    /// key) replays the first outcome instead of applying the request again;
    /// the same key with another request is refused (422). 1 to 200 visible
    /// ASCII characters.
    #[param(rename = "Idempotency-Key")]
    pub idempotency_key: Option<String>,
}

/// `/healthz`: the process answers.
#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
}

/// `/readyz`. `status`: `ready`; `loading` (state not loaded yet, 503);
/// `degraded` (Redis unreachable: 200 in async mode, serving from memory,
/// 503 in sync mode); `failed` (503). `durability` and `write_behind` are
/// there with the Redis store only.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub status: ReadinessStatus,
    pub store: StoreKind,
    #[schema(nullable = false)]
    pub durability: Option<DurabilityMode>,
    #[schema(nullable = false)]
    pub write_behind: Option<WriteBehindHealth>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadinessStatus {
    Ready,
    Loading,
    Degraded,
    Failed,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded in-memory store: state is lost on exit.
    Memory,
    Redis,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    Async,
    Sync,
}

/// The Redis write-behind's health.
#[derive(Serialize, ToSchema)]
pub struct WriteBehindHealth {
    pub state: WriteBehindState,
    /// Changed items waiting to be written.
    pub backlog_items: u64,
    /// Age of the oldest change not yet written.
    pub flush_lag_ms: u64,
    pub consecutive_failures: u64,
    /// The last flush error, null when none.
    #[schema(required = true)]
    pub last_error: Option<String>,
    pub flushes: u64,
    pub flush_errors: u64,
    /// Whole-state rewrites (Redis came back empty).
    pub full_rewrites: u64,
    pub stream_entries_dropped: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WriteBehindState {
    Loading,
    Healthy,
    Degraded,
    Failed,
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

/// The browsable page: renders `/openapi.json` in the browser with no
/// external script or style. Parameters, request bodies and responses show
/// their schemas' fields: `$ref`s are resolved into `components.schemas`
/// (nested ones too; a schema that contains itself is named, not expanded).
pub const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>omnistock API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} .op{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.2rem;font-weight:600;text-transform:uppercase}
.get{color:#0a6}.post{color:#06c}.put{color:#a60}.delete{color:#c22}.patch{color:#a0a}
code,pre{background:#f5f5f5;border-radius:4px;padding:0 .25rem} pre{padding:.5rem;overflow:auto}
table{border-collapse:collapse;margin:.3rem 0} td,th{border-bottom:1px solid #eee;padding:.15rem .5rem;text-align:left;vertical-align:top}
ul.f{margin:.2rem 0;padding-left:1.2rem} .t{color:#666} .req{color:#c22;font-size:.85em} .d{color:#444}
details summary{cursor:pointer}
</style></head><body>
<h1>omnistock API</h1><p>Rendered from <a href="/openapi.json">/openapi.json</a>. Send <code>Authorization: Bearer KEY</code>.</p>
<div id="ops">Loading…</div>
<script>
const esc=v=>String(v).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'})[c]);
function render(doc){
  const schemas=(doc.components||{}).schemas||{};
  const refName=r=>String(r).split('/').pop();
  const MAX_DEPTH=8;
  // A short type label: `string`, `integer (int32)`, `array of Line`, `Line`, with `| null`.
  function label(s){
    if(!s) return 'any';
    if(s.$ref) return refName(s.$ref);
    const alts=s.oneOf||s.anyOf;
    if(alts) return alts.map(label).join(' | ');
    if(s.allOf) return s.allOf.map(label).join(' & ');
    let types=Array.isArray(s.type)?s.type:(s.type?[s.type]:[]);
    let text=types.map(t=>t==='array'?'array of '+label(s.items):t).join(' | ')||(s.properties?'object':'any');
    if(s.format) text+=' ('+s.format+')';
    if(s.enum) text+=': one of '+s.enum.map(e=>JSON.stringify(e)).join(', ');
    return text;
  }
  // A schema's fields as nested lists, following $refs (into `seen` once per branch).
  function fields(s,seen,depth){
    if(!s||depth>MAX_DEPTH) return '';
    if(s.$ref){
      const name=refName(s.$ref);
      if(seen.includes(name)) return ' <span class="t">(fields above)</span>';
      return fields(schemas[name],seen.concat(name),depth+1);
    }
    const alts=s.oneOf||s.anyOf;
    if(alts){
      const shown=alts.filter(a=>a.type!=='null');
      if(shown.length===1) return fields(shown[0],seen,depth);
      return '<ul class="f">'+shown.map((a,i)=>'<li>variant '+(i+1)+': <span class="t">'+esc(label(a))+'</span>'+fields(a,seen,depth+1)+'</li>').join('')+'</ul>';
    }
    if(s.allOf) return s.allOf.map(a=>fields(a,seen,depth)).join('');
    if(s.items) return fields(s.items,seen,depth+1);
    if(!s.properties) return '';
    const required=s.required||[];
    const rows=Object.entries(s.properties).map(([name,p])=>
      '<li><code>'+esc(name)+'</code> <span class="t">'+esc(label(p))+'</span>'+
      (required.includes(name)?' <span class="req">required</span>':'')+
      (p.description?' <span class="d">'+esc(p.description)+'</span>':'')+
      fields(p,seen,depth+1)+'</li>');
    return '<ul class="f">'+rows.join('')+'</ul>';
  }
  const schemaHtml=s=>'<span class="t">'+esc(label(s))+'</span>'+fields(s,[],0);
  function content(c){
    return Object.entries(c||{}).map(([type,m])=>'<div><code>'+esc(type)+'</code> '+schemaHtml(m.schema)+'</div>').join('');
  }
  const out=[];
  for(const [path,item] of Object.entries(doc.paths||{})){
    for(const [method,op] of Object.entries(item)){
      const parts=['<div class="op"><span class="m '+esc(method)+'">'+esc(method)+'</span><code>'+esc(path)+'</code>',
        '<p>'+esc(op.summary||'')+(op.description&&op.description!==op.summary?' '+esc(op.description):'')+'</p>'];
      if((op.security||[]).length) parts.push('<p class="t">needs a bearer API key</p>');
      const params=op.parameters||[];
      if(params.length){
        parts.push('<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>'+params.map(p=>
          '<tr><td><code>'+esc(p.name)+'</code></td><td>'+esc(p.in)+'</td><td>'+schemaHtml(p.schema)+'</td><td>'+
          (p.required?'<span class="req">required</span> ':'')+esc(p.description||'')+'</td></tr>').join('')+'</table>');
      }
      if(op.requestBody){
        const b=op.requestBody;
        parts.push('<div><b>request body</b>'+(b.required?' <span class="req">required</span>':' (optional)')+
          (b.description?' <span class="d">'+esc(b.description)+'</span>':'')+content(b.content)+'</div>');
      }
      const responses=Object.entries(op.responses||{}).map(([status,r])=>
        '<li><code>'+esc(status)+'</code> '+esc(r.description||'')+(r.content?'<details><summary>body</summary>'+content(r.content)+'</details>':'')+'</li>');
      parts.push('<ul class="f">'+responses.join('')+'</ul></div>');
      out.push(parts.join(''));
    }
  }
  out.push('<details><summary>schemas</summary>'+Object.keys(schemas).sort().map(name=>
    '<h3 id="schema-'+esc(name)+'">'+esc(name)+'</h3>'+(schemas[name].description?'<p>'+esc(schemas[name].description)+'</p>':'')+
    fields({$ref:'#/components/schemas/'+name},[],0)).join('')+'</details>');
  return out.join('');
}
fetch('/openapi.json').then(r=>r.json()).then(doc=>{
  document.getElementById('ops').innerHTML=render(doc);
}).catch(e=>{document.getElementById('ops').textContent='Could not load /openapi.json: '+e;});
</script></body></html>"#;
