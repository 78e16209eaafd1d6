//! Decode-only: the text form that stores written before format 1 hold
//! (see [`super::codec`]). A load reads such values, and migrates them: it
//! writes them back in the current format before the engine serves, so
//! this module only ever reads a store once.
//!
//! The layout: fields separated by `|`, list items by `;`, item fields by
//! `,`, sub-items by `@`; free text escapes `%` and every separator as
//! `%XX`. Every value starts with a decimal number (its version or
//! generation), which is how [`super::codec::is_legacy`] tells it apart.
//! Its enum spellings (`ship_to_store`, `multi_week`, ...) are that old
//! format's and are read here only.

use omnistock_ledger::{
    CatalogRecord, Channel, ChannelPolicy, Fingerprint, GeoPoint, Holder, HolderId, HolderKind,
    IdempotencyKey, IdempotencyRecord, Incoming, Location, LocationCode, LocationKind, Pickup,
    PickupMethod, PickupSla, PolicyScope, PositionRecord, PositionView, Qty, ReservationId,
    ReservationLineRecord, ReservationLineView, ReservationRecord, ReservationView, Seq, Sku,
    TimestampMs, WriteOutput,
};
use rustc_hash::FxHashMap;

use super::codec::{CodecError, EngineState, bad, unescape};
use super::records;
use super::{KeyRecord, KeysRecord};

/// Splits `text` on `sep`; an empty text is an empty list.
fn items(text: &str, sep: char) -> impl Iterator<Item = &str> {
    text.split(sep).filter(move |_| !text.is_empty())
}

fn fields<'a, const N: usize>(
    text: &'a str,
    sep: char,
    what: &'static str,
) -> Result<[&'a str; N], CodecError> {
    let mut out = [""; N];
    let mut parts = text.splitn(N, sep);
    for slot in &mut out {
        *slot = parts
            .next()
            .ok_or_else(|| bad(what, format!("expected {N} fields in {text:?}")))?;
    }
    Ok(out)
}

fn num<T: std::str::FromStr>(text: &str, what: &'static str) -> Result<T, CodecError> {
    text.parse()
        .map_err(|_| bad(what, format!("not a number: {text:?}")))
}

fn qty(text: &str, what: &'static str) -> Result<Qty, CodecError> {
    num(text, what).map(Qty)
}

fn ts(text: &str, what: &'static str) -> Result<TimestampMs, CodecError> {
    num(text, what).map(TimestampMs)
}

fn opt_ts(text: &str, what: &'static str) -> Result<Option<TimestampMs>, CodecError> {
    if text.is_empty() {
        Ok(None)
    } else {
        ts(text, what).map(Some)
    }
}

fn opt_text(text: &str) -> Result<Option<String>, CodecError> {
    match text.strip_prefix('=') {
        Some(rest) => Ok(Some(unescape(rest)?.into_owned())),
        None if text.is_empty() => Ok(None),
        None => Err(bad("optional text", format!("{text:?}"))),
    }
}

fn sku(text: &str) -> Result<Sku, CodecError> {
    records::sku(&unescape(text)?)
}

fn location(text: &str) -> Result<LocationCode, CodecError> {
    records::location(&unescape(text)?)
}

fn channel(text: &str) -> Result<Channel, CodecError> {
    Channel::parse(text).ok_or_else(|| bad("channel", text))
}

// ---- positions ---------------------------------------------------------------

/// `VERSION|POSITION;POSITION...`, each POSITION `location,version,on_hand,
/// reserved,safety_stock,non_sellable,last_count_as_of,history_horizon,
/// incoming,history[,d][,pLAG]`, incoming `qty~expected_at~[=reference]`
/// and history `at~delta` items joined by `@`.
pub fn decode_sku_positions_with(
    sku: &Sku,
    value: &str,
    locations: &mut FxHashMap<String, LocationCode>,
) -> Result<Vec<PositionRecord>, CodecError> {
    let [_version, entries] = fields::<2>(value, '|', "positions")?;
    items(entries, ';')
        .map(|entry| decode_position(sku, entry, locations))
        .collect()
}

