//! Who may do what (SPEC §2), as pure functions of the caller and what they
//! hold. Every handler calls one of these before touching data.

use uuid::Uuid;

use super::error::{Error, Result};
use super::model::{OrgAccess, SpaceAccess};
use super::types::{OrgRole, SpaceRole, Visibility};

/// The authenticated user behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub email: String,
    pub is_superadmin: bool,
}

impl Caller {
    pub fn require_superadmin(&self, what: &str) -> Result<()> {
        if self.is_superadmin {
            Ok(())
        } else {
            Err(Error::denied(format!("only a superadmin may {what}")))
        }
    }
}

/// Organization-level operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgAction {
    /// Read the organization, its members and its content views.
    Read,
    /// Change the organization, its members and its spaces.
    Manage,
}

pub fn check_org(caller: &Caller, access: &OrgAccess, action: OrgAction) -> Result<()> {
    if caller.is_superadmin {
        return Ok(());
    }
    let allowed = match action {
        OrgAction::Read => access.role.is_some(),
        OrgAction::Manage => access.role == Some(OrgRole::Admin),
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::org_denied(&access.org.slug))
    }
}

/// Space-level operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceAction {
    /// Read the space and its members.
    Read,
    /// Change the space and its members.
    Manage,
    /// Upsert or delete content.
    WriteContent,
}

/// May the caller read the space's content? Space members; members of its
/// organization unless it is restricted; its organization's admins.
pub fn can_read_space(access: &SpaceAccess) -> bool {
    access.space_role.is_some()
        || access.org_role == Some(OrgRole::Admin)
        || (access.org_role.is_some() && access.space.visibility == Visibility::Organization)
}

pub fn check_space(caller: &Caller, access: &SpaceAccess, action: SpaceAction) -> Result<()> {
    if caller.is_superadmin {
        return Ok(());
    }
    let allowed = match action {
        SpaceAction::Read => can_read_space(access),
        SpaceAction::Manage => access.space_role == Some(SpaceRole::Admin),
        SpaceAction::WriteContent => {
            matches!(access.space_role, Some(SpaceRole::Admin | SpaceRole::Editor))
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::denied("not authorized for this space").with("space_id", access.space.id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{Organization, Space};

    fn caller(superadmin: bool) -> Caller {
        Caller {
            user_id: Uuid::now_v7(),
            email: "a@x.org".into(),
            is_superadmin: superadmin,
        }
    }

    fn org(role: Option<OrgRole>) -> OrgAccess {
        OrgAccess {
            org: Organization {
                id: Uuid::now_v7(),
                name: "Acme".into(),
                slug: "acme".into(),
                description: String::new(),
                created_at: 0,
                updated_at: 0,
                labels: Default::default(),
                etag: String::new(),
                deleted_at: None,
                purge_at: None,
            },
            role,
        }
    }

    fn space(vis: Visibility, space_role: Option<SpaceRole>, org_role: Option<OrgRole>) -> SpaceAccess {
        SpaceAccess {
            space: Space {
                id: Uuid::now_v7(),
                name: "S".into(),
                slug: "s".into(),
                description: String::new(),
                visibility: vis,
                repo: String::new(),
                agent: None,
                organization_id: Some(Uuid::now_v7()),
                created_at: 0,
                updated_at: 0,
                labels: Default::default(),
                etag: String::new(),
                deleted_at: None,
                purge_at: None,
            },
            space_role,
            org_role,
        }
    }

    #[test]
    fn organization_rules() {
        let plain = caller(false);
        assert!(check_org(&plain, &org(None), OrgAction::Read).is_err());
        assert!(check_org(&plain, &org(Some(OrgRole::Member)), OrgAction::Read).is_ok());
        assert!(check_org(&plain, &org(Some(OrgRole::Member)), OrgAction::Manage).is_err());
        assert!(check_org(&plain, &org(Some(OrgRole::Admin)), OrgAction::Manage).is_ok());
        assert!(check_org(&caller(true), &org(None), OrgAction::Manage).is_ok());
        let err = check_org(&plain, &org(None), OrgAction::Read).unwrap_err();
        assert_eq!(
            (err.reason, err.message.as_str()),
            ("NOT_AUTHORIZED", "not authorized for this organization")
        );
    }

    #[test]
    fn restricted_spaces_hide_from_plain_org_members() {
        let c = caller(false);
        let r = |a: &SpaceAccess| check_space(&c, a, SpaceAction::Read).is_ok();
        assert!(r(&space(Visibility::Organization, None, Some(OrgRole::Member))));
        assert!(!r(&space(Visibility::Restricted, None, Some(OrgRole::Member))));
        assert!(r(&space(Visibility::Restricted, None, Some(OrgRole::Admin))));
        assert!(r(&space(Visibility::Restricted, Some(SpaceRole::Viewer), None)));
        assert!(!r(&space(Visibility::Organization, None, None)));
    }

    #[test]
    fn space_writes_need_the_right_space_role() {
        let c = caller(false);
        let w = |role, action| {
            check_space(
                &c,
                &space(Visibility::Organization, role, Some(OrgRole::Admin)),
                action,
            )
            .is_ok()
        };
        assert!(w(Some(SpaceRole::Admin), SpaceAction::Manage));
        assert!(!w(Some(SpaceRole::Editor), SpaceAction::Manage));
        assert!(!w(None, SpaceAction::Manage), "an org admin is not a space admin");
        assert!(w(Some(SpaceRole::Editor), SpaceAction::WriteContent));
        assert!(!w(Some(SpaceRole::Viewer), SpaceAction::WriteContent));
    }
}
