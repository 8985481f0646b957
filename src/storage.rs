//! Each organization's isolated directory under the storage root:
//! `orgs/<organization id>/organization.json` and
//! `orgs/<organization id>/spaces/<space id>/`. Paths are built from ids
//! only, never from caller input.
//!
//! The database is the truth; a directory follows the committed state. After
//! every committed change `apply` makes the directory match what the database
//! holds then (so concurrent changes converge on the last one), and at start
//! `orgd serve` reconciles every directory.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::domain::model::Organization;
use crate::store::StorageState;

#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

const META_FILE: &str = "organization.json";
const TMP_PREFIX: &str = ".organization.json.";

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

    fn orgs_dir(&self) -> PathBuf {
        self.root.join("orgs")
    }

    fn org_dir(&self, org: Uuid) -> PathBuf {
        self.orgs_dir().join(org.to_string())
    }

    /// The body of `organization.json`.
    fn meta(org: &Organization) -> io::Result<Vec<u8>> {
        let mut body = serde_json::to_vec_pretty(&serde_json::json!({
            "id": org.id.to_string(),
            "name": org.name,
            "slug": org.slug,
        }))
        .map_err(io::Error::other)?;
        body.push(b'\n');
        Ok(body)
    }

    /// Makes the organization's directory hold exactly `state` (`None`: the
    /// organization does not exist, so neither does its directory).
    /// Idempotent; callers serialize calls for one organization.
    pub async fn apply(&self, org: Uuid, state: Option<&StorageState>) -> io::Result<()> {
        let dir = self.org_dir(org);
        let Some(state) = state else {
            return remove_dir_if_present(&dir).await;
        };
        let spaces_dir = self.apply_meta(&state.org).await?;

        let wanted: HashSet<Uuid> = state.spaces.iter().copied().collect();
        let mut present = HashSet::new();
        let mut entries = tokio::fs::read_dir(&spaces_dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            match name.to_str().and_then(|n| Uuid::parse_str(n).ok()) {
                Some(id) if wanted.contains(&id) => {
                    present.insert(id);
                }
                Some(_) => remove_dir_if_present(&entry.path()).await?,
                None => {
                    tracing::warn!(path = %entry.path().display(), "unexpected entry in a storage directory")
                }
            }
        }
        for space in wanted.difference(&present) {
            tokio::fs::create_dir_all(spaces_dir.join(space.to_string())).await?;
        }
        // Leftovers of an interrupted write.
        let mut entries = tokio::fs::read_dir(&dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(TMP_PREFIX))
            {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
        Ok(())
    }

    /// After a change to one space of the organization (attached,
    /// detached): that space's directory exists exactly when `attached`,
    /// and `organization.json` is current; the other spaces' directories
    /// are not listed, so the cost does not grow with the organization.
    /// `None`: the organization does not exist (as [`Storage::apply`]).
    /// Callers serialize calls for one organization.
    pub async fn apply_space(
        &self,
        org: Uuid,
        state: Option<&Organization>,
        space: Uuid,
        attached: bool,
    ) -> io::Result<()> {
        let Some(state) = state else {
            return remove_dir_if_present(&self.org_dir(org)).await;
        };
        let dir = self.apply_meta(state).await?.join(space.to_string());
        if attached {
            tokio::fs::create_dir_all(&dir).await
        } else {
            remove_dir_if_present(&dir).await
        }
    }

    /// Creates the organization's directory and its `spaces` directory if
    /// missing and rewrites `organization.json` if it differs; returns the
    /// `spaces` directory.
    async fn apply_meta(&self, org: &Organization) -> io::Result<PathBuf> {
        let dir = self.org_dir(org.id);
        let spaces_dir = dir.join("spaces");
        tokio::fs::create_dir_all(&spaces_dir).await?;
        let body = Self::meta(org)?;
        let meta = dir.join(META_FILE);
        let current = match tokio::fs::read(&meta).await {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if current.as_deref() != Some(body.as_slice()) {
            write_atomically(&dir, &meta, &body).await?;
        }
        Ok(spaces_dir)
    }

    /// The organization ids that have a directory.
    pub async fn org_ids(&self) -> io::Result<Vec<Uuid>> {
        let mut out = Vec::new();
        let mut entries = match tokio::fs::read_dir(self.orgs_dir()).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        while let Some(entry) = entries.next_entry().await? {
            match entry.file_name().to_str().and_then(|n| Uuid::parse_str(n).ok()) {
                Some(id) => out.push(id),
                None => {
                    tracing::warn!(path = %entry.path().display(), "unexpected entry in the storage root")
                }
            }
        }
        Ok(out)
    }
}

/// Writes `path` through a temporary file in `dir`, flushed before the
/// rename and the directory flushed after it, so a crash leaves the old or
/// the new file, never a torn one.
async fn write_atomically(dir: &Path, path: &Path, body: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{TMP_PREFIX}{}", Uuid::new_v4()));
    let result = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        tokio::io::AsyncWriteExt::write_all(&mut file, body).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, path).await?;
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
            .await
            .map_err(io::Error::other)?
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

async fn remove_dir_if_present(path: &Path) -> io::Result<()> {
    match tokio::fs::remove_dir_all(path).await {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
