//! A realistic multi-tenant dataset for benchmarks: organizations of skewed
//! sizes (a few very large ones), spaces of mixed visibility, members, and
//! content, written through the same path as the RPCs (`App`: 1,000-row
//! batch upserts, each change audited, storage directories created), so every
//! invariant, counter, audit chain and directory holds.

use std::collections::HashMap;

use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::App;
use crate::domain::audit::Actor;
use crate::domain::content::{ContractInput, IssueInput, MAX_BATCH, ProductInput, QualityCheckInput};
use crate::domain::types::{
    CheckStatus, ContractStatus, Description, Email, IssuePriority, IssueStatus, Name, OrgRole, Severity,
    Slug, SpaceRole, Visibility,
};
use crate::domain::{Error, Result};
use crate::progress::Reporter;
use crate::store::{NewOrganization, NewSpace};

/// How much to generate. `Plan::scaled(1.0)` is the full target size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub organizations: usize,
    pub spaces: usize,
    pub products: usize,
    pub issues: usize,
    pub contracts: usize,
    pub quality_checks: usize,
    /// Members of the largest organization; others get fewer, by size.
    pub largest_org_members: usize,
    pub seed: u64,
}

impl Plan {
    /// 1,000 organizations, 10,000 spaces, 1,000,000 products and issues,
    /// 200,000 contracts, 500,000 quality checks, times `factor`.
    pub fn scaled(factor: f64) -> Self {
        let n = |full: f64| ((full * factor).round() as usize).max(1);
        Self {
            organizations: n(1_000.0),
            spaces: n(10_000.0).max(n(1_000.0)),
            products: n(1_000_000.0),
            issues: n(1_000_000.0),
            contracts: n(200_000.0),
            quality_checks: n(500_000.0),
            largest_org_members: n(10_000.0).clamp(2, 10_000),
            seed: 42,
        }
    }

    pub fn content_rows(&self) -> usize {
        self.products + self.issues + self.contracts + self.quality_checks
    }
}

/// What the benchmark needs to know about the generated data.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The largest organization.
    pub largest_slug: String,
    /// An organization about a hundredth of its size (the 50th by
    /// weight, or the last of fewer), for what a search costs elsewhere.
    pub small_slug: String,
    /// Its admin, and a plain member who belongs to some restricted spaces.
    pub admin_email: String,
    pub member_email: String,
    /// A word that appears in about one in twenty product and contract names.
    pub search_term: String,
}

const WORDS: [&str; 20] = [
    "revenue",
    "orders",
    "churn",
    "inventory",
    "clicks",
    "payments",
    "refunds",
    "shipments",
    "sessions",
    "leads",
    "invoices",
    "returns",
    "signups",
    "campaigns",
    "tickets",
    "latency",
    "budget",
    "forecast",
    "margin",
    "traffic",
];
const TYPES: [&str; 7] = [
    "table",
    "dashboard",
    "api",
    "ml_model",
    "data_stream",
    "file",
    "notebook",
];

fn slug(s: &str) -> Result<Slug> {
    Slug::parse("slug", s)
}

