//! The OpenAPI 3 document, generated from the handlers' annotations
//! (utoipa), and a small self-contained page that renders it: no CDN, so it
//! works offline. `tests/it/openapi.rs` holds the document equal to what every
//! handler of the routing table reads.

use std::sync::OnceLock;

use std::borrow::Cow;

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

use crate::ledger::MAX_ID_CHARS;

use super::error_codes::Code;
use super::routes::{
    admin, availability, feeds, keys, pages, reservations, stock, streams, system,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "omnistock", description = "Real-time inventory availability for omnichannel retail. Errors are application/problem+json with a stable `code`."),
    paths(
        availability::sku_availability, availability::position, availability::batch, availability::nearby,
        reservations::create, reservations::get, reservations::commit, reservations::release, reservations::extend, reservations::transfer,
        stock::count, stock::display, stock::sale, stock::return_units, stock::receipt, stock::incoming, stock::adjustment, stock::movement_batch, stock::import,
        admin::put_location, admin::list_locations, admin::put_group, admin::put_policy,
        keys::create_key, keys::list_keys, keys::revoke_key, admin::journal, admin::audit, admin::cluster,
        feeds::google, feeds::meta, streams::availability,
        system::healthz, system::readyz, system::metrics, system::openapi_json, system::docs,
        pages::preflight_availability, pages::preflight_nearby, pages::preflight_stream, pages::sdk, pages::console,
    ),
    components(schemas(Problem, Code, Sku, LocationCode, GroupName, ChannelName, FeedFormat)),
    modifiers(&BearerAuth, &OptionalBodies, &ErrorResponses),
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
        // Pages' reads (availability, nearby, the live stream) also take a
        // publishable key in the URL: an EventSource cannot set headers.
        components.add_security_scheme(
            "publishable_key",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Query(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "key",
                    "a publishable key (`opk_...`); a secret key here is refused (`key_in_url`)",
                ),
            )),
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

/// What an id (SKU, location code, group name) may be, as
/// `crate::ledger`'s validation has it: 1 to `MAX_ID_CHARS` characters, no
/// control character, no whitespace at either end. The pattern says the
/// last two (a regular expression both ECMA-262 and Python read alike).
pub const ID_PATTERN: &str =
    r"^[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$";

macro_rules! id_schemas {
    ($($name:ident: $what:literal),*) => {$(
        #[doc = concat!("The schema of ", $what, " (documentation only).")]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(MAX_ID_CHARS))
                    .pattern(Some(ID_PATTERN))
                    .description(Some(format!(
                        "{}: 1 to {MAX_ID_CHARS} characters, no control characters, no whitespace at either end",
                        $what
                    )))
                    .into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    )*};
}

id_schemas!(Sku: "a SKU", LocationCode: "a location code", GroupName: "a location group name");

/// A sales channel, as `crate::ledger::Channel` names it (documentation
/// only; the OpenAPI test holds the two equal).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelName {
    Web,
    App,
    Pos,
    Kiosk,
    Marketplace,
    CallCentre,
    Ads,
}

/// The format of an ad feed (documentation only): `tsv` (Google, the
/// default) or `xml` (Google); `csv`, the Meta feed's only one.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeedFormat {
    Tsv,
    Xml,
    Csv,
}

/// Every error body: RFC 9457 problem details with a stable `code`, one of
/// `ProblemCode` (the table in `http/error_codes.rs`, which also gives the
/// status, `title` and `type`). Some codes add members: `shortfalls`
/// (insufficient stock or on hand), `location`, `group`, `state`,
/// `expected_version` and `actual_version`, the hold cap's `holder`,
/// `held`, `requested`, `max`.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// `urn:omnistock:problem:{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    /// The HTTP status, repeated.
    pub status: u16,
    pub detail: String,
    /// Stable and machine-readable: build on it, not on `title` or `detail`.
    pub code: Code,
}

/// The errors every operation can answer, from what its handler extracts
/// (the routing table's [`super::routes::specs`], as the OpenAPI test
/// reads it) and where it is served: the key (401, 403, 429), parameters
/// (422), a JSON body (400, 408, 413, 415, 422), an idempotency key (409,
/// 422), the readiness and durability gate under `/v1` (503). A status an
/// annotation documents keeps its own description; every error response
/// gets the problem body.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for spec in super::routes::specs() {
            let Some(item) = openapi.paths.paths.get_mut(spec.path) else {
                continue; // the OpenAPI test reports an undocumented route
            };
            let Some(operation) = operation_for(item, &spec.method) else {
                continue;
            };
            let responses = &mut operation.responses.responses;
            for (status, description) in error_statuses(&spec) {
                responses.entry(status.to_string()).or_insert_with(|| {
                    RefOr::T(
                        utoipa::openapi::ResponseBuilder::new()
                            .description(description)
                            .build(),
                    )
                });
            }
            for (status, response) in responses.iter_mut() {
                if let RefOr::T(response) = response {
                    add_problem_body(status, response);
                }
            }
        }
    }
}

