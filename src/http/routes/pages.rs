//! What browsers load: the CORS preflight of the reads pages make, the
//! browser SDK (`/sdk/omnistock.js`) and the operator console (`/console`).
//! The SDK and the console are files of `web/`, built into the binary so
//! the engine serves them with no file system and no CDN.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use sha2::{Digest, Sha256};

use axum::extract::State;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    VARY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::error_codes::Code;
use crate::http::json::ApiPath;
use crate::http::publishable::Preflight;

const SDK: &str = include_str!("../../../web/sdk/omnistock.js");
const CONSOLE: &str = include_str!("../../../web/console/index.html");
/// Where the console page says whether the demo's flash sale is offered.
const DEMO_MARKER: &str = "{{OMNISTOCK_DEMO}}";
/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE_S: &str = "600";

/// CORS preflight of a read pages make: allowed for an origin of the
/// URL's publishable key, or, without one in the URL (the key is then in
/// `Authorization`), of any publishable key; refused otherwise (and every
/// other route has no CORS at all).
#[utoipa::path(options, path = "/v1/availability/{sku}", tag = "pages",
    params(("sku" = crate::http::openapi::Sku, Path), ("Origin" = Option<String>, Header, nullable = false, description = "the page's origin")),
    responses((status = 204, description = "the origin may read: `Access-Control-Allow-Origin` names it"), (status = 403, description = "no publishable key allows this origin (`origin_not_allowed`)")))]
pub async fn preflight_availability(
    State(state): State<Arc<AppState>>,
    ApiPath(sku): ApiPath<String>,
    preflight: Preflight,
) -> ApiResult<Response> {
    crate::http::json::sku("sku", &sku)?;
    preflight_answer(&state, preflight)
}

/// CORS preflight of `GET /v1/nearby` (see the availability read's).
#[utoipa::path(options, path = "/v1/nearby", tag = "pages",
    params(("Origin" = Option<String>, Header, nullable = false, description = "the page's origin")),
    responses((status = 204, description = "the origin may read"), (status = 403, description = "no publishable key allows this origin (`origin_not_allowed`)")))]
pub async fn preflight_nearby(
    State(state): State<Arc<AppState>>,
    preflight: Preflight,
) -> ApiResult<Response> {
    preflight_answer(&state, preflight)
}

/// CORS preflight of the live stream (see the availability read's).
#[utoipa::path(options, path = "/v1/streams/availability", tag = "pages",
    params(("Origin" = Option<String>, Header, nullable = false, description = "the page's origin")),
    responses((status = 204, description = "the origin may read"), (status = 403, description = "no publishable key allows this origin (`origin_not_allowed`)")))]
pub async fn preflight_stream(
    State(state): State<Arc<AppState>>,
    preflight: Preflight,
) -> ApiResult<Response> {
    preflight_answer(&state, preflight)
}

fn preflight_answer(state: &AppState, preflight: Preflight) -> ApiResult<Response> {
    let Some(origin) = preflight.origin.clone() else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let text = origin.to_str().unwrap_or_default();
    let keys = state.engine.keys();
    let allowed = match preflight.key {
        Some(key) => keys
            .authenticate(&key)
            .and_then(|key| key.publishable.clone())
            .is_some_and(|p| p.allows_origin(text)),
        None => keys.any_page_origin(text),
    };
    if !allowed {
        return Err(ApiError::new(
            Code::OriginNotAllowed,
            "no publishable key allows this page's origin",
        ));
    }
    Ok((
        StatusCode::NO_CONTENT,
        [
            (ACCESS_CONTROL_ALLOW_ORIGIN, origin),
            (
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET"),
            ),
            (
                ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(
                    "Authorization, If-None-Match, Last-Event-ID, Cache-Control",
                ),
            ),
            (
                ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(PREFLIGHT_MAX_AGE_S),
            ),
            (VARY, HeaderValue::from_static("Origin")),
        ],
    )
        .into_response())
}

/// The browser SDK: an ES module with `watchAvailability` and the
/// `<omnistock-availability>` element. Any page may load it (it holds no
/// data), so it carries `Access-Control-Allow-Origin: *`, which a module
/// script from another origin needs.
#[utoipa::path(get, path = "/sdk/omnistock.js", tag = "pages",
    responses((status = 200, description = "the SDK, an ES module", content_type = "text/javascript", body = String)))]
pub async fn sdk() -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        SDK,
    )
        .into_response()
}

/// The operator console: one self-contained page (no external resources)
/// drawing the engine's own endpoints; the admin key is typed into it and
/// kept in the tab's `sessionStorage` only.
#[utoipa::path(get, path = "/console", tag = "pages",
    responses((status = 200, description = "an HTML page", content_type = "text/html", body = String)))]
pub async fn console(State(state): State<Arc<AppState>>) -> Response {
    static PAGES: OnceLock<[String; 2]> = OnceLock::new();
    let [demo, plain] = PAGES.get_or_init(|| {
        [
            CONSOLE.replace(DEMO_MARKER, "true"),
            CONSOLE.replace(DEMO_MARKER, "false"),
        ]
    });
    let page = if state.pages.demo { demo } else { plain };
    (
        [
            // The page loads nothing from elsewhere and talks only to this
            // engine: the browser holds it to that (and it is never framed,
            // since it holds an admin key).
            (CONTENT_SECURITY_POLICY, console_policy()),
            (REFERRER_POLICY, "no-referrer"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (CACHE_CONTROL, "no-store"),
        ],
        Html(page.as_str()),
    )
        .into_response()
}

/// What the console may load and talk to: itself. Its one script runs by
/// its hash, so nothing injected into the page (the page holds an admin
/// key) could run.
fn console_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        let script = CONSOLE
            .split_once("<script>")
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map_or("", |(script, _)| script);
        let hash = BASE64_STANDARD.encode(Sha256::digest(script.as_bytes()));
        format!(
            "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
             img-src data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'none'"
        )
    })
}
