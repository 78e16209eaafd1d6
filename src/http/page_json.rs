//! What pages (publishable keys) are answered: availability as a band
//! (`in_stock`, `limited`, `out_of_stock`) and, as the key's quantity
//! option says, the units; never on-hand, reserved or safety stock.

use serde::Serialize;
use utoipa::openapi::schema::AnyOfBuilder;
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::engine::{Band, Publishable};
use crate::http::dto::{AvailabilityJson, NearbyJson};
use crate::ledger::{Catalog, Location, LocationCode, NearbyStore, PositionView, SkuAvailability};

/// The band's name, for the OpenAPI document.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BandJson {
    InStock,
    Limited,
    OutOfStock,
}

impl From<Band> for BandJson {
    fn from(band: Band) -> BandJson {
        match band {
            Band::InStock => BandJson::InStock,
            Band::Limited => BandJson::Limited,
            Band::OutOfStock => BandJson::OutOfStock,
        }
    }
}

/// One SKU's availability as a page sees it (publishable keys).
#[derive(Serialize, ToSchema)]
pub struct PageAvailabilityJson {
    pub sku: String,
    /// The key's channel, whose policy the figures are after.
    pub channel: &'static str,
    pub availability: BandJson,
    /// Units available to promise over the locations, when the key shows them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_atf: Option<u64>,
    pub locations: Vec<PageLocationJson>,
}

#[derive(Serialize, ToSchema)]
pub struct PageLocationJson {
    pub location: String,
    pub name: String,
    /// `store` or `warehouse` ("in stock at 3 stores near you" counts stores).
    pub kind: &'static str,
    pub availability: BandJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub atf: Option<u64>,
}

impl PageAvailabilityJson {
    pub fn of(
        publishable: &Publishable,
        view: &SkuAvailability,
        catalog: &Catalog,
    ) -> PageAvailabilityJson {
        let (band, total_atf) = publishable.show(view.total_atf);
        PageAvailabilityJson {
            sku: view.sku.to_string(),
            channel: publishable.channel.as_str(),
            availability: band.into(),
            total_atf,
            locations: view
                .locations
                .iter()
                .map(|position| PageLocationJson::of(publishable, position, catalog))
                .collect(),
        }
    }
}

impl PageLocationJson {
    pub fn of(
        publishable: &Publishable,
        position: &PositionView,
        catalog: &Catalog,
    ) -> PageLocationJson {
        let (band, atf) = publishable.show(u64::from(position.atf.0));
        let location = located(catalog, &position.location);
        PageLocationJson {
            location: position.location.to_string(),
            name: location.map(|l| l.name.clone()).unwrap_or_default(),
            kind: kind(location),
            availability: band.into(),
            atf,
        }
    }
}

/// The catalog's location of `code`.
fn located<'c>(catalog: &'c Catalog, code: &LocationCode) -> Option<&'c Location> {
    catalog
        .location_id(code.as_str())
        .and_then(|id| catalog.location(id))
}

/// A location's kind as pages name it (a location gone from the catalog
/// since is shown as a store).
fn kind(location: Option<&Location>) -> &'static str {
    location.map_or("store", |l| l.kind.as_str())
}

/// One event of a page's live stream: a location's band and, as the key
/// shows them, its units (a page's read of the location, without the name).
#[derive(Serialize)]
pub struct PageEventJson<'a> {
    pub sku: &'a str,
    pub location: &'a str,
    pub kind: &'static str,
    pub availability: BandJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub atf: Option<u64>,
}

impl<'a> PageEventJson<'a> {
    /// `shown`: the band and units the key shows of the position.
    pub fn of(
        position: &'a PositionView,
        shown: (Band, Option<u64>),
        catalog: &Catalog,
    ) -> PageEventJson<'a> {
        PageEventJson {
            sku: position.sku.as_str(),
            location: position.location.as_str(),
            kind: kind(located(catalog, &position.location)),
            availability: shown.0.into(),
            atf: shown.1,
        }
    }
}

/// Stores near a point, as a page sees them.
#[derive(Serialize, ToSchema)]
pub struct PageNearbyJson {
    pub sku: String,
    pub stores: Vec<PageStoreJson>,
}

#[derive(Serialize, ToSchema)]
pub struct PageStoreJson {
    pub location: String,
    pub name: String,
    pub distance_km: f64,
    pub availability: BandJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub atf: Option<u64>,
    pub pickup_method: Option<&'static str>,
    pub pickup_sla: Option<String>,
}

impl PageStoreJson {
    pub fn of(publishable: &Publishable, store: &NearbyStore) -> PageStoreJson {
        let (band, atf) = publishable.show(u64::from(store.atf.0));
        PageStoreJson {
            location: store.location.to_string(),
            name: store.name.clone(),
            distance_km: (store.distance_km * 1000.0).round() / 1000.0,
            availability: band.into(),
            atf,
            pickup_method: store.pickup.map(|p| p.method.as_str()),
            pickup_sla: store.pickup.and_then(|p| p.sla).map(|sla| sla.to_string()),
        }
    }
}

/// The OpenAPI document's answer of an availability read: a secret key's
/// or a page's (`anyOf`: an answer with no location fits both).
pub struct AvailabilityAnswer;

/// The OpenAPI document's answer of a nearby read: a secret key's or a
/// page's (`anyOf`: an answer with no store fits both).
pub struct NearbyAnswer;

fn any_of<A: ToSchema, B: ToSchema>(description: &str) -> RefOr<Schema> {
    AnyOfBuilder::new()
        .item(Ref::from_schema_name(A::name()))
        .item(Ref::from_schema_name(B::name()))
        .description(Some(description))
        .into()
}

impl PartialSchema for AvailabilityAnswer {
    fn schema() -> RefOr<Schema> {
        any_of::<AvailabilityJson, PageAvailabilityJson>(
            "a secret key's answer, or a publishable key's",
        )
    }
}

impl ToSchema for AvailabilityAnswer {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((AvailabilityJson::name().into(), AvailabilityJson::schema()));
        schemas.push((
            PageAvailabilityJson::name().into(),
            PageAvailabilityJson::schema(),
        ));
        <AvailabilityJson as ToSchema>::schemas(schemas);
        <PageAvailabilityJson as ToSchema>::schemas(schemas);
    }
}

impl PartialSchema for NearbyAnswer {
    fn schema() -> RefOr<Schema> {
        any_of::<NearbyJson, PageNearbyJson>("a secret key's answer, or a publishable key's")
    }
}

impl ToSchema for NearbyAnswer {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((NearbyJson::name().into(), NearbyJson::schema()));
        schemas.push((PageNearbyJson::name().into(), PageNearbyJson::schema()));
        <NearbyJson as ToSchema>::schemas(schemas);
        <PageNearbyJson as ToSchema>::schemas(schemas);
    }
}
