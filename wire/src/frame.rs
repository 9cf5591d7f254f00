//! Reading live-stream frames without serde's buffering of tagged enums.
//!
//! `LiveEvent` is adjacently tagged (`topic` + `payload`, flattened into the envelope) and
//! `ComponentMetrics` internally tagged (`component`); serde's derived readers for both
//! first copy every field into a generic buffer and then read it again. That code is large
//! in the browser's wasm and slow on every message. Here the tag is read first and the
//! payload, kept as raw JSON text, is read straight into its own type. The derived
//! readers stay for MessagePack and other formats; the result is the same (tested).

use std::borrow::Cow;

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::value::RawValue;

use super::{ComponentMetrics, Envelope, LiveEvent, LiveSnapshot, Timestamp};

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    seq: u64,
    #[serde(deserialize_with = "super::rfc3339::read")]
    #[cfg_attr(not(target_arch = "wasm32"), serde(serialize_with = "super::rfc3339::write"))]
    ts: Timestamp,
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// Reads one frame of the live stream: an Envelope object or an array of them.
pub fn parse_frame(text: &str) -> Result<Vec<Envelope>, serde_json::Error> {
    let raw: Vec<RawEnvelope<'_>> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text)?
    } else {
        vec![serde_json::from_str(text)?]
    };
    raw.into_iter()
        .map(|raw| {
            Ok(Envelope {
                seq: raw.seq,
                ts: raw.ts,
                event: event(&raw.topic, raw.payload.get())?,
            })
        })
        .collect()
}

fn read<T: DeserializeOwned>(payload: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(payload)
}

fn event(topic: &str, payload: &str) -> Result<LiveEvent, serde_json::Error> {
    use LiveEvent as E;
    Ok(match topic {
        "system:status" => E::SystemStatus(read(payload)?),
        "system:metrics" => E::SystemMetrics(read(payload)?),
        "request:new" => E::RequestNew(read(payload)?),
        "request:progress" => E::RequestProgress(read(payload)?),
        "request:complete" => E::RequestComplete(read(payload)?),
        "request:failed" => E::RequestFailed(read(payload)?),
        "component:status" => E::ComponentStatus(read(payload)?),
        "component:metrics" => E::ComponentMetrics(component_metrics(payload)?),
        "queue:job:added" => E::QueueJobAdded(read(payload)?),
        "queue:job:processing" => E::QueueJobProcessing(read(payload)?),
        "queue:job:completed" => E::QueueJobCompleted(read(payload)?),
        "queue:job:failed" => E::QueueJobFailed(read(payload)?),
        "queue:job:retry" => E::QueueJobRetry(read(payload)?),
        "worker:processing" => E::WorkerProcessing(read(payload)?),
        "worker:idle" => E::WorkerIdle(read(payload)?),
        "notification:email:sent" => E::EmailSent(read(payload)?),
        "notification:inapp:delivered" => E::InAppDelivered(read(payload)?),
        "controls:changed" => E::ControlsChanged(read(payload)?),
        "new_signup" => E::NewSignup(read(payload)?),
        "payment_success" => E::PaymentSuccess(read(payload)?),
        "activity:new" => E::ActivityNew(read(payload)?),
        "system_metrics" => E::SystemLoad(read(payload)?),
        "active_users" => E::ActiveUsers(read(payload)?),
        "analytics:update" => E::AnalyticsUpdate(Box::new(read(payload)?)),
        "system_alert" => E::SystemAlert(Box::new(read(payload)?)),
        "performance:alert" => E::PerformanceAlert(Box::new(read(payload)?)),
        "stream:snapshot" => E::Snapshot(Box::new(snapshot(payload)?)),
        "stream:gap" => E::Gap(read(payload)?),
        "stream:error" => E::StreamError(read(payload)?),
        other => return Err(serde::de::Error::custom(format!("unknown topic {other:?}"))),
    })
}

#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(borrow)]
    component: Cow<'a, str>,
}

/// A `component:metrics` payload: the `component` tag first, then the fields of its kind.
pub(crate) fn component_metrics(payload: &str) -> Result<ComponentMetrics, serde_json::Error> {
    use ComponentMetrics as C;
    let tag: Tag<'_> = serde_json::from_str(payload)?;
    Ok(match tag.component.as_ref() {
        "load-balancer" => C::LoadBalancer(read(payload)?),
        "server" => C::Server(read(payload)?),
        "queue" => C::Queue(read(payload)?),
        "websocket" => C::Websocket(read(payload)?),
        "database" => C::Database(read(payload)?),
        "smtp" => C::Smtp(read(payload)?),
        other => return Err(serde::de::Error::custom(format!("unknown component {other:?}"))),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSnapshot<'a> {
    #[serde(default)]
    status: Option<super::SystemStatus>,
    #[serde(default)]
    metrics: Option<super::SystemMetrics>,
    #[serde(default, borrow)]
    components: Vec<&'a RawValue>,
    #[serde(default)]
    controls: Option<super::ControlSettings>,
    #[serde(default)]
    requests: Vec<super::RequestTracker>,
}

fn snapshot(payload: &str) -> Result<LiveSnapshot, serde_json::Error> {
    let raw: RawSnapshot<'_> = serde_json::from_str(payload)?;
    Ok(LiveSnapshot {
        status: raw.status,
        metrics: raw.metrics,
        components: raw
            .components
            .into_iter()
            .map(|component| component_metrics(component.get()))
            .collect::<Result<_, _>>()?,
        controls: raw.controls,
        requests: raw.requests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_event_exactly_as_the_derived_reader_does() {
        let envelopes = super::super::events::tests::every_envelope();
        assert!(envelopes.len() >= 21, "one of every topic");
        for envelope in &envelopes {
            let text = serde_json::to_string(envelope).expect("serializes");
            let derived: Envelope = serde_json::from_str(&text).expect("derived reader");
            assert_eq!(parse_frame(&text).expect("fast reader"), vec![derived], "{text}");
        }
        let batch = serde_json::to_string(&envelopes).expect("serializes");
        assert_eq!(parse_frame(&batch).expect("a batch"), envelopes);
    }

    #[test]
    fn refuses_what_the_derived_reader_refuses() {
        for text in [
            r#"{"seq":1,"ts":"2026-11-23T18:00:00Z","topic":"nope","payload":{}}"#,
            r#"{"seq":1,"ts":"2026-11-23T18:00:00Z","topic":"component:metrics","payload":{"component":"nope"}}"#,
            r#"{"seq":1,"ts":"2026-11-23T18:00:00Z","topic":"stream:gap","payload":{"from":"x"}}"#,
            r#"{"seq":1,"topic":"stream:gap","payload":{"from":1,"to":2}}"#,
            "[1]",
            "",
        ] {
            assert!(parse_frame(text).is_err(), "{text}");
            assert!(serde_json::from_str::<Envelope>(text).is_err(), "{text}");
        }
    }
}
