use spotcheck_protocol::{
    AgeBand, Consultation, GamePayment, PersonRef, Prescription, RecordId, Visit,
};

use super::*;

const HOUR: i64 = 60 * MINUTE_MS;

fn caps() -> SpendingCaps {
    SpendingCaps {
        under_8: Some(Cap {
            per_top_up_fen: 0,
            per_month_fen: 0,
        }),
        from_8_to_16: Some(Cap {
            per_top_up_fen: 5_000,
            per_month_fen: 20_000,
        }),
        from_16_to_18: Some(Cap {
            per_top_up_fen: 10_000,
            per_month_fen: 40_000,
        }),
    }
}

fn session(band: AgeBand, start: UnixMillis, minutes: i64) -> Event {
    Event::GameSession(GameSession {
        id: RecordId::new("s1").unwrap(),
        player: PersonRef::new("p1").unwrap(),
        age_band: band,
        real_name_verified: band != AgeBand::Unknown,
        guest: false,
        start_ms: start,
        end_ms: Some(UnixMillis(start.0 + minutes * MINUTE_MS)),
    })
}

fn payment(band: AgeBand, fen: u64, ts: UnixMillis) -> GamePayment {
    GamePayment {
        id: RecordId::new("g1").unwrap(),
        player: PersonRef::new("p1").unwrap(),
        age_band: band,
        amount_fen: fen,
        ts_ms: ts,
    }
}

fn check(p: Predicate, e: &Event) -> bool {
    let cal = Calendar::china_default();
    let play = MinorPlay::default();
    let caps = caps();
    let ctx = PredicateContext {
        calendar: &cal,
        minor_play: &play,
        caps: &caps,
        received: UnixMillis(e.ts().0 + 3 * HOUR),
    };
    violates(p, e, &ctx).expect("predicate applies")
}

fn at(y: i32, m: u32, d: u32, hour: i64, minute: i64) -> UnixMillis {
    ChinaDay::from_ymd(y, m, d)
        .unwrap()
        .at(hour * HOUR + minute * MINUTE_MS)
}

#[test]
fn minors_may_play_on_a_friday_from_eight_to_nine_pm() {
    // 2026-11-27 is a Friday.
    assert!(!check(
        Predicate::MinorOutsideWindow,
        &session(AgeBand::From8To16, at(2026, 11, 27, 20, 0), 60)
    ));
    assert!(check(
        Predicate::MinorOutsideWindow,
        &session(AgeBand::From8To16, at(2026, 11, 27, 19, 59), 30)
    ));
    assert!(check(
        Predicate::MinorOutsideWindow,
        &session(AgeBand::From8To16, at(2026, 11, 27, 20, 30), 31)
    ));
}

#[test]
fn minors_may_play_on_a_statutory_holiday_weekday() {
    // 2026-02-17 (春节) is a Tuesday.
    assert!(!check(
        Predicate::MinorOutsideWindow,
        &session(AgeBand::From16To18, at(2026, 2, 17, 20, 10), 40)
    ));
    assert!(check(
        Predicate::MinorOutsideWindow,
        &session(AgeBand::From16To18, at(2026, 2, 17, 21, 0), 10)
    ));
}

#[test]
fn minors_may_not_play_on_a_makeup_working_saturday() {
    // 2023-01-28 is a Saturday worked instead of a Spring Festival day.
    assert!(check(
        Predicate::MinorOutsideWindow,
        &session(AgeBand::Under8, at(2023, 1, 28, 20, 0), 30)
    ));
    // The Saturday a week later is an ordinary play day.
    assert!(!check(
        Predicate::MinorOutsideWindow,
        &session(AgeBand::Under8, at(2023, 2, 4, 20, 0), 30)
    ));
}

#[test]
fn minors_may_not_play_on_a_normal_weekday_but_adults_may() {
    // 2026-11-25 is a Wednesday.
    assert!(check(
        Predicate::MinorOutsideWindow,
        &session(AgeBand::From8To16, at(2026, 11, 25, 20, 0), 30)
    ));
    assert!(!check(
        Predicate::MinorOutsideWindow,
        &session(AgeBand::Adult, at(2026, 11, 25, 20, 0), 30)
    ));
    // An unverified player counts as a minor.
    assert!(check(
        Predicate::MinorOutsideWindow,
        &session(AgeBand::Unknown, at(2026, 11, 25, 20, 0), 30)
    ));
}