/// Fills the store. `progress` hears about each phase.
pub async fn generate(app: &App, plan: &Plan, progress: &dyn Reporter) -> Result<Dataset> {
    let actor = Actor::system("generate");
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let now = chrono::Utc::now().timestamp_micros();
    let two_years = 2 * 365 * 86_400 * 1_000_000_i64;
    let run = Uuid::new_v4().simple().to_string()[..6].to_owned();

    // Organization sizes follow a power law: organization i weighs 1/(i+1)^1.1.
    let weights: Vec<f64> = (0..plan.organizations)
        .map(|i| 1.0 / ((i + 1) as f64).powf(1.1))
        .collect();

    progress.phase("organizations", plan.organizations as u64);
    let admin_email = format!("admin-{run}@gen.test");
    let member_email = format!("member-{run}@gen.test");
    let mut orgs = Vec::with_capacity(plan.organizations);
    for (i, w) in weights.iter().enumerate() {
        let admin = if i == 0 {
            admin_email.clone()
        } else {
            format!("admin{i}-{run}@gen.test")
        };
        let org = app
            .create_organization(
                &actor,
                NewOrganization {
                    labels: Default::default(),
                    id: Uuid::now_v7(),
                    name: Name::parse("organization", "name", &format!("Org {i} {run}"))?,
                    slug: slug(&format!("org-{i}-{run}"))?,
                    description: Description::parse("description", "generated")?,
                    admin_email: Email::parse("email", &admin)?,
                },
            )
            .await?;
        let members = ((plan.largest_org_members as f64) * w / weights[0]).round() as usize;
        for m in 0..members.max(1) {
            let email = if i == 0 && m == 0 {
                member_email.clone()
            } else {
                format!("u{m}-{run}@gen.test")
            };
            app.add_member(
                &actor,
                &org.org.slug,
                &Email::parse("email", &email)?,
                OrgRole::Member,
            )
            .await?;
        }
        orgs.push(org);
        progress.advance(1);
    }

    progress.phase("spaces", plan.spaces as u64);
    // Every organization gets a space; the rest follow the weights.
    let org_pick = WeightedIndex::new(&weights).map_err(|e| Error::internal("generate", e))?;
    let mut space_orgs: Vec<usize> = (0..plan.organizations.min(plan.spaces)).collect();
    while space_orgs.len() < plan.spaces {
        space_orgs.push(org_pick.sample(&mut rng));
    }
    let mut spaces = Vec::with_capacity(plan.spaces);
    let mut per_org: HashMap<usize, usize> = HashMap::new();
    let member = Email::parse("email", &member_email)?;
    for (n, org_index) in space_orgs.iter().enumerate() {
        let restricted = rng.random_bool(0.25);
        let org = &orgs[*org_index];
        let admin = if *org_index == 0 {
            admin_email.clone()
        } else {
            format!("admin{org_index}-{run}@gen.test")
        };
        let space = app
            .create_space(
                &actor,
                NewSpace {
                    labels: Default::default(),
                    id: Uuid::now_v7(),
                    name: Name::parse("space", "name", &format!("Space {n} {run}"))?,
                    slug: slug(&format!("space-{n}-{run}"))?,
                    description: Description::default(),
                    visibility: if restricted {
                        Visibility::Restricted
                    } else {
                        Visibility::Organization
                    },
                    repo: String::new(),
                    agent: None,
                    admin_email: Email::parse("email", &admin)?,
                },
            )
            .await?;
        app.add_space(&actor, &org.org.slug, space.id).await?;
        // The benchmark's member belongs to half the restricted spaces of
        // the largest organization.
        if *org_index == 0 && restricted && rng.random_bool(0.5) {
            app.add_space_member(&actor, space.id, &member, SpaceRole::Viewer)
                .await?;
        }
        *per_org.entry(*org_index).or_default() += 1;
        spaces.push((space.id, *org_index));
        progress.advance(1);
    }
    // Content follows the organization's weight, spread over its spaces.
    let space_weights: Vec<f64> = spaces
        .iter()
        .map(|(_, o)| weights[*o] / per_org[o] as f64 * rng.random_range(0.5..1.5))
        .collect();
    let space_pick = WeightedIndex::new(&space_weights).map_err(|e| Error::internal("generate", e))?;

    let assign = |count: usize, rng: &mut StdRng| -> Vec<Vec<usize>> {
        let mut by_space = vec![Vec::new(); spaces.len()];
        for i in 0..count {
            by_space[space_pick.sample(rng)].push(i);
        }
        by_space
    };
    let name =
        |rng: &mut StdRng, i: usize| format!("{} {} {i}", WORDS[rng.random_range(0..WORDS.len())], run);
    let time = |rng: &mut StdRng| now - rng.random_range(0..two_years);

    progress.phase("products", plan.products as u64);
    let by_space = assign(plan.products, &mut rng);
    for (s, items) in by_space.iter().enumerate() {
        for chunk in items.chunks(MAX_BATCH) {
            let batch: Vec<ProductInput> = chunk
                .iter()
                .map(|i| {
                    let t = time(&mut rng);
                    ProductInput {
                        id: Uuid::new_v4(),
                        name: name(&mut rng, *i),
                        slug: String::new(),
                        description: format!(
                            "{} data for {} teams",
                            WORDS[i % WORDS.len()],
                            WORDS[(i / 7) % WORDS.len()]
                        ),
                        product_type: TYPES[i % TYPES.len()].into(),
                        provider: "warehouse".into(),
                        tags: vec![WORDS[i % WORDS.len()].into()],
                        quality_score: Some(rng.random_range(0.0..1.0)),
                        is_archived: rng.random_bool(0.1),
                        created_at: Some(t),
                        updated_at: Some(t),
                    }
                })
                .collect();
            app.upsert_products(&actor, spaces[s].0, &batch).await?;
            progress.advance(batch.len() as u64);
        }
    }

    progress.phase("issues", plan.issues as u64);
    let by_space = assign(plan.issues, &mut rng);
    let statuses = IssueStatus::ALL;
    let priorities = IssuePriority::ALL;
    for (s, items) in by_space.iter().enumerate() {
        for chunk in items.chunks(MAX_BATCH) {
            let batch: Vec<IssueInput> = chunk
                .iter()
                .map(|i| {
                    let t = time(&mut rng);
                    IssueInput {
                        id: Uuid::new_v4(),
                        title: name(&mut rng, *i),
                        description: String::new(),
                        status: statuses[rng.random_range(0..statuses.len())],
                        priority: priorities[rng.random_range(0..priorities.len())],
                        product_id: None,
                        assignee_id: rng.random_bool(0.5).then(Uuid::new_v4),
                        reporter_id: None,
                        created_at: Some(t),
                        updated_at: Some(t),
                    }
                })
                .collect();
            app.upsert_issues(&actor, spaces[s].0, &batch).await?;
            progress.advance(batch.len() as u64);
        }
    }

    progress.phase("contracts", plan.contracts as u64);
    let by_space = assign(plan.contracts, &mut rng);
    let contract_statuses = ContractStatus::ALL;
    for (s, items) in by_space.iter().enumerate() {
        for chunk in items.chunks(MAX_BATCH) {
            let batch: Vec<ContractInput> = chunk
                .iter()
                .map(|i| ContractInput {
                    id: Uuid::new_v4(),
                    name: name(&mut rng, *i),
                    description: format!("{} agreement", WORDS[i % WORDS.len()]),
                    status: contract_statuses[rng.random_range(0..contract_statuses.len())],
                    producer_id: "producer".into(),
                    producer_name: "Producer".into(),
                    consumer_id: "consumer".into(),
                    consumer_name: "Consumer".into(),
                    freshness_hours: 24,
                    availability_percent: 99.5,
                    quality_score_min: 0.8,
                    response_time_hours: 4,
                    created_at: Some(time(&mut rng)),
                    expires_at: rng
                        .random_bool(0.5)
                        .then(|| now + rng.random_range(-two_years..two_years)),
                })
                .collect();
            app.upsert_contracts(&actor, spaces[s].0, &batch).await?;
            progress.advance(batch.len() as u64);
        }
    }

    progress.phase("quality checks", plan.quality_checks as u64);
    let by_space = assign(plan.quality_checks, &mut rng);
    let severities = Severity::ALL;
    let results = CheckStatus::ALL;
    for (s, items) in by_space.iter().enumerate() {
        for chunk in items.chunks(MAX_BATCH) {
            let batch: Vec<QualityCheckInput> = chunk
                .iter()
                .map(|i| {
                    let ran = rng.random_bool(0.8);
                    QualityCheckInput {
                        id: Uuid::new_v4(),
                        name: name(&mut rng, *i),
                        check_type: "null_check".into(),
                        severity: severities[rng.random_range(0..severities.len())],
                        product_ids: Vec::new(),
                        last_status: ran.then(|| results[rng.random_range(0..results.len())]),
                        last_run_at: ran.then_some(now),
                        is_archived: rng.random_bool(0.1),
                        created_at: Some(time(&mut rng)),
                    }
                })
                .collect();
            app.upsert_quality_checks(&actor, spaces[s].0, &batch).await?;
            progress.advance(batch.len() as u64);
        }
    }
    progress.phase("refreshing planner statistics", 0);
    app.store.analyze().await?;

    Ok(Dataset {
        largest_slug: orgs[0].org.slug.clone(),
        small_slug: orgs[orgs.len().min(50) - 1].org.slug.clone(),
        admin_email,
        member_email,
        search_term: "revenue".into(),
    })
}
