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
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(root.join("compose.yaml"))
        .output()
        .expect("python3 with PyYAML (see the README)");
    assert!(
        output.status.success(),
        "compose.yaml does not parse: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn compose_names_only_what_exists() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    for required in ["postgres", "redis", "api", "worker", "proxy"] {
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
            assert!(
                settings.contains(key),
                "{name} sets {key}, which codecrafter does not read"
            );
        }
        for needed in ["DATABASE_URL", "REDIS_URL"] {
            assert!(environment.contains_key(needed), "{name} lacks {needed}");
        }
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
    let caddy = repo_file("deploy/Caddyfile");
    assert!(caddy.contains("reverse_proxy api:8080"), "{caddy}");
    let dockerfile = repo_file("Dockerfile");
    for package in [
        "bubblewrap",
        "util-linux",
        "python3",
        "nodejs",
        "gcc",
        "g++",
    ] {
        assert!(dockerfile.contains(package), "the image lacks {package}");
    }
}
