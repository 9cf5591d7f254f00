//! The flow canvas: one `requestAnimationFrame` loop that drains the stream's inbox,
//! applies it to the signals and the scene, advances the animation by real time times the
//! playback speed, and draws the whole picture on a 2D canvas. Pointer input (hover, click,
//! drag to pan, wheel and pinch to zoom) is read off the same engine.
//!
//! The page also gets `window.__liveview` with `nodeCenter(key)` (a node's centre in CSS
//! pixels relative to the canvas), `bubbles()` (how many are on the canvas),
//! `bubbleCenter(requestId)` (where that request's bubble is), `bubbleAt(x, y)` (which
//! request a click there would open) and `clock()`
//! (animation milliseconds so far), so end-to-end tests and the frame benchmark can click
//! real nodes and measure the animation without guessing coordinates.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    rc::Rc,
};

use leptos::{html::Canvas, prelude::*};
use wasm_bindgen::{JsCast, JsValue, closure::Closure};
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, PointerEvent, WheelEvent};

use super::{
    state::{Live, Outcome},
    stream::Stream,
};
use crate::{
    flow::{Camera, EdgeStyle, Layout, NodeId, Replay, Scene, Sprite, Tint, Visibility, figures},
    wire::{ComponentMetrics, ControlSettings, Envelope, LiveEvent},
};

/// Up to this many bubbles are drawn one by one; above it they merge into counted bubbles.
pub const BUBBLE_CAP: usize = 600;
/// Glow (a shadow blur per bubble) is costly; it is dropped above this many sprites.
const GLOW_CAP: usize = 250;
/// A pointer that moved less than this between down and up clicked rather than dragged.
const CLICK_SLOP: f64 = 4.0;
const BACKGROUND: &str = "#0B1220";

/// Everything the frame loop and the pointer handlers share.
pub struct Engine {
    pub layout: Layout,
    pub scene: Scene,
    pub camera: Camera,
    /// Until the person zooms or pans, the camera follows the canvas size.
    pub auto_fit: bool,
    pub hover: Option<NodeId>,
    pub replay: Option<Replay>,
    /// CSS pixel size of the canvas, as last laid out.
    size: (f64, f64),
    sprites: Vec<Sprite>,
    pointers: HashMap<i32, (f64, f64)>,
    press: Option<(f64, f64)>,
    dragged: bool,
    last_frame: Option<f64>,
    /// Milliseconds the frame's own work took, smoothed.
    pub work_ms: f64,
    pub frames: u64,
    dash_active: JsValue,
    dash_dashed: JsValue,
    dash_none: JsValue,
    /// The parts of the picture that change only with the layout, camera or size, drawn
    /// once into canvases of their own and copied each frame: the edges at rest, and the
    /// node boxes with their labels. Redrawing them every frame costs more than all the
    /// bubbles together (BENCHMARKS.md, "SPA frame times").
    layers: Option<StaticLayers>,
    /// The live figure under each node's label and where it goes (world units),
    /// formatted when the figures arrive (once a second), not on every frame.
    overlays: Vec<(f64, f64, String)>,
}

struct StaticLayers {
    key: LayerKey,
    edges: HtmlCanvasElement,
    nodes: HtmlCanvasElement,
}

/// What the static layers were drawn for.
#[derive(PartialEq)]
struct LayerKey {
    servers: Vec<String>,
    camera: [u64; 3],
    size: [u64; 2],
    ratio: u64,
}

impl Engine {
    pub fn new() -> Self {
        let dashes = |values: &[f64]| -> JsValue {
            values
                .iter()
                .map(|value| JsValue::from_f64(*value))
                .collect::<js_sys::Array>()
                .into()
        };
        Self {
            layout: Layout::new(&["server-1".into(), "server-2".into(), "server-3".into()]),
            scene: Scene::default(),
            camera: Camera::default(),
            auto_fit: true,
            hover: None,
            replay: None,
            size: (0.0, 0.0),
            sprites: Vec::new(),
            pointers: HashMap::new(),
            press: None,
            dragged: false,
            last_frame: None,
            work_ms: 0.0,
            frames: 0,
            dash_active: dashes(&[10.0, 6.0]),
            dash_dashed: dashes(&[4.0, 6.0]),
            dash_none: dashes(&[]),
            layers: None,
            overlays: Vec::new(),
        }
    }

