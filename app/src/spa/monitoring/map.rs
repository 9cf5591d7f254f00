//! The activity map: the world's countries (`GET /api/v1/analytics/world`, Natural
//! Earth's shapes, fetched once) on a canvas in an equirectangular projection, each
//! shaded by its active users in `activeUsers.locations`; the busiest listed beside it.
//! Drawn here rather than with map tiles: nothing leaves the dashboard.

use leptos::{html::Canvas, prelude::*, task::spawn_local};
use wasm_bindgen::JsCast;

use super::Business;
use crate::wire::{GeoLocation, WorldMap};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 330.0;
/// Antarctica is left off: latitudes from 84° N to 58° S fill the height.
const NORTH: f64 = 84.0;
const SOUTH: f64 = -58.0;

fn project(lon: f32, lat: f32) -> (f64, f64) {
    let x = (f64::from(lon) + 180.0) / 360.0 * WIDTH;
    let y = (NORTH - f64::from(lat)) / (NORTH - SOUTH) * HEIGHT;
    (x, y)
}

#[component]
pub fn ActivityMap(business: Business) -> impl IntoView {
    let world = RwSignal::new(None::<WorldMap>);
    spawn_local(async move {
        if let Ok(map) = crate::spa::api::get::<WorldMap>("/api/v1/analytics/world").await {
            world.set(Some(map));
        }
    });
    let locations = Memo::new(move |_| {
        business.metrics.with(|metrics| {
            metrics
                .as_ref()
                .map(|metrics| metrics.active_users.locations.clone())
                .unwrap_or_default()
        })
    });
    let canvas = NodeRef::<Canvas>::new();
    Effect::new(move |_| {
        let locations = locations.get();
        world.with(|world| {
            if let (Some(world), Some(canvas)) = (world.as_ref(), canvas.get()) {
                draw(&canvas, world, &locations);
            }
        });
    });
    let shaded = move || locations.with(Vec::len);
    view! {
        <section class="panel activity-map" aria-label="Active users by country" data-testid="map" data-countries=shaded
            data-shapes=move || world.with(|world| world.as_ref().map_or(0, |world| world.countries.len()))>
            <div class="panel-head"><h2>"Where users are"</h2></div>
            <canvas node_ref=canvas width=WIDTH as u32 height=HEIGHT as u32 aria-hidden="true"></canvas>
            <ol class="map-legend" data-testid="map-legend">
                {move || {
                    let locations = locations.get();
                    if locations.is_empty() {
                        return view! { <li class="hint">"no located users in the last 5 minutes"</li> }.into_any();
                    }
                    locations.into_iter().take(8).map(|location| view! {
                        <li data-testid="map-country" data-country=location.country.clone()>
                            <span>{location.name.clone()}</span>
                            <span class="mono">{location.users}</span>
                        </li>
                    }).collect_view().into_any()
                }}
            </ol>
        </section>
    }
}

fn draw(canvas: &web_sys::HtmlCanvasElement, world: &WorldMap, locations: &[GeoLocation]) {
    let Some(context) = canvas
        .get_context("2d")
        .ok()
        .flatten()
        .and_then(|context| context.dyn_into::<web_sys::CanvasRenderingContext2d>().ok())
    else {
        return;
    };
    context.set_fill_style_str("#0b1020");
    context.fill_rect(0.0, 0.0, WIDTH, HEIGHT);
    let most = locations
        .iter()
        .map(|location| location.users)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    context.set_stroke_style_str("#23304d");
    context.set_line_width(0.6);
    // Antarctica has no users and would fill the bottom.
    for shape in world
        .countries
        .iter()
        .filter(|shape| shape.country.as_deref() != Some("AQ"))
    {
        let users = shape
            .country
            .as_deref()
            .and_then(|code| locations.iter().find(|location| location.country == code))
            .map_or(0, |location| location.users);
        // Log scale: one user already shows, the busiest is the brightest.
        let fill = if users == 0 {
            "#1e293b".to_string()
        } else {
            let strength = ((users as f64).ln_1p() / most.ln_1p()).clamp(0.15, 1.0);
            format!("rgba(59, 130, 246, {:.2})", 0.25 + 0.75 * strength)
        };
        context.set_fill_style_str(&fill);
        context.begin_path();
        for ring in &shape.rings {
            // A ring that crosses the antimeridian (Fiji, Chukotka) is drawn whole past
            // the right edge instead of as a band across the map.
            let crosses = ring.windows(2).any(|pair| (pair[0][0] - pair[1][0]).abs() > 180.0);
            for (index, &[lon, lat]) in ring.iter().enumerate() {
                let lon = if crosses && lon < 0.0 { lon + 360.0 } else { lon };
                let (x, y) = project(lon, lat);
                if index == 0 {
                    context.move_to(x, y);
                } else {
                    context.line_to(x, y);
                }
            }
            context.close_path();
        }
        context.fill_with_canvas_winding_rule(web_sys::CanvasWindingRule::Evenodd);
        context.stroke();
    }
}
