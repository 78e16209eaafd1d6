//! The cursors clients hold: `X-Next-Cursor` of the feeds, the ids of live
//! stream events (`Last-Event-ID`), and what `omnistock feed` prints.
//!
//! A cursor names a journal sequence of one lineage (one in-memory run, or
//! one store across its restarts): "every change up to here is in what I
//! hold". Carrying the lineage lets a server tell a cursor of its own from
//! one of another store, or of an in-memory run before a restart, instead of
//! answering it with a silently empty increment. Clients treat the text as
//! opaque; its form is `c1.<lineage, 16 hex digits>.<sequence, hex>`.

use std::fmt;
use std::str::FromStr;

use omnistock_ledger::{Ledger, Seq};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub lineage: u64,
    pub seq: Seq,
}

const PREFIX: &str = "c1.";

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{:016x}.{:x}", self.lineage, self.seq.0)
    }
}

/// What a client sent as a cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SentCursor {
    Cursor(Cursor),
    /// A bare number: the form of cursors before lineages. It names no
    /// lineage, so it cannot be honoured.
    Legacy(u64),
}

/// Text that is no cursor at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor: pass the X-Next-Cursor (or event id) a previous answer gave")]
pub struct MalformedCursor;

impl FromStr for SentCursor {
    type Err = MalformedCursor;

    fn from_str(text: &str) -> Result<SentCursor, MalformedCursor> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix(PREFIX) {
            let (lineage, seq) = rest.split_once('.').ok_or(MalformedCursor)?;
            let hex = |part: &str, max_digits: usize| {
                (!part.is_empty()
                    && part.len() <= max_digits
                    && part.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(part, 16).ok())
                .flatten()
                .ok_or(MalformedCursor)
            };
            return Ok(SentCursor::Cursor(Cursor {
                lineage: hex(lineage, 16)?,
                seq: Seq(hex(seq, 16)?),
            }));
        }
        if !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse()
                .map(SentCursor::Legacy)
                .map_err(|_| MalformedCursor);
        }
        Err(MalformedCursor)
    }
}

/// The cursor of a cluster's feed or stream: one cursor per partition, in
/// partition order (each partition's engine answers its own). Opaque to
/// clients like [`Cursor`]; its form is `k1.` then every partition's
/// `<lineage>.<sequence>` (hex) joined by `_`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterCursor(pub Vec<Cursor>);

const CLUSTER_PREFIX: &str = "k1.";
/// Most partitions a cluster cursor names (a cluster's most partitions).
pub const MAX_CLUSTER_CURSOR_PARTS: usize = 4_096;

impl fmt::Display for ClusterCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(CLUSTER_PREFIX)?;
        for (i, cursor) in self.0.iter().enumerate() {
            let separator = if i == 0 { "" } else { "_" };
            write!(f, "{separator}{:x}.{:x}", cursor.lineage, cursor.seq.0)?;
        }
        Ok(())
    }
}

impl FromStr for ClusterCursor {
    type Err = MalformedCursor;

    fn from_str(text: &str) -> Result<ClusterCursor, MalformedCursor> {
        let rest = text
            .trim()
            .strip_prefix(CLUSTER_PREFIX)
            .ok_or(MalformedCursor)?;
        let parts: Vec<&str> = rest.split('_').collect();
        if parts.len() > MAX_CLUSTER_CURSOR_PARTS {
            return Err(MalformedCursor);
        }
        let cursors = parts
            .iter()
            .map(|part| match format!("{PREFIX}{part}").parse() {
                Ok(SentCursor::Cursor(cursor)) => Ok(cursor),
                _ => Err(MalformedCursor),
            })
            .collect::<Result<Vec<Cursor>, MalformedCursor>>()?;
        Ok(ClusterCursor(cursors))
    }
}

impl ClusterCursor {
    /// What a client sent to a cluster of `partitions` partitions: its
    /// cursor, or why it cannot be continued from (another cluster's,
    /// another partition count's, a single node's); `MalformedCursor` for
    /// text that is no cursor at all.
    pub fn check(
        text: &str,
        partitions: usize,
    ) -> Result<Result<ClusterCursor, Unhonoured>, MalformedCursor> {
        match text.parse::<ClusterCursor>() {
            Ok(cursor) if cursor.0.len() == partitions => Ok(Ok(cursor)),
            Ok(_) => Ok(Err(Unhonoured::OtherLineage)),
            Err(_) => match text.parse::<SentCursor>()? {
                SentCursor::Legacy(_) => Ok(Err(Unhonoured::Legacy)),
                SentCursor::Cursor(_) => Ok(Err(Unhonoured::OtherLineage)),
            },
        }
    }
}

