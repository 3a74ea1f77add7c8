//! One raw row → one typed record, with every problem of the row reported by field.

use std::collections::BTreeSet;
use std::str::FromStr;

use spotcheck_protocol::{AgentId, Domain};

use super::import::{RawRow, RawValue, RowError};
use super::model::{
    CertificateNo, Department, Entity, Inspector, InspectorId, Item, ItemId, ItemKind, Method,
    RiskClass,
};
use super::CreditCode;

/// Which library a file fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The item list.
    Items,
    /// The entity library.
    Entities,
    /// The inspector library.
    Inspectors,
}

impl Kind {
    /// The fields a row may have; the required ones first.
    pub fn fields(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Kind::Items => (
                &["id", "name", "department", "legal_basis", "kind", "method"],
                &["rule_pack"],
            ),
            Kind::Entities => (
                &["code", "name", "domain", "district", "risk"],
                &["address", "contact", "agents"],
            ),
            Kind::Inspectors => (
                &["id", "name", "certificate", "department", "fields"],
                &["active", "conflicts"],
            ),
        }
    }
}

/// Reads the fields of one row, remembering every error.
struct Fields<'a> {
    row: &'a RawRow,
    errors: Vec<RowError>,
}

impl<'a> Fields<'a> {
    fn new(row: &'a RawRow, kind: Kind) -> Fields<'a> {
        let (required, optional) = kind.fields();
        let mut f = Fields {
            row,
            errors: Vec::new(),
        };
        for name in row.fields.keys() {
            if !required.contains(&name.as_str()) && !optional.contains(&name.as_str()) {
                f.error(
                    name,
                    format!(
                        "unknown field; expected {} (optional: {})",
                        required.join(", "),
                        optional.join(", ")
                    ),
                );
            }
        }
        f
    }

    fn error(&mut self, field: &str, reason: String) {
        self.errors.push(RowError {
            line: self.row.line,
            field: field.into(),
            reason,
        });
    }

    fn text(&mut self, name: &str) -> Option<String> {
        match self.row.fields.get(name) {
            Some(RawValue::Text(s)) if !s.is_empty() => Some(s.clone()),
            Some(RawValue::List(_)) => {
                self.error(name, "expected a single value, not a list".into());
                None
            }
            _ => {
                self.error(name, "is required".into());
                None
            }
        }
    }

    fn optional(&mut self, name: &str) -> Option<String> {
        if self.row.fields.contains_key(name) {
            self.text(name)
        } else {
            None
        }
    }

    fn list(&mut self, name: &str) -> Vec<String> {
        match self.row.fields.get(name) {
            None => Vec::new(),
            Some(RawValue::List(v)) => v.iter().filter(|s| !s.is_empty()).cloned().collect(),
            Some(RawValue::Text(s)) => s
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    fn parsed<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        value: Option<String>,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Option<T> {
        let v = value?;
        match parse(&v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(name, e.to_string());
                None
            }
        }
    }

    fn required<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Option<T> {
        let v = self.text(name);
        self.parsed(name, v, parse)
    }

    fn each<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for v in self.list(name) {
            if let Some(t) = self.parsed(name, Some(v), &parse) {
                out.push(t);
            }
        }
        out
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, Vec<RowError>> {
        match value {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ => Err(self.errors),
        }
    }
}

fn domain(s: &str) -> Result<Domain, String> {
    Domain::from_str(s).map_err(|_| format!("{s:?} is not a domain; use pool, game or hospital"))
}

fn item_kind(s: &str) -> Result<ItemKind, String> {
    match s {
        "general" | "一般" => Ok(ItemKind::General),
        "key" | "重点" => Ok(ItemKind::Key),
        _ => Err(format!(
            "{s:?} is not an item kind; use general (一般) or key (重点)"
        )),
    }
}

fn method(s: &str) -> Result<Method, String> {
    match s {
        "remote" => Ok(Method::Remote),
        "on-site" => Ok(Method::OnSite),
        "both" => Ok(Method::Both),
        _ => Err(format!(
            "{s:?} is not a method; use remote, on-site or both"
        )),
    }
}

fn flag(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "是" => Ok(true),
        "false" | "no" | "0" | "否" => Ok(false),
        _ => Err(format!("{s:?} is not a yes/no value; use true or false")),
    }
}

fn nonempty(s: &str) -> Result<String, String> {
    Ok(s.to_owned())
}

/// Names go into draw digests line by line: no tabs or newlines.
fn single_line(s: &str) -> Result<String, String> {
    if s.chars().any(char::is_control) {
        return Err("contains a control character (tab, newline …); write it on one line".into());
    }
    Ok(s.to_owned())
}

/// An item-list row.
pub fn item(row: &RawRow) -> Result<Item, Vec<RowError>> {
    let mut f = Fields::new(row, Kind::Items);
    let id = f.required("id", |s| ItemId::new(s));
    let name = f.required("name", single_line);
    let department = f.required("department", |s| Department::new(s));
    let legal_basis = f.required("legal_basis", nonempty);
    let kind = f.required("kind", item_kind);
    let method = f.required("method", method);
    let rule_pack = f.optional("rule_pack");
    let value = (|| {
        Some(Item {
            id: id?,
            name: name?,
            department: department?,
            legal_basis: legal_basis?,
            kind: kind?,
            method: method?,
            rule_pack,
        })
    })();
    f.finish(value)
}

/// An entity-library row.
pub fn entity(row: &RawRow) -> Result<Entity, Vec<RowError>> {
    let mut f = Fields::new(row, Kind::Entities);
    let code = f.required("code", CreditCode::parse);
    let name = f.required("name", single_line);
    let domain = f.required("domain", domain);
    let district = f.required("district", nonempty);
    let address = f.optional("address").unwrap_or_default();
    let contact = f.optional("contact").unwrap_or_default();
    let risk = f.required("risk", |s| RiskClass::new(s));
    let agents = f.each("agents", |s| AgentId::new(s.to_owned()));
    let value = (|| {
        Some(Entity {
            code: code?,
            name: name?,
            domain: domain?,
            district: district?,
            address,
            contact,
            risk: risk?,
            agents,
        })
    })();
    f.finish(value)
}

/// An inspector-library row.
pub fn inspector(row: &RawRow) -> Result<Inspector, Vec<RowError>> {
    let mut f = Fields::new(row, Kind::Inspectors);
    let id = f.required("id", |s| InspectorId::new(s));
    let name = f.required("name", single_line);
    let certificate = f.required("certificate", |s| CertificateNo::new(s));
    let department = f.required("department", |s| Department::new(s));
    let fields: BTreeSet<Domain> = f.each("fields", domain).into_iter().collect();
    if fields.is_empty() && row.fields.contains_key("fields") {
        f.error(
            "fields",
            "lists no domain; use pool, game or hospital, separated by ;".into(),
        );
    }
    let active = match f.optional("active") {
        None => Some(true),
        v => f.parsed("active", v, flag),
    };
    let conflicts = f.each("conflicts", CreditCode::parse).into_iter().collect();
    let value = (|| {
        Some(Inspector {
            id: id?,
            name: name?,
            certificate: certificate?,
            department: department?,
            fields,
            active: active?,
            conflicts,
        })
    })();
    f.finish(value)
}