fn decode_position(
    sku: &Sku,
    entry: &str,
    locations: &mut FxHashMap<String, LocationCode>,
) -> Result<PositionRecord, CodecError> {
    let [
        loc,
        version,
        on_hand,
        reserved,
        safety,
        non_sellable,
        as_of,
        horizon,
        incoming,
        rest,
    ] = fields::<10>(entry, ',', "position")?;
    let (history, flags) = rest.split_once(',').unwrap_or((rest, ""));
    let (display_only, published_lag) = position_flags(flags)?;
    let location_code = match locations.get(loc) {
        Some(code) => code.clone(),
        None => {
            let code = location(loc)?;
            locations.insert(loc.to_owned(), code.clone());
            code
        }
    };
    Ok(PositionRecord {
        sku: sku.clone(),
        location: location_code,
        version: Seq(num(version, "version")?),
        on_hand: qty(on_hand, "on_hand")?,
        reserved: qty(reserved, "reserved")?,
        safety_stock: qty(safety, "safety_stock")?,
        non_sellable: qty(non_sellable, "non_sellable")?,
        last_count_as_of: ts(as_of, "last_count_as_of")?,
        history_horizon: ts(horizon, "history_horizon")?,
        incoming: items(incoming, '@')
            .map(decode_incoming)
            .collect::<Result<_, _>>()?,
        history: items(history, '@')
            .map(|item| {
                let [at, delta] = fields::<2>(item, '~', "history")?;
                Ok((ts(at, "history at")?, num(delta, "history delta")?))
            })
            .collect::<Result<_, CodecError>>()?,
        display_only,
        published_lag,
    })
}

/// `d` display-only, `pLAG` the published lag (each written only when set).
fn position_flags(flags: &str) -> Result<(bool, u32), CodecError> {
    let mut display_only = false;
    let mut published_lag = 0;
    for flag in flags.split(',').filter(|f| !f.is_empty()) {
        match flag.strip_prefix('p') {
            _ if flag == "d" => display_only = true,
            Some(lag) => published_lag = num(lag, "published lag")?,
            None => return Err(bad("position", format!("unknown flag {flag:?}"))),
        }
    }
    Ok((display_only, published_lag))
}

fn decode_incoming(item: &str) -> Result<Incoming, CodecError> {
    let [q, at, reference] = fields::<3>(item, '~', "incoming")?;
    Ok(Incoming {
        qty: qty(q, "incoming qty")?,
        expected_at: ts(at, "incoming expected_at")?,
        reference: opt_text(reference)?,
    })
}

// ---- reservations ----------------------------------------------------------------

type LineParts = (Sku, LocationCode, Qty, Qty);

/// `sku,location,qty,committed` items joined by `;`.
fn decode_lines(text: &str) -> Result<Vec<LineParts>, CodecError> {
    items(text, ';')
        .map(|item| {
            let [s, l, q, c] = fields::<4>(item, ',', "line")?;
            Ok((sku(s)?, location(l)?, qty(q, "qty")?, qty(c, "committed")?))
        })
        .collect()
}

/// `kind=id` items joined by `;`.
fn decode_holders(text: &str) -> Result<Vec<Holder>, CodecError> {
    items(text, ';')
        .map(|item| {
            let (kind, id) = item.split_once('=').ok_or_else(|| bad("holder", item))?;
            Ok(Holder {
                kind: HolderKind::parse(kind).ok_or_else(|| bad("holder kind", kind))?,
                id: HolderId::new(&unescape(id)?).map_err(|e| bad("holder id", e.to_string()))?,
            })
        })
        .collect()
}

/// `version|channel|state|created|expires|resolved|lines[|holders]`.
pub fn decode_reservation(field: &str, value: &str) -> Result<ReservationRecord, CodecError> {
    let [version, ch, st, created, expires, resolved, rest] =
        fields::<7>(value, '|', "reservation")?;
    let (lines, holders) = rest.split_once('|').unwrap_or((rest, ""));
    Ok(ReservationRecord {
        id: ReservationId(num(field, "reservation id")?),
        version: Seq(num(version, "version")?),
        channel: channel(ch)?,
        state: records::state(st)?,
        created_at: ts(created, "created_at")?,
        expires_at: ts(expires, "expires_at")?,
        resolved_at: opt_ts(resolved, "resolved_at")?,
        lines: decode_lines(lines)?
            .into_iter()
            .map(|(sku, location, qty, committed)| ReservationLineRecord {
                sku,
                location,
                qty,
                committed,
            })
            .collect(),
        holders: decode_holders(holders)?,
    })
}

// ---- idempotency records ------------------------------------------------------------

/// `sku,location,on_hand,reserved,safety,non_sellable,incoming,atf,ato,
/// version,shortage[,d]`.
fn decode_view(text: &str) -> Result<PositionView, CodecError> {
    let [s, l, oh, rs, ss, ns, inc, atf, ato, version, rest] =
        fields::<11>(text, ',', "position view")?;
    let (shortage, display_only) = match rest.split_once(',') {
        None => (rest, false),
        Some((field, "d")) => (field, true),
        Some((_, flags)) => return Err(bad("position view", format!("unknown flags {flags:?}"))),
    };
    Ok(PositionView {
        sku: sku(s)?,
        location: location(l)?,
        on_hand: qty(oh, "on_hand")?,
        reserved: qty(rs, "reserved")?,
        safety_stock: qty(ss, "safety_stock")?,
        non_sellable: qty(ns, "non_sellable")?,
        incoming: num(inc, "incoming")?,
        atf: qty(atf, "atf")?,
        ato: num(ato, "ato")?,
        version: Seq(num(version, "version")?),
        shortage: qty(shortage, "shortage")?,
        display_only,
    })
}

