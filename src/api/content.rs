//! Proto content items to validated domain inputs, and domain content back
//! to proto (shared by SpaceService writes and AggregationService reads).

use crate::domain::content::{
    CONTENT_DESCRIPTION_MAX, CONTENT_NAME_MAX, ContractInput, IssueInput, MAX_PRODUCT_IDS, MAX_TAGS,
    ProductInput, QualityCheckInput, SHORT_TEXT_MAX, at_item, non_negative, optional_id, optional_text,
    ranged, required_text,
};
use crate::domain::model::{Contract, Issue, Product, QualityCheck};
use crate::domain::types::{
    CheckStatus, ContractStatus, IssuePriority, IssueStatus, Severity, Slug, parse_id,
};
use crate::domain::{Error, Result};
use crate::proto;

use super::{space_ref, timestamp};

/// A protobuf timestamp as microseconds since the epoch (1970 to 9999).
pub fn micros(field: &'static str, t: &prost_types::Timestamp) -> Result<i64> {
    if !(0..=253_402_300_799).contains(&t.seconds) || !(0..1_000_000_000).contains(&t.nanos) {
        return Err(Error::invalid(
            "INVALID_TIMESTAMP",
            field,
            format!("{field} must be a time between 1970 and 9999"),
        ));
    }
    Ok(t.seconds * 1_000_000 + i64::from(t.nanos) / 1_000)
}

fn optional_micros(field: &'static str, t: &Option<prost_types::Timestamp>) -> Result<Option<i64>> {
    t.as_ref().map(|t| micros(field, t)).transpose()
}

/// Validates every item, naming the item index and field of the first
/// problem.
pub fn items<P, D>(raw: &[P], parse: impl Fn(&P) -> Result<D>) -> Result<Vec<D>> {
    raw.iter()
        .enumerate()
        .map(|(i, item)| parse(item).map_err(|e| at_item(i, e)))
        .collect()
}

