//! Minors' spending caps by age band (国新出发〔2019〕34号: under 8 none; 8–16 ≤ 50 yuan a top-up
//! and ≤ 200 a month; 16–18 ≤ 100 and ≤ 400) and the running monthly sums that the
//! `minor_over_monthly_cap` predicate needs. The caps are data in the game pack.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use spotcheck_protocol::{AgeBand, GamePayment, PersonRef};

use super::calendar::ChinaDay;

/// A minor's spending caps, in fen (0.01 yuan) so that money is never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cap {
    /// The most one top-up may be; 0 means no payments at all.
    pub per_top_up_fen: u64,
    /// The most all top-ups in one China-time calendar month may add up to.
    pub per_month_fen: u64,
}

/// Spending caps per minor age band (国新出发〔2019〕34号): data in the game pack.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SpendingCaps {
    /// Under 8.
    pub under_8: Option<Cap>,
    /// 8 to under 16.
    pub from_8_to_16: Option<Cap>,
    /// 16 to under 18.
    pub from_16_to_18: Option<Cap>,
}

impl SpendingCaps {
    /// The cap for a band: none for adults; for an unknown band (an unverified player, who
    /// counts as a minor) the strictest cap listed, since the player might be the youngest.
    pub fn for_band(&self, band: AgeBand) -> Option<Cap> {
        match band {
            AgeBand::Adult => None,
            AgeBand::Under8 => self.under_8,
            AgeBand::From8To16 => self.from_8_to_16,
            AgeBand::From16To18 => self.from_16_to_18,
            AgeBand::Unknown => [self.under_8, self.from_8_to_16, self.from_16_to_18]
                .into_iter()
                .flatten()
                .min_by_key(|c| (c.per_top_up_fen, c.per_month_fen)),
        }
    }
}

/// Running sums of minors' top-ups per player and China-time calendar month.
///
/// Only the newest two months are kept: a payment of an older month arrives too late to be
/// summed reliably and is judged against its own amount alone.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MonthlySpend {
    /// The newest month seen (`year * 12 + month - 1`).
    newest_month: Option<i32>,
    /// (player → month → fen).
    sums: BTreeMap<PersonRef, BTreeMap<i32, u64>>,
}

impl MonthlySpend {
    /// Adds a payment; returns whether the player's month now exceeds the monthly cap.
    pub fn add(&mut self, p: &GamePayment, caps: &SpendingCaps) -> bool {
        let Some(cap) = caps.for_band(p.age_band) else {
            return false;
        };
        let month = ChinaDay::of(p.ts_ms).month_index();
        if self.newest_month.is_none_or(|n| month > n) {
            self.newest_month = Some(month);
            // Forget months that can no longer matter, so the state stays small.
            self.sums.retain(|_, months| {
                months.retain(|&m, _| m >= month - 1);
                !months.is_empty()
            });
        }
        let newest = self.newest_month.unwrap_or(month);
        if month < newest - 1 {
            return p.amount_fen > cap.per_month_fen;
        }
        let sum = self
            .sums
            .entry(p.player.clone())
            .or_default()
            .entry(month)
            .or_default();
        *sum = sum.saturating_add(p.amount_fen);
        *sum > cap.per_month_fen
    }

    /// How many players are tracked.
    pub fn players(&self) -> usize {
        self.sums.len()
    }
}