/// The fingerprint of a record of format `version`: `1` (legacy SipHash,
/// decimal) or `2` (32 lowercase hex digits).
fn fingerprint(version: &str, text: &str) -> Result<Fingerprint, CodecError> {
    match version {
        "1" => num(text, "fingerprint").map(Fingerprint::V1),
        "2" => Fingerprint::v2_from_hex(text)
            .ok_or_else(|| bad("fingerprint", format!("not 32 hex digits: {text:?}"))),
        other => Err(bad(
            "idempotency record version",
            format!("unknown: {other:?}"),
        )),
    }
}

/// `P|view`, `S|view;view...` or `R|id|channel|state|created|expires|resolved|lines`.
fn decode_outcome(kind: &str, rest: &str) -> Result<WriteOutput, CodecError> {
    Ok(match kind {
        "P" => WriteOutput::Position(decode_view(rest)?),
        "S" => WriteOutput::Positions(
            items(rest, ';')
                .map(decode_view)
                .collect::<Result<_, _>>()?,
        ),
        "R" => {
            let [id, ch, st, created, expires_at, resolved, lines] =
                fields::<7>(rest, '|', "reservation view")?;
            WriteOutput::Reservation(ReservationView {
                id: ReservationId(num(id, "reservation id")?),
                channel: channel(ch)?,
                state: records::state(st)?,
                created_at: ts(created, "created_at")?,
                expires_at: ts(expires_at, "expires_at")?,
                resolved_at: opt_ts(resolved, "resolved_at")?,
                lines: decode_lines(lines)?
                    .into_iter()
                    .map(|(sku, location, qty, committed)| ReservationLineView {
                        sku,
                        location,
                        qty,
                        committed,
                    })
                    .collect(),
            })
        }
        other => return Err(bad("idempotency outcome", other)),
    })
}

/// `version|fingerprint|expires_at|outcome`.
pub fn decode_idempotency(
    key: IdempotencyKey,
    value: &str,
) -> Result<IdempotencyRecord, CodecError> {
    let [version, fingerprint_text, expires, kind, rest] = fields::<5>(value, '|', "idempotency")?;
    Ok(IdempotencyRecord {
        key,
        fingerprint: fingerprint(version, fingerprint_text)?,
        expires_at: ts(expires, "expires_at")?,
        outcome: decode_outcome(kind, rest)?,
    })
}

// ---- catalog ------------------------------------------------------------------------

fn parse_pickup(method: &str, sla: &str) -> Result<Option<Pickup>, CodecError> {
    let method = match method {
        "" => return Ok(None),
        "buy" => PickupMethod::Buy,
        "reserve" => PickupMethod::Reserve,
        "ship_to_store" => PickupMethod::ShipToStore,
        "not_supported" => PickupMethod::NotSupported,
        other => return Err(bad("pickup method", other)),
    };
    let sla = match sla {
        "" => None,
        "same_day" => Some(PickupSla::SameDay),
        "next_day" => Some(PickupSla::NextDay),
        "multi_week" => Some(PickupSla::MultiWeek),
        days => {
            Some(PickupSla::days(num(days, "pickup sla")?).ok_or_else(|| bad("pickup sla", days))?)
        }
    };
    Ok(Some(Pickup { method, sla }))
}

/// `code,kind,name,lat,lon,pickup_method,pickup_sla,ship_from_store`.
fn decode_location(item: &str) -> Result<Location, CodecError> {
    let [code, kind, name, lat, lon, method, sla, ship] = fields::<8>(item, ',', "location")?;
    let coords = if lat.is_empty() {
        None
    } else {
        Some(
            GeoPoint::new(num(lat, "lat")?, num(lon, "lon")?)
                .ok_or_else(|| bad("coords", format!("{lat},{lon}")))?,
        )
    };
    Ok(Location {
        code: location(code)?,
        kind: match kind {
            "store" => LocationKind::Store,
            "warehouse" => LocationKind::Warehouse,
            other => return Err(bad("location kind", other)),
        },
        name: unescape(name)?.into_owned(),
        coords,
        pickup: parse_pickup(method, sla)?,
        ship_from_store: ship == "1",
    })
}