pub fn product_input(p: &proto::Product) -> Result<ProductInput> {
    let tags = p
        .tags
        .iter()
        .map(|t| required_text("tags", t, 100))
        .collect::<Result<Vec<_>>>()?;
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid(
            "TOO_MANY_TAGS",
            "tags",
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    let slug = if p.slug.trim().is_empty() {
        String::new()
    } else {
        Slug::parse("slug", &p.slug)?.as_str().to_owned()
    };
    Ok(ProductInput {
        id: parse_id("id", &p.id)?,
        name: required_text("name", &p.name, CONTENT_NAME_MAX)?,
        slug,
        description: optional_text("description", &p.description, CONTENT_DESCRIPTION_MAX)?,
        product_type: optional_text("product_type", &p.product_type, SHORT_TEXT_MAX)?,
        provider: optional_text("provider", &p.provider, SHORT_TEXT_MAX)?,
        tags,
        quality_score: p
            .quality_score
            .map(|q| ranged("quality_score", q, 0.0, 1.0))
            .transpose()?,
        is_archived: p.is_archived,
        created_at: optional_micros("created_at", &p.created_at)?,
        updated_at: optional_micros("updated_at", &p.updated_at)?,
    })
}

pub fn contract_input(c: &proto::Contract) -> Result<ContractInput> {
    let (producer_id, producer_name) = match &c.producer {
        Some(p) => (
            optional_text("producer.id", &p.id, SHORT_TEXT_MAX)?,
            optional_text("producer.name", &p.name, SHORT_TEXT_MAX)?,
        ),
        None => (String::new(), String::new()),
    };
    let (consumer_id, consumer_name) = match &c.consumer {
        Some(p) => (
            optional_text("consumer.id", &p.id, SHORT_TEXT_MAX)?,
            optional_text("consumer.name", &p.name, SHORT_TEXT_MAX)?,
        ),
        None => (String::new(), String::new()),
    };
    let sla = c.sla.unwrap_or_default();
    Ok(ContractInput {
        id: parse_id("id", &c.id)?,
        name: required_text("name", &c.name, CONTENT_NAME_MAX)?,
        description: optional_text("description", &c.description, CONTENT_DESCRIPTION_MAX)?,
        status: ContractStatus::parse("status", &c.status)?,
        producer_id,
        producer_name,
        consumer_id,
        consumer_name,
        freshness_hours: non_negative("sla.freshness_hours", sla.freshness_hours)?,
        availability_percent: ranged("sla.availability_percent", sla.availability_percent, 0.0, 100.0)?,
        quality_score_min: ranged("sla.quality_score_min", sla.quality_score_min, 0.0, 1.0)?,
        response_time_hours: non_negative("sla.response_time_hours", sla.response_time_hours)?,
        created_at: optional_micros("created_at", &c.created_at)?,
        expires_at: optional_micros("expires_at", &c.expires_at)?,
    })
}

pub fn issue_input(i: &proto::Issue) -> Result<IssueInput> {
    Ok(IssueInput {
        id: parse_id("id", &i.id)?,
        title: required_text("title", &i.title, CONTENT_NAME_MAX)?,
        description: optional_text("description", &i.description, CONTENT_DESCRIPTION_MAX)?,
        status: IssueStatus::parse("status", &i.status)?,
        priority: IssuePriority::parse("priority", &i.priority)?,
        product_id: optional_id("product_id", &i.product_id)?,
        assignee_id: optional_id("assignee_id", &i.assignee_id)?,
        reporter_id: optional_id("reporter_id", &i.reporter_id)?,
        created_at: optional_micros("created_at", &i.created_at)?,
        updated_at: optional_micros("updated_at", &i.updated_at)?,
    })
}

pub fn quality_check_input(q: &proto::QualityCheck) -> Result<QualityCheckInput> {
    if q.product_ids.len() > MAX_PRODUCT_IDS {
        return Err(Error::invalid(
            "TOO_MANY_PRODUCTS",
            "product_ids",
            format!("at most {MAX_PRODUCT_IDS} product ids"),
        ));
    }
    let last_status = if q.last_status.trim().is_empty() {
        None
    } else {
        Some(CheckStatus::parse("last_status", &q.last_status)?)
    };
    Ok(QualityCheckInput {
        id: parse_id("id", &q.id)?,
        name: required_text("name", &q.name, CONTENT_NAME_MAX)?,
        check_type: optional_text("check_type", &q.check_type, SHORT_TEXT_MAX)?,
        severity: Severity::parse("severity", &q.severity)?,
        product_ids: q
            .product_ids
            .iter()
            .map(|id| parse_id("product_ids", id))
            .collect::<Result<_>>()?,
        last_status,
        last_run_at: optional_micros("last_run_at", &q.last_run_at)?,
        is_archived: q.is_archived,
        created_at: optional_micros("created_at", &q.created_at)?,
    })
}

fn opt_id(id: Option<uuid::Uuid>) -> String {
    id.map(|i| i.to_string()).unwrap_or_default()
}

pub fn product(p: &Product) -> proto::Product {
    proto::Product {
        id: p.id.to_string(),
        name: p.name.clone(),
        slug: p.slug.clone(),
        description: p.description.clone(),
        product_type: p.product_type.clone(),
        provider: p.provider.clone(),
        tags: p.tags.clone(),
        quality_score: p.quality_score,
        is_archived: p.is_archived,
        created_at: timestamp(p.created_at),
        updated_at: timestamp(p.updated_at),
        space: Some(space_ref(&p.space)),
    }
}

pub fn contract(c: &Contract) -> proto::Contract {
    proto::Contract {
        id: c.id.to_string(),
        name: c.name.clone(),
        description: c.description.clone(),
        status: c.status.clone(),
        producer: Some(proto::PartyRef {
            id: c.producer_id.clone(),
            name: c.producer_name.clone(),
        }),
        consumer: Some(proto::PartyRef {
            id: c.consumer_id.clone(),
            name: c.consumer_name.clone(),
        }),
        sla: Some(proto::Sla {
            freshness_hours: c.freshness_hours,
            availability_percent: c.availability_percent,
            quality_score_min: c.quality_score_min,
            response_time_hours: c.response_time_hours,
        }),
        created_at: timestamp(c.created_at),
        expires_at: c.expires_at.and_then(timestamp),
        space: Some(space_ref(&c.space)),
    }
}

pub fn issue(i: &Issue) -> proto::Issue {
    proto::Issue {
        id: i.id.to_string(),
        title: i.title.clone(),
        description: i.description.clone(),
        status: i.status.clone(),
        priority: i.priority.clone(),
        product_id: opt_id(i.product_id),
        assignee_id: opt_id(i.assignee_id),
        reporter_id: opt_id(i.reporter_id),
        created_at: timestamp(i.created_at),
        updated_at: timestamp(i.updated_at),
        space: Some(space_ref(&i.space)),
    }
}

pub fn quality_check(q: &QualityCheck) -> proto::QualityCheck {
    proto::QualityCheck {
        id: q.id.to_string(),
        name: q.name.clone(),
        check_type: q.check_type.clone(),
        severity: q.severity.clone(),
        product_ids: q.product_ids.iter().map(|i| i.to_string()).collect(),
        last_status: q.last_status.clone().unwrap_or_default(),
        last_run_at: q.last_run_at.and_then(timestamp),
        is_archived: q.is_archived,
        created_at: timestamp(q.created_at),
        space: Some(space_ref(&q.space)),
    }
}
