//! Online games: play sessions and top-up payments of a fixed population of pseudonymous players.
//!
//! Most players are adults with verified real names. Minors play mostly in the allowed window
//! (Friday, Saturday and Sunday, 20:00–21:00 China time; holidays are not modelled) and only
//! rarely outside it; guest sessions and unverified accounts are rare; minors' top-ups mostly
//! respect the caps (none under 8, ≤ 5000 fen from 8 to 16, ≤ 10000 fen from 16 to 18), with an
//! occasional over-cap one. Every timestamp lies at or before the clock reading it was made for.

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use spotcheck_protocol::{
    AgeBand, AgentId, Batch, Event, EventBatch, GamePayment, GameSession, PersonRef, RecordId, Seq,
    UnixMillis, Version,
};

use super::run_tag;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// China Standard Time is UTC+8 all year.
const CHINA_OFFSET: i64 = 8 * HOUR;
/// Players are `p-000000` to `p-199999`; player `n` has age band `band_of(n)`.
const PLAYERS: u32 = 200_000;

/// A player's fixed age band: of every 100 players, 3 are under 8, 9 are 8–16, 8 are 16–18.
fn band_of(player: u32) -> AgeBand {
    match player % 100 {
        0..=2 => AgeBand::Under8,
        3..=11 => AgeBand::From8To16,
        12..=19 => AgeBand::From16To18,
        _ => AgeBand::Adult,
    }
}

/// Whether `ts` lies in minors' allowed play time: Fri, Sat or Sun, 20:00–21:00 China time.
pub fn in_minor_window(ts: UnixMillis) -> bool {
    let local = ts.0 + CHINA_OFFSET;
    let day = local.div_euclid(DAY);
    // 1970-01-01 was a Thursday; 0 = Sunday.
    let weekday = (day + 4).rem_euclid(7);
    let hour = local.rem_euclid(DAY) / HOUR;
    matches!(weekday, 5 | 6 | 0) && hour == 20
}

/// The start of the 20:00 China-time hour on the day of `ts`.
fn window_start(ts: UnixMillis) -> UnixMillis {
    let local = ts.0 + CHINA_OFFSET;
    UnixMillis(local.div_euclid(DAY) * DAY + 20 * HOUR - CHINA_OFFSET)
}

/// The game feed's generator.
#[derive(Debug)]
pub struct GameSim {
    rng: ChaCha8Rng,
    records_per_batch: usize,
    tag: String,
    counter: u64,
}

impl GameSim {
    /// A generator making `records_per_batch` sessions and payments per batch.
    pub fn new(mut rng: ChaCha8Rng, records_per_batch: usize) -> GameSim {
        let tag = run_tag(&mut rng);
        GameSim {
            rng,
            records_per_batch: records_per_batch.max(1),
            tag,
            counter: 0,
        }
    }

    fn record_id(&mut self, prefix: &str) -> RecordId {
        self.counter += 1;
        RecordId::new(format!("{prefix}-{}-{:08}", self.tag, self.counter))
            .expect("generated record ids are valid")
    }

    /// A player of a minor band (`minor`) or an adult.
    fn player(&mut self, minor: bool) -> (PersonRef, AgeBand) {
        let block = self.rng.random_range(0..PLAYERS / 100);
        let offset = if minor {
            self.rng.random_range(0..20)
        } else {
            self.rng.random_range(20..100)
        };
        let n = block * 100 + offset;
        let id = PersonRef::new(format!("p-{n:06}")).expect("generated pseudonyms are valid");
        (id, band_of(n))
    }

    fn session(&mut self, now: UnixMillis, interval_ms: i64) -> GameSession {
        let id = self.record_id("gs");
        let in_window = in_minor_window(now);
        let duration = self.rng.random_range(5..=90) * MINUTE;
        let lag = self.rng.random_range(0..=interval_ms.max(1));
        let ongoing = self.rng.random_bool(0.1);
        let guest = self.rng.random_bool(0.01);
        let verified = !guest && self.rng.random_bool(0.98);
        let minor = self.rng.random_bool(if in_window { 0.3 } else { 0.0005 });
        let (player, mut age_band) = self.player(minor);
        if !verified {
            age_band = AgeBand::Unknown;
        }
        let mut end = UnixMillis(now.0 - lag);
        let mut start = UnixMillis(end.0 - duration);
        if minor && in_window && self.rng.random_bool(0.95) {
            // Minors who keep to the rules start inside the window.
            start = start.max(window_start(now));
            end = end.max(start);
        }
        GameSession {
            id,
            player,
            age_band,
            real_name_verified: verified,
            guest,
            start_ms: start,
            end_ms: (!ongoing).then_some(end),
        }
    }

