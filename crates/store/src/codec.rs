//! The text form of stored records: compact, readable with `redis-cli`, and
//! unambiguous. Fields are separated by `|`, list items by `;`, item fields
//! by `,` and sub-items by `@`; free text (ids, names, references) escapes
//! `%` and every separator as `%XX`. Each value starts with its version, so
//! the store's scripts can compare versions without decoding the rest.
//! `ARCHITECTURE.md` documents every layout.

use std::borrow::Cow;

use omnistock_ledger::{
    CatalogRecord, Channel, ChannelPolicy, Fingerprint, FingerprintVersion, GeoPoint, GroupName,
    Holder, HolderId, HolderKind, IdempotencyKey, IdempotencyRecord, Incoming, Location,
    LocationCode, LocationKind, Pickup, PickupMethod, PickupSla, PolicyScope, PositionRecord,
    PositionView, Qty, ReservationId, ReservationLineRecord, ReservationLineView,
    ReservationRecord, ReservationState, ReservationView, Seq, Sku, TimestampMs, WriteOutput,
};

use super::{KeyRecord, KeysRecord};

/// What is wrong with a stored value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what}: {problem}")]
pub struct CodecError {
    pub what: &'static str,
    pub problem: String,
}

fn bad(what: &'static str, problem: impl Into<String>) -> CodecError {
    CodecError {
        what,
        problem: problem.into(),
    }
}

/// `~` too: fields starting with `~` are the store's own (`~v`).
const SPECIAL: &[char] = &['%', '|', ';', ',', '@', '~', '\n', '\r'];

pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(SPECIAL) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for ch in text.chars() {
        if SPECIAL.contains(&ch) {
            out.push_str(&format!("%{:02X}", ch as u32));
        } else {
            out.push(ch);
        }
    }
    Cow::Owned(out)
}

pub fn unescape(text: &str) -> Result<Cow<'_, str>, CodecError> {
    if !text.contains('%') {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 3)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .ok_or_else(|| bad("escape", format!("bad escape in {text:?}")))?;
        out.push(char::from(code));
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

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

/// Splits an optional trailing `,d` (display-only) off a last field.
fn display_flag<'a>(last: &'a str, what: &'static str) -> Result<(&'a str, bool), CodecError> {
    match last.split_once(',') {
        None => Ok((last, false)),
        Some((field, "d")) => Ok((field, true)),
        Some((_, flags)) => Err(bad(what, format!("unknown flags {flags:?}"))),
    }
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

fn opt_text(value: Option<&str>) -> String {
    value.map_or(String::new(), |v| format!("={}", escape(v)))
}

fn parse_opt_text(text: &str) -> Result<Option<String>, CodecError> {
    match text.strip_prefix('=') {
        Some(rest) => Ok(Some(unescape(rest)?.into_owned())),
        None if text.is_empty() => Ok(None),
        None => Err(bad("optional text", format!("{text:?}"))),
    }
}

fn sku(text: &str) -> Result<Sku, CodecError> {
    Sku::new(&unescape(text)?).map_err(|e| bad("sku", e.to_string()))
}

fn location(text: &str) -> Result<LocationCode, CodecError> {
    LocationCode::new(&unescape(text)?).map_err(|e| bad("location", e.to_string()))
}

fn channel(text: &str) -> Result<Channel, CodecError> {
    Channel::parse(text).ok_or_else(|| bad("channel", text.to_owned()))
}

fn state_str(state: ReservationState) -> &'static str {
    state.as_str()
}

fn state(text: &str) -> Result<ReservationState, CodecError> {
    [
        ReservationState::Held,
        ReservationState::Committed,
        ReservationState::Released,
        ReservationState::Expired,
    ]
    .into_iter()
    .find(|s| s.as_str() == text)
    .ok_or_else(|| bad("reservation state", text.to_owned()))
}

// ---- positions -------------------------------------------------------------

/// The hash field of a SKU's positions: the SKU, escaped.
pub fn sku_field(sku: &Sku) -> Cow<'_, str> {
    escape(sku.as_str())
}

/// Every position of one SKU (the records must all be of that SKU):
/// `VERSION|POSITION;POSITION...`, VERSION the newest of them, each
/// POSITION `location,version,on_hand,reserved,safety_stock,non_sellable,
/// last_count_as_of,history_horizon,incoming,history[,d][,pLAG]` with
/// incoming `qty~expected_at~reference` and history `at~delta` items joined
/// by `@`; then optional flags, written only when set (so older values read
/// unchanged): `d` display-only, `pLAG` the published lag when not 0.
pub fn encode_sku_positions(positions: &[PositionRecord]) -> String {
    use std::fmt::Write;
    let version = positions.iter().map(|p| p.version.0).max().unwrap_or(0);
    let mut out = String::with_capacity(16 + positions.len() * 48);
    let _ = write!(out, "{version}|");
    for (i, p) in positions.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},",
            escape(p.location.as_str()),
            p.version.0,
            p.on_hand.0,
            p.reserved.0,
            p.safety_stock.0,
            p.non_sellable.0,
            p.last_count_as_of.0,
            p.history_horizon.0,
        );
        for (j, incoming) in p.incoming.iter().enumerate() {
            if j > 0 {
                out.push('@');
            }
            let _ = write!(
                out,
                "{}~{}~{}",
                incoming.qty.0,
                incoming.expected_at.0,
                opt_text(incoming.reference.as_deref())
            );
        }
        out.push(',');
        for (j, (at, delta)) in p.history.iter().enumerate() {
            if j > 0 {
                out.push('@');
            }
            let _ = write!(out, "{}~{delta}", at.0);
        }
        if p.display_only {
            out.push_str(",d");
        }
        if p.published_lag > 0 {
            let _ = write!(out, ",p{}", p.published_lag);
        }
    }
    out
}

