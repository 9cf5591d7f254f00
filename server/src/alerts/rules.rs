//! The alert rules: the built-in ones (seed 001's thresholds where it gives them), their
//! validation, and where they are kept (`alert_rules`, one row replaced as a whole).

use std::collections::HashSet;

use wire::{AlertComparison, AlertLevel, AlertMode, AlertRule, AlertSeverity, AlertSignal};

use crate::{now_ms, storage::Database};

/// At most this many rules.
pub const MAX_RULES: usize = 50;

fn level(severity: AlertSeverity, threshold: f64, recover: f64) -> AlertLevel {
    AlertLevel {
        severity,
        threshold,
        recover,
    }
}

#[allow(clippy::too_many_arguments)]
fn rule(
    id: &str,
    name: &str,
    signal: AlertSignal,
    comparison: AlertComparison,
    mode: AlertMode,
    levels: Vec<AlertLevel>,
    for_seconds: u32,
    keep_firing_seconds: u32,
) -> AlertRule {
    AlertRule {
        id: id.into(),
        name: name.into(),
        signal,
        comparison,
        mode,
        levels,
        for_seconds,
        keep_firing_seconds,
        repeat_minutes: 30,
        enabled: true,
    }
}

/// The rules a fresh system has: seed 001's error rate (2 %) and response time (2 s),
/// and what the components can show going wrong.
pub fn built_in() -> Vec<AlertRule> {
    use AlertComparison::{Above, Below};
    use AlertMode::{Anomaly, Threshold};
    use AlertSeverity::{Critical, Error, Info, Warning};
    vec![
        rule(
            "error-rate",
            "Error rate",
            AlertSignal::ErrorRate,
            Above,
            Threshold,
            vec![level(Warning, 2.0, 1.0), level(Critical, 10.0, 5.0)],
            15,
            30,
        ),
        rule(
            "latency",
            "p99 latency",
            AlertSignal::P99Latency,
            Above,
            Threshold,
            vec![level(Warning, 2_000.0, 1_500.0), level(Critical, 5_000.0, 3_000.0)],
            30,
            30,
        ),
        rule(
            "queue-depth",
            "Queue depth",
            AlertSignal::QueueDepth,
            Above,
            Threshold,
            vec![level(Warning, 1_000.0, 500.0), level(Critical, 10_000.0, 5_000.0)],
            30,
            60,
        ),
        rule(
            "dead-letters",
            "Dead letters growing",
            AlertSignal::DeadLetters,
            Above,
            Threshold,
            vec![level(Error, 0.0, 0.0)],
            0,
            0,
        ),
        rule(
            "smtp-failures",
            "SMTP failures",
            AlertSignal::SmtpFailures,
            Above,
            Threshold,
            vec![level(Warning, 5.0, 1.0), level(Critical, 50.0, 10.0)],
            10,
            20,
        ),
        rule(
            "active-users-drop",
            "Active users dropping",
            AlertSignal::ActiveUsers,
            Below,
            Anomaly,
            vec![level(Warning, 50.0, 70.0)],
            300,
            300,
        ),
        rule(
            "no-traffic",
            "No traffic",
            AlertSignal::RequestsPerSecond,
            Below,
            Threshold,
            vec![level(Info, 0.05, 0.5)],
            60,
            10,
        ),
    ]
}

