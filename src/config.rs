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
    /// Write the protobuf descriptor set (for Envoy's transcoder).
    Descriptor {
        #[arg(long)]
        out: PathBuf,
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
    pub jwt_secret: Option<String>,
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
    /// Database connections (readers on SQLite).
    #[arg(long, env = "ORGD_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
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
    /// dir (generated on first use, readable by the owner only).
    pub fn secret(&self, data_dir: &Path) -> std::io::Result<Secret> {
        if let Some(s) = self.jwt_secret.as_ref().filter(|s| !s.is_empty()) {
            return Ok(Secret::new(s.clone()));
        }
        let path = data_dir.join("jwt_secret");
        match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => return Ok(Secret::new(s.trim().to_owned())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(data_dir)?;
        write_private(&path, &hex::encode(rand::random::<[u8; 32]>()))?;
        // Read back: a concurrent first start may have written its own.
        let secret = std::fs::read_to_string(&path)?;
        Ok(Secret::new(secret.trim().to_owned()))
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

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut f) => f.write_all(contents.as_bytes()),
        // Another process created it first: both use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://orgd:s3cret@db:5432/orgd"),
            "postgres://orgd:***@db:5432/orgd"
        );
        assert_eq!(redact_url("sqlite://data/orgd.db"), "sqlite://data/orgd.db");
        assert!(!format!("{:?}", DatabaseUrl("postgres://u:pw@h/d".into())).contains("pw"));
    }
}