pub fn decode_sku_positions(field: &str, value: &str) -> Result<Vec<PositionRecord>, CodecError> {
    decode_sku_positions_with(field, value, &mut rustc_hash::FxHashMap::default())
}

/// As [`decode_sku_positions`], sharing location codes through `locations`
/// (a store has few locations and a million positions).
pub fn decode_sku_positions_with(
    field: &str,
    value: &str,
    locations: &mut rustc_hash::FxHashMap<String, LocationCode>,
) -> Result<Vec<PositionRecord>, CodecError> {
    let sku = sku(field)?;
    let [_version, entries] = fields::<2>(value, '|', "positions")?;
    items(entries, ';')
        .map(|entry| {
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
            let mut display_only = false;
            let mut published_lag = 0;
            for flag in flags.split(',').filter(|f| !f.is_empty()) {
                match flag.strip_prefix('p') {
                    _ if flag == "d" => display_only = true,
                    Some(lag) => published_lag = num(lag, "published lag")?,
                    None => return Err(bad("position", format!("unknown flag {flag:?}"))),
                }
            }
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
                    .map(|item| {
                        let [q, at, reference] = fields::<3>(item, '~', "incoming")?;
                        Ok(Incoming {
                            qty: qty(q, "incoming qty")?,
                            expected_at: ts(at, "incoming expected_at")?,
                            reference: parse_opt_text(reference)?,
                        })
                    })
                    .collect::<Result<_, CodecError>>()?,
                history: items(history, '@')
                    .map(|item| {
                        let [at, delta] = fields::<2>(item, '~', "history")?;
                        Ok((ts(at, "history at")?, num(delta, "history delta")?))
                    })
                    .collect::<Result<_, CodecError>>()?,
                display_only,
                published_lag,
            })
        })
        .collect()
}

// ---- reservations ----------------------------------------------------------

