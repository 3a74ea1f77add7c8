//! Internet hospital: consultations and the prescriptions issued in them.
//!
//! Most consultations are follow-ups of a diagnosis on record by a doctor verified right before;
//! first visits, unverified doctors, stand-ins and children under 6 without a guardian are
//! occasional. Most prescriptions take effect after a pharmacist's review; a few take effect
//! before it or without one, and AI-generated or controlled-drug prescriptions are rare.
//! A record is reported after it is complete, so every timestamp lies before the clock reading.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use spotcheck_protocol::{
    AgentId, Batch, Consultation, Event, EventBatch, PersonRef, Prescription, RecordId, Seq,
    UnixMillis, Version, Visit,
};

use super::run_tag;

const MINUTE: i64 = 60_000;
const DOCTORS: u32 = 300;

/// The hospital feed's generator.
#[derive(Debug)]
pub struct HospitalSim {
    rng: ChaCha8Rng,
    records_per_batch: usize,
    tag: String,
    counter: u64,
}

impl HospitalSim {
    /// A generator making `records_per_batch` consultations (and their prescriptions) per batch.
    pub fn new(mut rng: ChaCha8Rng, records_per_batch: usize) -> HospitalSim {
        let tag = run_tag(&mut rng);
        HospitalSim {
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

    fn patient_age(&mut self) -> u8 {
        if self.rng.random_bool(0.06) {
            self.rng.random_range(0..6)
        } else {
            self.rng.random_range(6..=92)
        }
    }

    fn consultation(&mut self, now: UnixMillis) -> Consultation {
        let id = self.record_id("c");
        let doctor = self.rng.random_range(0..DOCTORS);
        let doctor =
            PersonRef::new(format!("d-{doctor:06}")).expect("generated pseudonyms are valid");
        let first = self.rng.random_bool(0.05);
        let patient_age_years = self.patient_age();
        let guardian_present = if patient_age_years < 6 {
            self.rng.random_bool(0.85)
        } else if patient_age_years < 18 {
            self.rng.random_bool(0.7)
        } else {
            false
        };
        // Ended 12 to 40 minutes ago, lasted 5 to 25: the prescription (up to 11 minutes after
        // the end) is then effective before `now` too.
        let end = now.0 - self.rng.random_range(12 * MINUTE..=40 * MINUTE);
        let start = end - self.rng.random_range(5 * MINUTE..=25 * MINUTE);
        Consultation {
            id,
            doctor,
            doctor_verified: self.rng.random_bool(0.97),
            stand_in: self.rng.random_bool(0.01),
            visit: if first { Visit::First } else { Visit::FollowUp },
            diagnosis_on_record: if first {
                self.rng.random_bool(0.1)
            } else {
                self.rng.random_bool(0.97)
            },
            patient_age_years,
            guardian_present,
            start_ms: UnixMillis(start),
            end_ms: Some(UnixMillis(end)),
        }
    }

    fn prescription(&mut self, c: &Consultation) -> Prescription {
        let id = self.record_id("rx");
        let end = c.end_ms.unwrap_or(c.start_ms).0;
        let issued = end
            - self
                .rng
                .random_range(0..=2 * MINUTE)
                .min(end - c.start_ms.0);
        let roll: f64 = self.rng.random();
        let (reviewed, effective) = if roll < 0.93 {
            let r = issued + self.rng.random_range(MINUTE..=8 * MINUTE);
            (Some(r), r + self.rng.random_range(MINUTE / 2..=3 * MINUTE))
        } else if roll < 0.97 {
            // Took effect before the pharmacist looked at it.
            let e = issued + self.rng.random_range(MINUTE / 2..=2 * MINUTE);
            (Some(e + self.rng.random_range(MINUTE..=5 * MINUTE)), e)
        } else {
            (
                None,
                issued + self.rng.random_range(MINUTE / 2..=2 * MINUTE),
            )
        };
        Prescription {
            id,
            consultation: c.id.clone(),
            doctor: c.doctor.clone(),
            issued_ms: UnixMillis(issued),
            pharmacist_reviewed_ms: reviewed.map(UnixMillis),
            effective_ms: Some(UnixMillis(effective)),
            ai_generated: self.rng.random_bool(0.005),
            controlled_drug: self.rng.random_bool(0.005),
        }
    }

    /// One batch of consultations, about 60 % of them followed by a prescription.
    pub fn next_batch(&mut self, agent: &AgentId, now: UnixMillis, _interval_ms: u64) -> Batch {
        let mut events = Vec::with_capacity(self.records_per_batch * 2);
        for _ in 0..self.records_per_batch {
            let c = self.consultation(now);
            let rx = self.rng.random_bool(0.6).then(|| self.prescription(&c));
            events.push(Event::Consultation(c));
            events.extend(rx.map(Event::Prescription));
        }
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

    fn events(seed: u64, batches: i64) -> Vec<(UnixMillis, Event)> {
        let mut sim = HospitalSim::new(ChaCha8Rng::seed_from_u64(seed), 3);
        let agent = AgentId::new("a").unwrap();
        let mut out = Vec::new();
        for i in 0..batches {
            let now = UnixMillis(1_795_000_000_000 + i * MINUTE);
            let Batch::Events(b) = sim.next_batch(&agent, now, MINUTE as u64) else {
                panic!("hospital makes events");
            };
            out.extend(b.events.into_iter().map(|e| (now, e)));
        }
        out
    }

    #[test]
    fn records_are_complete_before_now_and_prescriptions_follow_their_consultation() {
        let evs = events(1, 2000);
        for (i, (now, e)) in evs.iter().enumerate() {
            match e {
                Event::Consultation(c) => {
                    assert!(c.start_ms <= c.end_ms.unwrap() && c.end_ms.unwrap() < *now);
                }
                Event::Prescription(p) => {
                    let Event::Consultation(c) = &evs[i - 1].1 else {
                        panic!("a prescription follows its consultation");
                    };
                    assert_eq!(p.consultation, c.id);
                    assert!(p.issued_ms >= c.start_ms && p.issued_ms <= c.end_ms.unwrap());
                    assert!(p.effective_ms.unwrap() < *now);
                    assert!(p.pharmacist_reviewed_ms.is_none_or(|r| r < *now));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn violations_are_present_but_rare() {
        let evs = events(2, 5000);
        let (mut cons, mut first, mut unverified, mut child_alone) = (0, 0, 0, 0);
        let (mut rx, mut early, mut unreviewed, mut ai, mut controlled) = (0, 0, 0, 0, 0);
        for (_, e) in &evs {
            match e {
                Event::Consultation(c) => {
                    cons += 1;
                    first += usize::from(c.visit == Visit::First);
                    unverified += usize::from(!c.doctor_verified);
                    child_alone += usize::from(c.patient_age_years < 6 && !c.guardian_present);
                }
                Event::Prescription(p) => {
                    rx += 1;
                    match p.pharmacist_reviewed_ms {
                        None => unreviewed += 1,
                        Some(r) if p.effective_ms.unwrap() < r => early += 1,
                        Some(_) => {}
                    }
                    ai += usize::from(p.ai_generated);
                    controlled += usize::from(p.controlled_drug);
                }
                _ => unreachable!(),
            }
        }
        for (name, n, of) in [
            ("first visits", first, cons),
            ("unverified doctors", unverified, cons),
            ("children without guardian", child_alone, cons),
            ("effective before review", early, rx),
            ("never reviewed", unreviewed, rx),
            ("ai generated", ai, rx),
            ("controlled drugs", controlled, rx),
        ] {
            assert!(n > 0 && n * 10 < of, "{name}: {n} of {of}");
        }
    }
}
