//! Command-line flags with their `ORGD_*` environment equivalents (a flag
//! wins over the environment, which wins over the default). Secrets and
//! database URLs never print.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::auth::{AuthConfig, Secret};

#[derive(Debug, Parser)]
#[command(name = "orgd", version, about = "Multi-tenant organizations service (gRPC)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server (migrations are applied at start).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DataArgs),
    /// Print a bearer token signed with the server's HS256 secret.
    Token(TokenArgs),
    /// Grant or revoke superadmin rights.
    Superadmin {
        #[command(subcommand)]
        action: SuperadminAction,
    },
    /// Fill the database with a generated multi-tenant dataset (benchmarks).
    Generate {
        /// 1.0 = 1,000 organizations, 10,000 spaces, 1,000,000 products and
        /// issues, 200,000 contracts, 500,000 quality checks.
        #[arg(long, default_value_t = 0.01)]
        scale: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[command(flatten)]
        data: DataArgs,
        /// Root of the organizations' storage directories; default <data dir>/storage.
        #[arg(long, env = "ORGD_STORAGE_ROOT")]
        storage_root: Option<PathBuf>,
    },
    /// Export, verify or prune audit trails.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Write the OpenAPI 3.1 document of the REST surface (Envoy serves it at
    /// /openapi.json).
    Openapi {
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the protobuf descriptor set (for Envoy's transcoder).
    Descriptor {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Write an organization's audit trail as NDJSON (a header line with
    /// signed checkpoints, then one line per event), read from the database.
    Export {
        /// The organization's slug or id (an id also reaches a deleted
        /// organization's trail; the nil id is the trail of spaces without
        /// an organization).
        #[arg(long)]
        organization: String,
        /// Output file; standard output when omitted.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        audit: AuditArgs,
    },
    /// Verify an export offline: checkpoints, seqs, links and hashes. Exits
    /// non-zero when the file does not verify.
    Verify {
        file: PathBuf,
        /// The signing key to trust (hex, as GetAuditSigningKey serves it);
        /// without it the key in the file is used.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Remove events older than the retention now (orgd serve also does so
    /// every hour), leaving signed checkpoints so the chains still verify.
    Prune {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        audit: AuditArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SuperadminAction {
    Grant {
        email: String,
        #[command(flatten)]
        data: DataArgs,
    },
    Revoke {
        email: String,
        #[command(flatten)]
        data: DataArgs,
    },
}

/// Where orgd keeps its state.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Data directory (SQLite database, generated JWT secret, storage).
    #[arg(long, env = "ORGD_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// sqlite:PATH or postgres://...; default: a SQLite file in the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,
}

#[derive(Debug, Clone, Args)]
pub struct JwtArgs {
    /// HS256 secret; default: generated on first start into the data dir.
    #[arg(long, env = "ORGD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// PEM file of an RSA or EC public key, for RS256/ES256 tokens.
    #[arg(long, env = "ORGD_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// Required `iss` claim.
    #[arg(long, env = "ORGD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim.
    #[arg(long, env = "ORGD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[arg(long, env = "ORGD_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// Emails made superadmin at start (comma-separated).
    #[arg(long, env = "ORGD_SUPERADMINS", value_delimiter = ',')]
    pub superadmins: Vec<String>,
    /// Root of the organizations' storage directories; default <data dir>/storage.
    #[arg(long, env = "ORGD_STORAGE_ROOT")]
    pub storage_root: Option<PathBuf>,
    /// Database connections (readers on SQLite); default 16 on PostgreSQL,
    /// twice the cores (2 to 16) on SQLite.
    #[arg(long, env = "ORGD_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// SQLite: how long a write waits for a write lock held by another
    /// process (a backup, the sqlite3 shell) before answering UNAVAILABLE.
    #[arg(long, env = "ORGD_DB_BUSY_TIMEOUT", default_value = "10s")]
    pub db_busy_timeout: String,
    #[command(flatten)]
    pub audit: AuditArgs,
    /// Serve Prometheus metrics on this address (`GET /metrics`); off when
    /// unset.
    #[arg(long, env = "ORGD_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Log lines as `text` (coloured only on a terminal) or `json`.
    #[arg(long, env = "ORGD_LOG_FORMAT", default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,
    /// Calls served at once; more wait up to --admission-wait-ms for a turn,
    /// then get RESOURCE_EXHAUSTED (OVERLOADED). 0 admits everything.
    #[arg(long, env = "ORGD_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,
    /// How long a call waits for a turn when --max-in-flight are running.
    #[arg(long, env = "ORGD_ADMISSION_WAIT_MS", default_value_t = 100)]
    pub admission_wait_ms: u64,
    /// How long a read waits for a database reader when every one is busy
    /// before the call gets RESOURCE_EXHAUSTED (OVERLOADED).
    #[arg(long, env = "ORGD_DB_READ_WAIT_MS", default_value_t = 100)]
    pub db_read_wait_ms: u64,
    /// How long a deleted organization or space can be restored before it
    /// is purged (e.g. 30d, 12h); 0 purges at once.
    #[arg(long, env = "ORGD_SOFT_DELETE_WINDOW", default_value = "30d")]
    pub soft_delete_window: String,
    /// Calls per second one caller may make (in bursts of twice that); 0
    /// turns the limit off. Held per instance.
    #[arg(long, env = "ORGD_RATE_LIMIT_CALLER", default_value_t = 1000.0, value_parser = rate)]
    pub rate_limit_caller: f64,
    /// Calls per second all callers together may make on one organization
    /// (in bursts of twice that); 0 turns the limit off. Held per instance.
    #[arg(long, env = "ORGD_RATE_LIMIT_ORG", default_value_t = 10000.0, value_parser = rate)]
    pub rate_limit_org: f64,
    /// Entries of the in-process snapshot that answers the caller lookup,
    /// the organization access check and GetOrganization without the
    /// database (per kind; organization details hold a tenth). Changes
    /// made anywhere reach it within 100 ms. 0 turns it off.
    #[arg(long, env = "ORGD_CACHE_ENTRIES", default_value_t = crate::store::DEFAULT_CACHE_ENTRIES)]
    pub cache_entries: usize,
}

impl ServeArgs {
    /// The soft-delete window; `0` purges at once.
    pub fn soft_delete_window(&self) -> Result<std::time::Duration, String> {
        let raw = self.soft_delete_window.trim();
        if raw == "0" {
            return Ok(std::time::Duration::ZERO);
        }
        let secs = crate::auth::parse_ttl(raw).map_err(|e| format!("--soft-delete-window: {e}"))?;
        Ok(std::time::Duration::from_secs(secs as u64))
    }
}

/// A rate in calls per second: a finite number, 0 or more.
fn rate(raw: &str) -> Result<f64, String> {
    let value: f64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("'{raw}' is not a number of calls per second"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "'{raw}': a rate is 0 (off) or a positive number of calls per second"
        ));
    }
    Ok(value)
}

#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// File holding the Ed25519 seed (hex) that signs audit checkpoints;
    /// default: <data dir>/audit_signing_key, generated on first start.
    #[arg(long, env = "ORGD_AUDIT_KEY_FILE")]
    pub audit_key_file: Option<PathBuf>,
    /// How long audit events are kept (e.g. 365d, 12h); 0 keeps them
    /// forever.
    #[arg(long, env = "ORGD_AUDIT_RETENTION", default_value = "365d")]
    pub audit_retention: String,
}

impl AuditArgs {
    pub fn signer(&self, data_dir: &Path) -> std::io::Result<crate::signing::AuditSigner> {
        crate::signing::AuditSigner::load(data_dir, self.audit_key_file.as_deref())
    }

    /// The retention, `None` for "forever".
    pub fn retention(&self) -> Result<Option<std::time::Duration>, String> {
        let raw = self.audit_retention.trim();
        if raw == "0" {
            return Ok(None);
        }
        let secs = crate::auth::parse_ttl(raw).map_err(|e| format!("--audit-retention: {e}"))?;
        Ok(Some(std::time::Duration::from_secs(secs as u64)))
    }
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[arg(long)]
    pub email: String,
    #[arg(long)]
    pub name: Option<String>,
    /// Lifetime, e.g. 30m, 1h, 7d.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub jwt: JwtArgs,
}

/// A database URL whose password never prints.
#[derive(Clone)]
pub struct DatabaseUrl(pub String);

impl std::str::FromStr for DatabaseUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
    {
        let user = userinfo.split(':').next().unwrap_or_default();
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

impl DataArgs {
    /// The database URL, defaulting to `<data dir>/orgd.db`.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.0.trim().is_empty() => url.0.clone(),
            _ => format!("sqlite://{}", self.data_dir.join("orgd.db").display()),
        }
    }
}