#[test]
fn a_minor_session_of_exactly_60_minutes_is_allowed_and_61_is_not() {
    assert!(!check(
        Predicate::MinorOver60m,
        &session(AgeBand::From8To16, at(2026, 11, 27, 20, 0), 60)
    ));
    assert!(check(
        Predicate::MinorOver60m,
        &session(AgeBand::From8To16, at(2026, 11, 27, 20, 0), 61)
    ));
    assert!(!check(
        Predicate::MinorOver60m,
        &session(AgeBand::Adult, at(2026, 11, 27, 20, 0), 300)
    ));
}

#[test]
fn top_up_caps_follow_the_age_band() {
    let t = at(2026, 11, 27, 12, 0);
    let p = |band, fen| Event::GamePayment(payment(band, fen, t));
    assert!(check(Predicate::MinorOverTopUpCap, &p(AgeBand::Under8, 1)));
    assert!(!check(
        Predicate::MinorOverTopUpCap,
        &p(AgeBand::From8To16, 5_000)
    ));
    assert!(check(
        Predicate::MinorOverTopUpCap,
        &p(AgeBand::From8To16, 5_001)
    ));
    assert!(!check(
        Predicate::MinorOverTopUpCap,
        &p(AgeBand::From16To18, 10_000)
    ));
    assert!(check(
        Predicate::MinorOverTopUpCap,
        &p(AgeBand::From16To18, 10_001)
    ));
    assert!(!check(
        Predicate::MinorOverTopUpCap,
        &p(AgeBand::Adult, 1_000_000)
    ));
    assert!(check(
        Predicate::MinorOverTopUpCap,
        &p(AgeBand::Unknown, 100)
    ));
}

#[test]
fn monthly_sums_restart_at_midnight_china_time_on_the_first() {
    let caps = caps();
    let mut spend = MonthlySpend::default();
    // 8-16: 200 yuan a month. 4 × 50 yuan on 30 November is exactly the cap.
    for _ in 0..4 {
        assert!(!spend.add(
            &payment(AgeBand::From8To16, 5_000, at(2026, 11, 30, 10, 0)),
            &caps
        ));
    }
    // 23:59 on 30 November China time (15:59 UTC) still belongs to November.
    assert!(spend.add(
        &payment(AgeBand::From8To16, 100, at(2026, 11, 30, 23, 59)),
        &caps
    ));
    // 00:00 on 1 December China time is 16:00 UTC on 30 November: a new month.
    let december = at(2026, 12, 1, 0, 0);
    let utc_midnight_nov_30 = ChinaDay::from_ymd(2026, 11, 30).unwrap().0 * 24 * HOUR;
    assert_eq!(december, UnixMillis(utc_midnight_nov_30 + 16 * HOUR));
    assert!(!spend.add(&payment(AgeBand::From8To16, 5_000, december), &caps));
    assert_eq!(spend.players(), 1);
}

#[test]
fn the_16_to_18_monthly_cap_is_400_yuan() {
    let caps = caps();
    let mut spend = MonthlySpend::default();
    let t = at(2026, 11, 2, 10, 0);
    for _ in 0..4 {
        assert!(!spend.add(&payment(AgeBand::From16To18, 10_000, t), &caps));
    }
    assert!(spend.add(&payment(AgeBand::From16To18, 1, t), &caps));
    assert!(!spend.add(&payment(AgeBand::Adult, 1_000_000, t), &caps));
}

fn consultation() -> Consultation {
    Consultation {
        id: RecordId::new("c1").unwrap(),
        doctor: PersonRef::new("d1").unwrap(),
        doctor_verified: true,
        stand_in: false,
        visit: Visit::FollowUp,
        diagnosis_on_record: true,
        patient_age_years: 30,
        guardian_present: false,
        start_ms: UnixMillis(0),
        end_ms: Some(UnixMillis(600_000)),
    }
}

