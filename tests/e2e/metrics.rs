//! `/metrics` read as Prometheus reads it (a real text-format parser), after real traffic.

use std::collections::HashMap;

use codecrafter_tests::serde_json::json;
use codecrafter_tests::ws::WsClient;
use codecrafter_tests::{TestApp, backend_tests};
use prometheus_parse::{Sample, Scrape, Value};

use crate::documents::{APPLY, Peer};

/// Scrape `url` and parse it; a line Prometheus would refuse fails the test.
pub(crate) async fn scrape(app: &TestApp, url: &str) -> Scrape {
    let response = app.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        // Every sample line is `name{labels} value`.
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The samples of `family` whose labels include `labels`.
fn samples<'a>(scrape: &'a Scrape, family: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == family)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect()
}

/// The value of a counter or gauge (summed over the matching label sets).
fn value(scrape: &Scrape, family: &str, labels: &[(&str, &str)]) -> f64 {
    let found = samples(scrape, family, labels);
    assert!(!found.is_empty(), "no {family} {labels:?}");
    found
        .iter()
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{family} is not a counter or gauge: {other:?}"),
        })
        .sum()
}

/// The observation count of a histogram with these labels.
fn observations(scrape: &Scrape, family: &str, labels: &[(&str, &str)]) -> f64 {
    let found = samples(scrape, family, labels);
    assert!(!found.is_empty(), "no histogram {family} {labels:?}");
    found
        .iter()
        .map(|s| match &s.value {
            Value::Histogram(buckets) => {
                assert!(buckets.len() > 5, "{family} has too few buckets");
                buckets.last().map_or(0.0, |b| b.count)
            }
            other => panic!("{family} is not a histogram: {other:?}"),
        })
        .sum()
}

fn has_help(scrape: &Scrape, family: &str) -> bool {
    scrape.docs.contains_key(family)
}

