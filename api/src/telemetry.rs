//! Logs and traces, set up in one place.
//!
//! Logs go to stderr, as text or JSON (`LOG_FORMAT`), filtered by `RUST_LOG`. Traces are
//! exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set:
//! every `tracing` span at info level or above becomes an OpenTelemetry span, whatever
//! `RUST_LOG` says (it filters the logs only), so the database queries' spans (sea-orm's, at
//! info, silenced in the logs by the default `sea_orm=warn`) are traced. The exporter reads
//! the standard variables itself ([`OTEL_VARIABLES`]); the protocol is
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the default, or `grpc`).
//!
//! JSON log lines inside a span carry its `trace_id` and `span_id` (see [`WithTraceIds`]);
//! so that they do even where nothing is exported, JSON logs keep OpenTelemetry contexts
//! (without an exporter) when no endpoint is set.

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, format};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

use crate::config::{Config, LogFormat};

/// The standard OpenTelemetry variables the SDK and the OTLP exporter read (not settings of
/// `codecrafter`'s own, so not in `--help`).
pub const OTEL_VARIABLES: &[&str] = &[
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
];

/// The service name when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` gives one.
const SERVICE_NAME: &str = "codecrafter";

/// What [`init`] installed; [`Telemetry::shutdown`] on a graceful stop sends the last spans.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Export the spans still waiting and stop the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The batch processor's shutdown blocks until its task on this runtime answers: off
        // the runtime's threads, so that task can run.
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "could not send the last spans"),
            Err(error) => tracing::warn!(%error, "could not stop the trace exporter"),
        }
    }
}

/// Whether the environment asks for traces to be exported.
fn exporting() -> bool {
    let value = |name: &str| std::env::var(name).unwrap_or_default();
    let set = |name: &str| !value(name).trim().is_empty();
    let disabled = value("OTEL_SDK_DISABLED")
        .trim()
        .eq_ignore_ascii_case("true");
    let no_exporter = value("OTEL_TRACES_EXPORTER")
        .trim()
        .eq_ignore_ascii_case("none");
    !disabled
        && !no_exporter
        && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The process as traces name it: the detected resource (`OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`), named [`SERVICE_NAME`] when they name nothing.
fn resource() -> opentelemetry_sdk::Resource {
    let detected = opentelemetry_sdk::Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    if named {
        detected
    } else {
        opentelemetry_sdk::Resource::builder()
            .with_service_name(SERVICE_NAME)
            .build()
    }
}

/// A provider exporting over OTLP in batches, on this tokio runtime (call inside it).
fn exporting_provider() -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
    // The transport follows OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL; endpoint, headers and
    // timeout come from their variables too.
    let exporter = opentelemetry_otlp::SpanExporter::builder().build()?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource())
        .build())
}

/// Which spans become OpenTelemetry spans: info and above, but nothing of the libraries
/// that carry the spans out (their own spans would be traced while exporting), and a
/// database query only inside another span: the background polls (the reaper's, every few
/// seconds) would each be a trace of one query.
fn traced<S>() -> impl tracing_subscriber::layer::Filter<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    use tracing_subscriber::filter::FilterExt as _;
    let in_a_span = tracing_subscriber::filter::dynamic_filter_fn(|metadata, context| {
        !(metadata.is_span() && metadata.target().starts_with("sea_orm"))
            || context.lookup_current().is_some()
    });
    libraries_off().and(in_a_span)
}

/// Info and above, but nothing of the exporting libraries.
fn libraries_off() -> Targets {
    Targets::new().with_default(LevelFilter::INFO).with_targets(
        [
            "h2",
            "hyper",
            "hyper_util",
            "tonic",
            "tower",
            "opentelemetry",
            "opentelemetry_sdk",
            "opentelemetry_otlp",
            "opentelemetry_http",
        ]
        .map(|target| (target, LevelFilter::OFF)),
    )
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The log layer: text or JSON to stderr, filtered by `RUST_LOG`.
fn log_layer(config: &Config) -> BoxedLayer {
    let filter = EnvFilter::try_new(&config.telemetry.log_filter)
        .unwrap_or_else(|_| EnvFilter::new(crate::config::TelemetrySettings::LOG));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into files or a log collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.telemetry.log_format {
        LogFormat::Text => layer.with_filter(filter).boxed(),
        LogFormat::Json => layer
            .json()
            .event_format(WithTraceIds(format().json()))
            .with_filter(filter)
            .boxed(),
    }
}

/// Install the global subscriber (logs, and traces when asked for). Logs go to stderr so
/// `print-schema` output stays clean.
pub fn init(config: &Config) -> Telemetry {
    let mut failure = None;
    let provider = if exporting() {
        match exporting_provider() {
            Ok(provider) => Some(provider),
            Err(error) => {
                failure = Some(error);
                None
            }
        }
    } else if config.telemetry.log_format == LogFormat::Json {
        // Contexts for the logs' ids, exported nowhere.
        Some(SdkTracerProvider::builder().build())
    } else {
        None
    };
    let trace_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("codecrafter"))
            .with_filter(traced())
    });
    let subscriber = Registry::default()
        .with(log_layer(config))
        .with(trace_layer);
    // A second init (tests start many servers in one process) is harmless: keep the first.
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        if let Some(provider) = provider {
            let _ = provider.shutdown();
        }
        return Telemetry::default();
    }
    if let Some(error) = failure {
        tracing::error!(?error, "cannot export traces; going on without them");
    }
    Telemetry { provider }
}

/// A JSON line's event format that puts the `trace_id` and `span_id` of the span the event is
/// in first in the line, so that a log collector can join the line to its trace.
///
/// Hand-written, and small: tracing-subscriber's JSON format cannot be given fields of its
/// own, and a second JSON format (another crate) would change every line's shape. This one
/// lets tracing-subscriber's format write the line, then puts the two fields in front.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = trace_ids(ctx) else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                let separator = if rest.starts_with('}') { "" } else { "," };
                write!(
                    writer,
                    "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"{separator}{rest}"
                )
            }
            None => writer.write_str(&line),
        }
    }
}

/// The trace and span id of the innermost span the event is in, as lowercase hex.
fn trace_ids<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<(String, String)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let span = ctx.event_scope()?.next()?;
    let context = tracing::dispatcher::get_default(|dispatch| {
        tracing_opentelemetry::get_otel_context(&span.id(), dispatch)
    })?;
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}