fn operation_for<'a>(
    item: &'a mut utoipa::openapi::PathItem,
    method: &axum::http::Method,
) -> Option<&'a mut utoipa::openapi::path::Operation> {
    use axum::http::Method;
    match *method {
        Method::GET => item.get.as_mut(),
        Method::PUT => item.put.as_mut(),
        Method::POST => item.post.as_mut(),
        Method::DELETE => item.delete.as_mut(),
        Method::PATCH => item.patch.as_mut(),
        Method::OPTIONS => item.options.as_mut(),
        _ => None,
    }
}

/// A response named after its code: the status and the code's spelling
/// come from the table.
fn coded(code: Code, what: &str) -> (u16, String) {
    (code.status().as_u16(), format!("`{code}`: {what}"))
}

fn invalid(what: &str) -> (u16, String) {
    (Code::InvalidBody.status().as_u16(), what.to_owned())
}

/// The error statuses (with descriptions) a route can answer, from where it
/// is served and what it extracts.
fn error_statuses(spec: &super::routes::table::RouteSpec) -> Vec<(u16, String)> {
    let mut statuses: Vec<(u16, String)> = Vec::new();
    if spec.path.starts_with("/v1/") {
        statuses.push(coded(
            Code::NotReady,
            &format!(
                "the engine is still loading its state; in sync durability mode, \
                 `{}`: a write could not be stored (retry with the same Idempotency-Key); \
                 in a cluster, `{}` (it is moving between nodes) or `{}`",
                Code::NotDurable,
                Code::PartitionUnavailable,
                Code::ClusterStoreUnavailable
            ),
        ));
    }
    for extracted in &spec.extracts {
        statuses.extend(extraction_errors(extracted));
    }
    let operation = (spec.method.as_str(), spec.path);
    if crate::cluster::target::CROSS_PARTITION_OPERATIONS.contains(&operation) {
        statuses.push(coded(
            Code::CrossPartitionNotSupported,
            "cluster mode: `since` names one partition's sequence; continue the journal of every SKU with `cursor`",
        ));
    }
    statuses
}

/// What an extractor answers when the request does not satisfy it.
fn extraction_errors(extracted: &super::routes::table::Extracted) -> Vec<(u16, String)> {
    use super::routes::table::Extracted;
    match extracted {
        Extracted::Caller => vec![
            coded(Code::Unauthorized, "no API key, or an unknown one"),
            coded(
                Code::Forbidden,
                "the key lacks the scope (or, for a pos key, the location)",
            ),
            coded(Code::RateLimited, "the key is over its request rate"),
        ],
        Extracted::Path(_) | Extracted::Query(_) => vec![invalid("invalid parameters")],
        Extracted::Header { .. } => vec![
            coded(
                Code::IdempotencyInFlight,
                "a request with this Idempotency-Key is still running",
            ),
            invalid(&format!(
                "invalid request, or `{}` for another request",
                Code::IdempotencyKeyReused
            )),
        ],
        Extracted::JsonBody { .. } => vec![
            coded(Code::MalformedJson, "the body is not JSON"),
            coded(Code::BodyTimeout, "the body did not arrive in time"),
            coded(Code::BodyTooLarge, "the body is over the size limit"),
            coded(
                Code::UnsupportedMediaType,
                "send `Content-Type: application/json`",
            ),
            invalid("invalid request"),
        ],
        Extracted::RawBody => vec![
            coded(Code::UnreadableBody, "the body stopped"),
            (
                Code::UnsupportedMediaType.status().as_u16(),
                format!("`{}`", Code::UnsupportedMediaType),
            ),
            invalid("invalid request"),
        ],
        Extracted::HeaderMap => Vec::new(),
        Extracted::Origin => vec![coded(
            Code::OriginNotAllowed,
            "no publishable key allows the page's origin",
        )],
    }
}

/// An error response without content gets the problem body; every 429 and
/// 503 problem says when to retry.
fn add_problem_body(status: &str, response: &mut utoipa::openapi::Response) {
    use utoipa::openapi::{ContentBuilder, HeaderBuilder, Object, Ref};
    if !status.starts_with(['4', '5']) {
        return;
    }
    if response.content.is_empty() {
        response.content.insert(
            "application/problem+json".into(),
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        );
    }
    if matches!(status, "429" | "503") && response.content.contains_key("application/problem+json")
    {
        response
            .headers
            .entry("Retry-After".into())
            .or_insert_with(|| {
                HeaderBuilder::new()
                    .schema(Object::with_type(Type::Integer))
                    .description(Some("seconds to wait before retrying"))
                    .build()
            });
    }
}

