//! Messages in Chinese: a title and Markdown text, with a link to each task in the console.

use serde_json::Value;

use super::event::{Event, EventKind};

/// China Standard Time, for people reading the message.
fn china_time(ms: i64) -> String {
    let offset = time::UtcOffset::from_hms(8, 0, 0).expect("valid offset");
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| t.to_offset(offset).format(fmt).unwrap_or_default())
        .unwrap_or_default()
}

fn severity(s: &str) -> &str {
    match s {
        "low" => "低",
        "medium" => "中",
        "high" => "高",
        "critical" => "严重",
        other => other,
    }
}

/// The console's page of a task.
pub fn task_link(console_url: &str, task: i64) -> String {
    format!("{}/#/task/{task}", console_url.trim_end_matches('/'))
}

/// The Chinese title of a rule, by its key (`None` when no loaded pack has it).
pub type RuleTitles<'a> = &'a dyn Fn(&str) -> Option<String>;

fn what(e: &Event, titles: RuleTitles<'_>) -> String {
    let f = |k: &str| {
        e.facts
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    match e.kind {
        EventKind::DrawCommitted | EventKind::DrawRevealed => {
            let n = e.facts.get("drawn").and_then(Value::as_u64);
            match n {
                Some(n) => format!("抽取 {}：抽中 {n} 个对象", f("draw")),
                None => format!("抽取 {}（事项 {}）", f("draw"), f("item")),
            }
        }
        EventKind::AgentSilent => format!(
            "终端 {}（对象 {}）已 {} 分钟无数据",
            f("agent"),
            e.entity.clone().unwrap_or_default(),
            e.facts
                .get("silent_min")
                .and_then(Value::as_i64)
                .unwrap_or(0)
        ),
        EventKind::PublicationDueSoon | EventKind::PublicationOverdue => format!(
            "任务 #{} 的结果应于 {} 前公示",
            e.task.unwrap_or(0),
            china_time(e.facts.get("due_ms").and_then(Value::as_i64).unwrap_or(0))
        ),
        EventKind::Report => f("summary"),
        _ => {
            let key = e.rule.clone().unwrap_or_default();
            let rule = match titles(&key) {
                Some(t) => format!("{t}（{key}）"),
                None => key,
            };
            let mut s = format!("对象 {}，规则 {rule}", e.entity.clone().unwrap_or_default());
            let d = f("detail");
            if !d.is_empty() {
                s.push_str(&format!("：{d}"));
            }
            s
        }
    }
}

/// The title and text telling `events` (one group's, oldest first; at least one);
/// `suppressed`: how many repeats since the last message were not told one by one; `titles`
/// names a rule by its Chinese title.
pub fn message(
    events: &[Event],
    suppressed: i64,
    console_url: &str,
    titles: RuleTitles<'_>,
) -> (String, String) {
    let first = &events[0];
    let dept = first
        .department
        .clone()
        .map(|d| format!("【{d}】"))
        .unwrap_or_default();
    let sev = first
        .severity
        .as_deref()
        .map(|s| format!("［{}］", severity(s)))
        .unwrap_or_default();
    let title = if events.len() == 1 {
        format!("{dept}{sev}{}", first.kind.label())
    } else {
        format!(
            "{dept}{sev}{}等 {} 条通知",
            first.kind.label(),
            events.len()
        )
    };
    let mut text = format!("### {title}\n\n");
    for e in events {
        text.push_str(&format!(
            "- {} **{}**：{}",
            china_time(e.ts_ms),
            e.kind.label(),
            what(e, titles)
        ));
        if let Some(t) = e.task {
            text.push_str(&format!("（[任务 #{t}]({})）", task_link(console_url, t)));
        }
        text.push('\n');
    }
    if suppressed > 0 {
        text.push_str(&format!(
            "\n另有 {suppressed} 次重复变化（同一任务的异常出现/恢复）已合并，未逐条发送。\n"
        ));
    }
    let tasks: std::collections::BTreeSet<i64> = events.iter().filter_map(|e| e.task).collect();
    if let Some(t) = tasks.iter().next() {
        text.push_str(&format!(
            "\n[在控制台处理]({})\n",
            task_link(console_url, *t)
        ));
    } else {
        text.push_str(&format!(
            "\n[打开控制台]({}/)\n",
            console_url.trim_end_matches('/')
        ));
    }
    (title, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spotcheck_protocol::UnixMillis;

    #[test]
    fn a_message_is_in_chinese_in_china_time_with_a_link_to_the_task() {
        let mut e = Event::new(
            EventKind::AnomalyOpened,
            UnixMillis(1_700_000_000_000),
            "task:7",
        );
        e.task = Some(7);
        e.department = Some("health".into());
        e.severity = Some("high".into());
        e.entity = Some("POOL-1".into());
        e.rule = Some("pool/chlorine".into());
        let (title, text) = message(&[e.clone()], 0, "https://sc.example.cn/", &|_| None);
        assert_eq!(title, "【health】［高］异常任务已创建");
        assert!(text.contains("2023-11-15 06:13"), "{text}");
        assert!(text.contains("(https://sc.example.cn/#/task/7)"), "{text}");
        assert!(text.contains("对象 POOL-1，规则 pool/chlorine"), "{text}");
        // With the rule loaded, the message names it by its Chinese title, the key beside it.
        let titles = |k: &str| (k == "pool/chlorine").then(|| "游离性余氯 0.3–1.0 mg/L".to_owned());
        let (_, text) = message(&[e], 0, "https://sc.example.cn/", &titles);
        assert!(
            text.contains("对象 POOL-1，规则 游离性余氯 0.3–1.0 mg/L（pool/chlorine）"),
            "{text}"
        );
    }
}
