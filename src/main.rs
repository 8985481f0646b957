//! The orgd command line. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use orgd::auth::{Claims, issue_token, parse_ttl};
use orgd::config::{AuditAction, AuditArgs, Cli, Command, DataArgs, ServeArgs, SuperadminAction, TokenArgs};
use orgd::domain::types::Email;
use orgd::progress::{Progress, Reporter};
use orgd::store::{self, StoreOptions};
use orgd::{ServerConfig, build_app, serve, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => run_serve(args).await,
        Command::Migrate(data) => run_migrate(data).await,
        Command::Token(args) => run_token(args),
        Command::Superadmin { action } => run_superadmin(action).await,
        Command::Generate {
            scale,
            seed,
            data,
            storage_root,
        } => run_generate(scale, seed, data, storage_root).await,
        Command::Audit { action } => run_audit(action).await,
        Command::Openapi { out } => orgd::openapi::document().and_then(|doc| {
            let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
            std::fs::write(&out, text + "\n").map_err(|e| format!("writing {}: {e}", out.display()))
        }),
        Command::Descriptor { out } => std::fs::write(&out, orgd::proto::FILE_DESCRIPTOR_SET)
            .map_err(|e| format!("writing {}: {e}", out.display())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("orgd: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run_serve(args: ServeArgs) -> Result<(), String> {
    let _traces = telemetry::init_with("info", args.log_format);
    std::fs::create_dir_all(&args.data.data_dir)
        .map_err(|e| format!("creating data dir {}: {e}", args.data.data_dir.display()))?;
    let config = ServerConfig {
        database_url: args.data.database_url(),
        storage_root: args
            .storage_root
            .clone()
            .unwrap_or_else(|| args.data.data_dir.join("storage")),
        auth: args
            .jwt
            .auth_config(&args.data.data_dir)
            .map_err(|e| format!("reading JWT settings: {e}"))?,
        superadmins: args.superadmins.clone(),
        db_max_connections: args
            .db_max_connections
            .unwrap_or_else(|| store::default_max_connections(&args.data.database_url())),
        db_busy_timeout: std::time::Duration::from_secs(
            parse_ttl(&args.db_busy_timeout).map_err(|e| format!("--db-busy-timeout: {e}"))? as u64,
        ),
        audit_signer: args
            .audit
            .signer(&args.data.data_dir)
            .map_err(|e| format!("reading the audit signing key: {e}"))?,
        audit_retention: args.audit.retention()?,
        soft_delete_window: args.soft_delete_window()?,
        admission: orgd::api::admission::AdmissionConfig {
            max_in_flight: args.max_in_flight,
            wait: std::time::Duration::from_millis(args.admission_wait_ms),
            read_wait: std::time::Duration::from_millis(args.db_read_wait_ms),
        },
        rate_limits: orgd::ratelimit::RateLimitConfig {
            caller: args.rate_limit_caller,
            organization: args.rate_limit_org,
        },
        cache_entries: args.cache_entries,
    };
    let app = build_app(&config).await?;
    let listener = tokio::net::TcpListener::bind(args.grpc_addr)
        .await
        .map_err(|e| format!("binding {}: {e}", args.grpc_addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, backend = app.store.backend(), "orgd serving gRPC");
    let metrics = match args.metrics_addr {
        Some(at) => {
            let listener = tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| format!("binding the metrics address {at}: {e}"))?;
            tracing::info!(addr = %at, "serving metrics at /metrics");
            let app = app.clone();
            Some(tokio::spawn(orgd::metrics::serve(
                listener,
                app,
                std::future::pending::<()>(),
            )))
        }
        None => None,
    };
    let served = serve(app, listener, shutdown_signal()).await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    served.map_err(|e| format!("server error: {e}"))?;
    tracing::info!("orgd stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

async fn open_store(data: &DataArgs) -> Result<std::sync::Arc<dyn store::Store>, String> {
    open_store_with(data, &|_: &str| {}).await
}

/// The store of a command, migrated, `progress` hearing about migrations.
async fn open_store_with(
    data: &DataArgs,
    progress: &dyn Reporter,
) -> Result<std::sync::Arc<dyn store::Store>, String> {
    std::fs::create_dir_all(&data.data_dir).map_err(|e| format!("creating data dir: {e}"))?;
    let store = store::connect(
        &data.database_url(),
        &StoreOptions {
            max_connections: 2,
            ..StoreOptions::default()
        },
    )
    .await?;
    store
        .migrate(progress)
        .await
        .map_err(|e| format!("applying migrations: {}", e.message))?;
    Ok(store)
}

async fn run_migrate(data: DataArgs) -> Result<(), String> {
    telemetry::init("warn");
    let progress = Progress::new();
    let store = open_store_with(&data, &progress).await?;
    progress.finish();
    println!("migrations applied ({})", store.backend());
    Ok(())
}

async fn run_superadmin(action: SuperadminAction) -> Result<(), String> {
    telemetry::init("warn");
    let (email, data, grant) = match action {
        SuperadminAction::Grant { email, data } => (email, data, true),
        SuperadminAction::Revoke { email, data } => (email, data, false),
    };
    let email = Email::parse("email", &email).map_err(|e| e.message)?;
    let store = open_store(&data).await?;
    let user = store.set_superadmin(&email, grant).await.map_err(|e| e.message)?;
    println!(
        "{} is {}a superadmin",
        user.email,
        if user.is_superadmin { "" } else { "no longer " }
    );
    Ok(())
}

fn run_token(args: TokenArgs) -> Result<(), String> {
    let email = Email::parse("email", &args.email).map_err(|e| e.message)?;
    let ttl = parse_ttl(&args.ttl)?;
    let secret = args
        .jwt
        .secret(&args.data.data_dir)
        .map_err(|e| format!("reading the JWT secret: {e}"))?;
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        email: email.as_str().to_owned(),
        exp: now + ttl,
        name: args.name,
        sub: None,
        iat: Some(now),
        iss: args.jwt.jwt_issuer.filter(|s| !s.is_empty()),
        aud: args.jwt.jwt_audience.filter(|s| !s.is_empty()),
    };
    println!("{}", issue_token(&secret, &claims)?);
    Ok(())
}

async fn run_generate(
    scale: f64,
    seed: u64,
    data: DataArgs,
    storage_root: Option<std::path::PathBuf>,
) -> Result<(), String> {
    telemetry::init("warn");
    if !(scale > 0.0 && scale <= 10.0) {
        return Err("--scale must be greater than 0 and at most 10".into());
    }
    let store = open_store(&data).await?;
    let root = storage_root.unwrap_or_else(|| data.data_dir.join("storage"));
    let signer = orgd::signing::AuditSigner::load(&data.data_dir, None)
        .map_err(|e| format!("reading the audit signing key: {e}"))?;
    let app = orgd::App::new(
        store,
        None,
        orgd::storage::Storage::new(root),
        std::sync::Arc::new(signer),
    );
    let plan = orgd::generate::Plan {
        seed,
        ..orgd::generate::Plan::scaled(scale)
    };
    let progress = Progress::new();
    let dataset = orgd::generate::generate(&app, &plan, &progress)
        .await
        .map_err(|e| e.message)?;
    progress.finish();
    println!(
        "generated {} content rows; largest organization: {} (admin {}, member {})",
        plan.content_rows(),
        dataset.largest_slug,
        dataset.admin_email,
        dataset.member_email
    );
    Ok(())
}

/// The App of a command-line tool: the database and the signing key of the
/// data dir, no token checks.
async fn offline_app(data: &DataArgs, audit: &AuditArgs) -> Result<orgd::App, String> {
    let store = open_store(data).await?;
    let signer = audit
        .signer(&data.data_dir)
        .map_err(|e| format!("reading the audit signing key: {e}"))?;
    Ok(orgd::App::new(
        store,
        None,
        orgd::storage::Storage::new(data.data_dir.join("storage")),
        std::sync::Arc::new(signer),
    ))
}

async fn run_audit(action: AuditAction) -> Result<(), String> {
    telemetry::init("warn");
    match action {
        AuditAction::Export {
            organization,
            out,
            data,
            audit,
        } => {
            let app = offline_app(&data, &audit).await?;
            let chain = match uuid::Uuid::parse_str(organization.trim()) {
                Ok(id) => id,
                Err(_) => {
                    app.store
                        .organization_access(organization.trim(), uuid::Uuid::nil())
                        .await
                        .map_err(|e| e.message)?
                        .ok_or_else(|| format!("organization '{organization}' not found"))?
                        .org
                        .id
                }
            };
            let mut sink: Box<dyn std::io::Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout())),
            };
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
            let export = app.export(chain, tx);
            let progress = Progress::new();
            progress.phase("exporting events", 0);
            let write = async {
                while let Some(chunk) = rx.recv().await {
                    sink.write_all(&chunk)
                        .map_err(|e| format!("writing the export: {e}"))?;
                    progress.advance(chunk.iter().filter(|b| **b == b'\n').count() as u64);
                }
                sink.flush().map_err(|e| format!("writing the export: {e}"))
            };
            let (exported, written) = tokio::join!(export, write);
            exported.map_err(|e| e.message)?;
            written?;
            progress.finish();
            if let Some(path) = out {
                eprintln!("exported the audit trail of {chain} to {}", path.display());
            }
            Ok(())
        }
        AuditAction::Verify { file, public_key } => {
            let opened =
                std::fs::File::open(&file).map_err(|e| format!("opening {}: {e}", file.display()))?;
            let size = opened.metadata().map(|m| m.len()).unwrap_or(0);
            let progress = Progress::new();
            progress.phase("verifying bytes", size);
            let reader = std::io::BufReader::new(orgd::progress::Reading::new(opened, &progress));
            let report = orgd::export::verify(reader, public_key.as_deref());
            progress.finish();
            let report = report?;
            let key = if report.key_pinned {
                "the given key"
            } else {
                "the key in the file (pass --public-key to pin it)"
            };
            match report.broken {
                None => {
                    println!(
                        "valid: {} events of {}, head seq {} hash {}, signed by {key}",
                        report.checked, report.organization_id, report.head_seq, report.head_hash
                    );
                    Ok(())
                }
                Some((seq, reason)) => Err(format!(
                    "INVALID at seq {seq}: {reason} ({} events verified before it)",
                    report.checked
                )),
            }
        }
        AuditAction::Prune { data, audit } => {
            let Some(retention) = audit.retention()? else {
                println!("retention is 0 (keep forever): nothing to prune");
                return Ok(());
            };
            let app = offline_app(&data, &audit).await?;
            let cutoff = chrono::Utc::now().timestamp_micros()
                - i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
            let removed = app.prune_audit(cutoff).await.map_err(|e| e.message)?;
            println!(
                "removed {removed} audit events older than {}",
                audit.audit_retention
            );
            Ok(())
        }
    }
}