/// Why a cursor is not honoured with an increment. In precedence order:
/// the first that applies is the one reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unhonoured {
    /// A bare number from before cursors named their lineage.
    Legacy,
    /// Another store's, or an in-memory run's that has ended.
    OtherLineage,
    /// Beyond every change this server has made: never handed out here.
    AheadOfHead,
    /// From before a restart that did not follow a graceful stop: what the
    /// client saw may include changes that were never stored.
    BeforeRestart,
}

impl Unhonoured {
    /// The spelling in `X-Feed-Snapshot-Reason` and `resync` events.
    pub fn as_str(self) -> &'static str {
        match self {
            Unhonoured::Legacy => "legacy_cursor",
            Unhonoured::OtherLineage => "other_lineage",
            Unhonoured::AheadOfHead => "ahead_of_head",
            Unhonoured::BeforeRestart => "before_restart",
        }
    }
}

impl Cursor {
    /// The cursor covering every change below `head` (the journal head
    /// read before the snapshot is taken).
    pub fn at_head(ledger: &Ledger, head: Seq) -> Cursor {
        Cursor {
            lineage: ledger.cursor_lineage(),
            seq: Seq(head.0.saturating_sub(1)),
        }
    }

    /// Whether `ledger` can answer what changed after this cursor, with the
    /// journal head at `head`.
    pub fn check(sent: SentCursor, ledger: &Ledger, head: Seq) -> Result<Cursor, Unhonoured> {
        let cursor = match sent {
            SentCursor::Legacy(_) => return Err(Unhonoured::Legacy),
            SentCursor::Cursor(cursor) => cursor,
        };
        if cursor.lineage != ledger.cursor_lineage() {
            return Err(Unhonoured::OtherLineage);
        }
        if cursor.seq >= head {
            return Err(Unhonoured::AheadOfHead);
        }
        if cursor.seq < ledger.cursor_floor() {
            return Err(Unhonoured::BeforeRestart);
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_malformed() {
        let cursor = Cursor {
            lineage: 0x00ab_cdef_0123_4567,
            seq: Seq(0x1_0000_0000 + 42),
        };
        let text = cursor.to_string();
        assert_eq!(text, "c1.00abcdef01234567.10000002a");
        assert_eq!(text.parse(), Ok(SentCursor::Cursor(cursor)));
        assert_eq!("70565".parse(), Ok(SentCursor::Legacy(70565)));
        for bad in [
            "",
            "c1.",
            "c1.zz.1",
            "c1.00abcdef01234567.",
            "c1.00abcdef01234567.x",
            "c1.00abcdef0123456789.1",
            "c1.1.11111111111111111",
            "-1",
            "1e3",
            "99999999999999999999999",
            "c2.1.1",
        ] {
            assert_eq!(bad.parse::<SentCursor>(), Err(MalformedCursor), "{bad:?}");
        }
    }

    #[test]
    fn a_cluster_cursor_round_trips() {
        let cursor = ClusterCursor(vec![
            Cursor {
                lineage: 0xab,
                seq: Seq(7),
            },
            Cursor {
                lineage: u64::MAX,
                seq: Seq(0),
            },
        ]);
        let text = cursor.to_string();
        assert_eq!(text, "k1.ab.7_ffffffffffffffff.0");
        assert_eq!(text.parse(), Ok(cursor));
        for bad in [
            "",
            "k1.",
            "k1.ab",
            "k1.ab.7_",
            "k1.ab.7__1.1",
            "c1.00ab.7",
            "k1.ab.7_x.1",
        ] {
            assert_eq!(
                bad.parse::<ClusterCursor>(),
                Err(MalformedCursor),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn honoured_only_within_lineage_floor_and_head() {
        let ledger = Ledger::new(omnistock_ledger::LedgerConfig::default());
        ledger.set_cursor_lineage(7);
        let head = Seq(100);
        let sent = |lineage, seq| {
            SentCursor::Cursor(Cursor {
                lineage,
                seq: Seq(seq),
            })
        };
        assert_eq!(
            Cursor::check(sent(7, 99), &ledger, head).map(|c| c.seq),
            Ok(Seq(99))
        );
        assert_eq!(
            Cursor::check(sent(7, 0), &ledger, head).map(|c| c.seq),
            Ok(Seq(0))
        );
        assert_eq!(
            Cursor::check(sent(7, 100), &ledger, head),
            Err(Unhonoured::AheadOfHead)
        );
        assert_eq!(
            Cursor::check(sent(8, 5), &ledger, head),
            Err(Unhonoured::OtherLineage)
        );
        assert_eq!(
            Cursor::check(SentCursor::Legacy(5), &ledger, head),
            Err(Unhonoured::Legacy)
        );
        assert_eq!(
            Cursor::at_head(&ledger, head).to_string(),
            "c1.0000000000000007.63"
        );
    }
}
