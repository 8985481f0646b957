//! Tracing setup, done once per process.
//!
//! Lines go to stderr as text (coloured only on a terminal) or as JSON, one
//! object per line; every line written while serving a request carries the
//! request's span: its `request_id`, the RPC and the caller.
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported over
//! OTLP (gRPC): one per RPC (continuing the caller's W3C `traceparent`, as
//! Envoy forwards it) with a child per database operation. The exporter
//! honours the standard `OTEL_*` settings (e.g. `OTEL_BSP_SCHEDULE_DELAY`).

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" | "" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format '{other}': use text or json")),
        }
    }
}

/// Flushes exported spans when dropped (keep it until the process ends).
#[must_use]
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("orgd: flushing traces: {e}");
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `default_filter`), as
/// text; no traces.
pub fn init(default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Logs in `format`, and exports traces when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set.
pub fn init_with(default_filter: &str, format: LogFormat) -> Guard {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let provider = otlp_provider();
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("orgd"))
            .with_filter(filter())
    });
    if let Some(p) = &provider {
        opentelemetry::global::set_tracer_provider(p.clone());
    }
    // sqlx reports every statement as a debug event of `sqlx::query`: the
    // statements layer hears them whatever the log filter says.
    let statements = SqlStatements {
        traces: provider.is_some(),
    }
    .with_filter(
        tracing_subscriber::filter::Targets::new().with_target("sqlx::query", tracing::Level::DEBUG),
    );
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter()))
        .with(otel)
        .with(statements)
        .try_init();
    Guard(provider)
}

fn otlp_provider() -> Option<SdkTracerProvider> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok()?;
    if endpoint.trim().is_empty() {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_tonic().build() {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("orgd: traces are off: cannot export to {endpoint}: {e}");
            return None;
        }
    };
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("orgd")
                    .build(),
            )
            .build(),
    )
}

/// Reads W3C trace context from HTTP/2 headers.
pub struct HeaderExtractor<'a>(pub &'a tonic::codegen::http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// What one SQL statement cost, from sqlx's own statement events: a
/// latency histogram by statement kind (`SELECT`, `INSERT`, ...) and, when
/// traces are exported, a span per statement under the span that ran it.
pub struct SqlStatements {
    traces: bool,
}

#[derive(Default)]
struct StatementFields {
    summary: String,
    elapsed_secs: f64,
}

impl tracing::field::Visit for StatementFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "summary" {
            self.summary = value.to_owned();
        }
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            self.summary = format!("{value:?}").trim_matches('"').to_owned();
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for SqlStatements
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let mut fields = StatementFields::default();
        event.record(&mut fields);
        let kind = fields
            .summary
            .split_whitespace()
            .next()
            .unwrap_or("OTHER")
            .to_ascii_uppercase();
        crate::metrics::statement_seconds(&kind).observe(fields.elapsed_secs);
        if self.traces {
            use opentelemetry::trace::{Span as _, SpanKind, Tracer as _};
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let parent = tracing::Span::current().context();
            let end = std::time::SystemTime::now();
            let start = end
                .checked_sub(std::time::Duration::from_secs_f64(fields.elapsed_secs.max(0.0)))
                .unwrap_or(end);
            let tracer = opentelemetry::global::tracer("orgd");
            let mut span = tracer.build_with_context(
                opentelemetry::trace::SpanBuilder::from_name(kind)
                    .with_kind(SpanKind::Client)
                    .with_start_time(start)
                    .with_attributes([opentelemetry::KeyValue::new(
                        "db.statement.summary",
                        fields.summary,
                    )]),
                &parent,
            );
            span.end_with_timestamp(end);
        }
    }
}
