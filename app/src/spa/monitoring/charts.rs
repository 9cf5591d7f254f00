//! The monitoring page's charts, drawn with plotters on a canvas: the sparklines of its
//! cards, and the trend charts — the last 20 snapshots live, or a range of the stored
//! rollups (`GET /api/v1/analytics/series`: 1 h of minutes, 24 h or 7 d of hours, 30 d
//! of days, or a chosen span), the still-filling bucket drawn hollow.

use leptos::{html::Canvas, prelude::*, task::spawn_local};
use plotters::prelude::*;
use plotters_canvas::CanvasBackend;

use super::Business;
use crate::wire::{BusinessMetrics, Series, SeriesMetric, SeriesStep};

#[component]
pub fn Sparkline(#[prop(into)] samples: Signal<Vec<f64>>) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    Effect::new(move |_| {
        let samples = samples.get();
        if let Some(canvas) = canvas.get() {
            crate::spa::cards::draw_sparkline(canvas, &samples);
        }
    });
    view! { <canvas class="sparkline" node_ref=canvas width="300" height="48" aria-hidden="true"></canvas> }
}

/// What a trend chart shows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Range {
    Live,
    Hour,
    Day,
    Week,
    Month,
    /// From and to, in Unix milliseconds.
    Custom(f64, f64),
}

impl Range {
    const BUTTONS: [(Range, &'static str, &'static str); 5] = [
        (Range::Live, "live", "range-live"),
        (Range::Hour, "1 h", "range-1h"),
        (Range::Day, "24 h", "range-24h"),
        (Range::Week, "7 d", "range-7d"),
        (Range::Month, "30 d", "range-30d"),
    ];

    /// The span and the step of the rollups it reads (none for the live points).
    fn query(self, now_ms: f64) -> Option<(f64, f64, SeriesStep)> {
        const HOUR: f64 = 3_600_000.0;
        Some(match self {
            Range::Live => return None,
            Range::Hour => (now_ms - HOUR, now_ms, SeriesStep::Minute),
            Range::Day => (now_ms - 24.0 * HOUR, now_ms, SeriesStep::Hour),
            Range::Week => (now_ms - 7.0 * 24.0 * HOUR, now_ms, SeriesStep::Hour),
            Range::Month => (now_ms - 30.0 * 24.0 * HOUR, now_ms, SeriesStep::Day),
            Range::Custom(from, to) => {
                let span = to - from;
                let step = if span <= 6.0 * HOUR {
                    SeriesStep::Minute
                } else if span <= 14.0 * 24.0 * HOUR {
                    SeriesStep::Hour
                } else {
                    SeriesStep::Day
                };
                (from, to, step)
            }
        })
    }
}

/// One point: when (Unix ms), the value, and whether its bucket is still filling.
type Point = (f64, f64, bool);

fn rfc3339(ms: f64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn name_of<T: serde::Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn fetch(metric: SeriesMetric, from: f64, to: f64, step: SeriesStep) -> Result<Vec<Point>, String> {
    let path = format!(
        "/api/v1/analytics/series?metric={}&step={}&from={}&to={}",
        name_of(metric),
        name_of(step),
        crate::spa::api::encode(&rfc3339(from)),
        crate::spa::api::encode(&rfc3339(to)),
    );
    let series: Series = crate::spa::api::get(&path).await?;
    Ok(series
        .points
        .into_iter()
        .map(|point| (point.t.timestamp_millis() as f64, point.value, point.partial))
        .collect())
}

/// A `datetime-local` input's value as Unix milliseconds (the browser's time zone).
fn local_input_ms(value: &str) -> Option<f64> {
    if value.is_empty() {
        return None;
    }
    let ms = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(value)).get_time();
    ms.is_finite().then_some(ms)
}

