//! The flow canvas's model, free of the browser: where components sit ([`layout`]), what
//! moves between them ([`scene`]) and how the view is zoomed and panned ([`camera`]). The
//! SPA draws it on a 2D canvas; the tests here run on the host.

pub mod camera;
pub mod figures;
pub mod layout;
pub mod replay;
pub mod scene;

pub use camera::Camera;
pub use layout::{EdgeStyle, Layout, Node, NodeId, NodeKind};
pub use replay::Replay;
pub use scene::{Lane, Scene, Sprite, Tint, Visibility};

use crate::wire::ControlSettings;

/// Animation milliseconds for a frame at `now` after one at `last` (none yet: zero): the
/// real time between them, at most 250 ms (a tab in the background must not make
/// everything jump), times the playback speed, or nothing while paused.
pub fn animation_step(last: Option<f64>, now: f64, speed: f64, paused: bool) -> f64 {
    if paused {
        return 0.0;
    }
    let elapsed = last.map_or(0.0, |last| (now - last).clamp(0.0, 250.0));
    elapsed * speed.clamp(ControlSettings::MIN_SPEED, ControlSettings::MAX_SPEED)
}

#[cfg(test)]
mod tests {
    use super::animation_step;

    #[test]
    fn the_animation_step_is_real_time_times_speed_bounded_and_stopped_by_pause() {
        assert_eq!(animation_step(None, 1_000.0, 1.0, false), 0.0, "the first frame");
        assert_eq!(animation_step(Some(1_000.0), 1_016.0, 2.0, false), 32.0);
        assert_eq!(
            animation_step(Some(0.0), 10_000.0, 1.0, false),
            250.0,
            "a tab in the background"
        );
        assert_eq!(
            animation_step(Some(1_016.0), 1_000.0, 1.0, false),
            0.0,
            "clocks never run back"
        );
        assert_eq!(animation_step(Some(1_000.0), 1_016.0, 1.0, true), 0.0, "paused");
        assert_eq!(
            animation_step(Some(1_000.0), 1_010.0, 50.0, false),
            50.0,
            "speed at most 5x"
        );
    }
}
