//! Local-inventory ad feeds: what a store's row says, and how Google and
//! Meta spell it. Plain formatting over ledger views, no I/O: the HTTP layer
//! streams the rows shard by shard.
//!
//! What is published is what the `ads` channel sees (after its policy:
//! buffer, cap), so an ad never promises units another channel holds back.

pub mod cursor;

use std::fmt::Write;

use crate::cursor::{Cursor, SentCursor, Unhonoured};
use omnistock_ledger::{
    Catalog, ChannelView, Ledger, Location, LocationKind, PickupMethod, Seq, UnknownFilter,
};

/// The feed formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    GoogleTsv,
    GoogleXml,
    MetaCsv,
}

impl Format {
    pub fn header(self) -> &'static str {
        match self {
            Format::GoogleTsv => GOOGLE_TSV_HEADER,
            Format::GoogleXml => GOOGLE_XML_HEADER,
            Format::MetaCsv => META_CSV_HEADER,
        }
    }

    pub fn footer(self) -> &'static str {
        match self {
            Format::GoogleXml => GOOGLE_XML_FOOTER,
            Format::GoogleTsv | Format::MetaCsv => "",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::GoogleTsv => "text/tab-separated-values; charset=utf-8",
            Format::GoogleXml => "application/xml; charset=utf-8",
            Format::MetaCsv => "text/csv; charset=utf-8",
        }
    }
}

/// What a client asked for.
#[derive(Clone, Copy, Debug)]
pub struct FeedRequest<'a> {
    /// The cursor of a previous answer: only rows changed after it.
    pub since: Option<SentCursor>,
    /// Only this store.
    pub store: Option<&'a str>,
    /// Only the stores of this group.
    pub group: Option<&'a str>,
    pub format: Format,
    /// At most this many units (after the ads policy) is `limited_availability`.
    pub low_stock_threshold: u32,
}

/// Whether a feed lists every row, and if so why (`X-Feed-Snapshot`,
/// `X-Feed-Snapshot-Reason`). A cursor that cannot be answered exactly is
/// answered in full: never with a silently short increment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshot {
    Incremental,
    Full(FullReason),
}

/// Why a feed lists every row, in precedence order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullReason {
    /// No cursor was given.
    NoCursor,
    /// The cursor is not one this server can answer (see [`Unhonoured`]).
    Unhonoured(Unhonoured),
    /// More catalog changes since the cursor than the server keeps.
    CatalogHistory,
    /// A catalog change took stores out of this feed (a store became a
    /// warehouse, or left the group): an increment cannot remove rows.
    RowsRemoved,
}

impl Snapshot {
    pub fn as_str(self) -> &'static str {
        match self {
            Snapshot::Incremental => "incremental",
            Snapshot::Full(_) => "full",
        }
    }

    /// Why the feed is full (`None` for an increment).
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Snapshot::Incremental => None,
            Snapshot::Full(FullReason::NoCursor) => Some("no_cursor"),
            Snapshot::Full(FullReason::Unhonoured(why)) => Some(why.as_str()),
            Snapshot::Full(FullReason::CatalogHistory) => Some("catalog_history"),
            Snapshot::Full(FullReason::RowsRemoved) => Some("rows_removed"),
        }
    }
}

/// One feed over a ledger: which stores (with their repeated columns), which
/// changes, which format. Rendered shard by shard, so memory stays flat.
pub struct FeedPlan {
    /// Indexed by location id; `None`: not in this feed.
    stores: Vec<Option<StoreColumns>>,
    /// Incremental: rows whose published version is above this.
    since: Option<Seq>,
    /// Incremental, indexed by location id: list every row of the store
    /// (it joined the feed, or its store columns changed, since the cursor).
    relist: Vec<bool>,
    snapshot: Snapshot,
    format: Format,
    low_stock_threshold: u32,
}

impl FeedPlan {
    /// Plans the feed a request asks for, and the cursor to hand out with
    /// it. The journal head is read before the catalog and before any row:
    /// every change below it is in the rows rendered after, so the next
    /// increment from the cursor misses nothing.
    pub fn plan(
        ledger: &Ledger,
        request: &FeedRequest<'_>,
    ) -> Result<(FeedPlan, Cursor), UnknownFilter> {
        let head = ledger.journal_head();
        let next = Cursor::at_head(ledger, head);
        let catalog = ledger.catalog();
        let covered = coverage(&catalog, request.store, request.group)?;
        let mut plan = FeedPlan::full(
            &catalog,
            &covered,
            request.format,
            request.low_stock_threshold,
        );
        if let Some(sent) = request.since {
            plan.snapshot = match Cursor::check(sent, ledger, head) {
                Err(why) => Snapshot::Full(FullReason::Unhonoured(why)),
                Ok(cursor) => match ledger.catalog_at(cursor.seq) {
                    None => Snapshot::Full(FullReason::CatalogHistory),
                    Some(then) => plan.since_catalog(&then, &catalog, request, cursor.seq),
                },
            };
        }
        Ok((plan, next))
    }

