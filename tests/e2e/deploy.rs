//! `compose.yaml`, the `Dockerfile` and the proxy config, checked statically (this machine has
//! no Docker engine): they must name services, subcommands and settings that exist.

use std::collections::BTreeSet;

use clap::CommandFactory;
use serde_json::Value;

fn repo_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// compose.yaml as JSON, read by PyYAML (anchors and merge keys resolved).
fn compose() -> Value {
    yaml("compose.yaml")
}

/// A YAML file of the repository as JSON, read by PyYAML.
fn yaml(path: &str) -> Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(root.join(path))
        .output()
        .expect("python3 with PyYAML (see the README)");
    assert!(
        output.status.success(),
        "{path} does not parse: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn compose_names_only_what_exists() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    for required in [
        "postgres",
        "redis",
        "api",
        "worker",
        "proxy",
        "prometheus",
        "grafana",
        "otel-collector",
        "jaeger",
    ] {
        assert!(services.contains_key(required), "no {required} service");
    }
    for (name, service) in services {
        for dependency in service["depends_on"]
            .as_object()
            .map(|d| d.keys().cloned().collect::<Vec<_>>())
            .or_else(|| {
                service["depends_on"]
                    .as_array()
                    .map(|d| d.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
            })
            .unwrap_or_default()
        {
            assert!(
                services.contains_key(&dependency),
                "{name} depends on unknown {dependency}"
            );
        }
    }
    let cli = api::Cli::command();
    let settings: BTreeSet<String> = cli
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    let subcommands: BTreeSet<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
    for (name, subcommand) in [("api", "serve"), ("worker", "worker")] {
        let service = &services[name];
        assert_eq!(service["command"][0], subcommand, "{name}");
        assert!(
            subcommands.contains(subcommand),
            "no `codecrafter {subcommand}`"
        );
        let environment = service["environment"].as_object().expect("environment");
        for key in environment.keys() {
            // Clap's settings, or the standard OpenTelemetry variables the SDK reads.
            assert!(
                settings.contains(key) || api::telemetry::OTEL_VARIABLES.contains(&key.as_str()),
                "{name} sets {key}, which codecrafter does not read"
            );
        }
        for needed in ["DATABASE_URL", "REDIS_URL", "OTEL_SERVICE_NAME"] {
            assert!(environment.contains_key(needed), "{name} lacks {needed}");
        }
        // Traces go to the collector, on the port of the protocol they speak.
        let endpoint = environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} exports no traces"));
        let port = match environment["OTEL_EXPORTER_OTLP_PROTOCOL"].as_str() {
            Some("grpc") => "4317",
            _ => "4318",
        };
        assert_eq!(endpoint, format!("http://otel-collector:{port}"), "{name}");
    }
    let collector = yaml("deploy/otel/collector.yml");
    for (protocol, port) in [("grpc", "4317"), ("http", "4318")] {
        let bind = collector["receivers"]["otlp"]["protocols"][protocol]["endpoint"]
            .as_str()
            .unwrap_or_default();
        assert!(
            bind.ends_with(port),
            "the collector takes no OTLP/{protocol} on {port}"
        );
    }
    assert_eq!(
        services["worker"]["privileged"], true,
        "the sandbox needs namespaces and cgroups"
    );
    assert_eq!(
        services["api"]["environment"]["IN_PROCESS_WORKERS"],
        "false"
    );
    // The token-signing key goes to the API nodes, never to the privileged worker.
    assert!(
        services["api"]["environment"]
            .as_object()
            .is_some_and(|env| env.contains_key("JWT_SECRET")),
        "api lacks JWT_SECRET"
    );
    assert!(
        !services["worker"]["environment"]
            .as_object()
            .is_some_and(|env| env.contains_key("JWT_SECRET")),
        "the worker is given JWT_SECRET"
    );
    // Every replica behind the proxy, health-checked on readiness.
    let caddy = repo_file("deploy/Caddyfile");
    for part in ["dynamic a", "name api", "port 8080", "health_uri /readyz"] {
        assert!(caddy.contains(part), "the Caddyfile lacks {part}: {caddy}");
    }
    // Redis keeps the run queue on disk.
    let redis = services["redis"]["command"].as_array().unwrap();
    let appendonly = redis.iter().position(|a| a == "--appendonly").expect("AOF");
    assert_eq!(redis[appendonly + 1], "yes");
    assert!(
        services["redis"]["volumes"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
    );
    // Health checks: the API on /readyz, the worker on its own endpoint's /healthz.
    let api_check = services["api"]["healthcheck"]["test"].to_string();
    assert!(api_check.contains("127.0.0.1:8080/readyz"), "{api_check}");
    let worker_bind = services["worker"]["environment"]["WORKER_METRICS_BIND"]
        .as_str()
        .expect("the worker's endpoint");
    let worker_port = worker_bind.rsplit(':').next().unwrap();
    let worker_check = services["worker"]["healthcheck"]["test"].to_string();
    assert!(
        worker_check.contains(&format!("127.0.0.1:{worker_port}/healthz")),
        "{worker_check}"
    );
    // One image for both; the API runs as the image's unprivileged user.
    assert_eq!(services["api"]["image"], services["worker"]["image"]);
    assert!(services["api"].get("user").is_none());
    assert_eq!(services["worker"]["user"], "root");
    // Prometheus scrapes every API replica and the worker, on the ports they listen on.
    let api_port = services["api"]["environment"]["BIND"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    let mut jobs = BTreeSet::new();
    for job in prometheus["scrape_configs"].as_array().unwrap() {
        for sd in job["dns_sd_configs"].as_array().unwrap() {
            let port = sd["port"].as_u64().unwrap().to_string();
            for name in sd["names"].as_array().unwrap() {
                let name = name.as_str().unwrap();
                assert!(
                    services.contains_key(name),
                    "Prometheus scrapes unknown {name}"
                );
                let expected = if name == "api" {
                    &api_port
                } else {
                    worker_port
                };
                assert_eq!(&port, expected, "{name} is scraped on the wrong port");
                jobs.insert(name.to_owned());
            }
        }
    }
    assert_eq!(
        jobs,
        BTreeSet::from(["api".to_owned(), "worker".to_owned()])
    );
    for mount in services["prometheus"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .chain(services["grafana"]["volumes"].as_array().unwrap())
        .chain(services["otel-collector"]["volumes"].as_array().unwrap())
        .filter_map(|v| v.as_str()?.strip_prefix("./"))
    {
        let path = mount.split(':').next().unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert!(root.join(path).exists(), "compose mounts missing {path}");
    }
    let ignore = repo_file(".dockerignore");
    for excluded in ["target/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == excluded),
            ".dockerignore lacks {excluded}"
        );
    }
    let dockerfile = repo_file("Dockerfile");
    assert!(
        dockerfile.contains("--mount=type=cache,target=/src/target"),
        "no dependency caching"
    );
    assert!(
        dockerfile.contains("USER codecrafter"),
        "the image runs as root"
    );
    for package in ["bubblewrap", "python3", "nodejs", "gcc", "g++"] {
        assert!(dockerfile.contains(package), "the image lacks {package}");
    }
}

/// The metric names a PromQL expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(|c: char| c.is_ascii_lowercase()) {
        rest = &rest[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        if word.starts_with("codecrafter_") || word.starts_with("process_") {
            names.push(word.to_owned());
        }
        rest = &rest[end..];
    }
    names
}