fn encode_lines<'a>(lines: impl Iterator<Item = (&'a Sku, &'a LocationCode, Qty, Qty)>) -> String {
    lines
        .map(|(s, l, q, c)| {
            format!(
                "{},{},{},{}",
                escape(s.as_str()),
                escape(l.as_str()),
                q.0,
                c.0
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

type LineParts = (Sku, LocationCode, Qty, Qty);

fn decode_lines(text: &str) -> Result<Vec<LineParts>, CodecError> {
    items(text, ';')
        .map(|item| {
            let [s, l, q, c] = fields::<4>(item, ',', "line")?;
            Ok((sku(s)?, location(l)?, qty(q, "qty")?, qty(c, "committed")?))
        })
        .collect()
}

/// Hold-cap holders as `kind=id` items (`key=key_1;customer=C-9`).
fn encode_holders(holders: &[Holder]) -> String {
    holders
        .iter()
        .map(|h| format!("{}={}", h.kind.as_str(), escape(h.id.as_str())))
        .collect::<Vec<_>>()
        .join(";")
}

fn decode_holders(text: &str) -> Result<Vec<Holder>, CodecError> {
    items(text, ';')
        .map(|item| {
            let (kind, id) = item
                .split_once('=')
                .ok_or_else(|| bad("holder", item.to_owned()))?;
            Ok(Holder {
                kind: HolderKind::parse(kind).ok_or_else(|| bad("holder kind", kind.to_owned()))?,
                id: HolderId::new(&unescape(id)?).map_err(|e| bad("holder id", e.to_string()))?,
            })
        })
        .collect()
}

/// `version|channel|state|created|expires|resolved|lines`, then `|holders`
/// when the reservation counts against hold caps (older values have none).
pub fn encode_reservation(r: &ReservationRecord) -> String {
    let holders = if r.holders.is_empty() {
        String::new()
    } else {
        format!("|{}", encode_holders(&r.holders))
    };
    format!(
        "{}|{}|{}|{}|{}|{}|{}{}",
        r.version.0,
        r.channel.as_str(),
        state_str(r.state),
        r.created_at.0,
        r.expires_at.0,
        r.resolved_at.map_or(String::new(), |t| t.0.to_string()),
        encode_lines(
            r.lines
                .iter()
                .map(|l| (&l.sku, &l.location, l.qty, l.committed))
        ),
        holders,
    )
}

pub fn decode_reservation(field: &str, value: &str) -> Result<ReservationRecord, CodecError> {
    let [version, ch, st, created, expires, resolved, rest] =
        fields::<7>(value, '|', "reservation")?;
    let (lines, holders) = rest.split_once('|').unwrap_or((rest, ""));
    Ok(ReservationRecord {
        id: ReservationId(num(field, "reservation id")?),
        version: Seq(num(version, "version")?),
        channel: channel(ch)?,
        state: state(st)?,
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

// ---- idempotency records ---------------------------------------------------

/// A position as an idempotent write answered it; a trailing `,d` marks a
/// display-only position (absent otherwise, as in older values).
fn encode_view(v: &PositionView) -> String {
    format!(
        "{},{},{},{},{},{},{},{},{},{},{}{}",
        escape(v.sku.as_str()),
        escape(v.location.as_str()),
        v.on_hand.0,
        v.reserved.0,
        v.safety_stock.0,
        v.non_sellable.0,
        v.incoming,
        v.atf.0,
        v.ato,
        v.version.0,
        v.shortage.0,
        if v.display_only { ",d" } else { "" }
    )
}

fn decode_view(text: &str) -> Result<PositionView, CodecError> {
    let [s, l, oh, rs, ss, ns, inc, atf, ato, version, rest] =
        fields::<11>(text, ',', "position view")?;
    let (shortage, display_only) = display_flag(rest, "position view")?;
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

pub fn encode_idempotency(r: &IdempotencyRecord) -> String {
    let outcome = match &r.outcome {
        WriteOutput::Position(v) => format!("P|{}", encode_view(v)),
        WriteOutput::Positions(vs) => format!(
            "S|{}",
            vs.iter().map(encode_view).collect::<Vec<_>>().join(";")
        ),
        WriteOutput::Reservation(v) => format!(
            "R|{}|{}|{}|{}|{}|{}|{}",
            v.id.0,
            v.channel.as_str(),
            state_str(v.state),
            v.created_at.0,
            v.expires_at.0,
            v.resolved_at.map_or(String::new(), |t| t.0.to_string()),
            encode_lines(
                v.lines
                    .iter()
                    .map(|l| (&l.sku, &l.location, l.qty, l.committed))
            ),
        ),
    };
    // A record is written once and never changes. Its format version is
    // its fingerprint's: `1|<decimal>` (legacy SipHash, written by engines
    // before fingerprint version 2, still read) or `2|<32 hex digits>`
    // (the current one; the rest of the layout is the same).
    let version = match r.fingerprint.version() {
        FingerprintVersion::V1 => 1,
        FingerprintVersion::V2 => 2,
    };
    format!("{version}|{}|{}|{}", r.fingerprint, r.expires_at.0, outcome)
}

/// The fingerprint of an idempotency record of format `version`.
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

pub fn decode_idempotency(field: &str, value: &str) -> Result<IdempotencyRecord, CodecError> {
    let [version, fingerprint_text, expires, kind, rest] = fields::<5>(value, '|', "idempotency")?;
    let fingerprint = fingerprint(version, fingerprint_text)?;
    let outcome = match kind {
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
                state: state(st)?,
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
        other => return Err(bad("idempotency outcome", other.to_owned())),
    };
    Ok(IdempotencyRecord {
        key: IdempotencyKey::new(&unescape(field)?)
            .map_err(|e| bad("idempotency key", e.to_string()))?,
        fingerprint,
        expires_at: ts(expires, "expires_at")?,
        outcome,
    })
}

// ---- catalog ---------------------------------------------------------------

fn kind_str(kind: LocationKind) -> &'static str {
    match kind {
        LocationKind::Store => "store",
        LocationKind::Warehouse => "warehouse",
    }
}

fn method_str(method: PickupMethod) -> &'static str {
    match method {
        PickupMethod::Buy => "buy",
        PickupMethod::Reserve => "reserve",
        PickupMethod::ShipToStore => "ship_to_store",
        PickupMethod::NotSupported => "not_supported",
    }
}

fn sla_str(sla: Option<PickupSla>) -> String {
    match sla {
        None => String::new(),
        Some(PickupSla::SameDay) => "same_day".into(),
        Some(PickupSla::NextDay) => "next_day".into(),
        Some(PickupSla::Days(days)) => days.to_string(),
        Some(PickupSla::MultiWeek) => "multi_week".into(),
    }
}

fn parse_pickup(method: &str, sla: &str) -> Result<Option<Pickup>, CodecError> {
    let method = match method {
        "" => return Ok(None),
        "buy" => PickupMethod::Buy,
        "reserve" => PickupMethod::Reserve,
        "ship_to_store" => PickupMethod::ShipToStore,
        "not_supported" => PickupMethod::NotSupported,
        other => return Err(bad("pickup method", other.to_owned())),
    };
    let sla = match sla {
        "" => None,
        "same_day" => Some(PickupSla::SameDay),
        "next_day" => Some(PickupSla::NextDay),
        "multi_week" => Some(PickupSla::MultiWeek),
        days => Some(
            PickupSla::days(num(days, "pickup sla")?)
                .ok_or_else(|| bad("pickup sla", days.to_owned()))?,
        ),
    };
    Ok(Some(Pickup { method, sla }))
}

pub fn encode_catalog(c: &CatalogRecord) -> String {
    let locations: Vec<String> = c
        .locations
        .iter()
        .map(|l| {
            format!(
                "{},{},{},{},{},{},{},{}",
                escape(l.code.as_str()),
                kind_str(l.kind),
                escape(&l.name),
                l.coords.map_or(String::new(), |p| p.lat.to_string()),
                l.coords.map_or(String::new(), |p| p.lon.to_string()),
                l.pickup.map_or("", |p| method_str(p.method)),
                sla_str(l.pickup.and_then(|p| p.sla)),
                u8::from(l.ship_from_store),
            )
        })
        .collect();
    let groups: Vec<String> = c
        .groups
        .iter()
        .map(|(name, members)| {
            let members: Vec<_> = members.iter().map(|m| escape(m.as_str())).collect();
            format!("{},{}", escape(name.as_str()), members.join("@"))
        })
        .collect();
    let policies: Vec<String> = c
        .policies
        .iter()
        .map(|(ch, scope, policy)| {
            let (kind, name) = match scope {
                PolicyScope::Location(code) => ("l", code.as_str()),
                PolicyScope::Group(group) => ("g", group.as_str()),
            };
            format!(
                "{},{kind},{},{},{}",
                ch.as_str(),
                escape(name),
                policy.held_back.0,
                policy.cap.map_or(String::new(), |c| c.0.to_string())
            )
        })
        .collect();
    format!(
        "{}~{}|{}|{}|{}",
        c.generation,
        c.changed_at.0,
        locations.join(";"),
        groups.join(";"),
        policies.join(";")
    )
}

pub fn decode_catalog(value: &str) -> Result<CatalogRecord, CodecError> {
    let [generation, locations, groups, policies] = fields::<4>(value, '|', "catalog")?;
    let group_name =
        |text: &str| GroupName::new(&unescape(text)?).map_err(|e| bad("group", e.to_string()));
    Ok(CatalogRecord {
        // `GENERATION~CHANGED_AT`; older values hold the generation only.
        generation: num(
            generation.split_once('~').map_or(generation, |(g, _)| g),
            "catalog generation",
        )?,
        changed_at: Seq(match generation.split_once('~') {
            Some((_, changed_at)) => num(changed_at, "catalog changed_at")?,
            None => 0,
        }),
        locations: items(locations, ';')
            .map(|item| {
                let [code, kind, name, lat, lon, method, sla, ship] =
                    fields::<8>(item, ',', "location")?;
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
                        other => return Err(bad("location kind", other.to_owned())),
                    },
                    name: unescape(name)?.into_owned(),
                    coords,
                    pickup: parse_pickup(method, sla)?,
                    ship_from_store: ship == "1",
                })
            })
            .collect::<Result<_, CodecError>>()?,
        groups: items(groups, ';')
            .map(|item| {
                let [name, members] = fields::<2>(item, ',', "group")?;
                Ok((
                    group_name(name)?,
                    items(members, '@')
                        .map(location)
                        .collect::<Result<_, _>>()?,
                ))
            })
            .collect::<Result<_, CodecError>>()?,
        policies: items(policies, ';')
            .map(|item| {
                let [ch, kind, name, held_back, cap] = fields::<5>(item, ',', "policy")?;
                let scope = match kind {
                    "l" => PolicyScope::Location(location(name)?),
                    "g" => PolicyScope::Group(group_name(name)?),
                    other => return Err(bad("policy scope", other.to_owned())),
                };
                let cap = if cap.is_empty() {
                    None
                } else {
                    Some(qty(cap, "cap")?)
                };
                Ok((
                    channel(ch)?,
                    scope,
                    ChannelPolicy {
                        held_back: qty(held_back, "held_back")?,
                        cap,
                    },
                ))
            })
            .collect::<Result<_, CodecError>>()?,
    })
}

// ---- API keys ----------------------------------------------------------------

pub fn encode_keys(k: &KeysRecord) -> String {
    let keys: Vec<String> = k
        .keys
        .iter()
        .map(|key| {
            let scopes: Vec<_> = key.scopes.iter().map(|s| escape(s)).collect();
            let locations: Vec<_> = key.locations.iter().map(|l| escape(l)).collect();
            // A trailing `,N` is the key's hold cap (absent: none, as in
            // older values).
            format!(
                "{},{},{},{},{}{}",
                escape(&key.id),
                escape(&key.name),
                scopes.join("@"),
                locations.join("@"),
                key.digest_hex,
                key.max_held_units
                    .map_or(String::new(), |n| format!(",{n}"))
            )
        })
        .collect();
    format!("{}|{}", k.generation, keys.join(";"))
}

pub fn decode_keys(value: &str) -> Result<KeysRecord, CodecError> {
    let [generation, keys] = fields::<2>(value, '|', "keys")?;
    let list = |text: &str| -> Result<Vec<String>, CodecError> {
        items(text, '@')
            .map(|t| unescape(t).map(Cow::into_owned))
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
                })
            })
            .collect::<Result<_, CodecError>>()?,
    })
}