    /// Every row of the `covered` stores (`covered[location id]`; only
    /// stores are ever published).
    pub fn full(
        catalog: &Catalog,
        covered: &[bool],
        format: Format,
        low_stock_threshold: u32,
    ) -> FeedPlan {
        let stores = catalog
            .locations()
            .map(|(id, location)| {
                (published(location) && covered.get(id.0 as usize).copied().unwrap_or(false))
                    .then(|| StoreColumns::of(location))
            })
            .collect();
        FeedPlan {
            stores,
            since: None,
            relist: Vec::new(),
            snapshot: Snapshot::Full(FullReason::NoCursor),
            format,
            low_stock_threshold,
        }
    }

    /// Makes the plan incremental from `since`, when the catalog changes
    /// between `then` (in force at the cursor) and `now` allow: stores
    /// that joined the feed or changed their columns are listed whole; a
    /// store that left it makes the feed full.
    fn since_catalog(
        &mut self,
        then: &Catalog,
        now: &Catalog,
        request: &FeedRequest<'_>,
        since: Seq,
    ) -> Snapshot {
        if then.generation() != now.generation() {
            // A filter naming a store or group that did not exist then
            // covered nothing then.
            let covered_then = coverage(then, request.store, request.group)
                .unwrap_or_else(|_| vec![false; then.location_count()]);
            let was_published = |index: usize| {
                covered_then.get(index).copied().unwrap_or(false)
                    && then
                        .location(omnistock_ledger::LocId(index as u32))
                        .is_some_and(published)
            };
            let mut relist = vec![false; self.stores.len()];
            for (index, store) in self.stores.iter().enumerate() {
                let loc = omnistock_ledger::LocId(index as u32);
                match (was_published(index), store) {
                    (true, None) => return Snapshot::Full(FullReason::RowsRemoved),
                    (false, Some(_)) => relist[index] = true,
                    (true, Some(columns)) => {
                        relist[index] =
                            then.location(loc).map(StoreColumns::of).as_ref() != Some(columns);
                    }
                    (false, None) => {}
                }
            }
            self.relist = relist;
        }
        self.since = Some(since);
        Snapshot::Incremental
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot
    }

    /// The rows of one position shard, formatted.
    pub fn render_shard(&self, ledger: &Ledger, shard: usize) -> String {
        let seen = ledger.ads_view_in_shard(shard, |loc, published_version| {
            let index = loc.0 as usize;
            self.stores.get(index).is_some_and(Option::is_some)
                && self.since.is_none_or(|since| {
                    published_version > since || self.relist.get(index).copied().unwrap_or(false)
                })
        });
        let mut out = String::with_capacity(seen.len() * 64);
        for (sku, loc, view) in &seen {
            let Some(Some(store)) = self.stores.get(loc.0 as usize) else {
                continue;
            };
            let row = FeedRow::new(store, sku.as_str(), *view, self.low_stock_threshold);
            match self.format {
                Format::GoogleTsv => google_tsv(&row, &mut out),
                Format::GoogleXml => google_xml(&row, &mut out),
                Format::MetaCsv => meta_csv(&row, &mut out),
            }
        }
        out
    }

    /// The whole feed into `out`, shard by shard.
    pub fn write_all(&self, ledger: &Ledger, out: &mut impl std::io::Write) -> std::io::Result<()> {
        out.write_all(self.format.header().as_bytes())?;
        for shard in 0..ledger.position_shard_count() {
            out.write_all(self.render_shard(ledger, shard).as_bytes())?;
        }
        out.write_all(self.format.footer().as_bytes())
    }
}

/// Per location id, whether a feed with these filters covers it (before
/// keeping only stores).
pub fn coverage(
    catalog: &Catalog,
    store: Option<&str>,
    group: Option<&str>,
) -> Result<Vec<bool>, UnknownFilter> {
    catalog.select_locations(store, group)
}

/// Google's `availability` values (and Meta's, mapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedAvailability {
    InStock,
    LimitedAvailability,
    OutOfStock,
    /// Display models in the store, to be ordered (the position is
    /// display-only, so its quantity is 0).
    OnDisplayToOrder,
}

impl FeedAvailability {
    /// `quantity` is what the ads channel sees; `1..=low_stock_threshold`
    /// units is limited availability.
    pub fn of(quantity: u32, display_only: bool, low_stock_threshold: u32) -> FeedAvailability {
        if display_only {
            return FeedAvailability::OnDisplayToOrder;
        }
        match quantity {
            0 => FeedAvailability::OutOfStock,
            q if q <= low_stock_threshold => FeedAvailability::LimitedAvailability,
            _ => FeedAvailability::InStock,
        }
    }

    pub fn google(self) -> &'static str {
        match self {
            FeedAvailability::InStock => "in_stock",
            FeedAvailability::LimitedAvailability => "limited_availability",
            FeedAvailability::OutOfStock => "out_of_stock",
            FeedAvailability::OnDisplayToOrder => "on_display_to_order",
        }
    }

    /// Meta's catalog values: limited stock is still `in stock` (the
    /// quantity says how much).
    pub fn meta(self) -> &'static str {
        match self {
            FeedAvailability::InStock | FeedAvailability::LimitedAvailability => "in stock",
            FeedAvailability::OutOfStock => "out of stock",
            FeedAvailability::OnDisplayToOrder => "available for order",
        }
    }
}

