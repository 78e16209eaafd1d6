//! The scenarios: what a storefront, a checkout, a store, a flash sale, an ad
//! feed poller and an ERP do to the engine, one module each. A
//! `ScenarioWorker` is one connection; each iteration picks a scenario by
//! weight (a single scenario is a mix with one weight) and runs one unit of
//! it (a page view, a cart, a till transaction, a buyer, a poll, an import).

pub mod browse;
pub mod checkout;
pub mod feed;
pub mod flash;
pub mod import;
pub mod pos;
pub mod reserve;

use std::sync::Arc;

use hyper::StatusCode;
use hyper::header::HeaderValue;
use tokio::time::Instant;

use crate::book::Book;
use crate::dataset::DataSet;
use crate::driver::{Flow, Worker};
use crate::http_client::{Call, Conn, Reply};
use crate::rng::Rng;
use crate::stats::{Op, Outcome, Recorder};
use crate::targets::Target;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Browse,
    Checkout,
    Pos,
    FlashSale,
    Feed,
    Import,
    /// Single-line reservations, held until their TTL (throughput).
    Reserve,
    /// Reservations of `--batch-lines` lines each (lines/s).
    ReserveBatch,
    /// A weighted blend (`--weights`).
    Mixed,
}

impl Scenario {
    pub const BLEND: [Scenario; 6] = [
        Scenario::Browse,
        Scenario::Checkout,
        Scenario::Pos,
        Scenario::FlashSale,
        Scenario::Feed,
        Scenario::Import,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Browse => "browse",
            Scenario::Checkout => "checkout",
            Scenario::Pos => "pos",
            Scenario::FlashSale => "flash-sale",
            Scenario::Feed => "feed",
            Scenario::Import => "import",
            Scenario::Reserve => "reserve",
            Scenario::ReserveBatch => "reserve-batch",
            Scenario::Mixed => "mixed",
        }
    }

    /// What one iteration of the scenario is, in the plural: the unit of the
    /// open-loop rate (`--iterations-per-s`), which is not requests where an
    /// iteration sends more than one (a checkout, a flash-sale buyer).
    pub fn unit(self) -> &'static str {
        match self {
            Scenario::Browse => "page views",
            Scenario::Checkout => "checkouts",
            Scenario::Pos => "till transactions",
            Scenario::FlashSale => "buyers",
            Scenario::Feed => "feed polls",
            Scenario::Import => "imports",
            Scenario::Reserve | Scenario::ReserveBatch => "reservations",
            Scenario::Mixed => "iterations",
        }
    }

    /// Which targets implement what the scenario calls.
    pub fn supported_by(self, target: Target) -> bool {
        match target {
            Target::Omnistock | Target::OmnistockAsync | Target::OmnistockSync => true,
            Target::RedisLua => matches!(
                self,
                Scenario::Checkout
                    | Scenario::FlashSale
                    | Scenario::Reserve
                    | Scenario::ReserveBatch
            ),
            Target::Noop => matches!(self, Scenario::Reserve | Scenario::ReserveBatch),
        }
    }
}

/// Scenario weights for `mixed`.
#[derive(Clone, Debug, PartialEq)]
pub struct Weights(pub Vec<(Scenario, u32)>);

impl Default for Weights {
    fn default() -> Self {
        Weights(vec![
            // Per mille: feeds and imports are rare but heavy (a feed poll
            // scans every position; an import writes 1,000 rows).
            (Scenario::Browse, 700),
            (Scenario::Checkout, 150),
            (Scenario::Pos, 100),
            (Scenario::FlashSale, 45),
            (Scenario::Feed, 4),
            (Scenario::Import, 1),
        ])
    }
}