backend_tests! {
    async fn metrics_answer_an_operators_questions(app) {
        let _gauges = codecrafter_tests::NODE_GAUGES.lock().await;
        let before = scrape(&app, &app.url("/metrics")).await;
        assert_eq!(value(&before, "codecrafter_websocket_connections", &[]), 0.0);

        let owner = app.sign_up("owner").await;
        let project = app.create_project(&owner, "m", false).await;
        app.gql_as(&owner.access, "mutation($p: ID!) { createFile(projectId: $p, path: \"a.py\") { path } }", json!({ "p": project })).await.data();
        // One refused request and one operation that fails in its resolver.
        app.gql("{ nosuchfield }", json!({})).await;
        app.gql_as(&owner.access, "query($p: ID!) { project(id: $p) { title } }", json!({ "p": uuid::Uuid::new_v4() })).await;
        let mut peer = Peer::join(&app, &owner, &project, 7).await;
        peer.edit(|p| p.text("a.py").insert(0, "print(1)\n").unwrap()).await;
        // An update the server refuses.
        let refused = peer.ws.request(APPLY, json!({ "p": project, "u": "AAAA", "c": "x" })).await;
        assert!(refused.get("errors").is_some(), "{refused}");
        let extra = WsClient::connect(&app, Some(&owner.access)).await;

        // Seen in two full runs (not alone): a scrape right after the subscription's first
        // event counted it 0 times; a later one counts it (cause not found yet).
        let after = codecrafter_tests::eventually_some(std::time::Duration::from_secs(10), async || {
            let now = scrape(&app, &app.url("/metrics")).await;
            (value(&now, "codecrafter_subscriptions_active", &[("field", "documentUpdates")]) == 1.0).then_some(now)
        })
        .await;
        // HTTP, by route pattern, method and status, with latency.
        assert!(value(&after, "codecrafter_http_requests_total", &[("route", "/graphql"), ("method", "POST"), ("status", "200")]) >= 3.0);
        assert!(value(&after, "codecrafter_http_requests_total", &[("route", "/graphql"), ("method", "GET"), ("status", "101")]) >= 2.0);
        assert!(observations(&after, "codecrafter_http_request_duration_seconds", &[("route", "/graphql"), ("method", "POST")]) >= 3.0);
        // GraphQL, by root field, type and outcome, with latency; client-made names never
        // become labels.
        assert!(value(&after, "codecrafter_graphql_operations_total", &[("operation", "signUp"), ("type", "mutation"), ("outcome", "ok")]) >= 1.0);
        assert!(value(&after, "codecrafter_graphql_operations_total", &[("operation", "project"), ("type", "query"), ("outcome", "NOT_FOUND")]) >= 1.0);
        assert!(value(&after, "codecrafter_graphql_operations_total", &[("operation", "invalid"), ("outcome", "BAD_USER_INPUT")]) >= 1.0);
        assert!(samples(&after, "codecrafter_graphql_operations_total", &[("operation", "nosuchfield")]).is_empty());
        assert!(value(&after, "codecrafter_graphql_operations_total", &[("operation", "applyUpdate"), ("type", "mutation"), ("outcome", "ok")]) >= 1.0);
        assert!(observations(&after, "codecrafter_graphql_operation_duration_seconds", &[("operation", "createFile"), ("type", "mutation")]) >= 1.0);
        // WebSockets and subscriptions.
        assert_eq!(value(&after, "codecrafter_websocket_connections", &[]), 2.0);
        assert!(value(&after, "codecrafter_websocket_connections_opened_total", &[]) >= 2.0);
        assert_eq!(value(&after, "codecrafter_subscriptions_active", &[("field", "documentUpdates")]), 1.0);
        // Documents and updates.
        assert!(value(&after, "codecrafter_document_updates_total", &[]) >= 1.0);
        assert!(value(&after, "codecrafter_document_update_bytes_total", &[]) >= 1.0);
        assert!(value(&after, "codecrafter_document_log_commits_total", &[]) >= 1.0);
        assert!(value(&after, "codecrafter_document_updates_refused_total", &[("code", "BAD_USER_INPUT")]) >= 1.0);
        assert_eq!(value(&after, "codecrafter_documents_loaded", &[]), 1.0);
        assert!(value(&after, "codecrafter_document_loads_total", &[]) >= 1.0);
        for family in ["codecrafter_document_unloads_total", "codecrafter_document_compactions_total", "codecrafter_redis_reconnects_total", "codecrafter_sandbox_failures_total", "codecrafter_rate_limit_redis_fallbacks_total"] {
            assert!(!samples(&after, family, &[]).is_empty(), "no {family}");
        }
        // The database pool, the queue and the process.
        assert!(value(&after, "codecrafter_db_pool_max_connections", &[]) >= 1.0);
        assert!(!samples(&after, "codecrafter_db_pool_connections", &[("state", "idle")]).is_empty());
        // (The pool counts no waiting tasks; a probe's wait for a connection stands for them.)
        let waited = value(&after, "codecrafter_db_pool_acquire_wait_seconds", &[]);
        assert!((0.0..2.5).contains(&waited), "{waited}");
        assert_eq!(value(&after, "codecrafter_run_queue_depth", &[]), 0.0);
        assert!(value(&after, "process_resident_memory_bytes", &[]) > 1e6);
        assert!(value(&after, "process_open_fds", &[]) > 5.0);
        assert!(!samples(&after, "process_cpu_seconds_total", &[]).is_empty());
        // Every family is described.
        let families: HashMap<&str, ()> = after.samples.iter().map(|s| (s.metric.as_str(), ())).collect();
        for family in families.keys().filter(|f| f.starts_with("codecrafter_")) {
            let base = family.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
            assert!(has_help(&after, base), "{family} has no HELP");
        }

        // After the sockets close, the node counts none and the subscription ends.
        drop(extra);
        drop(peer);
        codecrafter_tests::eventually(std::time::Duration::from_secs(5), || async {
            value(&scrape(&app, &app.url("/metrics")).await, "codecrafter_websocket_connections", &[]) == 0.0
        })
        .await;
    }
}

/// `codecrafter worker` answers `/metrics` and `/healthz` on its own port.
#[tokio::test]
async fn the_worker_serves_metrics_and_health() {
    codecrafter_tests::run(codecrafter_tests::Backend::Sqlite, |app| async move {
        let endpoint = api::observe::serve_worker_endpoint(
            api::startup::WorkerServices::of(&app.services),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let base = format!("http://{}", endpoint.addr);
        let health = app
            .client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        let scraped = scrape(&app, &format!("{base}/metrics")).await;
        assert!(!samples(&scraped, "codecrafter_run_queue_depth", &[]).is_empty());
        assert!(!samples(&scraped, "process_resident_memory_bytes", &[]).is_empty());
        assert!(has_help(&scraped, "codecrafter_sandbox_failures_total"));
    })
    .await;
}
