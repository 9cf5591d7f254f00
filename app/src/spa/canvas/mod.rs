//! The flow canvas: one `requestAnimationFrame` loop that drains the stream's inbox,
//! applies it to the signals and the scene, advances the animation by real time times the
//! playback speed, and draws the whole picture on a 2D canvas. Pointer input (hover, click,
//! drag to pan, wheel and pinch to zoom) is read off the same engine.
//!
//! Drawing is in [`draw`]; what can run without a browser (filters, feeding the scene,
//! the animation step) is in [`crate::flow`], tested on the host.
//!
//! The page also gets `window.__liveview` ([`hooks`]) with `nodeCenter(key)` (a node's centre in CSS
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

mod draw;
mod hooks;

use draw::draw;
use hooks::expose_for_tests;

use super::{state::Live, stream::Stream};
use crate::{
    flow::{Camera, Layout, NodeId, Replay, Scene, Sprite, Visibility, animation_step, figures},
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
    let animation_ms = animation_step(
        engine.last_frame,
        now,
        controls.playback_speed,
        live.paused.get_untracked(),
    );
    engine.last_frame = Some(now);
    if engine.replay.is_some() {
        let Engine {
            replay, scene, layout, ..
        } = engine;
        if let Some(replay) = replay.as_mut() {
            replay.advance(animation_ms, scene, layout);
        }
    }
    engine.scene.advance(animation_ms, &engine.layout);
    let visibility = Visibility::of_filters(&controls.filters);
    let animate = live.animate.get_untracked();
    engine.sprites = if animate {
        engine.scene.sprites(&engine.layout, &visibility, BUBBLE_CAP)
    } else {
        Vec::new()
    };
    draw(live, engine, context);
}

/// Stage events move bubbles; a snapshot means events were missed, so stale bubbles go.
pub fn feed_scene(engine: &mut Engine, batch: &[Envelope]) {
    let Engine { scene, layout, .. } = engine;
    scene.feed(batch, layout);
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
