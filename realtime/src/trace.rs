//! W3C trace context (`traceparent`) in and out of `tracing` spans, wherever a trace leaves
//! the process: a client's HTTP request, a job in the queue, a signal through Redis.
//!
//! The spans' OpenTelemetry side exists only while the process keeps OpenTelemetry contexts
//! (it exports traces, or logs JSON with trace ids: see the API's `telemetry`); otherwise
//! there is no context to carry, [`traceparent`] answers `None` and [`continue_trace`]
//! changes nothing.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header (and field) name of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Longest `traceparent` taken from outside; version 00 is 55 characters, later versions may
/// append fields, an absurd one is not parsed at all.
const MAX_TRACEPARENT: usize = 256;

/// `span`'s trace context as a W3C `traceparent`, to be carried to whoever continues its
/// trace; `None` when the span has no valid OpenTelemetry context (traces are off).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Make `span` (just created, not yet entered) continue the trace `traceparent` names, as a
/// child of its span. A missing, malformed or invalid `traceparent` is ignored: the span
/// keeps the parent it has (or starts a new trace). Never fails.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|value| well_formed(value)) else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        // Fails only when traces are off or the span already started: nothing to do then.
        let _ = span.set_parent(context);
    }
}

/// Whether `value` has the W3C shape: `version-traceid-parentid-flags`, lowercase hex of 2,
/// 32, 16 and 2 digits (version 00 exactly so; a later one may append fields). Checked
/// here because the SDK's parser is lenient (it reads a short trace id as if zero-padded).
fn well_formed(value: &str) -> bool {
    let hex = |part: &str, digits: usize| {
        part.len() == digits
            && part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if value.len() > MAX_TRACEPARENT {
        return false;
    }
    let parts: Vec<&str> = value.split('-').collect();
    match parts.as_slice() {
        [version, trace_id, parent_id, flags, rest @ ..] => {
            hex(version, 2)
                && *version != "ff"
                && (rest.is_empty() || *version != "00")
                && hex(trace_id, 32)
                && hex(parent_id, 16)
                && hex(flags, 2)
        }
        _ => false,
    }
}

/// Give `span`'s OpenTelemetry side an attribute (nothing while traces are off). For what
/// belongs in the trace but would only clutter the span's log lines as a field.
pub fn set_attribute(
    span: &tracing::Span,
    key: &'static str,
    value: impl Into<opentelemetry::Value>,
) {
    span.set_attribute(key, value);
}

/// Mark `span` as failed, in its trace.
pub fn set_error(span: &tracing::Span, description: impl Into<String>) {
    span.set_status(opentelemetry::trace::Status::error(description.into()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_exporter_nothing_is_carried_and_nothing_fails() {
        let span = tracing::info_span!("test");
        continue_trace(
            &span,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        continue_trace(&span, Some("not a traceparent"));
        continue_trace(&span, Some(&"0".repeat(10_000)));
        continue_trace(&span, None);
        assert_eq!(traceparent(&span), None);
    }

    #[test]
    fn only_the_w3c_shape_is_well_formed() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(well_formed(good));
        assert!(well_formed(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"
        ));
        for bad in [
            "",
            "not-a-traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
        assert!(!well_formed(&format!("01-{}", "a".repeat(300))));
    }
}