/// What every row of one store repeats, computed once per feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreColumns {
    pub store_code: String,
    /// Google's spelling, when the store has a pickup setting.
    pub pickup_method: Option<&'static str>,
    /// Only with a pickup method other than `not supported`.
    pub pickup_sla: Option<String>,
}

impl StoreColumns {
    pub fn of(location: &Location) -> StoreColumns {
        let (pickup_method, pickup_sla) = match location.pickup {
            Some(pickup) => {
                let method = pickup.method.as_str();
                let sla = (pickup.method != PickupMethod::NotSupported)
                    .then_some(pickup.sla)
                    .flatten()
                    .map(|sla| sla.to_string());
                (Some(method), sla)
            }
            None => (None, None),
        };
        StoreColumns {
            store_code: location.code.as_str().to_owned(),
            pickup_method,
            pickup_sla,
        }
    }
}

/// One published row: a SKU at a store, as the `ads` channel sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedRow<'a> {
    pub store: &'a StoreColumns,
    pub id: &'a str,
    pub availability: FeedAvailability,
    pub quantity: u32,
}

impl<'a> FeedRow<'a> {
    /// `seen`: the ads channel's view of the position (ATF after its policy).
    pub fn new(
        store: &'a StoreColumns,
        id: &'a str,
        seen: ChannelView,
        low_stock_threshold: u32,
    ) -> Self {
        FeedRow {
            store,
            id,
            availability: FeedAvailability::of(seen.atf.0, seen.display_only, low_stock_threshold),
            quantity: seen.atf.0,
        }
    }
}

/// Whether a location is published at all: Google and Meta list stores,
/// not warehouses.
pub fn published(location: &Location) -> bool {
    location.kind == LocationKind::Store
}

pub const GOOGLE_TSV_HEADER: &str =
    "store_code\tid\tavailability\tquantity\tpickup_method\tpickup_sla\n";

/// One tab-separated line. Ids and codes never hold tabs or line breaks
/// (they are validated without control characters).
pub fn google_tsv(row: &FeedRow<'_>, out: &mut String) {
    let _ = writeln!(
        out,
        "{}\t{}\t{}\t{}\t{}\t{}",
        row.store.store_code,
        row.id,
        row.availability.google(),
        row.quantity,
        row.store.pickup_method.unwrap_or(""),
        row.store.pickup_sla.as_deref().unwrap_or("")
    );
}

pub const GOOGLE_XML_HEADER: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss xmlns:g=\"http://base.google.com/ns/1.0\" version=\"2.0\">\n<channel>\n";
pub const GOOGLE_XML_FOOTER: &str = "</channel>\n</rss>\n";

pub fn google_xml(row: &FeedRow<'_>, out: &mut String) {
    out.push_str("<item>");
    let mut element = |name: &str, value: &str| {
        let _ = write!(out, "<g:{name}>{}</g:{name}>", xml_escape(value));
    };
    element("store_code", &row.store.store_code);
    element("id", row.id);
    element("availability", row.availability.google());
    element("quantity", &row.quantity.to_string());
    if let Some(method) = row.store.pickup_method {
        element("pickup_method", method);
    }
    if let Some(sla) = &row.store.pickup_sla {
        element("pickup_sla", sla);
    }
    out.push_str("</item>\n");
}

pub const META_CSV_HEADER: &str = "id,store_code,availability,quantity\n";

/// Meta's local inventory CSV (RFC 4180 quoting).
pub fn meta_csv(row: &FeedRow<'_>, out: &mut String) {
    let _ = writeln!(
        out,
        "{},{},{},{}",
        csv_field(row.id),
        csv_field(&row.store.store_code),
        row.availability.meta(),
        row.quantity
    );
}

fn xml_escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(ch),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains([',', '"', '\n', '\r']) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(format!("\"{}\"", text.replace('"', "\"\"")))
}

#[cfg(test)]
mod cursor_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_thresholds() {
        let cases = [
            (0, 2, FeedAvailability::OutOfStock),
            (1, 2, FeedAvailability::LimitedAvailability),
            (2, 2, FeedAvailability::LimitedAvailability),
            (3, 2, FeedAvailability::InStock),
            (1, 0, FeedAvailability::InStock),
        ];
        for (quantity, threshold, expected) in cases {
            assert_eq!(FeedAvailability::of(quantity, false, threshold), expected);
        }
        // Display models are published as such whatever the quantity.
        for quantity in [0, 1, 5] {
            let seen = FeedAvailability::of(quantity, true, 2);
            assert_eq!(seen, FeedAvailability::OnDisplayToOrder);
            assert_eq!(seen.google(), "on_display_to_order");
            assert_eq!(seen.meta(), "available for order");
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(xml_escape("a&b<c>\"'"), "a&amp;b&lt;c&gt;&quot;&apos;");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
