//! The result categories publication uses, with their exact Chinese labels (DOMAIN.md,
//! "Publication") and stable codes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A published result category. "Cannot be verified remotely; on-site check needed" is not
/// one: it is a verdict outcome that leaves the task open for an on-site check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// 未发现问题
    NoProblem,
    /// 发现问题已责令改正
    Corrected,
    /// 发现问题待后续处理
    PendingFollowUp,
    /// 公示信息隐瞒真实情况、弄虚作假
    FalseDisclosure,
    /// 不予配合检查情节严重
    RefusedInspection,
    /// 未按规定公示应当公示的信息
    NotDisclosed,
    /// 通过登记的住所(经营场所)无法联系 (leads to the abnormal-operations list)
    Unreachable,
    /// 正常经营
    OperatingNormally,
}

/// A text that is neither a category code nor a label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not a result category; use one of the codes {} (or its Chinese label)", Category::codes().join(", "))]
pub struct UnknownCategory {
    /// What was given.
    pub given: String,
}

impl Category {
    /// Every category, in the order publication lists them.
    pub const ALL: [Category; 8] = [
        Category::NoProblem,
        Category::Corrected,
        Category::PendingFollowUp,
        Category::FalseDisclosure,
        Category::RefusedInspection,
        Category::NotDisclosed,
        Category::Unreachable,
        Category::OperatingNormally,
    ];

    /// The stable code, as stored in `tasks.result` and published.
    pub fn code(self) -> &'static str {
        match self {
            Category::NoProblem => "no_problem",
            Category::Corrected => "corrected",
            Category::PendingFollowUp => "pending_follow_up",
            Category::FalseDisclosure => "false_disclosure",
            Category::RefusedInspection => "refused_inspection",
            Category::NotDisclosed => "not_disclosed",
            Category::Unreachable => "unreachable",
            Category::OperatingNormally => "operating_normally",
        }
    }

    /// The label as publications word it.
    pub fn label(self) -> &'static str {
        match self {
            Category::NoProblem => "未发现问题",
            Category::Corrected => "发现问题已责令改正",
            Category::PendingFollowUp => "发现问题待后续处理",
            Category::FalseDisclosure => "公示信息隐瞒真实情况、弄虚作假",
            Category::RefusedInspection => "不予配合检查情节严重",
            Category::NotDisclosed => "未按规定公示应当公示的信息",
            Category::Unreachable => "通过登记的住所(经营场所)无法联系",
            Category::OperatingNormally => "正常经营",
        }
    }

    /// Every code, in order (for error messages and API docs).
    pub fn codes() -> Vec<&'static str> {
        Category::ALL.iter().map(|c| c.code()).collect()
    }

    /// Parses a code or a label. Also accepted: DESIGN.md's spellings 不配合检查情节严重 and
    /// 无法联系, and full-width parentheses in 通过登记的住所（经营场所）无法联系.
    pub fn parse(s: &str) -> Result<Category, UnknownCategory> {
        let t = s.trim();
        let normalised = t.replace('（', "(").replace('）', ")");
        Category::ALL
            .into_iter()
            .find(|c| c.code() == t || c.label() == normalised)
            .or(match normalised.as_str() {
                "不配合检查情节严重" => Some(Category::RefusedInspection),
                "无法联系" => Some(Category::Unreachable),
                _ => None,
            })
            .ok_or_else(|| UnknownCategory {
                given: s.to_owned(),
            })
    }
}

impl fmt::Display for Category {
    /// The Chinese label (use [`Category::code`] for the code).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for Category {
    type Err = UnknownCategory;
    fn from_str(s: &str) -> Result<Category, UnknownCategory> {
        Category::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_parses_from_its_code_and_its_label() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.code()), Ok(c));
            assert_eq!(Category::parse(c.label()), Ok(c));
            assert_eq!(c.to_string(), c.label());
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.code())
            );
        }
    }

    #[test]
    fn labels_are_the_published_wording() {
        assert_eq!(Category::RefusedInspection.label(), "不予配合检查情节严重");
        assert_eq!(
            Category::Unreachable.label(),
            "通过登记的住所(经营场所)无法联系"
        );
        assert_eq!(Category::ALL.len(), 8);
    }

    #[test]
    fn design_spellings_and_full_width_parentheses_are_accepted() {
        assert_eq!(
            Category::parse("不配合检查情节严重"),
            Ok(Category::RefusedInspection)
        );
        assert_eq!(Category::parse("无法联系"), Ok(Category::Unreachable));
        assert_eq!(
            Category::parse("通过登记的住所（经营场所）无法联系"),
            Ok(Category::Unreachable)
        );
        assert_eq!(Category::parse(" corrected "), Ok(Category::Corrected));
    }

    #[test]
    fn an_unknown_category_lists_the_valid_codes() {
        let err = Category::parse("需现场核查").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("需现场核查"), "{msg}");
        for code in Category::codes() {
            assert!(msg.contains(code), "{msg}");
        }
    }

    #[test]
    fn cannot_verify_remotely_is_not_a_category() {
        assert!(Category::parse("cannot_verify").is_err());
    }
}