/// Every metric a dashboard panel or an alert queries is in a running server's `/metrics`,
/// with Redis, after traffic that includes a code run and refused requests.
#[tokio::test]
async fn dashboards_and_alerts_query_metrics_that_exist() {
    codecrafter_tests::run_with(
        codecrafter_tests::Backend::Sqlite,
        |c| {
            // As deployed: with Redis (and a queue of its own), workers in this process.
            codecrafter_tests::use_redis(c);
            c.workers.job_queue = format!("cc-test-runs-{}", uuid::Uuid::new_v4().simple());
            c.workers.in_process = Some(true);
            c.rate_limits.auth_burst = 1;
        },
        |app| async move {
            let owner = app.sign_up("watcher").await;
            let project = app.create_project(&owner, "observed", false).await;
            // A second node hears this one's edits, so the fan-out lag has something to measure.
            let _other_node = app.spawn_node().await;
            let mut peer = crate::documents::Peer::join(&app, &owner, &project, 3).await;
            peer.edit(|p| p.text("a.py").insert(0, "x = 1\n").unwrap()).await;
            let refused = peer
                .ws
                .request(
                    crate::documents::APPLY,
                    serde_json::json!({ "p": project, "u": "AAAA", "c": "x" }),
                )
                .await;
            assert!(refused.get("errors").is_some(), "{refused}");
            crate::runs::python(&app, &owner, &project, "print(1)").await;
            app.gql(
                "mutation { signIn(input: {login: \"x\", password: \"y-password\"}) { accessToken } }",
                serde_json::json!({}),
            )
            .await;
            let scrape = async || {
                let _gauges = codecrafter_tests::NODE_GAUGES.lock().await;
                let response = app.client.get(app.url("/metrics")).send().await.unwrap();
                response.text().await.unwrap()
            };
            // The edit reaches the other node through Redis a moment after its answer.
            let text = codecrafter_tests::eventually_some(codecrafter_tests::ws::WAIT, async || {
                let text = scrape().await;
                text.contains("codecrafter_fanout_lag_seconds_bucket{kind=\"document\"")
                    .then_some(text)
            })
            .await;
            let exposed: BTreeSet<String> = text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .filter_map(|l| l.split(['{', ' ']).next())
                .map(str::to_owned)
                .collect();
            let mut queried = Vec::new();
            let dashboard: Value = serde_json::from_str(&repo_file(
                "deploy/grafana/dashboards/codecrafter.json",
            ))
            .unwrap();
            for panel in dashboard["panels"].as_array().unwrap() {
                for target in panel["targets"].as_array().unwrap() {
                    queried.extend(metric_names(target["expr"].as_str().unwrap()));
                }
            }
            let alerts = yaml("deploy/prometheus/alerts.yml");
            for group in alerts["groups"].as_array().unwrap() {
                for rule in group["rules"].as_array().unwrap() {
                    queried.extend(metric_names(rule["expr"].as_str().unwrap()));
                }
            }
            assert!(queried.len() > 20, "{queried:?}");
            for name in queried {
                assert!(exposed.contains(&name), "{name} is queried but not in /metrics:\n{text}");
            }
        },
    )
    .await;
}