    pub fn fit(&mut self) {
        self.auto_fit = true;
        self.camera = Camera::fit(self.size.0, self.size.1);
    }

    pub fn zoom(&mut self, factor: f64) {
        self.auto_fit = false;
        let (width, height) = self.size;
        self.camera.zoom_at(factor, width / 2.0, height / 2.0);
    }

    pub fn focus(&mut self, node: &NodeId) {
        if let Some(node) = self.layout.node(node) {
            self.auto_fit = false;
            self.camera = Camera::focus(node, self.size.0, self.size.1);
        }
    }

    /// A node's centre in CSS pixels, relative to the canvas.
    pub fn node_center(&self, key: &str) -> Option<(f64, f64)> {
        let node = self.layout.node(&NodeId::from_key(key)?)?;
        Some(self.camera.to_screen(node.x, node.y))
    }

    /// Where a request's bubble is drawn now (CSS pixels relative to the canvas), if it
    /// is drawn on its own.
    pub fn bubble_center(&self, request: &str) -> Option<(f64, f64)> {
        let sprite = self
            .sprites
            .iter()
            .find(|sprite| sprite.request_id.as_deref() == Some(request))?;
        Some(self.camera.to_screen(sprite.x, sprite.y))
    }

    /// The request of the single bubble nearest a CSS pixel point, if one is close.
    fn bubble_at(&self, x: f64, y: f64) -> Option<String> {
        let (world_x, world_y) = self.camera.to_world(x, y);
        let reach = 10.0 / self.camera.zoom.max(0.2);
        self.sprites
            .iter()
            .filter(|sprite| sprite.count == 1)
            .map(|sprite| ((sprite.x - world_x).hypot(sprite.y - world_y), sprite))
            .filter(|(distance, _)| *distance <= reach)
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .and_then(|(_, sprite)| sprite.request_id.clone())
    }