type GroupParts = (omnistock_ledger::GroupName, Vec<LocationCode>);

/// `name,member@member...`.
fn decode_group(item: &str) -> Result<GroupParts, CodecError> {
    let [name, members] = fields::<2>(item, ',', "group")?;
    Ok((
        records::group(&unescape(name)?)?,
        items(members, '@')
            .map(location)
            .collect::<Result<_, _>>()?,
    ))
}

/// `channel,l|g,name,held_back,cap`.
fn decode_policy(item: &str) -> Result<(Channel, PolicyScope, ChannelPolicy), CodecError> {
    let [ch, kind, name, held_back, cap] = fields::<5>(item, ',', "policy")?;
    let scope = match kind {
        "l" => PolicyScope::Location(location(name)?),
        "g" => PolicyScope::Group(records::group(&unescape(name)?)?),
        other => return Err(bad("policy scope", other)),
    };
    let cap = if cap.is_empty() {
        None
    } else {
        Some(qty(cap, "cap")?)
    };
    let policy = ChannelPolicy {
        held_back: qty(held_back, "held_back")?,
        cap,
    };
    Ok((channel(ch)?, scope, policy))
}

/// `GENERATION[~CHANGED_AT]|locations|groups|policies`.
pub fn decode_catalog(value: &str) -> Result<CatalogRecord, CodecError> {
    let [generation, locations, groups, policies] = fields::<4>(value, '|', "catalog")?;
    let (generation, changed_at) = match generation.split_once('~') {
        Some((g, changed_at)) => (g, num(changed_at, "catalog changed_at")?),
        None => (generation, 0),
    };
    Ok(CatalogRecord {
        generation: num(generation, "catalog generation")?,
        changed_at: Seq(changed_at),
        locations: items(locations, ';')
            .map(decode_location)
            .collect::<Result<_, _>>()?,
        groups: items(groups, ';')
            .map(decode_group)
            .collect::<Result<_, _>>()?,
        policies: items(policies, ';')
            .map(decode_policy)
            .collect::<Result<_, _>>()?,
    })
}

// ---- API keys and engine state ----------------------------------------------------------

/// `generation|key;key...`, each `id,name,scope@scope,location@location,digest[,cap]`.
pub fn decode_keys(value: &str) -> Result<KeysRecord, CodecError> {
    let [generation, keys] = fields::<2>(value, '|', "keys")?;
    let list = |text: &str| -> Result<Vec<String>, CodecError> {
        items(text, '@')
            .map(|t| unescape(t).map(std::borrow::Cow::into_owned))
            .collect()
    };
    Ok(KeysRecord {
        generation: num(generation, "keys generation")?,
        keys: items(keys, ';')
            .map(|item| {
                let [id, name, scopes, locations, rest] = fields::<5>(item, ',', "key")?;
                let (digest, max_held_units) = match rest.split_once(',') {
                    Some((digest, cap)) => (digest, Some(num(cap, "key max_held_units")?)),
                    None => (rest, None),
                };
                Ok(KeyRecord {
                    id: unescape(id)?.into_owned(),
                    name: unescape(name)?.into_owned(),
                    scopes: list(scopes)?,
                    locations: list(locations)?,
                    digest_hex: digest.to_owned(),
                    max_held_units,
                    publishable: None,
                })
            })
            .collect::<Result<_, CodecError>>()?,
    })
}

/// `version|head|shards|next;next...|written_at`, then
/// `|lineage(16 hex)|floor|clean` (absent before cursor lineages).
pub fn decode_state(value: &str) -> Result<EngineState, CodecError> {
    let (counters, cursors) = match value.match_indices('|').nth(4) {
        Some((at, _)) => (&value[..at], Some(&value[at + 1..])),
        None => (value, None),
    };
    let [_version, head, shards, next, written_at] = fields::<5>(counters, '|', "state")?;
    let mut state = EngineState {
        head: Seq(num(head, "head")?),
        reservation_shards: num(shards, "reservation shards")?,
        reservation_next_local: items(next, ';')
            .map(|n| num(n, "next local id"))
            .collect::<Result<_, _>>()?,
        written_at: ts(written_at, "written_at")?,
        ..EngineState::default()
    };
    if let Some(cursors) = cursors {
        let [lineage, floor, clean] = fields::<3>(cursors, '|', "state cursors")?;
        state.cursor_lineage =
            Some(u64::from_str_radix(lineage, 16).map_err(|_| bad("cursor lineage", lineage))?);
        state.cursor_floor = Seq(num(floor, "cursor floor")?);
        state.clean = match clean {
            "0" => false,
            "1" => true,
            other => return Err(bad("clean flag", other)),
        };
    }
    Ok(state)
}