/// Why a set of rules is refused, naming the rule and the field.
pub fn validate(rules: &[AlertRule]) -> Result<(), String> {
    if rules.len() > MAX_RULES {
        return Err(format!("at most {MAX_RULES} rules"));
    }
    let mut ids = HashSet::new();
    for rule in rules {
        let id = &rule.id;
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!("rule id {id:?}: 1 to 64 lowercase letters, digits or '-'"));
        }
        if !ids.insert(id.as_str()) {
            return Err(format!("rule id {id:?} appears twice"));
        }
        let name_length = rule.name.chars().count();
        if name_length == 0 || name_length > 100 || rule.name.chars().any(char::is_control) {
            return Err(format!("rule {id}: name must be 1 to 100 printable characters"));
        }
        if rule.mode == AlertMode::Anomaly && rule.signal != AlertSignal::ActiveUsers {
            return Err(format!(
                "rule {id}: anomaly mode is only for activeUsers (the signal with rollups)"
            ));
        }
        if rule.levels.is_empty() || rule.levels.len() > 4 {
            return Err(format!("rule {id}: one to four levels"));
        }
        let mut severities = HashSet::new();
        for level in &rule.levels {
            if !severities.insert(level.severity) {
                return Err(format!("rule {id}: severity {} twice", level.severity.name()));
            }
            if !level.threshold.is_finite() || !level.recover.is_finite() {
                return Err(format!("rule {id}: thresholds must be finite numbers"));
            }
            let hysteresis_ok = match rule.comparison {
                AlertComparison::Above => level.recover <= level.threshold,
                AlertComparison::Below => level.recover >= level.threshold,
            };
            if !hysteresis_ok {
                return Err(format!(
                    "rule {id}: level {}: recover must be on the normal side of threshold (at most it for above, at least it for below)",
                    level.severity.name()
                ));
            }
        }
        if rule.for_seconds > 3_600 || rule.keep_firing_seconds > 3_600 {
            return Err(format!("rule {id}: forSeconds and keepFiringSeconds are at most 3600"));
        }
        if rule.repeat_minutes > 1_440 {
            return Err(format!("rule {id}: repeatMinutes is at most 1440"));
        }
    }
    Ok(())
}

/// The rules in force: the saved ones, or the built-in ones if none were saved.
pub async fn load(db: &Database) -> Result<Vec<AlertRule>, sqlx::Error> {
    let row: Option<(String,)> = crate::with_connection!(&mut db.read().await?, |c| sqlx::query_as(
        "SELECT rules FROM alert_rules WHERE id = 1"
    )
    .fetch_optional(c)
    .await)?;
    Ok(match row {
        Some((json,)) => serde_json::from_str(&json).unwrap_or_else(|error| {
            tracing::error!(%error, "the saved alert rules cannot be read; using the built-in ones");
            built_in()
        }),
        None => built_in(),
    })
}

/// Replaces the rules (already validated) as `by`.
pub async fn save(db: &Database, rules: &[AlertRule], by: &str) -> Result<(), sqlx::Error> {
    let json = serde_json::to_string(rules).expect("rules serialize");
    crate::with_connection!(&mut db.writing().await?, |c| sqlx::query(
        "INSERT INTO alert_rules (id, rules, updated_at_ms, updated_by) VALUES (1, $1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET rules = excluded.rules, updated_at_ms = excluded.updated_at_ms, \
         updated_by = excluded.updated_by"
    )
    .bind(json)
    .bind(now_ms())
    .bind(by)
    .execute(c)
    .await
    .map(drop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_rules_are_valid() {
        validate(&built_in()).expect("valid");
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let mut rules = built_in();
        rules[0].levels[0].recover = 3.0;
        assert!(validate(&rules).expect_err("hysteresis").contains("recover"));
        let mut rules = built_in();
        rules[1].id = rules[0].id.clone();
        assert!(validate(&rules).expect_err("twice").contains("twice"));
        let mut rules = built_in();
        rules[0].mode = AlertMode::Anomaly;
        assert!(validate(&rules).expect_err("anomaly").contains("anomaly"));
        let mut rules = built_in();
        rules[0].levels[0].threshold = f64::NAN;
        assert!(validate(&rules).is_err());
        let mut rules = built_in();
        rules[0].id = "Error Rate".into();
        assert!(validate(&rules).is_err());
        let mut rules = built_in();
        rules[0].levels.clear();
        assert!(validate(&rules).is_err());
    }
}
