//! Deterministic, cheap randomness for the load generator: SplitMix64 and a
//! Zipf sampler over a precomputed CDF. Hand-written so the generator needs no
//! extra crate and every run with the same `--seed` issues the same requests.

/// SplitMix64: tiny, fast, good enough to pick SKUs and cart sizes.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 11) as u128 * n as u128) >> 53) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// How item popularity is distributed.
#[derive(Clone, Debug, PartialEq)]
pub enum Skew {
    Uniform,
    /// Zipf with exponent `s` (1.0 is classic long-tail retail traffic).
    Zipf(f64),
}

impl std::str::FromStr for Skew {
    type Err = String;
    fn from_str(text: &str) -> Result<Skew, String> {
        match text {
            "uniform" => Ok(Skew::Uniform),
            "zipf" => Ok(Skew::Zipf(1.0)),
            other => match other.strip_prefix("zipf:").map(str::parse::<f64>) {
                Some(Ok(s)) if s > 0.0 && s < 10.0 => Ok(Skew::Zipf(s)),
                _ => Err(format!(
                    "skew must be uniform, zipf or zipf:S (0 < S < 10), not {other:?}"
                )),
            },
        }
    }
}

impl std::fmt::Display for Skew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skew::Uniform => write!(f, "uniform"),
            Skew::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

/// Picks item indexes `0..n` with a given skew; index 0 is the most popular.
#[derive(Clone, Debug)]
pub struct Picker {
    n: usize,
    /// Cumulative probabilities (Zipf only).
    cdf: Vec<f64>,
}

impl Picker {
    pub fn new(n: usize, skew: &Skew) -> Picker {
        let cdf = match skew {
            Skew::Uniform => Vec::new(),
            Skew::Zipf(s) => {
                let mut total = 0.0;
                let mut cdf: Vec<f64> = (1..=n)
                    .map(|rank| {
                        total += 1.0 / (rank as f64).powf(*s);
                        total
                    })
                    .collect();
                for c in &mut cdf {
                    *c /= total;
                }
                cdf
            }
        };
        Picker { n: n.max(1), cdf }
    }

    pub fn pick(&self, rng: &mut Rng) -> usize {
        if self.cdf.is_empty() {
            return rng.below(self.n);
        }
        let u = rng.unit();
        self.cdf.partition_point(|c| *c < u).min(self.n - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            seen[rng.below(5)] += 1;
        }
        assert!(seen.iter().all(|c| *c > 1_500), "{seen:?}");
    }

    #[test]
    fn zipf_prefers_low_ranks() {
        let picker = Picker::new(1_000, &Skew::Zipf(1.0));
        let mut rng = Rng::new(1);
        let mut first = 0;
        let mut last_half = 0;
        for _ in 0..100_000 {
            match picker.pick(&mut rng) {
                0 => first += 1,
                i if i >= 500 => last_half += 1,
                _ => {}
            }
        }
        // Rank 1 of 1,000 under Zipf(1) has probability 1/H(1000) = 13.4 %.
        assert!((12_000..15_000).contains(&first), "{first}");
        assert!(last_half < 12_000, "{last_half}");
    }

    #[test]
    fn skew_parses() {
        assert_eq!("uniform".parse::<Skew>(), Ok(Skew::Uniform));
        assert_eq!("zipf:1.2".parse::<Skew>(), Ok(Skew::Zipf(1.2)));
        assert!("zipf:-1".parse::<Skew>().is_err());
        assert!("pareto".parse::<Skew>().is_err());
    }
}
