//! Records as operators' systems write them (one JSON object: a protocol `Reading` or `Event`),
//! parsed and grouped into batches. Shared by the HTTP intake, the file tail and stdin.

use serde::de::DeserializeOwned;
use spotcheck_protocol::{
    check, AgentId, Batch, Domain, Event, EventBatch, Limits, Reading, ReadingBatch, Seq,
    UnixMillis, Version,
};

/// One parsed record.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A numeric reading (`metric`, `value`, `unit`, `ts_ms`, optional `quality`).
    Reading(Reading),
    /// A discrete record, tagged by `kind`.
    Event(Event),
}

/// Why a record was refused; the text says what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not JSON at all.
    #[error("not valid JSON: {0}")]
    Malformed(String),
    /// JSON, but not a valid record (names the field), or a batch the protocol refuses.
    #[error("{0}")]
    Invalid(String),
}

impl RecordError {
    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::Malformed(_) => "malformed_json",
            RecordError::Invalid(_) => "invalid_record",
        }
    }
}

fn typed<T: DeserializeOwned>(value: serde_json::Value, at: &str) -> Result<T, RecordError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            at.to_owned()
        } else {
            format!("{at}.{path}")
        };
        RecordError::Invalid(format!("{field}: {}", e.inner()))
    })
}

/// Parses one JSON object: with a `kind` it is an event, with a `metric` a reading. `at`
/// names it in errors (`record`, `records[3]`, `line 12`).
pub fn parse_value(value: serde_json::Value, at: &str) -> Result<Item, RecordError> {
    let Some(obj) = value.as_object() else {
        return Err(RecordError::Invalid(format!(
            "{at}: expected a JSON object (a reading with `metric` or an event with `kind`)"
        )));
    };
    if obj.contains_key("kind") {
        typed(value, at).map(Item::Event)
    } else if obj.contains_key("metric") {
        typed(value, at).map(Item::Reading)
    } else {
        Err(RecordError::Invalid(format!(
            "{at}: has neither `kind` (an event) nor `metric` (a reading)"
        )))
    }
}

/// Parses one JSON text holding a record.
pub fn parse_line(text: &[u8], at: &str) -> Result<Item, RecordError> {
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| RecordError::Malformed(format!("{at}: {e}")))?;
    parse_value(value, at)
}

/// The domain an event kind belongs to.
pub fn event_domain(event: &Event) -> Domain {
    match event {
        Event::GameSession(_) | Event::GamePayment(_) => Domain::Game,
        Event::Consultation(_) | Event::Prescription(_) => Domain::Hospital,
    }
}

/// Builds one checked batch (seq 0, set by the spool) from items of one kind, refusing events
/// of another domain than the agent's, a mix of readings and events, and anything
/// `protocol::check` refuses (limits, units, times).
pub fn batch_of(
    agent: &AgentId,
    domain: Domain,
    items: Vec<Item>,
    now: UnixMillis,
) -> Result<Batch, RecordError> {
    let mut kinds = (false, false);
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Reading(_) => kinds.0 = true,
            Item::Event(e) => {
                kinds.1 = true;
                let d = event_domain(e);
                if d != domain {
                    return Err(RecordError::Invalid(format!(
                        "records[{i}]: a {} record belongs to the {d} domain but this agent reports for {domain}",
                        e.kind()
                    )));
                }
            }
        }
    }
    if kinds == (true, true) {
        return Err(RecordError::Invalid(
            "readings and events mixed; send them in separate requests or lines".into(),
        ));
    }
    let batch = assemble(agent, items);
    let limits = Limits::default();
    let batch = check(batch, &limits, now)
        .map(|b| b.into_inner())
        .map_err(|e| RecordError::Invalid(format!("{} ({})", e, e.code())))?;
    let bytes = batch.encode().len();
    if bytes > limits.max_payload_bytes {
        return Err(RecordError::Invalid(format!(
            "the records make a {bytes}-byte payload; the limit is {}: send fewer per request",
            limits.max_payload_bytes
        )));
    }
    Ok(batch)
}

/// The batch of `items` without any check: readings if the first item is a reading, else
/// events (items of the other kind are left out; [`batch_of`] refuses a mix).
pub fn assemble(agent: &AgentId, items: Vec<Item>) -> Batch {
    if matches!(items.first(), Some(Item::Reading(_))) {
        Batch::Readings(ReadingBatch {
            v: Version,
            agent: agent.clone(),
            seq: Seq(0),
            after: None,
            readings: items
                .into_iter()
                .filter_map(|i| match i {
                    Item::Reading(r) => Some(r),
                    Item::Event(_) => None,
                })
                .collect(),
        })
    } else {
        Batch::Events(EventBatch {
            v: Version,
            agent: agent.clone(),
            seq: Seq(0),
            after: None,
            events: items
                .into_iter()
                .filter_map(|i| match i {
                    Item::Event(e) => Some(e),
                    Item::Reading(_) => None,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> AgentId {
        AgentId::new("a-1").unwrap()
    }

    #[test]
    fn a_reading_and_an_event_are_told_apart() {
        let now = UnixMillis::now();
        let r = format!(
            r#"{{"metric":"ph","value":7.2,"unit":"pH","ts_ms":{}}}"#,
            now.0
        );
        assert!(matches!(
            parse_line(r.as_bytes(), "line 1"),
            Ok(Item::Reading(_))
        ));
        let e = parse_line(br#"{"kind":"game_payment","id":"p"}"#, "line 2").unwrap_err();
        assert!(e.to_string().starts_with("line 2"), "{e}");
        assert_eq!(e.code(), "invalid_record");
        let e = parse_line(b"{nope", "line 3").unwrap_err();
        assert_eq!(e.code(), "malformed_json");
        let e = parse_line(b"[1]", "line 4").unwrap_err();
        assert!(e.to_string().contains("expected a JSON object"), "{e}");
    }

    #[test]
    fn a_batch_refuses_foreign_events_mixes_and_what_the_protocol_refuses() {
        let now = UnixMillis::now();
        let reading = |unit: &str| {
            parse_line(
                format!(
                    r#"{{"metric":"ph","value":7.2,"unit":"{unit}","ts_ms":{}}}"#,
                    now.0
                )
                .as_bytes(),
                "r",
            )
            .unwrap()
        };
        assert!(batch_of(&agent(), Domain::Pool, vec![reading("pH")], now).is_ok());
        let e = batch_of(&agent(), Domain::Pool, vec![reading("mV")], now).unwrap_err();
        assert!(e.to_string().contains("unit_mismatch"), "{e}");
        assert!(batch_of(&agent(), Domain::Pool, vec![], now).is_err());
    }
}
