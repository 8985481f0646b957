//! Each organization's isolated directory under the storage root:
//! `orgs/<organization id>/organization.json` and
//! `orgs/<organization id>/spaces/<space id>/`. Paths are built from ids
//! only, never from caller input.

use std::io;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::domain::model::Organization;

#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The organization's directory relative to the root.
    pub fn relative_dir(org: Uuid) -> String {
        format!("orgs/{org}")
    }

    fn org_dir(&self, org: Uuid) -> PathBuf {
        self.root.join("orgs").join(org.to_string())
    }

    fn space_dir(&self, org: Uuid, space: Uuid) -> PathBuf {
        self.org_dir(org).join("spaces").join(space.to_string())
    }

    /// Creates the directory and writes `organization.json`.
    pub async fn create_org(&self, org: &Organization) -> io::Result<()> {
        tokio::fs::create_dir_all(self.org_dir(org.id).join("spaces")).await?;
        self.write_org_meta(org).await
    }

    /// Rewrites `organization.json` (atomically, through a rename).
    pub async fn write_org_meta(&self, org: &Organization) -> io::Result<()> {
        let dir = self.org_dir(org.id);
        tokio::fs::create_dir_all(dir.join("spaces")).await?;
        let body = serde_json::to_vec_pretty(&serde_json::json!({
            "id": org.id.to_string(),
            "name": org.name,
            "slug": org.slug,
        }))
        .map_err(io::Error::other)?;
        let tmp = dir.join(format!(".organization.json.{}", Uuid::new_v4()));
        tokio::fs::write(&tmp, body).await?;
        tokio::fs::rename(&tmp, dir.join("organization.json")).await
    }

    pub async fn attach_space(&self, org: Uuid, space: Uuid) -> io::Result<()> {
        tokio::fs::create_dir_all(self.space_dir(org, space)).await
    }

    pub async fn detach_space(&self, org: Uuid, space: Uuid) -> io::Result<()> {
        remove_dir_if_present(&self.space_dir(org, space)).await
    }

    pub async fn remove_org(&self, org: Uuid) -> io::Result<()> {
        remove_dir_if_present(&self.org_dir(org)).await
    }
}

async fn remove_dir_if_present(path: &Path) -> io::Result<()> {
    match tokio::fs::remove_dir_all(path).await {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
