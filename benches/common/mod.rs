//! What the benchmarks share: their flags, a database per run, and tokens
//! and requests for the server under test. Each benchmark uses a part.
#![allow(dead_code)]

use orgd::auth::{Claims, Secret, issue_token};
use sqlx::Connection;
use tonic::Request;

/// The HS256 secret the benchmarks' servers trust.
pub const SECRET: &str = "benchmark-secret-0123456789";

/// Hands each `--name value` pair of the command line to `set`, which
/// returns whether it knew the flag; anything else (cargo bench passes
/// `--bench`) is skipped.
pub fn flags(mut set: impl FnMut(&str, &str) -> bool) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).map(String::as_str).unwrap_or_default();
        i += if set(&args[i], value) { 2 } else { 1 };
    }
}

/// `--backends sqlite,postgres` as a list.
pub fn backends(value: &str) -> Vec<String> {
    value.split(',').map(str::to_owned).collect()
}

/// A fresh database for one run: a SQLite file named `name` in `dir`, or a
/// new database on the PostgreSQL server of DATABASE_URL.
pub async fn database_url(backend: &str, dir: &std::path::Path, name: &str) -> String {
    if backend == "sqlite" {
        return format!("sqlite://{}", dir.join(format!("{name}.db")).display());
    }
    let base = std::env::var("DATABASE_URL")
        .expect("the postgres benchmark needs DATABASE_URL (see scripts/bench.sh)");
    let db = format!("orgd_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut admin)
        .await
        .expect("create db");
    let (prefix, _) = base.rsplit_once('/').expect("database in DATABASE_URL");
    format!("{prefix}/{db}")
}

/// A day-long token for `email`, signed with [`SECRET`].
pub fn token(email: &str) -> String {
    let claims = Claims {
        email: email.into(),
        exp: chrono::Utc::now().timestamp() + 24 * 3600,
        name: None,
        sub: None,
        iat: None,
        iss: None,
        aud: None,
    };
    issue_token(&Secret::new(SECRET), &claims).expect("token")
}

/// A request carrying `authorization: Bearer <t>`.
pub fn req<T>(t: &str, m: T) -> Request<T> {
    let mut r = Request::new(m);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {t}").parse().expect("header"));
    r
}
