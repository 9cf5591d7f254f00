//! One level of a rule, from one evaluation to the next: the state machine, with no I/O
//! so that every path is tested with exact times.
//!
//! ```text
//!            breach            held for `for`            recovered
//!  normal ──────────▶ pending ───────────────▶ firing ─────────────▶ recovering
//!    ▲                  │ no breach              ▲  breach again          │ recovered
//!    └──────────────────┘                        └────────────────────────┤ for `keep
//!    ▲                                                                    │ firing for`
//!    └──────────────────────────── resolved ◀─────────────────────────────┘
//! ```
//!
//! *Breach* compares with the level's `threshold`, *recovered* with its `recover`; the
//! two differ (hysteresis), so a value wobbling around the threshold keeps a firing
//! alert firing instead of resolving and firing again. A pending alert needs the breach
//! at every evaluation: one evaluation without it and it is gone, never notified. An
//! evaluation without a value (no data) changes nothing: it neither fires nor resolves.

use wire::{AlertComparison, AlertLevel};

/// Where an open alert of one level is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    Pending { since_ms: i64 },
    Firing { fired_ms: i64 },
    Recovering { fired_ms: i64, since_ms: i64 },
}

/// What an evaluation did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Nothing open, nothing opens.
    Quiet,
    /// An alert opens (pending).
    Opens(Phase),
    /// The open alert moves (or stays) without anyone being told.
    Moves(Phase),
    /// The alert fires: notify.
    Fires(Phase),
    /// The open alert never fired and is dropped.
    Dropped,
    /// The alert resolves: notify.
    Resolves,
}

/// The timings of a rule.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub for_ms: i64,
    pub keep_firing_ms: i64,
}

pub fn breaches(comparison: AlertComparison, level: &AlertLevel, value: f64) -> bool {
    match comparison {
        AlertComparison::Above => value > level.threshold,
        AlertComparison::Below => value < level.threshold,
    }
}

pub fn recovered(comparison: AlertComparison, level: &AlertLevel, value: f64) -> bool {
    match comparison {
        AlertComparison::Above => value <= level.recover,
        AlertComparison::Below => value >= level.recover,
    }
}

/// The next step of one level given the open alert's phase (none when normal) and this
/// evaluation's value (none: no data) at `now_ms`.
pub fn step(
    open: Option<Phase>,
    value: Option<f64>,
    comparison: AlertComparison,
    level: &AlertLevel,
    timing: Timing,
    now_ms: i64,
) -> Step {
    let Some(value) = value else {
        return match open {
            Some(phase) => Step::Moves(phase),
            None => Step::Quiet,
        };
    };
    let breach = breaches(comparison, level, value);
    let back = recovered(comparison, level, value);
    match open {
        None if breach && timing.for_ms == 0 => Step::Fires(Phase::Firing { fired_ms: now_ms }),
        None if breach => Step::Opens(Phase::Pending { since_ms: now_ms }),
        None => Step::Quiet,
        Some(Phase::Pending { since_ms }) => {
            if !breach {
                Step::Dropped
            } else if now_ms - since_ms >= timing.for_ms {
                Step::Fires(Phase::Firing { fired_ms: now_ms })
            } else {
                Step::Moves(Phase::Pending { since_ms })
            }
        }
        Some(Phase::Firing { fired_ms }) => {
            if !back {
                Step::Moves(Phase::Firing { fired_ms })
            } else if timing.keep_firing_ms == 0 {
                Step::Resolves
            } else {
                Step::Moves(Phase::Recovering {
                    fired_ms,
                    since_ms: now_ms,
                })
            }
        }
        Some(Phase::Recovering { fired_ms, since_ms }) => {
            if !back {
                Step::Moves(Phase::Firing { fired_ms })
            } else if now_ms - since_ms >= timing.keep_firing_ms {
                Step::Resolves
            } else {
                Step::Moves(Phase::Recovering { fired_ms, since_ms })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::AlertSeverity;

    const LEVEL: AlertLevel = AlertLevel {
        severity: AlertSeverity::Warning,
        threshold: 2.0,
        recover: 1.0,
    };
    const TIMING: Timing = Timing {
        for_ms: 10_000,
        keep_firing_ms: 10_000,
    };

    /// Runs `values` every 5 s from t = 0 and answers the steps that notify (Fires,
    /// Resolves) with their times.
    fn run(values: &[Option<f64>], timing: Timing) -> Vec<(i64, &'static str)> {
        let mut open = None;
        let mut told = Vec::new();
        for (n, value) in values.iter().enumerate() {
            let now = n as i64 * 5_000;
            match step(open, *value, AlertComparison::Above, &LEVEL, timing, now) {
                Step::Quiet | Step::Dropped => open = None,
                Step::Opens(phase) | Step::Moves(phase) => open = Some(phase),
                Step::Fires(phase) => {
                    open = Some(phase);
                    told.push((now, "fires"));
                }
                Step::Resolves => {
                    open = None;
                    told.push((now, "resolves"));
                }
            }
        }
        told
    }

    #[test]
    fn pending_then_firing_then_recovering_then_resolved() {
        let values = [0.5, 3.0, 3.0, 3.0, 3.0, 0.5, 0.5, 0.5, 0.5].map(Some);
        // Breach at 5 s, held 10 s: fires at 15 s. Recovered from 25 s, 10 s later: 35 s.
        assert_eq!(run(&values, TIMING), vec![(15_000, "fires"), (35_000, "resolves")]);
    }

    #[test]
    fn a_breach_shorter_than_for_never_fires() {
        let values = [3.0, 3.0, 0.5, 3.0, 3.0, 0.5].map(Some);
        assert!(run(&values, TIMING).is_empty());
    }

    #[test]
    fn a_value_wobbling_around_the_threshold_gives_one_alert() {
        let no_wait = Timing {
            for_ms: 0,
            keep_firing_ms: 0,
        };
        // Crosses 2.0 nine times; never reaches 1.0 until the end.
        let mut values: Vec<Option<f64>> = (0..20).map(|n| Some(if n % 2 == 0 { 2.2 } else { 1.8 })).collect();
        values.push(Some(0.9));
        values.push(Some(2.2));
        assert_eq!(
            run(&values, no_wait),
            vec![(0, "fires"), (100_000, "resolves"), (105_000, "fires")]
        );
        // With `keep firing for`, a short dip past `recover` does not resolve either.
        let dips = [3.0, 3.0, 3.0, 0.5, 3.0, 0.5, 3.0, 3.0].map(Some);
        assert_eq!(run(&dips, TIMING), vec![(10_000, "fires")]);
    }

    #[test]
    fn no_data_neither_fires_nor_resolves() {
        let values = [
            Some(3.0),
            None,
            None,
            Some(3.0),
            Some(3.0),
            None,
            None,
            None,
            Some(0.5),
            Some(0.5),
            Some(0.5),
        ];
        // Pending from 0, still pending through the gap; fires at 15 s (held: 15 ≥ 10).
        // Recovering from 40 s, resolved at 50 s.
        assert_eq!(run(&values, TIMING), vec![(15_000, "fires"), (50_000, "resolves")]);
    }

    #[test]
    fn below_rules_compare_the_other_way() {
        let level = AlertLevel {
            severity: AlertSeverity::Info,
            threshold: 0.1,
            recover: 1.0,
        };
        assert!(breaches(AlertComparison::Below, &level, 0.0));
        assert!(!breaches(AlertComparison::Below, &level, 0.5));
        assert!(!recovered(AlertComparison::Below, &level, 0.5));
        assert!(recovered(AlertComparison::Below, &level, 1.0));
    }
}
