//! Spans of requests and reconciles (issue 21), and their export over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set. See docs/observability.md.

/// Records the SpaceONE code of the answer on the current request span (`OK` on success).
pub fn record_code(code: &'static str) {
    tracing::Span::current().record("code", code);
}