impl std::str::FromStr for Weights {
    type Err = String;
    /// `browse=60,checkout=20,...`; unnamed scenarios get weight 0.
    fn from_str(text: &str) -> Result<Weights, String> {
        let mut weights = Vec::new();
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("expected name=weight, found {part:?}"))?;
            let scenario = Scenario::BLEND
                .into_iter()
                .find(|s| s.name() == name.trim())
                .ok_or_else(|| format!("unknown scenario {name:?} in --weights"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight of {name} is not a whole number"))?;
            weights.push((scenario, weight));
        }
        if weights.iter().all(|(_, w)| *w == 0) {
            return Err("--weights needs at least one weight above 0".into());
        }
        Ok(Weights(weights))
    }
}

impl std::fmt::Display for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(s, w)| format!("{}={w}", s.name()))
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

/// Weighted choice by cumulative weights.
#[derive(Clone, Debug)]
pub struct Mix {
    cumulative: Vec<(u32, Scenario)>,
    total: u32,
}

impl Mix {
    pub fn new(scenario: Scenario, weights: &Weights) -> Mix {
        let pairs: Vec<(Scenario, u32)> = if scenario == Scenario::Mixed {
            weights.0.iter().copied().filter(|(_, w)| *w > 0).collect()
        } else {
            vec![(scenario, 1)]
        };
        let mut total = 0;
        let cumulative = pairs
            .into_iter()
            .map(|(s, w)| {
                total += w;
                (total, s)
            })
            .collect();
        Mix { cumulative, total }
    }

    pub fn pick(&self, rng: &mut Rng) -> Scenario {
        let roll = rng.below(self.total.max(1) as usize) as u32;
        self.cumulative
            .iter()
            .find(|(upto, _)| roll < *upto)
            .map(|(_, s)| *s)
            .unwrap_or(Scenario::Browse)
    }

    pub fn scenarios(&self) -> impl Iterator<Item = Scenario> + '_ {
        self.cumulative.iter().map(|(_, s)| *s)
    }
}

/// Everything the workers share.
pub struct Ctx {
    pub data: DataSet,
    pub book: Book,
    pub target: Target,
    pub admin: HeaderValue,
    /// One POS key per store (its own store only), omnistock only.
    pub pos_keys: Vec<HeaderValue>,
    pub mix: Mix,
    pub hold_ttl_s: u64,
    pub batch_lines: usize,
    pub import_rows: usize,
    /// Incremental feed polls per full feed.
    pub feed_incremental_per_full: u32,
}

/// One connection running scenarios.
pub struct ScenarioWorker {
    pub conn: Conn,
    pub rng: Rng,
    pub ctx: Arc<Ctx>,
    pub rec: Recorder,
    /// The last feed answer's `X-Next-Cursor`, sent back as is (opaque).
    pub feed_cursor: Option<String>,
    /// Set once a scenario with finite work (flash sale) has none left.
    exhausted: Vec<Scenario>,
}

impl ScenarioWorker {
    pub fn new(conn: Conn, seed: u64, ctx: Arc<Ctx>, rec: Recorder) -> ScenarioWorker {
        ScenarioWorker {
            conn,
            rng: Rng::new(seed),
            ctx,
            rec,
            feed_cursor: None,
            exhausted: Vec::new(),
        }
    }

    /// Sends one request, records its latency from `started` and its outcome.
    /// 409 counts as an expected refusal where `refusable`. Returns the reply
    /// unless the request failed.
    pub async fn send(
        &mut self,
        op: Op,
        started: Instant,
        call: Call<'_>,
        lines: u64,
        refusable: bool,
    ) -> Option<Reply> {
        let result = self.conn.call(call).await;
        let latency = started.elapsed();
        match result {
            Ok(reply) if reply.status.is_success() => {
                self.rec.record(op, Outcome::Ok, latency, lines);
                Some(reply)
            }
            Ok(reply) if refusable && reply.status == StatusCode::CONFLICT => {
                self.rec.record(op, Outcome::Refused, latency, 0);
                Some(reply)
            }
            Ok(reply) => {
                self.rec.record(op, Outcome::Error, latency, 0);
                let body =
                    String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)]).into_owned();
                self.rec
                    .note_error(format!("{}: {} {body}", op.name(), reply.status));
                None
            }
            Err(error) => {
                self.rec.record(op, Outcome::Error, latency, 0);
                self.rec.note_error(format!("{}: {error}", op.name()));
                None
            }
        }
    }

    /// Sends `POST /v1/reservations/{id}/{action}` (`commit` or `release`,
    /// no body) as `op`, timed from now; true if it succeeded.
    pub async fn resolve_reservation(
        &mut self,
        op: Op,
        id: u64,
        action: &str,
        key: Option<&HeaderValue>,
        lines: u64,
    ) -> bool {
        let path = format!("/v1/reservations/{id}/{action}");
        let call = Call {
            method: hyper::Method::POST,
            path: &path,
            body: None,
            key,
        };
        self.send(op, Instant::now(), call, lines, false)
            .await
            .is_some()
    }

    /// A random regular SKU (by the data set's skew) and location.
    pub fn pick_position(&mut self, location: usize) -> usize {
        let sku = self.ctx.data.sku_picker.pick(&mut self.rng);
        self.ctx.data.position(sku, location)
    }
}