#[component]
pub fn TrendChart(
    business: Business,
    title: &'static str,
    metric: SeriesMetric,
    testid: &'static str,
    live: fn(&BusinessMetrics) -> f64,
) -> impl IntoView {
    let range = RwSignal::new(Range::Live);
    let stored = RwSignal::new(Vec::<Point>::new());
    let problem = RwSignal::new(None::<String>);
    let canvas = NodeRef::<Canvas>::new();
    let (from_input, to_input) = (RwSignal::new(String::new()), RwSignal::new(String::new()));
    // The rollups again whenever the range changes and with every snapshot (the
    // still-filling bucket moves).
    Effect::new(move |_| {
        let chosen = range.get();
        business.metrics.track();
        if let Some((from, to, step)) = chosen.query(js_sys::Date::now()) {
            spawn_local(async move {
                match fetch(metric, from, to, step).await {
                    Ok(points) if range.get_untracked() == chosen => {
                        problem.set(None);
                        stored.set(points);
                    }
                    Ok(_) => {}
                    Err(error) => problem.set(Some(error)),
                }
            });
        }
    });
    let points = Memo::new(move |_| match range.get() {
        Range::Live => business.history.with(|history| {
            history
                .iter()
                .map(|metrics| (metrics.timestamp.timestamp_millis() as f64, live(metrics), false))
                .collect::<Vec<_>>()
        }),
        _ => stored.get(),
    });
    Effect::new(move |_| {
        let points = points.get();
        if let Some(canvas) = canvas.get() {
            draw_trend(canvas, &points);
        }
    });
    let apply = move |_| {
        if let (Some(from), Some(to)) = (local_input_ms(&from_input.get()), local_input_ms(&to_input.get()))
            && from < to
        {
            range.set(Range::Custom(from, to));
        } else {
            problem.set(Some("choose a start before the end".into()));
        }
    };
    view! {
        <section class="panel trend" aria-label=title data-testid=testid data-range=move || format!("{:?}", range.get()) data-points=move || points.with(Vec::len)>
            <div class="panel-head">
                <h2>{title}</h2>
                <div class="ranges" role="group" aria-label="Range">
                    {Range::BUTTONS.into_iter().map(|(choice, label, id)| view! {
                        <button
                            class=move || if range.get() == choice { "small chosen" } else { "small" }
                            data-testid=format!("{testid}-{id}")
                            aria-pressed=move || (range.get() == choice).to_string()
                            on:click=move |_| range.set(choice)
                        >{label}</button>
                    }).collect_view()}
                </div>
            </div>
            <canvas node_ref=canvas width="640" height="220" aria-hidden="true"></canvas>
            <div class="range-filter">
                <label>"from " <input type="datetime-local" data-testid=format!("{testid}-from") bind:value=from_input /></label>
                <label>"to " <input type="datetime-local" data-testid=format!("{testid}-to") bind:value=to_input /></label>
                <button class="small" data-testid=format!("{testid}-apply") on:click=apply>"Show"</button>
                {move || problem.get().map(|problem| view! { <span class="hint error">{problem}</span> })}
            </div>
        </section>
    }
}

/// The time of day in the browser's time zone: with seconds for a span under ten
/// minutes (the live points), with the day for one over two days.
fn clock(ms: f64, span_ms: f64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms));
    if span_ms < 600_000.0 {
        format!(
            "{:02}:{:02}:{:02}",
            date.get_hours(),
            date.get_minutes(),
            date.get_seconds()
        )
    } else if span_ms > 2.0 * 86_400_000.0 {
        format!("{}/{}", date.get_date(), date.get_month() + 1)
    } else {
        format!("{:02}:{:02}", date.get_hours(), date.get_minutes())
    }
}

fn draw_trend(canvas: web_sys::HtmlCanvasElement, points: &[Point]) {
    let Some(backend) = CanvasBackend::with_canvas_object(canvas) else {
        return;
    };
    let root = backend.into_drawing_area();
    let _ = root.fill(&RGBColor(19, 26, 46));
    let text = RGBColor(148, 163, 184);
    if points.len() < 2 {
        let _ = root.draw(&Text::new(
            "waiting for points…",
            (16, 20),
            ("sans-serif", 14).into_font().color(&text),
        ));
        let _ = root.present();
        return;
    }
    let (first, last) = (points[0].0, points[points.len() - 1].0);
    let top = points.iter().map(|point| point.1).fold(1.0_f64, f64::max) * 1.15;
    let Ok(mut chart) = ChartBuilder::on(&root)
        .margin(10)
        .x_label_area_size(24)
        .y_label_area_size(48)
        .build_cartesian_2d(first..last.max(first + 1.0), 0.0..top)
    else {
        return;
    };
    let _ = chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(35, 48, 77))
        .axis_style(RGBColor(35, 48, 77))
        .label_style(("sans-serif", 12).into_font().color(&text))
        .x_labels(6)
        .y_labels(5)
        .x_label_formatter(&|ms| clock(*ms, last - first))
        .y_label_formatter(&|value| {
            if *value >= 1_000.0 {
                format!("{:.1}k", value / 1_000.0)
            } else if top < 10.0 {
                // Small ranges have ticks between whole numbers (0.5): one decimal,
                // dropped where it is zero.
                let label = format!("{value:.1}");
                label.strip_suffix(".0").map(str::to_string).unwrap_or(label)
            } else {
                format!("{value:.0}")
            }
        })
        .draw();
    let line = RGBColor(59, 130, 246);
    let _ = chart.draw_series(AreaSeries::new(
        points.iter().map(|point| (point.0, point.1)),
        0.0,
        line.mix(0.18),
    ));
    let _ = chart.draw_series(LineSeries::new(
        points.iter().map(|point| (point.0, point.1)),
        line.stroke_width(2),
    ));
    let _ = chart.draw_series(points.iter().map(|&(at, value, partial)| {
        let style = if partial { line.stroke_width(2) } else { line.filled() };
        Circle::new((at, value), 3, style)
    }));
    let _ = root.present();
}
