//! Which routes an event takes, and the group and identity it has on each.

use super::config::{Label, Route, Rules};
use super::event::Event;

/// One place an event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The route's name.
    pub route: String,
    /// The channel's name.
    pub channel: String,
    /// The group the event joins on that channel (its `group_by` labels' values).
    pub group_key: String,
    /// What the event tells, for the repeat interval: one task's condition (opened, cleared,
    /// returned) is one identity, so a flapping sensor is told once.
    pub identity: String,
}

/// Whether `route` takes `event`.
pub fn matches(route: &Route, event: &Event) -> bool {
    let one_of = |list: &[String], v: &Option<String>| {
        list.is_empty() || v.as_ref().is_some_and(|v| list.contains(v))
    };
    one_of(&route.departments, &event.department)
        && (route.domains.is_empty()
            || event
                .domain
                .as_deref()
                .is_some_and(|d| route.domains.iter().any(|x| x.as_str() == d)))
        && (route.severities.is_empty()
            || event
                .severity
                .as_deref()
                .is_some_and(|s| route.severities.iter().any(|x| x.as_str() == s)))
        && (route.kinds.is_empty() || route.kinds.contains(&event.kind))
}

/// The targets of `event`: routes in order, the first match stopping unless it says
/// `continue`.
pub fn route(rules: &Rules, event: &Event) -> Vec<Target> {
    let mut out = Vec::new();
    for r in &rules.routes {
        if !matches(r, event) {
            continue;
        }
        let group_key = group_key(r, event);
        for channel in &r.channels {
            out.push(Target {
                route: r.name.clone(),
                channel: channel.clone(),
                group_key: group_key.clone(),
                identity: identity(event),
            });
        }
        if !r.keep_going {
            break;
        }
    }
    out
}

fn group_key(r: &Route, e: &Event) -> String {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    r.group_by
        .iter()
        .map(|l| match l {
            Label::Department => format!("department={}", v(&e.department)),
            Label::Domain => format!("domain={}", v(&e.domain)),
            Label::Entity => format!("entity={}", v(&e.entity)),
            Label::Rule => format!("rule={}", v(&e.rule)),
            Label::Kind => format!("kind={}", e.kind),
            Label::Task => format!("task={}", e.task.map(|t| t.to_string()).unwrap_or_default()),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn identity(e: &Event) -> String {
    if e.kind.is_condition() {
        format!("condition:{}", e.subject)
    } else {
        format!("{}:{}:{}", e.kind, e.subject, e.ts_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::EventKind;
    use spotcheck_protocol::UnixMillis;

    fn rules() -> Rules {
        toml::from_str(
            r#"
            [[channels]]
            name = "a"
            type = "wecom"
            url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"
            [[channels]]
            name = "b"
            type = "wecom"
            url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k2"
            [[routes]]
            name = "critical-pools"
            domains = ["pool"]
            severities = ["critical"]
            channels = ["a"]
            continue = true
            [[routes]]
            name = "health"
            departments = ["health"]
            channels = ["b"]
            [[routes]]
            name = "rest"
            channels = ["a"]
            "#,
        )
        .unwrap()
    }

    fn ev(kind: EventKind, department: &str, domain: &str, severity: Option<&str>) -> Event {
        let mut e = Event::new(kind, UnixMillis(1), "task:1");
        e.department = Some(department.into());
        e.domain = Some(domain.into());
        e.severity = severity.map(Into::into);
        e.entity = Some("E".into());
        e
    }

    #[test]
    fn the_first_matching_route_takes_the_event_unless_it_says_continue() {
        let r = rules();
        let t = route(
            &r,
            &ev(EventKind::AnomalyOpened, "health", "pool", Some("critical")),
        );
        let names: Vec<_> = t
            .iter()
            .map(|t| (t.route.as_str(), t.channel.as_str()))
            .collect();
        assert_eq!(names, [("critical-pools", "a"), ("health", "b")]);
        let t = route(
            &r,
            &ev(EventKind::AnomalyOpened, "health", "pool", Some("low")),
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].route, "health");
        let t = route(&r, &ev(EventKind::DrawCommitted, "culture", "game", None));
        assert_eq!(t[0].route, "rest");
        assert_eq!(t[0].group_key, "department=culture,entity=E,rule=");
    }

    #[test]
    fn a_tasks_condition_events_share_one_identity() {
        let r = rules();
        let a = route(&r, &ev(EventKind::AnomalyOpened, "x", "game", None));
        let b = route(&r, &ev(EventKind::AnomalyCleared, "x", "game", None));
        let c = route(&r, &ev(EventKind::AnomalyEscalated, "x", "game", None));
        assert_eq!(a[0].identity, b[0].identity);
        assert_ne!(a[0].identity, c[0].identity);
    }
}
