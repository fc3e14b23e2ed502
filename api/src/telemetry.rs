//! Logging set-up, owned in one place.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Install the global subscriber. Logs go to stderr so `print-schema` output stays clean.
pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(&config.telemetry.log_filter)
        .unwrap_or_else(|_| EnvFilter::new(crate::config::TelemetrySettings::LOG));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into files or a log collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second init (tests start many servers in one process) is harmless: keep the first.
    let _ = match config.telemetry.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
