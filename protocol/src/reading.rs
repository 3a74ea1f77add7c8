//! Numeric readings: what a sensor or analyser measured, with its unit and time.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A point in time as milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// The current wall-clock time.
    pub fn now() -> UnixMillis {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        UnixMillis(d.as_millis() as i64)
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// A unit of measure. The wire spelling follows UCUM where one exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unit {
    /// Milligrams per litre (chlorine, combined chlorine).
    #[serde(rename = "mg/L")]
    MilligramPerLitre,
    /// The pH scale (dimensionless).
    #[serde(rename = "pH")]
    Ph,
    /// Nephelometric turbidity units.
    #[serde(rename = "NTU")]
    Ntu,
    /// Millivolts (oxidation-reduction potential).
    #[serde(rename = "mV")]
    Millivolt,
    /// Degrees Celsius.
    #[serde(rename = "Cel")]
    Celsius,
    /// Cubic metres (make-up water volume).
    #[serde(rename = "m3")]
    CubicMetre,
    /// Percent.
    #[serde(rename = "%")]
    Percent,
    /// A plain count (dimensionless).
    #[serde(rename = "1")]
    Count,
}

impl Unit {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::MilligramPerLitre => "mg/L",
            Unit::Ph => "pH",
            Unit::Ntu => "NTU",
            Unit::Millivolt => "mV",
            Unit::Celsius => "Cel",
            Unit::CubicMetre => "m3",
            Unit::Percent => "%",
            Unit::Count => "1",
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest metric name accepted, in bytes.
pub const MAX_METRIC_LEN: usize = 64;

/// What was measured: `snake_case`, ASCII, at most [`MAX_METRIC_LEN`] bytes.
///
/// The metrics the default rule packs know have a fixed unit ([`Metric::expected_unit`]); other
/// metrics (from a Modbus register map, say) are stored as sent.
///
/// A well-known metric is held as a reference to its [`MetricSpec`], so decoding one costs no
/// allocation and [`Metric::spec`] no search: at batches of 100 readings, the per-reading
/// `String` and the two searches of [`METRICS`] (range check, domain check) were a measurable
/// part of decoding (BENCHMARKS.md, issue 17). Equality, order and hashing are those of the name.
#[derive(Clone)]
pub struct Metric(Name);

#[derive(Clone)]
enum Name {
    /// A metric of [`METRICS`]; never held as `Other`.
    Known(&'static MetricSpec),
    /// Any other valid name.
    Other(String),
}

/// Why a string is not a metric name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metric name {0:?} is invalid; use 1 to {MAX_METRIC_LEN} characters from a-z 0-9 _")]
pub struct MetricError(pub String);

/// Whether `s` is a valid metric name.
fn valid_metric(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_METRIC_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Metric {
    /// Free residual chlorine, mg/L (GB 37488-2019: 0.3–1.0).
    pub const FREE_CHLORINE: &'static str = "free_chlorine";
    /// Combined chlorine, mg/L (GB 37488-2019: ≤ 0.4).
    pub const COMBINED_CHLORINE: &'static str = "combined_chlorine";
    /// pH (GB 37488-2019: 7.0–7.8).
    pub const PH: &'static str = "ph";
    /// Turbidity, NTU (GB 37488-2019: ≤ 1).
    pub const TURBIDITY: &'static str = "turbidity";
    /// Oxidation-reduction potential, mV (≥ 650).
    pub const ORP: &'static str = "orp";
    /// Water temperature, °C.
    pub const WATER_TEMPERATURE: &'static str = "water_temperature";
    /// Make-up water volume since the previous reading, m³ (a proxy for urea).
    pub const MAKEUP_WATER: &'static str = "makeup_water";

    /// Checks `s` and wraps it.
    pub fn new(s: impl Into<String>) -> Result<Metric, MetricError> {
        let s = s.into();
        if let Some(spec) = MetricSpec::find(&s) {
            return Ok(Metric(Name::Known(spec)));
        }
        if valid_metric(&s) {
            Ok(Metric(Name::Other(s)))
        } else {
            Err(MetricError(s))
        }
    }

    /// Checks `s` and wraps it, copying it only if it is not a well-known metric.
    pub fn from_str_ref(s: &str) -> Result<Metric, MetricError> {
        if let Some(spec) = MetricSpec::find(s) {
            return Ok(Metric(Name::Known(spec)));
        }
        if valid_metric(s) {
            Ok(Metric(Name::Other(s.to_owned())))
        } else {
            Err(MetricError(s.to_owned()))
        }
    }

    /// The metric name.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Name::Known(spec) => spec.name,
            Name::Other(s) => s,
        }
    }

    /// The unit a well-known metric must carry, or `None` for a metric Spotcheck does not know.
    pub fn expected_unit(&self) -> Option<Unit> {
        self.spec().map(|s| s.unit)
    }

    /// What Spotcheck knows of this metric (unit, domain, physically possible range), or
    /// `None` for a metric it does not know (stored as sent).
    pub fn spec(&self) -> Option<&'static MetricSpec> {
        match self.0 {
            Name::Known(spec) => Some(spec),
            Name::Other(_) => None,
        }
    }
}

