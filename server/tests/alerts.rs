//! Alerts end to end: SMTP faults switched on make the SMTP-failure rule fire, switched
//! off make it resolve; toggled quickly they give one alert, not many; each transition
//! reaches the live stream, the webhook and (for `error`) the mail queue; the rules,
//! acknowledgements and silences are validated and kept.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Sse, TestSystem, eventually};
use tokio_util::sync::CancellationToken;

mod support;

/// A webhook receiver: every body POSTed to it.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let kept = kept.clone();
            async move {
                kept.lock().expect("lock").push(body);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), received)
}

/// One rule, watching SMTP failures: fires at once above 50 %, resolves after the
/// failures have stayed at or below 10 % for `keep` seconds.
fn smtp_rule(keep: u32) -> Value {
    json!({"rules": [{
        "id": "smtp", "name": "SMTP failures", "signal": "smtpFailures", "comparison": "above",
        "levels": [{"severity": "error", "threshold": 50, "recover": 10}],
        "forSeconds": 0, "keepFiringSeconds": keep, "repeatMinutes": 0
    }]})
}

impl TestSystem {
    async fn alerts(&self) -> Vec<Value> {
        self.dashboard_json("/api/v1/alerts").await["alerts"]
            .as_array()
            .expect("alerts")
            .clone()
    }

