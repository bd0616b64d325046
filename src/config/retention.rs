//! Retention: how long received events, finished runs and job reports are kept, and how the
//! maintenance that deletes them paces itself.

use super::ConfigError;
use serde::Deserialize;

/// What the maintenance deletes, and how.
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionConfig {
    /// Received events older than this many days are deleted by the periodic maintenance
    /// (0 = keep forever). Redeliveries of an event are recognised only while it is kept, so
    /// this must exceed every sender's redelivery horizon (brokers retry for minutes to hours,
    /// GitHub redeliveries are manual and limited to recent deliveries).
    #[serde(default = "default_event_retention_days")]
    pub event_retention_days: u32,
    /// Finished runs (and, with them, their job reports) whose completion is older than this many
    /// days are deleted by the maintenance (0 = keep forever, the default).
    #[serde(default)]
    pub run_retention_days: u32,
    /// Job reports older than this many days are deleted by the maintenance (0 = keep forever,
    /// the default).
    #[serde(default)]
    pub job_report_retention_days: u32,
    /// Shortest time between two maintenance passes, which requests start opportunistically in
    /// the background (0 = never from requests; an external wake-up may still call it).
    #[serde(default = "default_maintenance_interval")]
    pub maintenance_interval_secs: u64,
    /// Rows deleted per statement by the maintenance; each batch is its own short statement,
    /// so requests interleave with a long clean-up.
    #[serde(default = "default_maintenance_batch")]
    pub maintenance_batch_size: u32,
}

impl RetentionConfig {
    /// Batches bounded, horizons at most a century.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !(1..=10_000).contains(&self.maintenance_batch_size) {
            return Err(ConfigError(
                "MAINTENANCE_BATCH_SIZE must be between 1 and 10000".into(),
            ));
        }
        for (name, days) in [
            ("EVENT_RETENTION_DAYS", self.event_retention_days),
            ("RUN_RETENTION_DAYS", self.run_retention_days),
            ("JOB_REPORT_RETENTION_DAYS", self.job_report_retention_days),
        ] {
            if days > 36_500 {
                return Err(ConfigError(format!(
                    "{name} must be at most 36500 days (0 keeps forever)"
                )));
            }
        }
        Ok(())
    }
}

fn default_event_retention_days() -> u32 {
    30
}

fn default_maintenance_interval() -> u64 {
    3600
}

fn default_maintenance_batch() -> u32 {
    500
}
