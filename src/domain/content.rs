//! Space content as written by internal services: validated batch items,
//! and the filters of the aggregated lists.

use uuid::Uuid;

use super::error::{Error, ErrorKind, Result};
use super::types::{CheckStatus, ContractStatus, IssuePriority, IssueStatus, Severity};

/// At most this many items in one batch upsert.
pub const MAX_BATCH: usize = 1000;
pub const CONTENT_NAME_MAX: usize = 300;
pub const CONTENT_DESCRIPTION_MAX: usize = 10_000;
pub const SHORT_TEXT_MAX: usize = 200;
pub const MAX_TAGS: usize = 50;
pub const MAX_PRODUCT_IDS: usize = 100;

/// The four kinds of content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    Product,
    Contract,
    Issue,
    QualityCheck,
}

impl ContentKind {
    pub fn table(self) -> &'static str {
        match self {
            ContentKind::Product => "products",
            ContentKind::Contract => "contracts",
            ContentKind::Issue => "issues",
            ContentKind::QualityCheck => "quality_checks",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            ContentKind::Product => "product",
            ContentKind::Contract => "contract",
            ContentKind::Issue => "issue",
            ContentKind::QualityCheck => "quality check",
        }
    }

    /// The collection in REST paths and audit targets.
    pub fn collection(self) -> &'static str {
        match self {
            ContentKind::Product => "products",
            ContentKind::Contract => "contracts",
            ContentKind::Issue => "issues",
            ContentKind::QualityCheck => "quality-checks",
        }
    }

    /// The audit action of a batch upsert.
    pub fn upsert_action(self) -> &'static str {
        match self {
            ContentKind::Product => "product.upsert",
            ContentKind::Contract => "contract.upsert",
            ContentKind::Issue => "issue.upsert",
            ContentKind::QualityCheck => "quality_check.upsert",
        }
    }

    /// The audit action of a delete.
    pub fn delete_action(self) -> &'static str {
        match self {
            ContentKind::Product => "product.delete",
            ContentKind::Contract => "contract.delete",
            ContentKind::Issue => "issue.delete",
            ContentKind::QualityCheck => "quality_check.delete",
        }
    }

    pub fn not_found_reason(self) -> &'static str {
        match self {
            ContentKind::Product => "PRODUCT_NOT_FOUND",
            ContentKind::Contract => "CONTRACT_NOT_FOUND",
            ContentKind::Issue => "ISSUE_NOT_FOUND",
            ContentKind::QualityCheck => "QUALITY_CHECK_NOT_FOUND",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProductInput {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub product_type: String,
    pub provider: String,
    pub tags: Vec<String>,
    pub quality_score: Option<f64>,
    pub is_archived: bool,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContractInput {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub status: ContractStatus,
    pub producer_id: String,
    pub producer_name: String,
    pub consumer_id: String,
    pub consumer_name: String,
    pub freshness_hours: i32,
    pub availability_percent: f64,
    pub quality_score_min: f64,
    pub response_time_hours: i32,
    pub created_at: Option<i64>,
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IssueInput {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub status: IssueStatus,
    pub priority: IssuePriority,
    pub product_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    pub reporter_id: Option<Uuid>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QualityCheckInput {
    pub id: Uuid,
    pub name: String,
    pub check_type: String,
    pub severity: Severity,
    pub product_ids: Vec<Uuid>,
    pub last_status: Option<CheckStatus>,
    pub last_run_at: Option<i64>,
    pub is_archived: bool,
    pub created_at: Option<i64>,
}

/// Checks the size of a batch and that its ids are distinct.
pub fn check_batch(ids: &[Uuid]) -> Result<()> {
    if ids.len() > MAX_BATCH {
        return Err(Error::invalid(
            "BATCH_TOO_LARGE",
            "items",
            format!("a batch holds at most {MAX_BATCH} items, got {}", ids.len()),
        ));
    }
    let mut seen = std::collections::HashMap::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        if let Some(first) = seen.insert(*id, i) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "DUPLICATE_ID",
                format!("items[{i}].id repeats the id of items[{first}]"),
            )
            .with("field", format!("items[{i}].id"))
            .with("value", id.to_string()));
        }
    }
    Ok(())
}

/// Re-labels an error raised for a field of batch item `index`: the field
/// becomes `items[<index>].<field>` and the message says which item.
pub fn at_item(index: usize, mut e: Error) -> Error {
    for (key, value) in e.metadata.iter_mut() {
        if *key == "field" {
            *value = format!("items[{index}].{value}");
        }
    }
    e.message = format!("items[{index}]: {}", e.message);
    e
}

/// Required text of 1..=max characters after trimming.
pub fn required_text(field: &'static str, raw: &str, max: usize) -> Result<String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(Error::missing(field, format!("{field} is required")));
    }
    optional_text(field, s, max)
}

