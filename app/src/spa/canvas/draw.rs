//! Drawing one frame of the flow canvas: the cached static layers (edges at rest, node
//! boxes), the moving edges and pulses, the bubbles and the step-mode ring.

use std::collections::BTreeMap;

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

use super::{BACKGROUND, Engine, GLOW_CAP, LayerKey, StaticLayers};
use crate::{
    flow::{Camera, EdgeStyle, Sprite, Tint, figures},
    spa::state::{Live, Outcome},
};

pub(super) fn draw(live: &Live, engine: &mut Engine, context: &CanvasRenderingContext2d) {
    let ratio = window().device_pixel_ratio().max(1.0);
    let (width, height) = engine.size;
    refresh_layers(engine, ratio);
    let _ = context.set_transform(ratio, 0.0, 0.0, ratio, 0.0, 0.0);
    context.set_fill_style_str(BACKGROUND);
    context.fill_rect(0.0, 0.0, width, height);
    let camera = engine.camera;
    let world = |context: &CanvasRenderingContext2d| world_transform(context, camera, ratio);
    let device = |context: &CanvasRenderingContext2d| {
        let _ = context.set_transform(1.0, 0.0, 0.0, 1.0, 0.0, 0.0);
    };
    let Some(layers) = engine.layers.as_ref() else { return };
    device(context);
    let _ = context.draw_image_with_html_canvas_element(&layers.edges, 0.0, 0.0);
    world(context);
    draw_edges(engine, context, EdgePass::Live);
    draw_pulses(engine, context);
    device(context);
    let _ = context.draw_image_with_html_canvas_element(&layers.nodes, 0.0, 0.0);
    world(context);
    let selected = live.selected_node.get_untracked();
    for node in &engine.layout.nodes {
        let is_selected = selected.as_ref() == Some(&node.id);
        if is_selected || engine.hover.as_ref() == Some(&node.id) {
            draw_node(context, node, is_selected, engine.hover.as_ref() == Some(&node.id));
        }
    }
    context.set_text_align("center");
    context.set_text_baseline("middle");
    context.set_font("11px ui-monospace, monospace");
    context.set_fill_style_str("#94A3B8");
    for (x, y, text) in &engine.overlays {
        let _ = context.fill_text(text, *x, *y);
    }
    draw_bubbles(live, engine, context);
}

/// Draws in world units from here on: the camera's zoom and pan, in device pixels.
fn world_transform(context: &CanvasRenderingContext2d, camera: Camera, ratio: f64) {
    let _ = context.set_transform(
        ratio * camera.zoom,
        0.0,
        0.0,
        ratio * camera.zoom,
        ratio * camera.offset_x,
        ratio * camera.offset_y,
    );
}

/// Redraws the static layers when the layout, camera, size or pixel ratio changed.
fn refresh_layers(engine: &mut Engine, ratio: f64) {
    let camera = engine.camera;
    let key = LayerKey {
        servers: engine.layout.servers.clone(),
        camera: [
            camera.zoom.to_bits(),
            camera.offset_x.to_bits(),
            camera.offset_y.to_bits(),
        ],
        size: [engine.size.0.to_bits(), engine.size.1.to_bits()],
        ratio: ratio.to_bits(),
    };
    if engine.layers.as_ref().is_some_and(|layers| layers.key == key) {
        return;
    }
    let layer = || -> Option<(HtmlCanvasElement, CanvasRenderingContext2d)> {
        let canvas: HtmlCanvasElement = document().create_element("canvas").ok()?.dyn_into().ok()?;
        canvas.set_width((engine.size.0 * ratio) as u32);
        canvas.set_height((engine.size.1 * ratio) as u32);
        let context = canvas
            .get_context("2d")
            .ok()??
            .dyn_into::<CanvasRenderingContext2d>()
            .ok()?;
        world_transform(&context, camera, ratio);
        Some((canvas, context))
    };
    let (Some((edges, edge_context)), Some((nodes, node_context))) = (layer(), layer()) else {
        return;
    };
    draw_edges(engine, &edge_context, EdgePass::AtRest);
    for node in &engine.layout.nodes {
        draw_node(&node_context, node, false, false);
    }
    engine.layers = Some(StaticLayers { key, edges, nodes });
}