    /// Rebuilds the layout when the running app servers change.
    /// Follows new component figures: the app servers on the canvas (they come and go
    /// as servers start and stop) and the figures written under the nodes' labels.
    fn follow_components(&mut self, components: &BTreeMap<String, ComponentMetrics>) {
        if let Some(ComponentMetrics::LoadBalancer(balancer)) = components.get(&NodeId::Balancer.key()) {
            let running: Vec<String> = balancer
                .servers
                .iter()
                .filter(|server| super::state::server_running(components, server))
                .map(|server| server.id.clone())
                .collect();
            if running != self.layout.servers {
                self.layout = Layout::new(&running);
            }
        }
        self.overlays = self
            .layout
            .nodes
            .iter()
            .filter(|node| figures::has_figure(node))
            .filter_map(|node| Some((node.x + 2.0, node.y + 10.0, figures::figure(&node.id, components)?)))
            .collect();
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    /// The one engine of the page (wasm runs on one thread). Borrowed briefly by the frame
    /// loop, the pointer handlers and the controls; never across an await.
    static ENGINE: RefCell<Engine> = RefCell::new(Engine::new());
}

/// Runs `f` on the page's engine.
pub fn with_engine<R>(f: impl FnOnce(&mut Engine) -> R) -> R {
    ENGINE.with(|engine| f(&mut engine.borrow_mut()))
}

/// The canvas element with its pointer handlers; starts the frame loop once mounted.
#[component]
pub fn FlowCanvas(live: Live, stream: Stream) -> impl IntoView {
    let canvas_ref = NodeRef::<Canvas>::new();
    canvas_ref.on_load(move |canvas| {
        expose_for_tests();
        start_frames(live, stream, canvas);
    });
    let point = |event: &PointerEvent| (f64::from(event.offset_x()), f64::from(event.offset_y()));
    let on_down = move |event: PointerEvent| {
        with_engine(|engine| {
            let at = point(&event);
            engine.pointers.insert(event.pointer_id(), at);
            if engine.pointers.len() == 1 {
                engine.press = Some(at);
                engine.dragged = false;
            }
            if let Some(target) = event
                .target()
                .and_then(|target| target.dyn_into::<web_sys::Element>().ok())
            {
                let _ = target.set_pointer_capture(event.pointer_id());
            }
        })
    };
    let on_move = move |event: PointerEvent| {
        with_engine(|engine| {
            let at = point(&event);
            let Some(previous) = engine.pointers.get(&event.pointer_id()).copied() else {
                let (world_x, world_y) = engine.camera.to_world(at.0, at.1);
                engine.hover = engine.layout.node_at(world_x, world_y).map(|node| node.id.clone());
                return;
            };
            if engine.pointers.len() == 2 {
                // Pinch: zoom by the change in distance between the two pointers.
                let other = engine
                    .pointers
                    .iter()
                    .find(|(id, _)| **id != event.pointer_id())
                    .map(|(_, at)| *at)
                    .unwrap_or(at);
                let before = (previous.0 - other.0).hypot(previous.1 - other.1);
                let after = (at.0 - other.0).hypot(at.1 - other.1);
                if before > 1.0 {
                    engine.auto_fit = false;
                    engine
                        .camera
                        .zoom_at(after / before, (at.0 + other.0) / 2.0, (at.1 + other.1) / 2.0);
                }
                engine.dragged = true;
            } else if let Some(press) = engine.press {
                if (at.0 - press.0).hypot(at.1 - press.1) > CLICK_SLOP {
                    engine.dragged = true;
                }
                if engine.dragged {
                    engine.auto_fit = false;
                    engine.camera.pan(at.0 - previous.0, at.1 - previous.1);
                }
            }
            engine.pointers.insert(event.pointer_id(), at);
        })
    };
    let on_up = move |event: PointerEvent| {
        // Signals are set after the engine is released: nothing they wake may find it borrowed.
        let picked = with_engine(|engine| {
            engine.pointers.remove(&event.pointer_id());
            let clicked = !engine.dragged && engine.press.is_some() && engine.pointers.is_empty();
            if engine.pointers.is_empty() {
                engine.press = None;
            }
            if !clicked {
                return None;
            }
            let (x, y) = point(&event);
            if let Some(request) = engine.bubble_at(x, y) {
                return Some(Err(request));
            }
            let (world_x, world_y) = engine.camera.to_world(x, y);
            engine.layout.node_at(world_x, world_y).map(|node| Ok(node.id.clone()))
        });
        match picked {
            Some(Ok(node)) => live.selected_node.set(Some(node)),
            Some(Err(request)) => live.selected_request.set(Some(request)),
            None => {}
        }
    };
    let on_cancel = move |event: PointerEvent| {
        with_engine(|engine| {
            engine.pointers.remove(&event.pointer_id());
            engine.press = None;
        })
    };
    let on_leave = move |_| with_engine(|engine| engine.hover = None);
    let on_wheel = move |event: WheelEvent| {
        event.prevent_default();
        with_engine(|engine| {
            engine.auto_fit = false;
            let factor = (-event.delta_y() * 0.0015).exp();
            engine
                .camera
                .zoom_at(factor, f64::from(event.offset_x()), f64::from(event.offset_y()));
        })
    };
    let on_double = move |event: web_sys::MouseEvent| {
        with_engine(|engine| {
            let (x, y) = (f64::from(event.offset_x()), f64::from(event.offset_y()));
            let (world_x, world_y) = engine.camera.to_world(x, y);
            if let Some(node) = engine.layout.node_at(world_x, world_y).map(|node| node.id.clone()) {
                engine.focus(&node);
            }
        })
    };
    view! {
        <canvas
            node_ref=canvas_ref
            class="flow-canvas"
            data-testid="flow-canvas"
            role="img"
            aria-label="Flow of requests through the notification system. Click a component for its card; the component list beside offers the same by keyboard."
            on:pointerdown=on_down
            on:pointermove=on_move
            on:pointerup=on_up
            on:pointercancel=on_cancel
            on:pointerleave=on_leave
            on:wheel=on_wheel
            on:dblclick=on_double
        ></canvas>
    }
}

/// `window.__liveview.nodeCenter(key)`, `.bubbles()` and `.clock()` for tests and benchmarks.
fn expose_for_tests() {
    let api = js_sys::Object::new();
    let node_center = Closure::<dyn Fn(String) -> JsValue>::new(move |key: String| {
        match with_engine(|engine| engine.node_center(&key)) {
            Some((x, y)) => js_sys::Array::of2(&x.into(), &y.into()).into(),
            None => JsValue::NULL,
        }
    });
    let bubbles =
        Closure::<dyn Fn() -> JsValue>::new(move || JsValue::from_f64(with_engine(|engine| engine.scene.len()) as f64));
    let bubble_center = Closure::<dyn Fn(String) -> JsValue>::new(move |request: String| {
        match with_engine(|engine| engine.bubble_center(&request)) {
            Some((x, y)) => js_sys::Array::of2(&x.into(), &y.into()).into(),
            None => JsValue::NULL,
        }
    });
    let _ = js_sys::Reflect::set(&api, &"bubbleCenter".into(), bubble_center.as_ref());
    bubble_center.forget();
    let pick = Closure::<dyn Fn(f64, f64) -> JsValue>::new(move |x: f64, y: f64| {
        with_engine(|engine| engine.bubble_at(x, y)).map_or(JsValue::NULL, |request| request.into())
    });
    let _ = js_sys::Reflect::set(&api, &"bubbleAt".into(), pick.as_ref());
    pick.forget();
    let clock =
        Closure::<dyn Fn() -> JsValue>::new(move || JsValue::from_f64(with_engine(|engine| engine.scene.clock_ms())));
    let _ = js_sys::Reflect::set(&api, &"clock".into(), clock.as_ref());
    clock.forget();
    let _ = js_sys::Reflect::set(&api, &"nodeCenter".into(), node_center.as_ref());
    let _ = js_sys::Reflect::set(&api, &"bubbles".into(), bubbles.as_ref());
    let _ = js_sys::Reflect::set(&window(), &"__liveview".into(), &api);
    // They live as long as the page.
    node_center.forget();
    bubbles.forget();
}

fn start_frames(live: Live, stream: Stream, canvas: HtmlCanvasElement) {
    let Some(context) = canvas
        .get_context("2d")
        .ok()
        .flatten()
        .and_then(|context| context.dyn_into::<CanvasRenderingContext2d>().ok())
    else {
        leptos::logging::error!("this browser has no 2D canvas");
        return;
    };
    // The callback re-requests itself, so it must be able to reach its own closure.
    type FrameCallback = Rc<RefCell<Option<Closure<dyn FnMut(f64)>>>>;
    let callback: FrameCallback = Rc::new(RefCell::new(None));
    let next = callback.clone();
    *callback.borrow_mut() = Some(Closure::new(move |now: f64| {
        let started = window()
            .performance()
            .map(|performance| performance.now())
            .unwrap_or(now);
        frame(&live, &stream, &canvas, &context, now);
        let spent = window()
            .performance()
            .map(|performance| performance.now())
            .unwrap_or(now)
            - started;
        with_engine(|engine| {
            engine.work_ms = engine.work_ms * 0.9 + spent * 0.1;
            engine.frames += 1;
            if engine.frames % 30 == 0 {
                let _ = canvas.set_attribute("data-frames", &engine.frames.to_string());
                let _ = canvas.set_attribute("data-work-ms", &format!("{:.2}", engine.work_ms));
                let _ = canvas.set_attribute("data-bubbles", &engine.scene.len().to_string());
            }
        });
        if let Some(callback) = next.borrow().as_ref() {
            let _ = window().request_animation_frame(callback.as_ref().unchecked_ref());
        }
    }));
    if let Some(first) = callback.borrow().as_ref() {
        let _ = window().request_animation_frame(first.as_ref().unchecked_ref());
    }
}

/// One animation frame: apply what arrived, move, draw.
fn frame(live: &Live, stream: &Stream, canvas: &HtmlCanvasElement, context: &CanvasRenderingContext2d, now: f64) {
    let batch = stream.drain();
    live.apply_batch(&batch, now);
    live.controls.with_untracked(|controls| {
        with_engine(|engine| step_engine(live, engine, canvas, context, &batch, controls, now))
    });
}

fn step_engine(
    live: &Live,
    engine: &mut Engine,
    canvas: &HtmlCanvasElement,
    context: &CanvasRenderingContext2d,
    batch: &[Envelope],
    controls: &ControlSettings,
    now: f64,
) {
    if !batch.is_empty() {
        if batch
            .iter()
            .any(|envelope| matches!(envelope.event, LiveEvent::ComponentMetrics(_) | LiveEvent::Snapshot(_)))
        {
            live.components
                .with_untracked(|components| engine.follow_components(components));
        }
        if engine.replay.is_none() {
            feed_scene(engine, batch);
        }
    }
    resize(engine, canvas);
    let elapsed = engine
        .last_frame
        .map(|last| (now - last).clamp(0.0, 250.0))
        .unwrap_or(0.0);
    engine.last_frame = Some(now);
    let speed = controls
        .playback_speed
        .clamp(ControlSettings::MIN_SPEED, ControlSettings::MAX_SPEED);
    let paused = live.paused.get_untracked();
    let animation_ms = if paused { 0.0 } else { elapsed * speed };
    if engine.replay.is_some() {
        let Engine {
            replay, scene, layout, ..
        } = engine;
        if let Some(replay) = replay.as_mut() {
            replay.advance(animation_ms, scene, layout);
        }
    }
    engine.scene.advance(animation_ms, &engine.layout);
    let visibility = visibility(controls);
    let animate = live.animate.get_untracked();
    engine.sprites = if animate {
        engine.scene.sprites(&engine.layout, &visibility, BUBBLE_CAP)
    } else {
        Vec::new()
    };
    draw(live, engine, context);
}

/// The canvas's share of the control panel's filters.
fn visibility(controls: &ControlSettings) -> Visibility {
    Visibility {
        hide_email: !controls.filters.show_email_flow,
        hide_in_app: !controls.filters.show_in_app_flow,
        types: controls.filters.notification_types.clone(),
        servers: controls.filters.server_filter.clone(),
    }
}

/// Stage events move bubbles; a snapshot means events were missed, so stale bubbles go.
pub fn feed_scene(engine: &mut Engine, batch: &[Envelope]) {
    let Engine { scene, layout, .. } = engine;
    for envelope in batch {
        match &envelope.event {
            LiveEvent::RequestProgress(progress) => scene.on_progress(progress, layout),
            LiveEvent::Snapshot(_) => scene.clear(),
            _ => {}
        }
    }
}

/// Matches the canvas's backing store to its laid-out size and the device pixel ratio.
fn resize(engine: &mut Engine, canvas: &HtmlCanvasElement) {
    let width = f64::from(canvas.client_width());
    let height = f64::from(canvas.client_height());
    if (width, height) == engine.size || width <= 0.0 {
        return;
    }
    let ratio = window().device_pixel_ratio().max(1.0);
    canvas.set_width((width * ratio) as u32);
    canvas.set_height((height * ratio) as u32);
    engine.size = (width, height);
    if engine.auto_fit {
        engine.camera = Camera::fit(width, height);
    }
}

fn draw(live: &Live, engine: &mut Engine, context: &CanvasRenderingContext2d) {
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
