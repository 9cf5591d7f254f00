//! Control settings: the design's `ControlPanel`, shared by every viewer and streamed
//! as `controls:changed` when anyone changes them.

use serde::{Deserialize, Serialize};

use super::NotificationType;

/// Real waits injected into the real stages, in milliseconds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Delays {
    pub load_balancer: u64,
    pub server_processing: u64,
    pub database_operation: u64,
    pub queueing: u64,
    pub worker_processing: u64,
    pub email_delivery: u64,
    pub websocket_delivery: u64,
}

/// What the viewer shows; an empty list means "all".
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Filters {
    pub show_email_flow: bool,
    pub show_in_app_flow: bool,
    pub notification_types: Vec<NotificationType>,
    pub server_filter: Vec<String>,
}

impl Default for Filters {
    fn default() -> Self {
        Self {
            show_email_flow: true,
            show_in_app_flow: true,
            notification_types: Vec::new(),
            server_filter: Vec::new(),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Unknown fields are refused: a PUT replaces every setting, so a misspelt one would
// otherwise reset the setting it meant to change, silently.
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ControlSettings {
    /// Animation speed, 0.25 to 5.0.
    pub playback_speed: f64,
    pub step_mode: bool,
    pub current_step: u32,
    pub delays: Delays,
    pub filters: Filters,
    pub simulate_load: bool,
    /// Requests per second the load generator sends.
    pub simulation_rate: f64,
    /// The request types the load generator sends, taken in turn (empty: purchases).
    pub simulation_mix: Vec<NotificationType>,
}

impl ControlSettings {
    pub const MIN_SPEED: f64 = 0.25;
    pub const MAX_SPEED: f64 = 5.0;
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            playback_speed: 1.0,
            step_mode: false,
            current_step: 0,
            delays: Delays::default(),
            filters: Filters::default(),
            simulate_load: false,
            simulation_rate: 1.0,
            simulation_mix: vec![NotificationType::Purchase],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::round_trip;

    #[test]
    fn control_settings_round_trip_with_design_names() {
        let settings = ControlSettings {
            playback_speed: 0.25,
            step_mode: true,
            current_step: 3,
            delays: Delays {
                database_operation: 250,
                email_delivery: 1000,
                ..Delays::default()
            },
            filters: Filters {
                show_email_flow: false,
                show_in_app_flow: true,
                notification_types: vec![NotificationType::Purchase],
                server_filter: vec!["server-2".into()],
            },
            simulate_load: true,
            simulation_rate: 20.0,
            simulation_mix: vec![NotificationType::Purchase, NotificationType::FriendRequest],
        };
        let json = round_trip(&settings);
        assert_eq!(json["playbackSpeed"], 0.25);
        assert_eq!(json["delays"]["databaseOperation"], 250);
        assert_eq!(json["delays"]["websocketDelivery"], 0);
        assert_eq!(json["filters"]["showInAppFlow"], true);
        assert_eq!(json["filters"]["notificationTypes"][0], "purchase");
        assert_eq!(json["simulationRate"], 20.0);
        assert_eq!(json["simulationMix"][1], "friend-request");
    }

    #[test]
    fn missing_fields_take_defaults() {
        let settings: ControlSettings =
            serde_json::from_str(r#"{"delays":{"queueing":5}}"#).expect("partial settings parse");
        assert_eq!(settings.delays.queueing, 5);
        assert_eq!(settings.playback_speed, 1.0);
        assert!(settings.filters.show_email_flow);
    }
}
