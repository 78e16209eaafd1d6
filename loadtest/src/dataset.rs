//! The data set a run creates for itself: SKUs (codes unique to the run, so
//! runs against one long-lived engine never mix), stores around Paris and
//! warehouses (shared codes, written idempotently), every SKU at every
//! location with a deterministic initial count, and the flash-sale SKUs.
//! Positions are numbered densely so the accounting is a flat array.

use crate::rng::{Picker, Rng, Skew};

#[derive(Clone, Debug)]
pub struct DataSetConfig {
    pub skus: usize,
    pub stores: usize,
    pub warehouses: usize,
    /// Mean initial on hand per position (each is drawn in [mean/2, 3*mean/2]).
    pub initial_on_hand: u32,
    pub skew: Skew,
    pub flash_units: u32,
    pub flash_rounds: usize,
    pub flash_buyers_per_unit: u32,
    pub seed: u64,
}

#[derive(Clone, Debug)]
pub struct Loc {
    pub code: String,
    pub store: bool,
    pub lat: f64,
    pub lon: f64,
}

/// The group every store of the data set belongs to.
pub const STORE_GROUP: &str = "lt-stores";

pub struct DataSet {
    pub run_id: String,
    /// Regular SKUs, then the flash-sale SKUs.
    pub skus: Vec<String>,
    pub regular_skus: usize,
    /// Stores first, then warehouses.
    pub locations: Vec<Loc>,
    pub stores: usize,
    /// Initial on hand per position (see `position`).
    pub initial: Vec<u32>,
    pub sku_picker: Picker,
    pub flash_units: u32,
    pub flash_buyers: u64,
}

impl DataSet {
    pub fn new(config: &DataSetConfig) -> DataSet {
        let mut rng = Rng::new(config.seed);
        let run_id = format!("{:05X}", rng.next_u64() & 0xF_FFFF);
        let mut skus: Vec<String> = (0..config.skus)
            .map(|i| format!("LT{run_id}-{i:06}"))
            .collect();
        skus.extend((0..config.flash_rounds).map(|r| format!("LT{run_id}-FLASH-{r:03}")));
        let mut locations: Vec<Loc> = (0..config.stores)
            .map(|i| {
                // Stores on a 50 x 50 km grid around central Paris.
                let (row, col) = ((i / 10) as f64, (i % 10) as f64);
                Loc {
                    code: format!("LT-S{i:03}"),
                    store: true,
                    lat: 48.64 + row * 0.045,
                    lon: 2.02 + col * 0.068,
                }
            })
            .collect();
        locations.extend((0..config.warehouses).map(|i| Loc {
            code: format!("LT-W{i:02}"),
            store: false,
            lat: 49.0,
            lon: 2.5,
        }));
        let mean = config.initial_on_hand.max(1);
        let mut initial: Vec<u32> = (0..config.skus * locations.len())
            .map(|_| mean / 2 + rng.below(mean as usize + 1) as u32)
            .collect();
        initial.extend((0..config.flash_rounds).map(|_| config.flash_units));
        DataSet {
            run_id,
            regular_skus: config.skus,
            skus,
            stores: config.stores,
            locations,
            initial,
            sku_picker: Picker::new(config.skus, &config.skew),
            flash_units: config.flash_units,
            flash_buyers: config.flash_units as u64 * config.flash_buyers_per_unit as u64,
        }
    }

    pub fn flash_rounds(&self) -> usize {
        self.skus.len() - self.regular_skus
    }

    /// Regular positions: SKU-major.
    pub fn position(&self, sku: usize, location: usize) -> usize {
        sku * self.locations.len() + location
    }

    /// The flash-sale position of round `r` (at the first warehouse, or the
    /// first location when there is none).
    pub fn flash_position(&self, round: usize) -> usize {
        self.regular_skus * self.locations.len() + round
    }

    pub fn flash_location(&self) -> usize {
        if self.locations.len() > self.stores {
            self.stores
        } else {
            0
        }
    }

    pub fn positions(&self) -> usize {
        self.initial.len()
    }

    /// (SKU code, location code) of a position index.
    pub fn codes(&self, position: usize) -> (&str, &str) {
        let regular = self.regular_skus * self.locations.len();
        if position < regular {
            let l = self.locations.len();
            (&self.skus[position / l], &self.locations[position % l].code)
        } else {
            (
                &self.skus[self.regular_skus + (position - regular)],
                &self.locations[self.flash_location()].code,
            )
        }
    }

    /// What the ERP's bulk count finds at a position: the initial count plus
    /// 0-3 units found (never fewer, so a count can never create a shortage
    /// that would hide an oversell). Deterministic, so whichever count lands
    /// last, the tool knows the value.
    pub fn count_value(&self, position: usize) -> u32 {
        let mut rng = Rng::new(position as u64 ^ 0xC0FF_EE00);
        self.initial[position] + rng.below(4) as u32
    }

    pub fn store_codes(&self) -> Vec<&str> {
        self.locations[..self.stores]
            .iter()
            .map(|l| l.code.as_str())
            .collect()
    }
}

/// RFC 3339 (UTC, milliseconds) of a Unix time in milliseconds.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// Milliseconds since the Unix epoch (the engine's clock on the same machine).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DataSetConfig {
        DataSetConfig {
            skus: 10,
            stores: 3,
            warehouses: 2,
            initial_on_hand: 100,
            skew: Skew::Uniform,
            flash_units: 7,
            flash_rounds: 2,
            flash_buyers_per_unit: 10,
            seed: 1,
        }
    }

    #[test]
    fn positions_are_dense_and_named() {
        let data = DataSet::new(&config());
        assert_eq!(data.positions(), 10 * 5 + 2);
        let (sku, location) = data.codes(data.position(3, 4));
        assert!(sku.ends_with("-000003"), "{sku}");
        assert_eq!(location, "LT-W01");
        let (sku, location) = data.codes(data.flash_position(1));
        assert!(sku.ends_with("FLASH-001"), "{sku}");
        assert_eq!(location, "LT-W00");
        assert_eq!(data.initial[data.flash_position(1)], 7);
        assert!(data.initial[..50].iter().all(|q| (50..=150).contains(q)));
        assert_eq!(data.flash_buyers, 70);
    }

    #[test]
    fn counts_never_go_below_the_initial_count() {
        let data = DataSet::new(&config());
        for p in 0..data.positions() {
            let c = data.count_value(p);
            assert!(c >= data.initial[p] && c <= data.initial[p] + 3);
            assert_eq!(c, data.count_value(p));
        }
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
