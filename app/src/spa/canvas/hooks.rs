//! What the page exposes for end-to-end tests and the frame benchmark:
//! `window.__liveview` with `nodeCenter(key)`, `bubbles()`, `bubbleCenter(requestId)`,
//! `bubbleAt(x, y)` and `clock()`.

use leptos::prelude::*;
use wasm_bindgen::{JsValue, closure::Closure};

use super::with_engine;

/// `window.__liveview.nodeCenter(key)`, `.bubbles()` and `.clock()` for tests and benchmarks.
pub(super) fn expose_for_tests() {
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
