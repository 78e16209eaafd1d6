//! `serve --demo` ends its start by printing where to look: the console's
//! URL, and a publishable key made for the example storefront
//! (`examples/storefront`, served on port 8000 of this machine).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::engine::{Engine, KeySpec, Publishable, Quantities};
use crate::ledger::Channel;

/// The pages the demo's publishable key serves: the example storefront
/// as `python3 -m http.server -d examples/storefront 8000` serves it.
pub const DEMO_ORIGINS: [&str; 2] = ["http://localhost:8000", "http://127.0.0.1:8000"];

/// The name of the demo's key.
const DEMO_KEY_NAME: &str = "demo storefront";

/// Creates the demo's publishable key (revoking the one a previous start
/// made, which a store kept: its secret was printed then and is not kept,
/// and keys must not pile up start after start); returns what to print.
pub async fn announce(engine: &Engine, addr: SocketAddr) -> Result<String, String> {
    let earlier = engine.keys().list();
    for key in earlier
        .iter()
        .filter(|k| k.name == DEMO_KEY_NAME && k.publishable.is_some())
    {
        engine
            .revoke_key(&key.id)
            .await
            .map_err(|e| format!("cannot revoke the previous demo key: {e}"))?;
    }
    let spec = KeySpec {
        name: DEMO_KEY_NAME.into(),
        scopes: BTreeSet::new(),
        locations: Vec::new(),
        max_held_units: None,
        publishable: Some(Publishable {
            channel: Channel::Web,
            origins: DEMO_ORIGINS.iter().map(|o| (*o).to_owned()).collect(),
            quantities: Quantities::Threshold,
            quantity_threshold: 5,
            cache_control: Some("max-age=1, stale-while-revalidate=5".into()),
        }),
    };
    let (_, key) = engine
        .create_key(spec)
        .await
        .map_err(|e| format!("cannot create the demo's publishable key: {e}"))?;
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        ip if ip.is_ipv6() => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let api = format!("http://{host}:{}", addr.port());
    Ok(format!(
        "\nomnistock demo ready\n  \
         console:          {api}/console  (type the admin key into it)\n  \
         publishable key:  {key}\n                    \
         (for pages of {origins})\n  \
         storefront:       python3 -m http.server -d examples/storefront 8000\n                    \
         then open http://localhost:8000/?api={api}&key={key}\n",
        origins = DEMO_ORIGINS.join(" and "),
    ))
}