/// Optional text of at most `max` characters, without control characters
/// other than newlines and tabs.
pub fn optional_text(field: &'static str, raw: &str, max: usize) -> Result<String> {
    let s = raw.trim();
    let len = s.chars().count();
    if len > max {
        return Err(Error::invalid(
            "FIELD_TOO_LONG",
            field,
            format!("{field} must be at most {max} characters, got {len}"),
        ));
    }
    if s.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(Error::invalid(
            "INVALID_TEXT",
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(s.to_owned())
}

/// A number within `lo..=hi` (finite).
pub fn ranged(field: &'static str, value: f64, lo: f64, hi: f64) -> Result<f64> {
    if value.is_finite() && (lo..=hi).contains(&value) {
        Ok(value)
    } else {
        Err(Error::invalid(
            "OUT_OF_RANGE",
            field,
            format!("{field} must be between {lo} and {hi}, got {value}"),
        ))
    }
}

/// A count that must not be negative.
pub fn non_negative(field: &'static str, value: i32) -> Result<i32> {
    if value >= 0 {
        Ok(value)
    } else {
        Err(Error::invalid(
            "OUT_OF_RANGE",
            field,
            format!("{field} must not be negative, got {value}"),
        ))
    }
}

/// An optional UUID (empty means absent).
pub fn optional_id(field: &'static str, raw: &str) -> Result<Option<Uuid>> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        super::types::parse_id(field, raw).map(Some)
    }
}

/// Splits comma-separated and repeated values (`?status=a,b&status=c`),
/// parsing each; empty entries are ignored.
pub fn parse_list<T>(raw: &[String], parse: impl Fn(&str) -> Result<T>) -> Result<Vec<T>>
where
    T: PartialEq,
{
    let mut out = Vec::new();
    for value in raw
        .iter()
        .flat_map(|r| r.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        let parsed = parse(value)?;
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    Ok(out)
}

/// A text search: the trimmed term, if any.
pub fn search_term(raw: &str) -> Result<Option<String>> {
    let term = raw.trim();
    if term.is_empty() {
        return Ok(None);
    }
    if term.chars().count() > 200 {
        return Err(Error::invalid(
            "FIELD_TOO_LONG",
            "search",
            "search must be at most 200 characters",
        ));
    }
    if term.chars().any(char::is_control) {
        return Err(Error::invalid(
            "INVALID_TEXT",
            "search",
            "search must not contain control characters",
        ));
    }
    Ok(Some(term.to_owned()))
}

/// Which organization's content, seen by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub org: Uuid,
    /// `None`: every space of the organization (its admins, superadmins);
    /// `Some(user)`: the spaces this member may see.
    pub member: Option<Uuid>,
    /// Only this space (already checked to be visible).
    pub space: Option<Uuid>,
}

#[derive(Debug, Clone, Default)]
pub struct ProductFilter {
    pub search: Option<String>,
    pub include_archived: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ContractFilter {
    pub statuses: Vec<ContractStatus>,
    pub search: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct IssueFilter {
    pub statuses: Vec<IssueStatus>,
    pub priorities: Vec<IssuePriority>,
    pub assignee: Option<Uuid>,
}

#[derive(Debug, Clone, Default)]
pub struct QualityCheckFilter {
    pub include_archived: bool,
    pub statuses: Vec<CheckStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_and_ids_distinct() {
        let ids: Vec<Uuid> = (0..MAX_BATCH).map(|_| Uuid::new_v4()).collect();
        assert!(check_batch(&ids).is_ok());
        let mut more = ids.clone();
        more.push(Uuid::new_v4());
        assert_eq!(check_batch(&more).unwrap_err().reason, "BATCH_TOO_LARGE");
        let dup = vec![ids[0], ids[1], ids[0]];
        let e = check_batch(&dup).unwrap_err();
        assert_eq!(e.reason, "DUPLICATE_ID");
        assert!(e.metadata.contains(&("field", "items[2].id".to_owned())));
    }

    #[test]
    fn item_errors_name_the_index_and_field() {
        let e = at_item(3, ranged("quality_score", 1.5, 0.0, 1.0).unwrap_err());
        assert!(
            e.metadata
                .contains(&("field", "items[3].quality_score".to_owned()))
        );
        assert!(e.message.starts_with("items[3]: "));
        assert!(ranged("x", f64::NAN, 0.0, 1.0).is_err());
    }

    #[test]
    fn lists_split_on_commas_and_repeat() {
        let raw = vec!["open, in_progress".to_owned(), "open".to_owned(), "".to_owned()];
        let got = parse_list(&raw, |v| IssueStatus::parse("status", v)).unwrap();
        assert_eq!(got, vec![IssueStatus::Open, IssueStatus::InProgress]);
        let bad = vec!["open,closed".to_owned()];
        assert_eq!(
            parse_list(&bad, |v| IssueStatus::parse("status", v))
                .unwrap_err()
                .reason,
            "INVALID_STATUS"
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn search_terms_are_trimmed_bounded_and_free_of_controls(raw in "\\PC{0,250}|.{0,50}") {
            if let Ok(Some(term)) = search_term(&raw) {
                prop_assert_eq!(term.trim(), term.as_str());
                prop_assert!(term.chars().count() <= 200);
                prop_assert!(!term.chars().any(char::is_control));
            }
        }

        #[test]
        fn content_text_refuses_controls_other_than_line_breaks(raw in ".{0,100}") {
            if let Ok(text) = optional_text("description", &raw, 4_000) {
                prop_assert!(!text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')));
            }
        }
    }
}