/// Which edges a pass draws: every edge at rest (the static layer), or only those in use
/// or highlighted, over it (each frame).
#[derive(Clone, Copy, PartialEq)]
enum EdgePass {
    AtRest,
    Live,
}

fn draw_edges(engine: &Engine, context: &CanvasRenderingContext2d, pass: EdgePass) {
    let clock = engine.scene.clock_ms();
    for edge in &engine.layout.edges {
        let (highlighted, active) = match pass {
            EdgePass::AtRest => (false, false),
            EdgePass::Live => (
                engine
                    .hover
                    .as_ref()
                    .is_some_and(|hover| hover == &edge.from || hover == &edge.to),
                engine.scene.edge_in_use(&edge.from, &edge.to),
            ),
        };
        if pass == EdgePass::Live && !highlighted && !active {
            continue;
        }
        let (Some(from), Some(to)) = (engine.layout.node(&edge.from), engine.layout.node(&edge.to)) else {
            continue;
        };
        let (color, width, dash) = match (active, edge.style) {
            (true, _) => ("rgba(226, 232, 240, 0.75)", 2.0, &engine.dash_active),
            (false, EdgeStyle::Dashed) => ("rgba(148, 163, 184, 0.35)", 1.5, &engine.dash_dashed),
            (false, EdgeStyle::Solid) => ("rgba(148, 163, 184, 0.35)", 1.5, &engine.dash_none),
        };
        let _ = context.set_line_dash(dash);
        // Dashes march from source to target: the direction of flow.
        context.set_line_dash_offset(if active { -clock / 40.0 } else { 0.0 });
        context.set_stroke_style_str(if highlighted { "#F8FAFC" } else { color });
        context.set_line_width(if highlighted { width + 1.5 } else { width });
        context.begin_path();
        context.move_to(from.x, from.y);
        context.line_to(to.x, to.y);
        context.stroke();
    }
    let _ = context.set_line_dash(&engine.dash_none);
}

/// A node that just received a bubble glows in its kind's color around its box.
fn draw_pulses(engine: &Engine, context: &CanvasRenderingContext2d) {
    for node in &engine.layout.nodes {
        let pulse = engine.scene.pulse(&node.id);
        if pulse <= 0.0 {
            continue;
        }
        let grow = 6.0 * pulse;
        context.set_global_alpha(pulse * 0.45);
        context.set_fill_style_str(node.kind.color());
        context.begin_path();
        let _ = context.round_rect_with_f64(
            node.x - node.half_width - grow,
            node.y - node.half_height - grow,
            node.half_width * 2.0 + 2.0 * grow,
            node.half_height * 2.0 + 2.0 * grow,
            12.0,
        );
        context.fill();
    }
    context.set_global_alpha(1.0);
}

/// A node's box, color strip and label.
fn draw_node(context: &CanvasRenderingContext2d, node: &crate::flow::Node, selected: bool, hovered: bool) {
    let (x, y, w, h) = (
        node.x - node.half_width,
        node.y - node.half_height,
        node.half_width * 2.0,
        node.half_height * 2.0,
    );
    let color = node.kind.color();
    context.set_fill_style_str(if hovered { "#1E293B" } else { "#111827" });
    context.begin_path();
    let _ = context.round_rect_with_f64(x, y, w, h, 9.0);
    context.fill();
    context.set_stroke_style_str(if selected { "#F8FAFC" } else { color });
    context.set_line_width(if selected { 3.0 } else { 2.0 });
    context.stroke();
    // A strip of the kind's color on the left, so kinds read at a glance.
    context.set_fill_style_str(color);
    context.fill_rect(x + 1.0, y + 8.0, 4.0, h - 16.0);
    context.set_text_align("center");
    context.set_text_baseline("middle");
    context.set_fill_style_str("#F1F5F9");
    context.set_font("600 13px system-ui, sans-serif");
    let label_y = if figures::has_figure(node) {
        node.y - 7.0
    } else {
        node.y
    };
    let _ = context.fill_text(&node.label, node.x + 2.0, label_y);
}