/// The `Idempotency-Key` header every write that takes one documents
/// (`params(crate::http::openapi::IdempotencyKeyHeader)`); read by
/// [`super::IdempotencyHeader`].
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// Makes the request safe to retry: a retry with the same key (per API
    /// key) replays the first outcome instead of applying the request again;
    /// the same key with another request is refused (422). 1 to 200 visible
    /// ASCII characters.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        min_length = 1,
        max_length = 200
    )]
    pub idempotency_key: Option<String>,
}

/// The `If-None-Match` header the availability reads document
/// (`params(crate::http::openapi::IfNoneMatchHeader)`); read by
/// [`super::conditional::IfNoneMatch`].
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfNoneMatchHeader {
    /// The `ETag` of an answer the client has: while the answer is the
    /// same, 304 with no body.
    #[param(rename = "If-None-Match", nullable = false)]
    pub if_none_match: Option<String>,
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
    /// A node of a cluster (`serve --cluster`).
    #[serde(rename = "redis-cluster")]
    RedisCluster,
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
    /// The last store error while the store is failing; null once a
    /// write (or the load) has succeeded again.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// When `last_error` happened (RFC 3339), null with it.
    #[schema(required = true, format = DateTime)]
    pub last_error_at: Option<String>,
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
            serde_json::to_value(ApiDoc::openapi())
                .and_then(|mut document| {
                    unsigned_formats(&mut document);
                    serde_json::to_string_pretty(&document)
                })
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        })
        .clone()
}

/// Unsigned integers (utoipa's `non_strict_integers`, so that a `u32` is not
/// documented as `int32`, whose range it exceeds) get the usual format names
/// (`uint32`, not utoipa's `u-int32`) and their type's upper bound, unless
/// an annotation set a lower one.
fn unsigned_formats(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let unsigned = match map.get("format").and_then(Value::as_str) {
                Some("u-int8") => Some(("uint8", u64::from(u8::MAX))),
                Some("u-int16") => Some(("uint16", u64::from(u16::MAX))),
                Some("u-int32") => Some(("uint32", u64::from(u32::MAX))),
                Some("u-int64") => Some(("uint64", u64::MAX)),
                _ => None,
            };
            if let Some((format, max)) = unsigned {
                map.insert("format".into(), format.into());
                map.entry("maximum").or_insert(max.into());
            }
            map.values_mut().for_each(unsigned_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_formats),
        _ => {}
    }
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
    if(s.$ref){
      // A named scalar (an id, an enum) shows what it is; an object, its name.
      const name=refName(s.$ref),target=schemas[name];
      return target&&!target.properties&&!target.oneOf&&!target.anyOf&&!target.allOf&&!target.$ref?name+' ('+label(target)+')':name;
    }
    const alts=s.oneOf||s.anyOf;
    if(alts) return alts.map(label).join(' | ');
    if(s.allOf) return s.allOf.map(label).join(' & ');
    let types=Array.isArray(s.type)?s.type:(s.type?[s.type]:[]);
    let text=types.map(t=>t==='array'?'array of '+label(s.items):t).join(' | ')||(s.properties?'object':'any');
    if(s.format) text+=' ('+s.format+')';
    if(s.enum) text+=': one of '+s.enum.map(e=>JSON.stringify(e)).join(', ');
    const bounds=[];
    if(s.minimum!==undefined) bounds.push('≥ '+s.minimum);
    if(s.exclusiveMinimum!==undefined) bounds.push('> '+s.exclusiveMinimum);
    if(s.maximum!==undefined) bounds.push('≤ '+s.maximum);
    if(s.minLength!==undefined||s.maxLength!==undefined) bounds.push((s.minLength||0)+' to '+(s.maxLength===undefined?'any':s.maxLength)+' characters');
    if(bounds.length) text+=', '+bounds.join(', ');
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
  // Error bodies are all the same problem object: named, its fields shown once under schemas.
  function content(c){
    return Object.entries(c||{}).map(([type,m])=>'<div><code>'+esc(type)+'</code> '+
      (type==='application/problem+json'?'<span class="t">'+esc(label(m.schema))+'</span>':schemaHtml(m.schema))+'</div>').join('');
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
      const responses=Object.entries(op.responses||{}).map(([status,r])=>{
        const types=Object.keys(r.content||{});
        const body=!types.length?'':types.length===1&&types[0]==='application/problem+json'?' <span class="t">(problem+json)</span>':
          '<details><summary>body</summary>'+content(r.content)+'</details>';
        return '<li><code>'+esc(status)+'</code> '+esc(r.description||'')+body+'</li>';
      });
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
