//! One raw row → one typed record, with every problem of the row reported by field.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::str::FromStr;

use spotcheck_protocol::Domain;

use super::import::{RawRow, RawValue, RowError};
use super::model::{
    AgentIdsRef, CertificateNo, Department, Entity, EntityRef, Inspector, InspectorId, Item,
    ItemId, ItemKind, ListRef, Method, RiskClass,
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

/// A field's value as a row gives it, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValue<'a> {
    /// A scalar, trimmed.
    Text(&'a str),
    /// A JSON array of scalars.
    List(&'a [String]),
}

/// One row's fields, however the file held them: a JSON object's map ([`RawRow`]) or a CSV
/// record read in place (`super::csv_file::CsvRecord`). Both are parsed by the same code
/// below, so both give the same records and the same problems.
pub trait RowFields {
    /// The 1-based line the row starts on.
    fn line(&self) -> u64;
    /// What is wrong with the row's shape (a CSV row with the wrong number of fields).
    fn problems(&self) -> &[RowError];
    /// The value of field `name`, if the row gives it (a CSV field left empty is absent).
    fn get(&self, name: &str) -> Option<FieldValue<'_>>;
    /// The names of the fields the row gives, sorted, each once.
    fn names(&self) -> impl Iterator<Item = &str>;
}

impl RowFields for RawRow {
    fn line(&self) -> u64 {
        self.line
    }

    fn problems(&self) -> &[RowError] {
        &self.problems
    }

    fn get(&self, name: &str) -> Option<FieldValue<'_>> {
        self.fields.get(name).map(|v| match v {
            RawValue::Text(s) => FieldValue::Text(s),
            RawValue::List(v) => FieldValue::List(v),
        })
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }
}

/// Reads the fields of one row, remembering every error.
struct Fields<'a, R: RowFields + ?Sized> {
    row: &'a R,
    errors: Vec<RowError>,
}

impl<'a, R: RowFields + ?Sized> Fields<'a, R> {
    fn new(row: &'a R, kind: Kind) -> Fields<'a, R> {
        let (required, optional) = kind.fields();
        let mut f = Fields {
            row,
            errors: Vec::new(),
        };
        for name in row.names() {
            if !required.contains(&name) && !optional.contains(&name) {
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
            line: self.row.line(),
            field: field.into(),
            reason,
        });
    }

    fn text(&mut self, name: &str) -> Option<&'a str> {
        match self.row.get(name) {
            Some(FieldValue::Text(s)) if !s.is_empty() => Some(s),
            Some(FieldValue::List(_)) => {
                self.error(name, "expected a single value, not a list".into());
                None
            }
            _ => {
                self.error(name, "is required".into());
                None
            }
        }
    }

    fn optional(&mut self, name: &str) -> Option<&'a str> {
        if self.row.get(name).is_some() {
            self.text(name)
        } else {
            None
        }
    }

    fn list(&self, name: &str) -> ListRef<'a> {
        match self.row.get(name) {
            None => ListRef::Empty,
            Some(FieldValue::List(v)) => ListRef::List(v),
            Some(FieldValue::Text(s)) => ListRef::Text(s),
        }
    }

    fn parsed<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        value: Option<&'a str>,
        parse: impl Fn(&'a str) -> Result<T, E>,
    ) -> Option<T> {
        let v = value?;
        match parse(v) {
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
        parse: impl Fn(&'a str) -> Result<T, E>,
    ) -> Option<T> {
        let v = self.text(name);
        self.parsed(name, v, parse)
    }

    fn each<T, E: std::fmt::Display>(
        &mut self,
        name: &str,
        parse: impl Fn(&'a str) -> Result<T, E>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for v in self.list(name).iter() {
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

/// Names go into draw digests line by line: no tabs or newlines.
fn single_line(s: &str) -> Result<&str, String> {
    if s.chars().any(char::is_control) {
        return Err("contains a control character (tab, newline …); write it on one line".into());
    }
    Ok(s)
}

/// An item-list row.
pub fn item<R: RowFields + ?Sized>(row: &R) -> Result<Item, Vec<RowError>> {
    let mut f = Fields::new(row, Kind::Items);
    let id = f.required("id", ItemId::new);
    let name = f.required("name", single_line).map(str::to_owned);
    let department = f.required("department", Department::new);
    let legal_basis = f.text("legal_basis").map(str::to_owned);
    let kind = f.required("kind", item_kind);
    let method = f.required("method", method);
    let rule_pack = f.optional("rule_pack").map(str::to_owned);
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
pub fn entity<R: RowFields + ?Sized>(row: &R) -> Result<Entity, Vec<RowError>> {
    entity_ref(row).map(|e| e.to_entity())
}

/// An entity-library row, its text borrowed from the row.
pub fn entity_ref<R: RowFields + ?Sized>(row: &R) -> Result<EntityRef<'_>, Vec<RowError>> {
    let mut f = Fields::new(row, Kind::Entities);
    let code = f.required("code", CreditCode::parse);
    let name = f.required("name", single_line);
    let domain = f.required("domain", domain);
    let district = f.text("district");
    let address = f.optional("address").unwrap_or_default();
    let contact = f.optional("contact").unwrap_or_default();
    let risk = f.required("risk", RiskClass::check);
    let mut bad = Vec::new();
    let agents = AgentIdsRef::check(f.list("agents"), |e| bad.push(e.to_string()));
    for reason in bad {
        f.error("agents", reason);
    }
    let value = (|| {
        Some(EntityRef {
            code: Cow::Owned(code?),
            name: name?,
            domain: domain?,
            district: district?,
            address,
            contact,
            risk: risk?,
            agents: agents?,
        })
    })();
    f.finish(value)
}

/// An inspector-library row.
pub fn inspector<R: RowFields + ?Sized>(row: &R) -> Result<Inspector, Vec<RowError>> {
    let mut f = Fields::new(row, Kind::Inspectors);
    let id = f.required("id", InspectorId::new);
    let name = f.required("name", single_line).map(str::to_owned);
    let certificate = f.required("certificate", CertificateNo::new);
    let department = f.required("department", Department::new);
    let fields: BTreeSet<Domain> = f.each("fields", domain).into_iter().collect();
    if fields.is_empty() && row.get("fields").is_some() {
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