/// Bubbles are drawn in a few batched paths — one per color and fade level — rather than
/// one path per bubble: canvas calls, not bubbles, are what a frame pays for.
fn draw_bubbles(live: &Live, engine: &Engine, context: &CanvasRenderingContext2d) {
    const FADE_LEVELS: f64 = 4.0;
    let trails = live.trails.get_untracked();
    let glow = live.glow.get_untracked() && engine.sprites.len() <= GLOW_CAP;
    let mut batches: BTreeMap<(Tint, u8), Vec<&Sprite>> = BTreeMap::new();
    for sprite in &engine.sprites {
        let level = (sprite.alpha * FADE_LEVELS).ceil().clamp(1.0, FADE_LEVELS) as u8;
        batches.entry((sprite.tint, level)).or_default().push(sprite);
    }
    context.set_line_cap("round");
    context.set_line_width(4.0);
    for ((tint, level), sprites) in &batches {
        let alpha = f64::from(*level) / FADE_LEVELS;
        let color = tint.color();
        if trails {
            context.set_global_alpha(alpha * 0.35);
            context.set_stroke_style_str(color);
            context.begin_path();
            for sprite in sprites.iter().filter(|sprite| sprite.count == 1) {
                context.move_to(sprite.tail_x, sprite.tail_y);
                context.line_to(sprite.x, sprite.y);
            }
            context.stroke();
        }
        context.set_global_alpha(alpha);
        if glow {
            context.set_shadow_blur(10.0);
            context.set_shadow_color(color);
        }
        context.set_fill_style_str(color);
        context.begin_path();
        for sprite in sprites {
            let radius = if sprite.count == 1 {
                5.5
            } else {
                7.0 + (sprite.count as f64).log2() * 1.6
            };
            context.move_to(sprite.x + radius, sprite.y);
            let _ = context.arc(sprite.x, sprite.y, radius, 0.0, std::f64::consts::TAU);
        }
        context.fill();
        if glow {
            context.set_shadow_blur(0.0);
        }
    }
    context.set_global_alpha(1.0);
    // Merged bubbles say how many they stand for.
    context.set_fill_style_str("#0B1220");
    context.set_font("700 10px system-ui, sans-serif");
    context.set_text_align("center");
    context.set_text_baseline("middle");
    for sprite in engine.sprites.iter().filter(|sprite| sprite.count > 1) {
        let _ = context.fill_text(&sprite.count.to_string(), sprite.x, sprite.y + 0.5);
    }
    draw_stepping(live, engine, context);
}

/// Rings the request that waits in step mode, and says which stage it waits for.
fn draw_stepping(live: &Live, engine: &Engine, context: &CanvasRenderingContext2d) {
    let Some(request) = live.stepping.get_untracked() else {
        return;
    };
    let bubble = [
        crate::flow::Lane::Email,
        crate::flow::Lane::InApp,
        crate::flow::Lane::Request,
    ]
    .into_iter()
    .find_map(|lane| engine.scene.bubble(&request, lane));
    let Some(bubble) = bubble else { return };
    let (x, y) = bubble.position(&engine.layout);
    let phase = (engine.scene.clock_ms() / 300.0).sin() * 0.5 + 0.5;
    context.set_stroke_style_str("#FACC15");
    context.set_line_width(2.5);
    context.begin_path();
    let _ = context.arc(x, y, 11.0 + 4.0 * phase, 0.0, std::f64::consts::TAU);
    context.stroke();
    let waiting = live.requests.with_untracked(|rows| {
        rows.iter()
            .find(|row| row.request_id == request && row.outcome == Outcome::InProgress)
            .map(|row| row.stage.name())
    });
    if let Some(stage) = waiting {
        context.set_fill_style_str("#FACC15");
        context.set_font("600 12px system-ui, sans-serif");
        context.set_text_align("left");
        let _ = context.fill_text(&format!("waiting after {stage}"), x + 16.0, y - 14.0);
    }
}
