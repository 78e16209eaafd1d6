//! The caller of a request: its bearer key, authenticated by the engine's
//! key store (`omnistock_engine::keys`), then the key's rate limit; and the
//! scope checks a handler makes before it calls an engine operation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use super::error_codes::Code;
use super::publishable;
pub use crate::engine::keys::{ApiKey, KeyStore, Scope};
use crate::ledger::{Acting, LocationCode};

/// The OpenAPI schema of a scope (the engine's `Scope` knows no OpenAPI):
/// its names, as `Scope::as_str` spells them.
pub struct ScopeSchema;

impl utoipa::PartialSchema for ScopeSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .enum_values(Some(Scope::ALL.iter().map(|scope| scope.as_str())))
            .description(Some(
                "read: availability, positions, reservations by id, locations; \
                 reserve: reserve and resolve reservations at any location; \
                 pos: reserve, sell and take returns at the key's own locations; \
                 stock_write: counts, receipts, adjustments, expected receipts, imports; \
                 feed: ad feeds; admin: everything",
            ))
            .into()
    }
}

impl utoipa::ToSchema for ScopeSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Scope")
    }
}

/// The authenticated caller of a request.
pub struct Caller(pub Arc<ApiKey>);

impl Caller {
    pub fn has(&self, scope: Scope) -> bool {
        self.0.has(scope)
    }

    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(Self::forbidden(scope))
        }
    }

    /// The refusal of a request that needs `scope`.
    pub fn forbidden(scope: Scope) -> ApiError {
        ApiError::new(
            Code::Forbidden,
            format!("this request needs the `{}` scope", scope.as_str()),
        )
    }

    /// Writes at `locations` need `broad` (any location) or `pos` limited to
    /// the key's own locations. For locations named by the request itself;
    /// where they come from ledger state (a reservation's lines), pass
    /// [`Caller::acting`] to the ledger operation instead, which checks
    /// them under the same lock as it acts.
    pub fn require_at<'a>(
        &self,
        broad: Scope,
        locations: impl IntoIterator<Item = &'a LocationCode>,
    ) -> Result<(), ApiError> {
        let acting = self.acting(broad)?;
        for location in locations {
            if !acting.allows(location) {
                return Err(ApiError::location_not_allowed(location));
            }
        }
        Ok(())
    }

    /// On whose authority the caller acts on a reservation: `broad` (or
    /// admin) on any, `pos` only at the key's own locations; without
    /// either, 403 before the ledger is asked anything.
    pub fn acting(&self, broad: Scope) -> Result<Acting<'_>, ApiError> {
        self.0.acting(broad).ok_or_else(|| {
            ApiError::new(
                Code::Forbidden,
                format!("this request needs the `{}` or `pos` scope", broad.as_str()),
            )
        })
    }
}

impl Caller {
    /// Admits an authenticated secret key: not from another site's page,
    /// and within its rate.
    pub(crate) async fn admit(
        parts: &Parts,
        state: &AppState,
        key: Arc<ApiKey>,
    ) -> Result<Caller, ApiError> {
        publishable::refuse_secret_from_page(parts)?;
        Caller::check_rate(state, &key).await?;
        Ok(Caller(key))
    }

    /// Takes one request of the key's rate, or refuses it (after a delay).
    pub(crate) async fn check_rate(state: &AppState, key: &ApiKey) -> Result<(), ApiError> {
        let Err(retry_after_s) = state.rate_limiter.check(&key.id, Instant::now) else {
            return Ok(());
        };
        // Tarpit: a flooding client on keep-alive connections can only
        // send as fast as these answers come back, so its refused
        // requests stop competing with other keys' for the CPU.
        // Jittered (half to all of the delay) so a flood's connections
        // do not wake, and come back, in lockstep bursts.
        let delay_ms = state
            .limits
            .rate_limited_delay_ms
            .min(retry_after_s.saturating_mul(1_000));
        if delay_ms > 0 {
            let jitter_ms = u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos()),
            ) % (delay_ms / 2 + 1);
            tokio::time::sleep(Duration::from_millis(delay_ms / 2 + jitter_ms)).await;
        }
        Err(ApiError::rate_limited(retry_after_s))
    }
}

/// A secret key's caller. A publishable key is refused here (it reads only
/// through a [`publishable::Reader`]), and so is a secret key in the URL.
impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let keys = state.engine.keys();
        if let Some(in_url) = publishable::key_param(parts.uri.query())
            && keys
                .authenticate(&in_url)
                .is_some_and(|k| k.publishable.is_none())
        {
            return Err(publishable::key_in_url());
        }
        let key = publishable::secret_key(keys, &parts.headers)?;
        Caller::admit(parts, state, key).await
    }
}