impl JwtArgs {
    /// The HS256 secret: the configured one, or the one kept in the data
    /// dir (generated on first use, readable by the owner only). Secrets
    /// shorter than 16 characters are refused.
    pub fn secret(&self, data_dir: &Path) -> std::io::Result<Secret> {
        let too_short = |what: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{what} is shorter than {MIN_SECRET_LEN} characters"),
            )
        };
        if let Some(s) = self.jwt_secret.as_ref().filter(|s| !s.expose().is_empty()) {
            if s.expose().len() < MIN_SECRET_LEN {
                return Err(too_short("ORGD_JWT_SECRET"));
            }
            return Ok(s.clone());
        }
        let path = data_dir.join("jwt_secret");
        if !path.exists() {
            std::fs::create_dir_all(data_dir)?;
            create_secret_file(&path, &hex::encode(rand::random::<[u8; 32]>()))?;
        }
        // Read back: a concurrent first start may have written its own.
        let secret = std::fs::read_to_string(&path)?.trim().to_owned();
        if secret.len() < MIN_SECRET_LEN {
            return Err(too_short(&format!("the secret in {}", path.display())));
        }
        Ok(Secret::new(secret))
    }

    pub fn auth_config(&self, data_dir: &Path) -> std::io::Result<AuthConfig> {
        let public_key_pem = match &self.jwt_public_key {
            Some(p) => Some(std::fs::read(p)?),
            None => None,
        };
        Ok(AuthConfig {
            hs256_secret: self.secret(data_dir)?,
            public_key_pem,
            issuer: self.jwt_issuer.clone().filter(|s| !s.is_empty()),
            audience: self.jwt_audience.clone().filter(|s| !s.is_empty()),
        })
    }
}

