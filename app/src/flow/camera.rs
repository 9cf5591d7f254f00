//! The canvas camera: zoom and pan between world units (the layout's) and CSS pixels.

use super::layout::{Node, WORLD_HEIGHT, WORLD_WIDTH};

pub const MIN_ZOOM: f64 = 0.2;
pub const MAX_ZOOM: f64 = 5.0;

/// `screen = world * zoom + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Camera {
    pub zoom: f64,
    pub offset_x: f64,
    pub offset_y: f64,
}

impl Default for Camera {
    fn default() -> Self {
        Self {
            zoom: 1.0,
            offset_x: 0.0,
            offset_y: 0.0,
        }
    }
}

impl Camera {
    /// Shows the whole layout, centered, in a `width` × `height` pixel canvas.
    pub fn fit(width: f64, height: f64) -> Self {
        let margin = 16.0;
        let zoom = ((width - 2.0 * margin) / WORLD_WIDTH)
            .min((height - 2.0 * margin) / WORLD_HEIGHT)
            .clamp(MIN_ZOOM, MAX_ZOOM);
        Self {
            zoom,
            offset_x: (width - WORLD_WIDTH * zoom) / 2.0,
            offset_y: (height - WORLD_HEIGHT * zoom) / 2.0,
        }
    }

    /// Centers one component and zooms in on it.
    pub fn focus(node: &Node, width: f64, height: f64) -> Self {
        let zoom = 2.0_f64.clamp(MIN_ZOOM, MAX_ZOOM);
        Self {
            zoom,
            offset_x: width / 2.0 - node.x * zoom,
            offset_y: height / 2.0 - node.y * zoom,
        }
    }

    pub fn to_world(&self, x: f64, y: f64) -> (f64, f64) {
        ((x - self.offset_x) / self.zoom, (y - self.offset_y) / self.zoom)
    }

    pub fn to_screen(&self, x: f64, y: f64) -> (f64, f64) {
        (x * self.zoom + self.offset_x, y * self.zoom + self.offset_y)
    }

    /// Zooms by `factor`, keeping the world point under the screen point `(x, y)` still.
    pub fn zoom_at(&mut self, factor: f64, x: f64, y: f64) {
        let (world_x, world_y) = self.to_world(x, y);
        self.zoom = (self.zoom * factor).clamp(MIN_ZOOM, MAX_ZOOM);
        self.offset_x = x - world_x * self.zoom;
        self.offset_y = y - world_y * self.zoom;
    }

    pub fn pan(&mut self, dx: f64, dy: f64) {
        self.offset_x += dx;
        self.offset_y += dy;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_shows_the_whole_world_inside_the_canvas() {
        let camera = Camera::fit(800.0, 600.0);
        let (left, top) = camera.to_screen(0.0, 0.0);
        let (right, bottom) = camera.to_screen(WORLD_WIDTH, WORLD_HEIGHT);
        assert!(left >= 0.0 && top >= 0.0 && right <= 800.0 && bottom <= 600.0);
        assert!((right - left - 768.0).abs() < 1e-6, "the width is the limit here");
    }

    #[test]
    fn zooming_keeps_the_point_under_the_cursor_and_stays_in_bounds() {
        let mut camera = Camera::fit(1000.0, 600.0);
        let before = camera.to_world(300.0, 200.0);
        camera.zoom_at(1.5, 300.0, 200.0);
        let after = camera.to_world(300.0, 200.0);
        assert!((before.0 - after.0).abs() < 1e-9 && (before.1 - after.1).abs() < 1e-9);
        for _ in 0..50 {
            camera.zoom_at(2.0, 0.0, 0.0);
        }
        assert_eq!(camera.zoom, MAX_ZOOM);
        let before = camera.to_screen(100.0, 100.0);
        camera.pan(10.0, -5.0);
        let after = camera.to_screen(100.0, 100.0);
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (10.0, -5.0),
            "panning moves the picture"
        );
    }
}