impl Worker for ScenarioWorker {
    async fn iteration(&mut self, scheduled: Instant) -> Flow {
        self.rec.iterations += 1;
        let mut scenario = self.ctx.mix.pick(&mut self.rng);
        if self.exhausted.contains(&scenario) {
            // Finite work done: the rest of the blend goes on without it.
            match self
                .ctx
                .mix
                .scenarios()
                .find(|s| !self.exhausted.contains(s))
            {
                Some(other) => scenario = other,
                None => return Flow::Done,
            }
        }
        let flow = match scenario {
            Scenario::Browse => browse::run(self, scheduled).await,
            Scenario::Checkout => checkout::run(self, scheduled).await,
            Scenario::Pos => pos::run(self, scheduled).await,
            Scenario::FlashSale => flash::run(self, scheduled).await,
            Scenario::Feed => feed::run(self, scheduled).await,
            Scenario::Import => import::run(self, scheduled).await,
            Scenario::Reserve => reserve::single(self, scheduled).await,
            Scenario::ReserveBatch => reserve::batch(self, scheduled).await,
            Scenario::Mixed => Flow::Continue,
        };
        if flow == Flow::Done {
            self.exhausted.push(scenario);
            if self
                .ctx
                .mix
                .scenarios()
                .all(|s| self.exhausted.contains(&s))
            {
                return Flow::Done;
            }
        }
        Flow::Continue
    }
}

/// `{"sku":..,"location":..,"qty":..}` lines of a JSON body.
pub fn lines_json(data: &DataSet, lines: &[(usize, u32)]) -> String {
    let mut out = String::with_capacity(lines.len() * 56);
    out.push('[');
    for (i, (position, qty)) in lines.iter().enumerate() {
        let (sku, location) = data.codes(*position);
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"sku":"{sku}","location":"{location}","qty":{qty}}}"#
        ));
    }
    out.push(']');
    out
}

/// The body of `POST /v1/reservations`.
pub fn reserve_body(data: &DataSet, channel: &str, lines: &[(usize, u32)], ttl_s: u64) -> String {
    format!(
        r#"{{"channel":"{channel}","lines":{},"ttl_seconds":{ttl_s}}}"#,
        lines_json(data, lines)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_and_mix_picks_by_weight() {
        let weights: Weights = "browse=3,checkout=1,pos=0".parse().expect("weights");
        let mix = Mix::new(Scenario::Mixed, &weights);
        assert_eq!(mix.scenarios().count(), 2);
        let mut rng = Rng::new(3);
        let browse = (0..40_000)
            .filter(|_| mix.pick(&mut rng) == Scenario::Browse)
            .count();
        assert!((29_000..31_000).contains(&browse), "{browse}");
        assert!("browse=1,nope=2".parse::<Weights>().is_err());
        assert!("browse=0".parse::<Weights>().is_err());
        let single = Mix::new(Scenario::Pos, &weights);
        assert_eq!(single.pick(&mut rng), Scenario::Pos);
    }
}
