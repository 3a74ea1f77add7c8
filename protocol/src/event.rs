//! Discrete event records from operators' systems: game sessions and payments, consultations
//! and prescriptions. Persons appear only as operator-chosen pseudonyms ([`PersonRef`]).

use serde::{Deserialize, Serialize};

use crate::ids::{Domain, PersonRef, RecordId};
use crate::reading::UnixMillis;

/// A player's age band, as the national real-name verification system reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AgeBand {
    /// Under 8: no payments at all.
    #[serde(rename = "under_8")]
    Under8,
    /// 8 to under 16: ≤ 50 yuan a top-up, ≤ 200 a month.
    #[serde(rename = "8_to_16")]
    From8To16,
    /// 16 to under 18: ≤ 100 yuan a top-up, ≤ 400 a month.
    #[serde(rename = "16_to_18")]
    From16To18,
    /// 18 or older.
    #[serde(rename = "adult")]
    Adult,
    /// Not verified, so not known; rules treat it as a minor.
    #[serde(rename = "unknown")]
    Unknown,
}

impl AgeBand {
    /// Whether the player counts as a minor for the game-time and spending rules.
    pub fn is_minor(self) -> bool {
        !matches!(self, AgeBand::Adult)
    }
}

/// Whether a consultation is a patient's first visit for the condition or a follow-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visit {
    /// A first visit (首诊): not allowed online.
    First,
    /// A follow-up (复诊) of a diagnosis on record.
    FollowUp,
}

/// One play session of one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GameSession {
    /// The operator's session id.
    pub id: RecordId,
    /// The player's pseudonym.
    pub player: PersonRef,
    /// The player's age band.
    pub age_band: AgeBand,
    /// Whether the account passed real-name verification.
    pub real_name_verified: bool,
    /// Whether the session ran in guest mode (no real-name login).
    pub guest: bool,
    /// When the session started.
    pub start_ms: UnixMillis,
    /// When it ended; absent while it still runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<UnixMillis>,
}

/// One top-up payment by a player.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GamePayment {
    /// The operator's payment id.
    pub id: RecordId,
    /// The player's pseudonym.
    pub player: PersonRef,
    /// The player's age band at payment time.
    pub age_band: AgeBand,
    /// The amount in fen (0.01 yuan), so that money is never a float.
    pub amount_fen: u64,
    /// When the payment was made.
    pub ts_ms: UnixMillis,
}

/// One online consultation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consultation {
    /// The hospital's consultation id.
    pub id: RecordId,
    /// The doctor's pseudonym.
    pub doctor: PersonRef,
    /// Whether the doctor's real name was verified right before this consultation.
    pub doctor_verified: bool,
    /// Whether anyone or anything (an AI included) stood in for the doctor.
    pub stand_in: bool,
    /// First visit or follow-up.
    pub visit: Visit,
    /// Whether records with a clear diagnosis back the follow-up status.
    pub diagnosis_on_record: bool,
    /// The patient's age in whole years.
    pub patient_age_years: u8,
    /// Whether a guardian was present (required under 6).
    pub guardian_present: bool,
    /// When the consultation started.
    pub start_ms: UnixMillis,
    /// When it ended; absent while it still runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<UnixMillis>,
}

/// One prescription issued in an online consultation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prescription {
    /// The hospital's prescription id.
    pub id: RecordId,
    /// The consultation it was issued in.
    pub consultation: RecordId,
    /// The prescribing doctor's pseudonym.
    pub doctor: PersonRef,
    /// When the doctor issued it.
    pub issued_ms: UnixMillis,
    /// When a pharmacist approved it; absent if no review happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pharmacist_reviewed_ms: Option<UnixMillis>,
    /// When it took effect (could be dispensed); absent if it has not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_ms: Option<UnixMillis>,
    /// Whether an AI generated it.
    pub ai_generated: bool,
    /// Whether it lists a narcotic or psychotropic drug.
    pub controlled_drug: bool,
}

/// A discrete event record; the JSON carries its variant in `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A game session.
    GameSession(GameSession),
    /// A game top-up payment.
    GamePayment(GamePayment),
    /// An internet-hospital consultation.
    Consultation(Consultation),
    /// An internet-hospital prescription.
    Prescription(Prescription),
}

impl Event {
    /// The record's `kind` as spelled on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::GameSession(_) => "game_session",
            Event::GamePayment(_) => "game_payment",
            Event::Consultation(_) => "consultation",
            Event::Prescription(_) => "prescription",
        }
    }

    /// Every kind, as spelled on the wire, with the domain whose agents may send it.
    pub const KINDS: [(&'static str, Domain); 4] = [
        ("game_session", Domain::Game),
        ("game_payment", Domain::Game),
        ("consultation", Domain::Hospital),
        ("prescription", Domain::Hospital),
    ];

    /// The domain whose agents may send this kind of record: game sessions and payments come
    /// from online-game operators, consultations and prescriptions from internet hospitals.
    pub fn domain(&self) -> Domain {
        match self {
            Event::GameSession(_) | Event::GamePayment(_) => Domain::Game,
            Event::Consultation(_) | Event::Prescription(_) => Domain::Hospital,
        }
    }

    /// The operator's id of the record.
    pub fn id(&self) -> &RecordId {
        match self {
            Event::GameSession(e) => &e.id,
            Event::GamePayment(e) => &e.id,
            Event::Consultation(e) => &e.id,
            Event::Prescription(e) => &e.id,
        }
    }

    /// The time the record is filed under: a start, a payment or an issue time.
    pub fn ts(&self) -> UnixMillis {
        match self {
            Event::GameSession(e) => e.start_ms,
            Event::GamePayment(e) => e.ts_ms,
            Event::Consultation(e) => e.start_ms,
            Event::Prescription(e) => e.issued_ms,
        }
    }

    /// The end time, for records that span an interval.
    pub fn end(&self) -> Option<UnixMillis> {
        match self {
            Event::GameSession(e) => e.end_ms,
            Event::Consultation(e) => e.end_ms,
            Event::GamePayment(_) | Event::Prescription(_) => None,
        }
    }
}