    fn payment(&mut self, now: UnixMillis, interval_ms: i64) -> GamePayment {
        let id = self.record_id("gp");
        let minor = self.rng.random_bool(0.15);
        let (mut player, mut age_band) = self.player(minor);
        // Children under 8 may not pay at all; let only a few such payments through.
        while age_band == AgeBand::Under8 && !self.rng.random_bool(0.05) {
            (player, age_band) = self.player(minor);
        }
        let over_cap = self.rng.random_bool(0.05);
        let choices: &[u64] = match (age_band, over_cap) {
            (AgeBand::Under8, _) => &[600, 1800],
            (AgeBand::From8To16, false) => &[100, 600, 1800, 3000, 4800],
            (AgeBand::From8To16, true) => &[6800, 9800],
            (AgeBand::From16To18, false) => &[600, 1800, 3000, 6800, 9800],
            (AgeBand::From16To18, true) => &[12800, 19800],
            _ => &[600, 3000, 6800, 12800, 32800, 64800],
        };
        let amount_fen = *choices
            .choose(&mut self.rng)
            .expect("choices are not empty");
        GamePayment {
            id,
            player,
            age_band,
            amount_fen,
            ts_ms: UnixMillis(now.0 - self.rng.random_range(0..=interval_ms.max(1))),
        }
    }

    /// One batch of sessions (about 70 %) and payments, all at or before `now`.
    pub fn next_batch(&mut self, agent: &AgentId, now: UnixMillis, interval_ms: u64) -> Batch {
        let interval = interval_ms.min(i64::MAX as u64) as i64;
        let events = (0..self.records_per_batch)
            .map(|_| {
                if self.rng.random_bool(0.7) {
                    Event::GameSession(self.session(now, interval))
                } else {
                    Event::GamePayment(self.payment(now, interval))
                }
            })
            .collect();
        Batch::Events(EventBatch {
            v: Version,
            agent: agent.clone(),
            seq: Seq(0),
            after: None,
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// 2026-11-27 is a Friday; 20:30 China time is 12:30 UTC.
    const FRIDAY_2030_CST: i64 = 1_795_782_600_000;

    #[test]
    fn the_minor_window_is_friday_to_sunday_from_eight_to_nine_pm_china_time() {
        assert!(in_minor_window(UnixMillis(FRIDAY_2030_CST)));
        assert!(in_minor_window(UnixMillis(FRIDAY_2030_CST + 2 * DAY)));
        assert!(!in_minor_window(UnixMillis(FRIDAY_2030_CST + 3 * DAY)));
        assert!(!in_minor_window(UnixMillis(FRIDAY_2030_CST + HOUR)));
        assert!(!in_minor_window(UnixMillis(FRIDAY_2030_CST - DAY)));
    }

    fn week_of_events(seed: u64) -> Vec<(UnixMillis, Event)> {
        let mut sim = GameSim::new(ChaCha8Rng::seed_from_u64(seed), 4);
        let agent = AgentId::new("a").unwrap();
        let mut out = Vec::new();
        let mut now = FRIDAY_2030_CST - 3 * DAY;
        while now < FRIDAY_2030_CST + 4 * DAY {
            let Batch::Events(b) = sim.next_batch(&agent, UnixMillis(now), MINUTE as u64) else {
                panic!("game makes events");
            };
            out.extend(b.events.into_iter().map(|e| (UnixMillis(now), e)));
            now += MINUTE;
        }
        out
    }

    #[test]
    fn timestamps_lie_near_now_and_sessions_end_after_they_start() {
        for (now, e) in week_of_events(1) {
            assert!(e.ts() <= now && now.0 - e.ts().0 <= 2 * HOUR, "{e:?}");
            if let Some(end) = e.end() {
                assert!(end >= e.ts() && end <= now, "{e:?}");
            }
        }
    }

    #[test]
    fn minors_play_mostly_in_the_allowed_window_but_not_always() {
        let (mut inside, mut outside) = (0, 0);
        for (_, e) in week_of_events(2) {
            if let Event::GameSession(s) = e {
                if s.real_name_verified && s.age_band.is_minor() {
                    if in_minor_window(s.start_ms) {
                        inside += 1;
                    } else {
                        outside += 1;
                    }
                }
            }
        }
        assert!(outside > 0, "no violation at all in a week");
        assert!(inside > 3 * outside, "inside {inside}, outside {outside}");
    }

    #[test]
    fn sessions_and_payments_show_rare_violations() {
        let events = week_of_events(3);
        let sessions: Vec<&GameSession> = events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::GameSession(s) => Some(s),
                _ => None,
            })
            .collect();
        let guests = sessions.iter().filter(|s| s.guest).count();
        let unverified = sessions.iter().filter(|s| !s.real_name_verified).count();
        let adults = sessions
            .iter()
            .filter(|s| s.age_band == AgeBand::Adult)
            .count();
        assert!(guests > 0 && guests * 50 < sessions.len(), "{guests}");
        assert!(
            unverified > 0 && unverified * 10 < sessions.len(),
            "{unverified}"
        );
        assert!(adults * 2 > sessions.len());
        let over_cap = events
            .iter()
            .filter(|(_, e)| match e {
                Event::GamePayment(p) => match p.age_band {
                    AgeBand::Under8 => true,
                    AgeBand::From8To16 => p.amount_fen > 5000,
                    AgeBand::From16To18 => p.amount_fen > 10000,
                    _ => false,
                },
                _ => false,
            })
            .count();
        let payments = events.len() - sessions.len();
        assert!(
            over_cap > 0 && over_cap * 20 < payments,
            "{over_cap} of {payments}"
        );
    }
}
