//! What the store returns: organizations, spaces, users and memberships as
//! the domain sees them. Timestamps are microseconds since the Unix epoch.

use uuid::Uuid;

use super::labels::Labels;
use super::page::Cursor;
use super::types::{Agent, OrgRole, Visibility};

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub is_superadmin: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub labels: Labels,
    /// Changes with every change to the organization (AIP-154).
    pub etag: String,
    /// Set while soft-deleted (AIP-164), with when it will be purged.
    pub deleted_at: Option<i64>,
    pub purge_at: Option<i64>,
}

/// A space's id, name and slug.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceRef {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
}

/// An organization as listed, with its spaces and member count.
#[derive(Debug, Clone, PartialEq)]
pub struct OrganizationSummary {
    pub org: Organization,
    /// The first `MAX_EMBEDDED_LISTED` by name.
    pub spaces: Vec<SpaceRef>,
    pub space_count: i64,
    pub user_count: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrganizationDetails {
    pub org: Organization,
    /// The newest `MAX_EMBEDDED`.
    pub spaces: Vec<Space>,
    /// The newest `MAX_EMBEDDED`.
    pub members: Vec<Member>,
    pub space_count: i64,
    pub user_count: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Space {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub visibility: Visibility,
    pub repo: String,
    pub agent: Option<Agent>,
    pub organization_id: Option<Uuid>,
    pub created_at: i64,
    pub updated_at: i64,
    pub labels: Labels,
    /// Changes with every change to the space (AIP-154).
    pub etag: String,
    /// Set while soft-deleted (AIP-164), with when it will be purged.
    pub deleted_at: Option<i64>,
    pub purge_at: Option<i64>,
}

/// A user's membership in an organization or a space; `role` is the
/// lowercase role name of either kind.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub joined_at: i64,
    /// Changes with every change to the membership (AIP-154).
    pub etag: String,
}

/// The etag of a resource's state: an opaque digest of its identity (id and
/// creation time, so a re-created resource never matches an old etag) and
/// its version, which every change increments.
pub fn etag(id: Uuid, created_at: i64, version: i64) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    h.update(created_at.to_be_bytes());
    h.update(version.to_be_bytes());
    hex::encode(&h.finalize()[..10])
}

/// ABORTED `ETAG_MISMATCH`: the resource changed since the caller read it.
pub fn check_etag(what: &str, expected: Option<&str>, current: &str) -> super::Result<()> {
    match expected {
        Some(expected) if expected != current => Err(super::Error::new(
            super::ErrorKind::Aborted,
            "ETAG_MISMATCH",
            format!(
                "the {what} changed since it was read (its etag no longer matches); read it again and retry"
            ),
        )
        .with("field", "etag")
        .with("etag", current)),
        _ => Ok(()),
    }
}

/// What the caller holds in an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgAccess {
    pub org: Organization,
    pub role: Option<OrgRole>,
}

/// What the caller holds around a space: their space role and their role in
/// the space's organization.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceAccess {
    pub space: Space,
    pub space_role: Option<super::types::SpaceRole>,
    pub org_role: Option<OrgRole>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: u32,
    pub size: u32,
    pub next_page_token: String,
}

impl Organization {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

impl Space {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }

    pub fn as_ref(&self) -> SpaceRef {
        SpaceRef {
            id: self.id,
            name: self.name.clone(),
            slug: self.slug.clone(),
        }
    }
}

impl Member {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.joined_at,
            id: self.user_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub product_type: String,
    pub provider: String,
    pub tags: Vec<String>,
    pub quality_score: Option<f64>,
    pub is_archived: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub space: SpaceRef,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub status: String,
    pub producer_id: String,
    pub producer_name: String,
    pub consumer_id: String,
    pub consumer_name: String,
    pub freshness_hours: i32,
    pub availability_percent: f64,
    pub quality_score_min: f64,
    pub response_time_hours: i32,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub space: SpaceRef,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub status: String,
    pub priority: String,
    pub product_id: Option<Uuid>,
    pub assignee_id: Option<Uuid>,
    pub reporter_id: Option<Uuid>,
    pub created_at: i64,
    pub updated_at: i64,
    pub space: SpaceRef,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QualityCheck {
    pub id: Uuid,
    pub name: String,
    pub check_type: String,
    pub severity: String,
    pub product_ids: Vec<Uuid>,
    pub last_status: Option<String>,
    pub last_run_at: Option<i64>,
    pub is_archived: bool,
    pub created_at: i64,
    pub space: SpaceRef,
}

/// GetStats, over the spaces the caller can see (but `total_users`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub total_spaces: i64,
    pub total_products: i64,
    pub total_users: i64,
    pub quality_score: Option<f64>,
    pub open_issues: i64,
    pub active_contracts: i64,
}

macro_rules! content_cursor {
    ($($t:ty),+) => {$(
        impl $t {
            pub fn cursor(&self) -> Cursor {
                Cursor { created_at: self.created_at, id: self.id }
            }
        }
    )+};
}
content_cursor!(Product, Contract, Issue, QualityCheck);

/// The stored state of an invitation; a pending one past its expiry reads
/// as expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvitationState {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

impl InvitationState {
    pub const ALL: [InvitationState; 4] = [Self::Pending, Self::Accepted, Self::Revoked, Self::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }

    pub fn parse(field: &'static str, raw: &str) -> super::Result<Self> {
        let s = raw.trim();
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
            super::Error::invalid(
                "INVALID_STATE",
                field,
                format!("{field} must be one of pending, accepted, revoked, expired, got '{s}'"),
            )
            .with("value", s.chars().take(64).collect::<String>())
        })
    }
}

/// An invitation to an organization.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Invitation {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub organization_slug: String,
    pub email: String,
    pub role: OrgRole,
    /// As stored: pending, accepted or revoked.
    pub stored: InvitationState,
    pub invited_by: Uuid,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Invitation {
    /// The state at `now` (microseconds): expired once a pending
    /// invitation's time is up.
    pub fn state_at(&self, now: i64) -> InvitationState {
        match self.stored {
            InvitationState::Pending if self.expires_at <= now => InvitationState::Expired,
            other => other,
        }
    }

    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            id: self.id,
        }
    }

    /// FAILED_PRECONDITION naming why an invitation is no longer pending.
    pub fn not_pending(&self, now: i64) -> Option<super::Error> {
        let (reason, what) = match self.state_at(now) {
            InvitationState::Pending => return None,
            InvitationState::Accepted => ("INVITATION_ACCEPTED", "has already been accepted"),
            InvitationState::Revoked => ("INVITATION_REVOKED", "was revoked"),
            InvitationState::Expired => ("INVITATION_EXPIRED", "has expired"),
        };
        Some(
            super::Error::failed_precondition(reason, format!("this invitation {what}"))
                .with("invitation_id", self.id.to_string()),
        )
    }
}

/// What accepting an invitation made: the caller's membership.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Accepted {
    pub member: Member,
    pub organization_id: Uuid,
    pub organization_slug: String,
}