#[test]
fn hospital_consultation_predicates() {
    let ok = consultation();
    for p in [
        Predicate::DoctorUnverified,
        Predicate::StandIn,
        Predicate::FirstVisit,
        Predicate::FollowupWithoutDiagnosis,
        Predicate::Under6WithoutGuardian,
    ] {
        assert!(!check(p, &Event::Consultation(ok.clone())), "{p}");
    }
    let bad = |f: fn(&mut Consultation)| {
        let mut c = consultation();
        f(&mut c);
        Event::Consultation(c)
    };
    assert!(check(
        Predicate::DoctorUnverified,
        &bad(|c| c.doctor_verified = false)
    ));
    assert!(check(Predicate::StandIn, &bad(|c| c.stand_in = true)));
    assert!(check(
        Predicate::FirstVisit,
        &bad(|c| c.visit = Visit::First)
    ));
    assert!(check(
        Predicate::FollowupWithoutDiagnosis,
        &bad(|c| c.diagnosis_on_record = false)
    ));
    assert!(check(
        Predicate::Under6WithoutGuardian,
        &bad(|c| c.patient_age_years = 5)
    ));
    assert!(!check(
        Predicate::Under6WithoutGuardian,
        &bad(|c| c.patient_age_years = 6)
    ));
    assert!(!check(
        Predicate::Under6WithoutGuardian,
        &bad(|c| {
            c.patient_age_years = 2;
            c.guardian_present = true;
        })
    ));
}

#[test]
fn hospital_prescription_predicates() {
    let rx = |reviewed: Option<i64>, effective: Option<i64>| {
        Event::Prescription(Prescription {
            id: RecordId::new("rx1").unwrap(),
            consultation: RecordId::new("c1").unwrap(),
            doctor: PersonRef::new("d1").unwrap(),
            issued_ms: UnixMillis(0),
            pharmacist_reviewed_ms: reviewed.map(UnixMillis),
            effective_ms: effective.map(UnixMillis),
            ai_generated: false,
            controlled_drug: false,
        })
    };
    assert!(!check(
        Predicate::EffectiveBeforeReview,
        &rx(Some(10), Some(20))
    ));
    assert!(!check(
        Predicate::EffectiveBeforeReview,
        &rx(Some(10), Some(10))
    ));
    assert!(check(
        Predicate::EffectiveBeforeReview,
        &rx(Some(30), Some(20))
    ));
    assert!(check(Predicate::EffectiveBeforeReview, &rx(None, Some(20))));
    assert!(!check(Predicate::EffectiveBeforeReview, &rx(None, None)));
    let Event::Prescription(mut p) = rx(Some(1), Some(2)) else {
        unreachable!()
    };
    p.ai_generated = true;
    p.controlled_drug = true;
    let e = Event::Prescription(p);
    assert!(check(Predicate::AiGenerated, &e));
    assert!(check(Predicate::ControlledDrug, &e));
}

#[test]
fn a_predicate_does_not_apply_to_another_kind() {
    let cal = Calendar::empty();
    let play = MinorPlay::default();
    let caps = caps();
    let ctx = PredicateContext {
        calendar: &cal,
        minor_play: &play,
        caps: &caps,
        received: UnixMillis(0),
    };
    assert_eq!(
        violates(Predicate::Guest, &Event::Consultation(consultation()), &ctx),
        None
    );
}

#[test]
fn a_day_of_a_year_the_calendar_does_not_list_is_never_judged_by_the_weekday_alone() {
    // 2027-02-08 (a Monday) falls in the Spring Festival, but the default calendar stops at
    // 2026: the weekday rule alone would call a minor's evening session a violation.
    let cal = Calendar::china_default();
    let monday = session(AgeBand::From8To16, at(2027, 2, 8, 20, 0), 30);
    assert!(!judgeable(Predicate::MinorOutsideWindow, &monday, &cal));
    assert!(!check(Predicate::MinorOutsideWindow, &monday));
    // An adult's session, and every other predicate, need no calendar.
    let adult = session(AgeBand::Adult, at(2027, 2, 8, 20, 0), 30);
    assert!(judgeable(Predicate::MinorOutsideWindow, &adult, &cal));
    assert!(judgeable(Predicate::Guest, &monday, &cal));
    // Inside the listed years the same Monday evening is judged: a violation.
    let covered = session(AgeBand::From8To16, at(2026, 11, 30, 20, 0), 30);
    assert!(judgeable(Predicate::MinorOutsideWindow, &covered, &cal));
    assert!(check(Predicate::MinorOutsideWindow, &covered));
}