impl PartialEq for Metric {
    fn eq(&self, other: &Metric) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Metric {}

impl std::hash::Hash for Metric {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for Metric {
    fn partial_cmp(&self, other: &Metric) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Metric {
    fn cmp(&self, other: &Metric) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Metric").field(&self.as_str()).finish()
    }
}

impl Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Metric, D::Error> {
        // Reads the string, then checks it, as `#[serde(try_from = "String")]` did: the check's
        // error is raised after the string is read, so serde_json reports it at the same
        // position as before (dead-letter reasons quote it). Only a name that is not a
        // well-known metric is copied.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Result<Metric, MetricError>;
            // The same words as `String`'s visitor, which this replaces.
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Metric::from_str_ref(s))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Metric::new(s))
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Self::Value, E> {
                match std::str::from_utf8(b) {
                    Ok(s) => self.visit_str(s),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(b), &self)),
                }
            }
        }
        d.deserialize_string(V)?.map_err(serde::de::Error::custom)
    }
}

/// A well-known metric: its unit, the domain it belongs to and the values it can physically
/// take. A value outside the range cannot be a measurement (a broken probe, a wrong register
/// map, a forged feed); the collector keeps it with quality `bad`, so it counts as missing data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpec {
    /// The metric name.
    pub name: &'static str,
    /// The unit it must carry.
    pub unit: Unit,
    /// The domain whose agents may send it.
    pub domain: crate::ids::Domain,
    /// The lowest physically possible value, inclusive.
    pub min: Option<f64>,
    /// The highest physically possible value, inclusive.
    pub max: Option<f64>,
    /// One line for people: what it is and why the range.
    pub about: &'static str,
}

/// Every metric Spotcheck knows; published in the JSON Schema (`$defs/Metrics`) and in
/// `docs/protocol.md`.
pub const METRICS: &[MetricSpec] = &[
    MetricSpec {
        name: Metric::FREE_CHLORINE,
        unit: Unit::MilligramPerLitre,
        domain: crate::ids::Domain::Pool,
        min: Some(0.0),
        max: None,
        about: "free residual chlorine; a concentration cannot be negative (GB 37488-2019 limit 0.3-1.0)",
    },
    MetricSpec {
        name: Metric::COMBINED_CHLORINE,
        unit: Unit::MilligramPerLitre,
        domain: crate::ids::Domain::Pool,
        min: Some(0.0),
        max: None,
        about: "combined chlorine; a concentration cannot be negative (GB 37488-2019 limit <= 0.4)",
    },
    MetricSpec {
        name: Metric::PH,
        unit: Unit::Ph,
        domain: crate::ids::Domain::Pool,
        min: Some(0.0),
        max: Some(14.0),
        about: "pH of water, 0-14 (GB 37488-2019 limit 7.0-7.8)",
    },
    MetricSpec {
        name: Metric::TURBIDITY,
        unit: Unit::Ntu,
        domain: crate::ids::Domain::Pool,
        min: Some(0.0),
        max: None,
        about: "turbidity; cannot be negative (GB 37488-2019 limit <= 1 NTU)",
    },
    MetricSpec {
        name: Metric::ORP,
        unit: Unit::Millivolt,
        domain: crate::ids::Domain::Pool,
        min: Some(-2000.0),
        max: Some(2000.0),
        about: "oxidation-reduction potential; ORP probes read within +-2000 mV (rule: >= 650)",
    },
    MetricSpec {
        name: Metric::WATER_TEMPERATURE,
        unit: Unit::Celsius,
        domain: crate::ids::Domain::Pool,
        min: Some(0.0),
        max: Some(100.0),
        about: "water temperature; pool water is liquid, 0-100 Cel",
    },
    MetricSpec {
        name: Metric::MAKEUP_WATER,
        unit: Unit::CubicMetre,
        domain: crate::ids::Domain::Pool,
        min: Some(0.0),
        max: None,
        about: "make-up water since the previous reading; a volume cannot be negative",
    },
];

impl MetricSpec {
    /// The spec of metric `name`, if Spotcheck knows it.
    pub fn find(name: &str) -> Option<&'static MetricSpec> {
        METRICS.iter().find(|m| m.name == name)
    }

    /// Whether `value` lies in the physically possible range.
    pub fn possible(&self, value: f64) -> bool {
        self.min.is_none_or(|min| value >= min) && self.max.is_none_or(|max| value <= max)
    }
}

impl TryFrom<String> for Metric {
    type Error = MetricError;
    fn try_from(s: String) -> Result<Self, MetricError> {
        Metric::new(s)
    }
}

impl From<Metric> for String {
    fn from(m: Metric) -> String {
        match m.0 {
            Name::Known(spec) => spec.name.to_owned(),
            Name::Other(s) => s,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a reading can be trusted, as the source reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// A normal measurement.
    #[default]
    Good,
    /// The instrument flagged the value as doubtful (calibrating, drifting).
    Uncertain,
    /// The instrument reported a fault; the value is kept but counts as missing data.
    Bad,
}

impl Quality {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Uncertain => "uncertain",
            Quality::Bad => "bad",
        }
    }
}

/// One numeric measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reading {
    /// What was measured.
    pub metric: Metric,
    /// The measured value; it must be finite.
    pub value: f64,
    /// The unit of `value`.
    pub unit: Unit,
    /// When it was measured, Unix milliseconds UTC.
    pub ts_ms: UnixMillis,
    /// How far the value can be trusted; `good` when absent.
    #[serde(default)]
    pub quality: Quality,
}