pub const MIN_SECRET_LEN: usize = 16;

/// Writes the secret to a private temporary file, then links it into place
/// only if no secret exists yet: readers never see a partial file, and the
/// first of two concurrent writers wins.
pub(crate) fn create_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp.{}", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(contents.as_bytes())?;
        f.sync_all()
    });
    let linked = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let _ = std::fs::remove_file(&tmp);
    linked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_generated_once_and_short_ones_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let args = JwtArgs {
            jwt_secret: None,
            jwt_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
        };
        let first = args.secret(dir.path()).expect("generated");
        assert_eq!(first.expose().len(), 64);
        assert_eq!(args.secret(dir.path()).expect("kept"), first);
        std::fs::write(dir.path().join("jwt_secret"), "").expect("truncate");
        assert!(
            args.secret(dir.path()).is_err(),
            "an empty secret file is refused"
        );
        let short = JwtArgs {
            jwt_secret: Some(Secret::new("short")),
            ..args
        };
        assert!(short.secret(dir.path()).is_err());
    }

    #[test]
    fn urls_are_redacted() {
        let jwt = JwtArgs {
            jwt_secret: Some(Secret::new("hunter2hunter2hunter2")),
            jwt_public_key: None,
            jwt_issuer: None,
            jwt_audience: None,
        };
        assert!(!format!("{jwt:?}").contains("hunter2"));
        assert_eq!(
            redact_url("postgres://orgd:s3cret@db:5432/orgd"),
            "postgres://orgd:***@db:5432/orgd"
        );
        assert_eq!(redact_url("sqlite://data/orgd.db"), "sqlite://data/orgd.db");
        assert!(!format!("{:?}", DatabaseUrl("postgres://u:pw@h/d".into())).contains("pw"));
    }
}