    async fn faults(&self, rate: f64) {
        let response = self.dashboard_put("/api/faults", &json!({ "smtp4xxRate": rate })).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// The first alert in `state`, once there is one (within `within`).
    async fn alert_in(&self, state: &str, within: Duration) -> Value {
        eventually(&format!("an alert {state}"), within, || async {
            self.alerts().await.into_iter().find(|alert| alert["state"] == state)
        })
        .await
    }

    /// A purchase every 50 ms (each sends a receipt by email) until `stop`.
    async fn keep_buying(&self, stop: CancellationToken) {
        let lb = self.running.lb().to_string();
        let token = support::clients::signed_in_users(&lb, 1).await.remove(0);
        let (http, url) = (self.http.clone(), self.lb("/api/purchases"));
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let body = json!({"item": "Lamp", "amountCents": 1000, "currency": "EUR"});
                let _ = http.post(&url).bearer_auth(&token).json(&body).send().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
}

#[tokio::test]
async fn smtp_faults_fire_an_alert_and_their_end_resolves_it_telling_everyone_once() {
    let (hook, received) = webhook().await;
    let system = TestSystem::start(|config| {
        config.alert_interval_ms = 200;
        config.alert_webhook = Some(hook);
    })
    .await;
    let response = system.dashboard_put("/api/v1/alert-rules", &smtp_rule(0)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = Sse::open(&system, "", None).await;
    let buying = CancellationToken::new();
    system.keep_buying(buying.clone()).await;

    system.faults(1.0).await;
    let fired = system.alert_in("firing", Duration::from_secs(20)).await;
    assert_eq!(fired["ruleId"], "smtp");
    assert_eq!(fired["severity"], "error");
    assert_eq!(fired["component"], "smtp");
    assert!(fired["value"].as_f64().expect("value") > 50.0, "{fired}");
    assert!(
        fired["message"]
            .as_str()
            .expect("message")
            .starts_with("SMTP failures: "),
        "{fired}"
    );
    let snapshot = system.dashboard_json("/api/v1/analytics/realtime-metrics").await;
    assert_eq!(snapshot["alerts"][0]["id"], fired["id"], "the snapshot lists it");
    let rules = system.dashboard_json("/api/v1/alert-rules").await;
    assert_eq!(rules["status"][0]["state"], "firing", "{rules}");

    // An operator acknowledges it; an unknown alert cannot be.
    let id = fired["id"].as_str().expect("id").to_string();
    let ack = system
        .dashboard_post(&format!("/api/v1/alerts/{id}/ack"), &json!({}))
        .await;
    assert_eq!(ack.status(), StatusCode::NO_CONTENT);
    let unknown = system.dashboard_post("/api/v1/alerts/nope/ack", &json!({})).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    system.faults(0.0).await;
    let resolved = eventually("the alert resolves", Duration::from_secs(30), || async {
        system
            .alerts()
            .await
            .into_iter()
            .find(|alert| alert["id"] == fired["id"] && alert["state"] == "resolved")
    })
    .await;
    assert_eq!(resolved["acknowledgedBy"], "anonymous");
    assert!(resolved["endedAt"].is_string());
    let again = system
        .dashboard_post(&format!("/api/v1/alerts/{id}/ack"), &json!({}))
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);

    // The live stream told of both transitions.
    let mut told = Vec::new();
    while told.len() < 2 {
        let event = stream.next().await;
        if event.event == "system_alert" {
            let alert: Value = serde_json::from_str(&event.data).expect("json");
            told.push(alert["payload"]["state"].as_str().expect("state").to_string());
        }
    }
    assert_eq!(told, ["firing", "resolved"]);
    // So did the webhook, in Slack's shape.
    let hooks = eventually("the webhook heard both", Duration::from_secs(10), || async {
        let hooks = received.lock().expect("lock").clone();
        (hooks.len() >= 2).then_some(hooks)
    })
    .await;
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    assert!(
        hooks[0]["text"]
            .as_str()
            .expect("text")
            .contains("[ERROR] SMTP failures"),
        "{hooks:?}"
    );
    assert!(
        hooks[1]["text"].as_str().expect("text").contains("[RESOLVED]"),
        "{hooks:?}"
    );
    // And an `error` alert is emailed to the operators through the mail queue, once
    // for firing and once for resolving.
    assert_eq!(
        system
            .count("SELECT COUNT(*) FROM emails WHERE kind = 'alert' AND to_address = 'operators@liveview.example'")
            .await,
        2
    );
    buying.cancel();
    system.stop().await;
}

#[tokio::test]
async fn faults_toggled_quickly_give_one_alert_not_many() {
    let system = TestSystem::start(|config| config.alert_interval_ms = 200).await;
    // Recovering must last 3 s: toggling faster than that never resolves.
    let response = system.dashboard_put("/api/v1/alert-rules", &smtp_rule(3)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let buying = CancellationToken::new();
    system.keep_buying(buying.clone()).await;
    system.faults(1.0).await;
    system.alert_in("firing", Duration::from_secs(20)).await;
    for _ in 0..5 {
        system.faults(0.0).await;
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        system.faults(1.0).await;
        tokio::time::sleep(Duration::from_millis(1_200)).await;
    }
    system.faults(0.0).await;
    system.alert_in("resolved", Duration::from_secs(30)).await;
    let alerts = system.alerts().await;
    assert_eq!(alerts.len(), 1, "one alert for the whole wobble: {alerts:?}");
    assert_eq!(system.count("SELECT COUNT(*) FROM alerts").await, 1);
    buying.cancel();
    system.stop().await;
}

#[tokio::test]
async fn rules_and_silences_are_validated_and_kept() {
    let system = TestSystem::start(|_| {}).await;
    let built_in = system.dashboard_json("/api/v1/alert-rules").await;
    let ids: Vec<&str> = built_in["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|rule| rule["id"].as_str().expect("id"))
        .collect();
    assert!(ids.contains(&"error-rate") && ids.contains(&"smtp-failures"), "{ids:?}");

    // Recovery on the wrong side of the threshold: refused, nothing changes.
    let mut bad = smtp_rule(0);
    bad["rules"][0]["levels"][0]["recover"] = json!(60);
    let response = system.dashboard_put("/api/v1/alert-rules", &bad).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["fields"]["rules"].as_str().expect("reason").contains("recover"),
        "{body}"
    );
    assert_eq!(
        system.dashboard_json("/api/v1/alert-rules").await["rules"],
        built_in["rules"]
    );
    let unknown_field = json!({"rules": [], "extra": true});
    let response = system.dashboard_put("/api/v1/alert-rules", &unknown_field).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let response = system.dashboard_put("/api/v1/alert-rules", &smtp_rule(5)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let saved = system.dashboard_json("/api/v1/alert-rules").await;
    assert_eq!(saved["rules"].as_array().expect("rules").len(), 1);
    assert_eq!(saved["rules"][0]["keepFiringSeconds"], 5);

    // Silences: for a known rule only, bounded.
    let response = system
        .dashboard_post("/api/v1/alert-silences", &json!({"ruleId": "nope", "minutes": 10}))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = system
        .dashboard_post("/api/v1/alert-silences", &json!({"ruleId": "smtp", "minutes": 0}))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = system
        .dashboard_post(
            "/api/v1/alert-silences",
            &json!({"ruleId": "smtp", "minutes": 30, "reason": "SMTP maintenance"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let silence: Value = response.json().await.expect("json");
    let listed = system.dashboard_json("/api/v1/alert-silences").await;
    assert_eq!(listed["silences"][0]["id"], silence["id"]);
    assert_eq!(listed["silences"][0]["createdBy"], "anonymous");
    let path = format!("/api/v1/alert-silences/{}", silence["id"].as_str().expect("id"));
    let ended = system
        .http
        .delete(system.dashboard(&path))
        .send()
        .await
        .expect("answers");
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    let again = system
        .http
        .delete(system.dashboard(&path))
        .send()
        .await
        .expect("answers");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert!(
        system.dashboard_json("/api/v1/alert-silences").await["silences"]
            .as_array()
            .expect("silences")
            .is_empty()
    );

    // Every change is in the audit log.
    let audit = system.dashboard_json("/api/audit?limit=50").await;
    let routes: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["route"].as_str().expect("route"))
        .collect();
    for route in [
        "/api/v1/alert-rules",
        "/api/v1/alert-silences",
        "/api/v1/alert-silences/{id}",
    ] {
        assert!(routes.contains(&route), "{route} audited: {routes:?}");
    }
    system.stop().await;
}
