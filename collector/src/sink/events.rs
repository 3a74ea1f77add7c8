//! Event records as points: one point per record, at the record's time, with `count=1i` and
//! 0/1 (or amount) fields for what the compliance dashboards count, so that `sum()` over any
//! interval gives the counts per kind. Sending a record again writes the same point with the
//! same values: idempotent on every server, whichever copy it keeps. (Per-minute totals
//! recomputed and resent were tried first: VictoriaMetrics keeps an arbitrary one of several
//! values written with one timestamp, so a total could come out stale.)

use spotcheck_protocol::{Event, UnixMillis};

use crate::rules::calendar::{Weekday, CHINA_OFFSET_MS};
use crate::rules::{Calendar, ChinaDay};

/// The integer fields of one kind's point, in a fixed order per kind.
pub fn field_names(kind: &str) -> &'static [&'static str] {
    match kind {
        "game_session" => &[
            "count",
            "minor",
            "guest",
            "unverified",
            "minor_outside_window",
        ],
        "game_payment" => &["count", "minor", "amount_fen", "minor_amount_fen"],
        "consultation" => &[
            "count",
            "stand_in",
            "first_visit",
            "under6_no_guardian",
            "doctor_unverified",
        ],
        "prescription" => &["count", "unreviewed", "ai_generated", "controlled_drug"],
        _ => &["count"],
    }
}

/// Whether a minor may play at `ts`: Friday, Saturday, Sunday or a statutory holiday (not a
/// make-up workday), 20:00–21:00 China time (2021 notice art. 1, as in rules/game.toml).
pub fn minor_may_play(ts: UnixMillis, calendar: &Calendar) -> bool {
    let day = ChinaDay::of(ts);
    let play_day = calendar.is_holiday(day)
        || (matches!(day.weekday(), Weekday::Fri | Weekday::Sat | Weekday::Sun)
            && !calendar.is_makeup_workday(day));
    let minute_of_day = (ts.0 + CHINA_OFFSET_MS).rem_euclid(86_400_000) / 60_000;
    play_day && (20 * 60..21 * 60).contains(&minute_of_day)
}

/// Adds one record to a point's fields (laid out as [`field_names`] of its kind).
pub fn accumulate(fields: &mut [i64], event: &Event, calendar: &Calendar) {
    let b = i64::from;
    let add = |fields: &mut [i64], values: &[i64]| {
        for (f, v) in fields.iter_mut().zip(values) {
            *f += v;
        }
    };
    match event {
        Event::GameSession(s) => {
            let minor = s.age_band.is_minor();
            add(
                fields,
                &[
                    1,
                    b(minor),
                    b(s.guest),
                    b(!s.real_name_verified),
                    b(minor && !minor_may_play(s.start_ms, calendar)),
                ],
            )
        }
        Event::GamePayment(p) => {
            let minor = p.age_band.is_minor();
            let amount = i64::try_from(p.amount_fen).unwrap_or(i64::MAX);
            add(
                fields,
                &[1, b(minor), amount, if minor { amount } else { 0 }],
            )
        }
        Event::Consultation(c) => add(
            fields,
            &[
                1,
                b(c.stand_in),
                b(c.visit == spotcheck_protocol::Visit::First),
                b(c.patient_age_years < 6 && !c.guardian_present),
                b(!c.doctor_verified),
            ],
        ),
        Event::Prescription(p) => add(
            fields,
            &[
                1,
                b(p.pharmacist_reviewed_ms.is_none()),
                b(p.ai_generated),
                b(p.controlled_drug),
            ],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32, h: i64, min: i64) -> UnixMillis {
        ChinaDay::from_ymd(y, m, d)
            .unwrap()
            .at((h * 60 + min) * 60_000)
    }

    #[test]
    fn minors_play_only_in_the_friday_to_sunday_evening_hour() {
        let cal = Calendar::empty();
        // 2026-01-02 is a Friday, 2026-01-05 a Monday.
        assert!(minor_may_play(at(2026, 1, 2, 20, 30), &cal));
        assert!(!minor_may_play(at(2026, 1, 2, 21, 0), &cal));
        assert!(!minor_may_play(at(2026, 1, 2, 19, 59), &cal));
        assert!(!minor_may_play(at(2026, 1, 5, 20, 30), &cal));
    }

    #[test]
    fn every_kind_fills_its_fields() {
        for kind in [
            "game_session",
            "game_payment",
            "consultation",
            "prescription",
        ] {
            assert_eq!(field_names(kind)[0], "count");
        }
        let payment: Event = serde_json::from_str(
            r#"{"kind":"game_payment","id":"p1","player":"u1","age_band":"8_to_16","amount_fen":5000,"ts_ms":1}"#,
        )
        .unwrap();
        let mut f = vec![0; field_names("game_payment").len()];
        accumulate(&mut f, &payment, &Calendar::empty());
        accumulate(&mut f, &payment, &Calendar::empty());
        assert_eq!(f, [2, 2, 10_000, 10_000]);
    }
}