// ---- engine state --------------------------------------------------------------

/// The engine's counters: the head of the latest cut written, per
/// reservation shard the next local id, and what feed cursors need (the
/// lineage, the oldest cursor honoured, and whether this write was the last
/// of a graceful stop).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineState {
    pub head: Seq,
    pub reservation_shards: usize,
    pub reservation_next_local: Vec<u64>,
    pub written_at: TimestampMs,
    /// `None` in states written before lineages existed.
    pub cursor_lineage: Option<u64>,
    pub cursor_floor: Seq,
    pub clean: bool,
}

pub fn encode_state(s: &EngineState) -> String {
    let next: Vec<String> = s
        .reservation_next_local
        .iter()
        .map(u64::to_string)
        .collect();
    let mut text = format!(
        "{}|{}|{}|{}|{}",
        s.head.0.saturating_sub(1),
        s.head.0,
        s.reservation_shards,
        next.join(";"),
        s.written_at.0
    );
    if let Some(lineage) = s.cursor_lineage {
        use std::fmt::Write;
        let _ = write!(
            text,
            "|{lineage:016x}|{}|{}",
            s.cursor_floor.0,
            u8::from(s.clean)
        );
    }
    text
}

/// Reads both the current form and the five-field one written before
/// cursor lineages (no lineage, not clean).
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
        state.cursor_lineage = Some(
            u64::from_str_radix(lineage, 16)
                .map_err(|_| bad("cursor lineage", lineage.to_owned()))?,
        );
        state.cursor_floor = Seq(num(floor, "cursor floor")?);
        state.clean = match clean {
            "0" => false,
            "1" => true,
            other => return Err(bad("clean flag", other.to_owned())),
        };
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku_(s: &str) -> Sku {
        Sku::new(s).expect("sku")
    }
    fn loc_(s: &str) -> LocationCode {
        LocationCode::new(s).expect("loc")
    }

    #[test]
    fn escaping_round_trips_every_separator() {
        for text in ["plain", "a|b;c,d@e%f", "%41", "é|ü", "50%", "@@"] {
            assert_eq!(unescape(&escape(text)).expect("valid"), text);
            assert!(!escape(text).contains(['|', ';', ',', '@']));
        }
        assert!(unescape("%4").is_err());
        assert!(unescape("%zz").is_err());
    }

    #[test]
    fn positions_round_trip_with_awkward_ids() {
        let first = PositionRecord {
            sku: sku_("SKU|1;x~"),
            location: loc_("PAR,01@%"),
            on_hand: Qty(10),
            reserved: Qty(3),
            safety_stock: Qty(1),
            non_sellable: Qty(2),
            version: Seq(u64::MAX),
            last_count_as_of: TimestampMs::MIN,
            incoming: vec![
                Incoming {
                    qty: Qty(5),
                    expected_at: TimestampMs(1_700_000_000_000),
                    reference: Some("PO|7~@,".into()),
                },
                Incoming {
                    qty: Qty(1),
                    expected_at: TimestampMs(-5),
                    reference: None,
                },
            ],
            history: vec![(TimestampMs(1), -3), (TimestampMs(2), 4)],
            history_horizon: TimestampMs(0),
            display_only: false,
            published_lag: 0,
        };
        let second = PositionRecord {
            location: loc_("LYO-01"),
            version: Seq(7),
            incoming: Vec::new(),
            history: Vec::new(),
            ..first.clone()
        };
        let third = PositionRecord {
            location: loc_("NCE-01"),
            display_only: true,
            published_lag: u32::MAX,
            ..first.clone()
        };
        let fourth = PositionRecord {
            location: loc_("BDX-01"),
            published_lag: 17,
            ..second.clone()
        };
        let records = vec![first, second, third, fourth];
        let field = sku_field(&records[0].sku).into_owned();
        let value = encode_sku_positions(&records);
        assert!(value.starts_with(&u64::MAX.to_string()));
        assert_eq!(decode_sku_positions(&field, &value), Ok(records));
        assert!(decode_sku_positions(&field, "1|2,3").is_err());
        assert!(decode_sku_positions(&field, "1|L,x,1,1,1,1,1,1,,").is_err());
        assert!(decode_sku_positions(&field, "1|L,1,1,1,1,1,1,1,,,z").is_err());
        let legacy = decode_sku_positions(&field, "1|L,1,1,1,1,1,1,1,,");
        assert_eq!(legacy.map(|p| p[0].display_only), Ok(false));
        assert_eq!(decode_sku_positions(&field, "1|"), Ok(Vec::new()));
    }

    #[test]
    fn reservation_and_outcomes_round_trip() {
        let lines = vec![ReservationLineRecord {
            sku: sku_("A"),
            location: loc_("S1"),
            qty: Qty(2),
            committed: Qty(1),
        }];
        let record = ReservationRecord {
            id: ReservationId(77),
            version: Seq(9),
            channel: Channel::CallCentre,
            state: ReservationState::Committed,
            created_at: TimestampMs(1),
            expires_at: TimestampMs(2),
            resolved_at: Some(TimestampMs(3)),
            lines,
            holders: Vec::new(),
        };
        assert_eq!(
            decode_reservation("77", &encode_reservation(&record)),
            Ok(record.clone())
        );
        // A held reservation counted against hold caps keeps its holders
        // (ids with separators escaped); a value without them reads as none.
        let holder = |kind, id: &str| Holder {
            kind,
            id: HolderId::new(id).expect("valid holder"),
        };
        let held = ReservationRecord {
            state: ReservationState::Held,
            resolved_at: None,
            holders: vec![
                holder(HolderKind::Key, "key_1"),
                holder(HolderKind::Customer, "c|1;=x"),
            ],
            ..record.clone()
        };
        let encoded = encode_reservation(&held);
        assert!(
            encoded.ends_with("|key=key_1;customer=c%7C1%3B=x"),
            "{encoded}"
        );
        assert_eq!(decode_reservation("77", &encoded), Ok(held));
        assert!(decode_reservation("77", &format!("{encoded};robot=r")).is_err());
        let view = PositionView {
            sku: sku_("A,B"),
            location: loc_("S1"),
            on_hand: Qty(1),
            reserved: Qty(0),
            safety_stock: Qty(0),
            non_sellable: Qty(0),
            incoming: 4,
            atf: Qty(1),
            ato: 5,
            version: Seq(3),
            shortage: Qty(0),
            display_only: false,
        };
        let display = PositionView {
            display_only: true,
            atf: Qty(0),
            ..view.clone()
        };
        let outcomes = [
            WriteOutput::Position(view.clone()),
            WriteOutput::Position(display.clone()),
            WriteOutput::Positions(vec![view.clone(), display, view]),
            WriteOutput::Reservation(ReservationView {
                id: ReservationId(5),
                channel: Channel::Web,
                state: ReservationState::Held,
                created_at: TimestampMs(1),
                expires_at: TimestampMs(2),
                resolved_at: None,
                lines: vec![ReservationLineView {
                    sku: sku_("A"),
                    location: loc_("S|1"),
                    qty: Qty(1),
                    committed: Qty(0),
                }],
            }),
        ];
        let fingerprints = [
            Fingerprint::V1(u64::MAX),
            Fingerprint::V2([0xa5; 16]),
            Fingerprint::V2(std::array::from_fn(|i| i as u8 * 17)),
        ];
        for (outcome, fingerprint) in outcomes
            .into_iter()
            .flat_map(|o| fingerprints.map(|f| (o.clone(), f)))
        {
            let record = IdempotencyRecord {
                key: IdempotencyKey::new("key_1:order|42").expect("key"),
                fingerprint,
                expires_at: TimestampMs(10),
                outcome,
            };
            let field = escape(record.key.as_str()).into_owned();
            let encoded = encode_idempotency(&record);
            // The record's format version is its fingerprint's.
            let prefix = match fingerprint {
                Fingerprint::V1(_) => "1|18446744073709551615|10|",
                Fingerprint::V2([0xa5, ..]) => "2|a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5|10|",
                Fingerprint::V2(_) => "2|00112233445566778899aabbccddeeff|10|",
            };
            assert!(encoded.starts_with(prefix), "{encoded}");
            assert_eq!(decode_idempotency(&field, &encoded), Ok(record));
        }
    }

    #[test]
    fn idempotency_fingerprints_are_read_by_record_version() {
        let tail = "|10|P|A,S1,1,0,0,0,4,1,5,3,0";
        let decoded = |value: &str| decode_idempotency("k", value).map(|r| r.fingerprint);
        assert_eq!(
            decoded(&format!("1|42{tail}")),
            Ok(Fingerprint::V1(42)),
            "legacy records (SipHash, decimal) are still read"
        );
        assert_eq!(
            decoded(&format!("2|000102030405060708090a0b0c0d0e0f{tail}")),
            Ok(Fingerprint::V2(std::array::from_fn(|i| i as u8)))
        );
        for refused in [
            // A version-2 digest in a version-1 record, and the reverse.
            format!("1|000102030405060708090a0b0c0d0e0f{tail}"),
            format!("2|42{tail}"),
            // Not exactly 32 lowercase hex digits.
            format!("2|000102030405060708090a0b0c0d0e{tail}"),
            format!("2|000102030405060708090a0b0c0d0e0f00{tail}"),
            format!("2|000102030405060708090A0B0C0D0E0F{tail}"),
            format!("2|+00102030405060708090a0b0c0d0e0f{tail}"),
            format!("2|g00102030405060708090a0b0c0d0e0f{tail}"),
            format!("2|é0102030405060708090a0b0c0d0e0f{tail}"),
            // An unknown version (a newer engine's record).
            format!("3|000102030405060708090a0b0c0d0e0f{tail}"),
        ] {
            assert!(decoded(&refused).is_err(), "{refused}");
        }
    }

    /// Records stored by engines before fingerprint version 2 (record
    /// format 1, legacy SipHash fingerprints, golden strings as they wrote
    /// them) still replay the identical request and still refuse a
    /// different one, after the decode and `Ledger::restore` of a start.
    #[test]
    fn legacy_idempotency_records_still_replay_and_refuse_after_a_restore() {
        use omnistock_ledger::{
            Acting, CommitRequest, CountRequest, HoldCap, Ledger, LedgerConfig, Line, Origin,
            Refusal, ReserveRequest, Restore, SaleRequest,
        };
        const NOW: TimestampMs = TimestampMs(1_700_000_100_000);
        let holder = |kind, id: &str| Holder {
            kind,
            id: HolderId::new(id).expect("holder"),
        };
        let held_view = |outcome: &WriteOutput| match outcome {
            WriteOutput::Reservation(view) => Ok(view.clone()),
            _ => Err(Refusal::IdempotencyKeyReused),
        };
        let line = |s: &str, l: &str, qty: u32| Line {
            sku: sku_(s),
            location: loc_(l),
            qty: Qty(qty),
        };
        let reserve = ReserveRequest {
            channel: Channel::Web,
            lines: vec![line("ÉTÉ-👕-42", "PAR-01", 2), line("SKU-1", "LYO-02", 1)],
            ttl_ms: 900_000,
            caps: vec![
                HoldCap {
                    holder: holder(HolderKind::Key, "key_1"),
                    max_units: 10,
                },
                HoldCap {
                    holder: holder(HolderKind::Customer, "cust-42"),
                    max_units: 500,
                },
            ],
        };
        let commit = CommitRequest {
            id: ReservationId(4_160),
            lines: Some(vec![line("ÉTÉ-👕-42", "PAR-01", 1)]),
        };
        let count = CountRequest {
            sku: sku_("SKU-1"),
            location: loc_("WH-1"),
            on_hand: Qty(40),
            safety_stock: Some(Qty(2)),
            expected_version: Some(Seq(17)),
            as_of: Some(TimestampMs(1_700_000_000_000)),
            reference: Some("cycle-7".into()),
        };
        let sale = SaleRequest {
            channel: Channel::Pos,
            lines: vec![line("SKU-1", "PAR-01", 1), line("SKU-2", "PAR-01", 3)],
            reference: Some("till-4/receipt-991".into()),
        };
        // (field, value) as the store held them.
        let stored = [
            (
                "key_1:order-7",
                "1|11797948176945236699|1700086500000|R|4160|web|held|1700000000000|1700000900000||\
                 ÉTÉ-👕-42,PAR-01,2,0;SKU-1,LYO-02,1,0",
            ),
            (
                "key_1:commit-7",
                "1|17093919912889190266|1700086500000|R|4160|web|committed|1700000000000|1700000900000|\
                 1700000050000|ÉTÉ-👕-42,PAR-01,2,1;SKU-1,LYO-02,1,0",
            ),
            (
                "key_1:count-7",
                "1|2374654174286493997|1700086500000|P|SKU-1,WH-1,40,0,2,0,0,38,38,18,0",
            ),
            (
                "key_1:till-4%7C991",
                "1|17020888603402756437|1700086500000|S|SKU-1,PAR-01,8,0,0,0,0,8,8,21,0;\
                 SKU-2,PAR-01,4,0,0,0,0,4,4,22,0",
            ),
        ];
        let records: Vec<IdempotencyRecord> = stored
            .iter()
            .map(|(field, value)| decode_idempotency(field, value).expect("a legacy record"))
            .collect();
        assert!(
            records
                .iter()
                .all(|r| r.fingerprint.version() == FingerprintVersion::V1)
        );
        let ledger = Ledger::new(LedgerConfig::default());
        let report = ledger
            .restore(
                Restore {
                    idempotency: records.clone(),
                    ..Restore::default()
                },
                NOW,
            )
            .expect("restores");
        assert_eq!(report.idempotency_keys, 4);
        let key = |k: &str| IdempotencyKey::new(k).expect("key");
        let outcome = |index: usize| records[index].outcome.clone();
        let head = ledger.journal_head();

        // The identical requests replay the stored outcomes...
        let (held, origin) = ledger.reserve_with_origin(&reserve, NOW, Some(&key("key_1:order-7")));
        assert_eq!(origin, Origin::Replayed);
        assert_eq!(held.map(WriteOutput::Reservation), Ok(outcome(0)));
        // (hold caps' numbers are not part of the request's identity)
        let mut raised = reserve.clone();
        raised.caps[1].max_units = 5;
        assert_eq!(
            ledger.reserve_with_origin(&raised, NOW, Some(&key("key_1:order-7"))),
            (held_view(&outcome(0)), Origin::Replayed)
        );
        assert_eq!(
            ledger
                .commit(&commit, Acting::Any, NOW, Some(&key("key_1:commit-7")))
                .map(WriteOutput::Reservation),
            Ok(outcome(1))
        );
        assert_eq!(
            ledger
                .count(&count, NOW, Some(&key("key_1:count-7")))
                .map(WriteOutput::Position),
            Ok(outcome(2))
        );
        assert_eq!(
            ledger
                .sell(&sale, NOW, Some(&key("key_1:till-4|991")))
                .map(WriteOutput::Positions),
            Ok(outcome(3))
        );
        // ...and different ones are refused.
        let reused = Refusal::IdempotencyKeyReused;
        let longer = ReserveRequest {
            ttl_ms: 900_001,
            ..reserve.clone()
        };
        let other_customer = ReserveRequest {
            caps: vec![HoldCap {
                holder: holder(HolderKind::Customer, "cust-43"),
                max_units: 500,
            }],
            ..reserve.clone()
        };
        for other in [longer, other_customer] {
            assert_eq!(
                ledger.reserve(&other, NOW, Some(&key("key_1:order-7"))),
                Err(reused.clone())
            );
        }
        let commit_all = CommitRequest {
            lines: None,
            ..commit.clone()
        };
        assert_eq!(
            ledger.commit(&commit_all, Acting::Any, NOW, Some(&key("key_1:commit-7"))),
            Err(reused.clone())
        );
        let now_count = CountRequest {
            as_of: None,
            ..count.clone()
        };
        assert_eq!(
            ledger.count(&now_count, NOW, Some(&key("key_1:count-7"))),
            Err(reused.clone())
        );
        let other_till = SaleRequest {
            reference: Some("till-4/receipt-992".into()),
            ..sale.clone()
        };
        assert_eq!(
            ledger.sell(&other_till, NOW, Some(&key("key_1:till-4|991"))),
            Err(reused)
        );
        assert_eq!(ledger.journal_head(), head, "nothing ran");

        // The legacy records are written back as they were read; a new
        // key gets a version-2 record.
        ledger
            .put_location(Location {
                code: loc_("WH-1"),
                kind: LocationKind::Warehouse,
                name: "Warehouse".into(),
                coords: None,
                pickup: None,
                ship_from_store: false,
            })
            .expect("a location");
        let first_count = CountRequest {
            expected_version: None,
            ..now_count
        };
        ledger
            .count(&first_count, NOW, Some(&key("key_1:count-8")))
            .expect("counted");
        let mut written: Vec<(String, String)> = ledger
            .export_all(NOW)
            .idempotency
            .iter()
            .map(|r| (escape(r.key.as_str()).into_owned(), encode_idempotency(r)))
            .collect();
        written.sort();
        let fresh = written
            .iter()
            .position(|(field, _)| field == "key_1:count-8")
            .map(|i| written.remove(i))
            .expect("the new key is written");
        assert!(fresh.1.starts_with("2|"), "{fresh:?}");
        let hex = fresh.1.split('|').nth(1).unwrap_or_default();
        assert!(
            hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "{fresh:?}"
        );
        let mut expected: Vec<(String, String)> = stored
            .iter()
            .map(|(field, value)| ((*field).to_owned(), (*value).to_owned()))
            .collect();
        expected.sort();
        assert_eq!(written, expected);
    }

    #[test]
    fn catalog_keys_and_state_round_trip() {
        let catalog = CatalogRecord {
            generation: 12,
            changed_at: Seq(4_294_967_301),
            locations: vec![
                Location {
                    code: loc_("PAR-01"),
                    kind: LocationKind::Store,
                    name: "Paris, Rivoli; 1er".into(),
                    coords: GeoPoint::new(48.8606, 2.3376),
                    pickup: Some(Pickup {
                        method: PickupMethod::Buy,
                        sla: Some(PickupSla::Days(3)),
                    }),
                    ship_from_store: true,
                },
                Location {
                    code: loc_("WH"),
                    kind: LocationKind::Warehouse,
                    name: String::new(),
                    coords: None,
                    pickup: Some(Pickup {
                        method: PickupMethod::NotSupported,
                        sla: None,
                    }),
                    ship_from_store: false,
                },
            ],
            groups: vec![(
                GroupName::new("paris").expect("group"),
                vec![loc_("PAR-01"), loc_("WH")],
            )],
            policies: vec![
                (
                    Channel::Ads,
                    PolicyScope::Group(GroupName::new("paris").expect("group")),
                    ChannelPolicy {
                        held_back: Qty(2),
                        cap: None,
                    },
                ),
                (
                    Channel::Marketplace,
                    PolicyScope::Location(loc_("WH")),
                    ChannelPolicy {
                        held_back: Qty(0),
                        cap: Some(Qty(20)),
                    },
                ),
            ],
        };
        assert_eq!(
            decode_catalog(&encode_catalog(&catalog)),
            Ok(catalog.clone())
        );
        // A catalog written before `changed_at` existed reads as 0.
        let legacy = encode_catalog(&catalog).replacen("~4294967301", "", 1);
        assert_eq!(
            decode_catalog(&legacy).map(|c| (c.generation, c.changed_at)),
            Ok((12, Seq(0)))
        );
        let till = KeyRecord {
            id: "key_1".into(),
            name: "till, 3".into(),
            scopes: vec!["pos".into(), "read".into()],
            locations: vec!["PAR-01".into()],
            digest_hex: "ab".repeat(32),
            max_held_units: None,
        };
        let capped = KeyRecord {
            id: "key_2".into(),
            max_held_units: Some(250),
            ..till.clone()
        };
        let keys = KeysRecord {
            generation: 3,
            keys: vec![till, capped],
        };
        assert_eq!(decode_keys(&encode_keys(&keys)), Ok(keys));
        let state = EngineState {
            head: Seq(100),
            reservation_shards: 4,
            reservation_next_local: vec![1, 2, 3, 4],
            written_at: TimestampMs(5),
            cursor_lineage: Some(0x0123_4567_89ab_cdef),
            cursor_floor: Seq(42),
            clean: true,
        };
        assert_eq!(decode_state(&encode_state(&state)), Ok(state.clone()));
        // The form written before cursor lineages still loads: no lineage,
        // not clean (its cursors are answered in full after the restart).
        assert_eq!(
            decode_state("99|100|4|1;2;3;4|5"),
            Ok(EngineState {
                cursor_lineage: None,
                cursor_floor: Seq(0),
                clean: false,
                ..state
            })
        );
        assert!(decode_state("99|100|4|1;2;3;4|5|zz|1|0").is_err());
        assert!(decode_state("99|100|4|1;2;3;4|5|00000000000000ff|1|2").is_err());
    }
}
