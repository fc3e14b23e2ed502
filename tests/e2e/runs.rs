//! Code runs end to end: runCode over HTTP or WebSocket, real workers (apalis on SQLite or
//! Redis), the real sandbox, output streamed over graphql-ws.

use std::time::Duration;

use codecrafter_tests::ws::{Event, WsClient};
use codecrafter_tests::{TestApp, TestUser, backend_tests};
use serde_json::{Value, json};

const RUN: &str = "mutation($p: ID!, $l: Language, $e: String, $s: String, $i: String, $lim: RunLimitsInput) { runCode(projectId: $p, language: $l, entry: $e, source: $s, stdin: $i, limits: $lim) { id status } }";
const GET: &str = "query($id: ID!) { run(id: $id) { status exitCode signal stdout stderr stdoutTruncated attempts error wallTimeMs language entry requestedBy { username } } }";
const EVENTS: &str = "subscription($id: ID!) { runEvents(runId: $id) { __typename ... on RunStatusChanged { status } ... on RunOutput { stream seq data } ... on RunFinished { run { status exitCode stdout stderr attempts } } } }";

async fn project_of(app: &TestApp, owner: &TestUser) -> String {
    app.create_project(owner, "Runs", false).await
}

async fn start(app: &TestApp, user: &TestUser, vars: Value) -> String {
    let answer = app.gql_as(&user.access, RUN, vars).await;
    let run = &answer.data()["runCode"];
    assert_eq!(run["status"], "QUEUED");
    run["id"].as_str().unwrap().to_owned()
}

/// Poll `run(id)` until it has ended (a test of behaviour, not timing: the wait is generous).
async fn finished(app: &TestApp, user: &TestUser, id: &str) -> Value {
    for _ in 0..600 {
        let answer = app.gql_as(&user.access, GET, json!({ "id": id })).await;
        let run = answer.data()["run"].clone();
        if !matches!(run["status"].as_str(), Some("QUEUED" | "RUNNING")) {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {id} did not finish");
}

async fn python(app: &TestApp, user: &TestUser, project: &str, source: &str) -> Value {
    let id = start(
        app,
        user,
        json!({ "p": project, "l": "PYTHON", "s": source }),
    )
    .await;
    finished(app, user, &id).await
}

/// Every event of a run's subscription until it finishes.
async fn follow(ws: &mut WsClient, id: &str) -> Vec<Value> {
    let sub = ws.subscribe(EVENTS, json!({ "id": id })).await;
    let mut events = Vec::new();
    loop {
        match ws.next(&sub).await {
            Event::Next(payload) => {
                let event = payload["data"]["runEvents"].clone();
                assert!(payload.get("errors").is_none(), "{payload}");
                let done = event["__typename"] == "RunFinished";
                events.push(event);
                if done {
                    return events;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn streamed(events: &[Value], stream: &str) -> String {
    events
        .iter()
        .filter(|e| e["__typename"] == "RunOutput" && e["stream"] == stream)
        .map(|e| e["data"].as_str().unwrap())
        .collect()
}

backend_tests! {
    async fn hello_world_in_every_available_language(app) {
        let owner = app.sign_up("owner").await;
        let project = project_of(&app, &owner).await;
        let languages = app
            .gql("{ languages { language version available } sandboxIsolation }", json!({}))
            .await;
        let data = languages.data().clone();
        assert!(["CGROUP_V2", "CGROUP_V1", "RLIMITS"].contains(&data["sandboxIsolation"].as_str().unwrap()));
        let programs = [
            ("PYTHON", "print('hello')"),
            ("JAVASCRIPT", "console.log('hello')"),
            ("C", "#include <stdio.h>\nint main(){puts(\"hello\");}"),
            ("CPP", "#include <iostream>\nint main(){std::cout<<\"hello\\n\";}"),
            ("BASH", "echo hello"),
            ("RUST", "fn main(){println!(\"hello\");}"),
            ("JAVA", "public class Main{public static void main(String[] a){System.out.println(\"hello\");}}"),
            ("GO", "package main\nimport \"fmt\"\nfunc main(){fmt.Println(\"hello\")}"),
        ];
        for (language, source) in programs {
            let info = data["languages"].as_array().unwrap().iter().find(|l| l["language"] == language).unwrap().clone();
            if info["available"] == false {
                assert_eq!(info["version"], Value::Null);
                let refused = app.gql_as(&owner.access, RUN, json!({ "p": project, "l": language, "s": source })).await;
                refused.assert_error("BAD_USER_INPUT", Some("language"));
                continue;
            }
            let id = start(&app, &owner, json!({ "p": project, "l": language, "s": source, "lim": { "memoryMb": 512, "processes": 128 } })).await;
            let run = finished(&app, &owner, &id).await;
            assert_eq!(run["status"], "SUCCEEDED", "{language}: {run}");
            assert_eq!(run["stdout"], "hello\n", "{language}");
            assert_eq!(run["exitCode"], 0);
            assert_eq!(run["requestedBy"]["username"], "owner");
        }
        for required in ["PYTHON", "JAVASCRIPT", "C", "CPP", "BASH"] {
            let info = data["languages"].as_array().unwrap().iter().find(|l| l["language"] == required).unwrap().clone();
            assert_eq!(info["available"], true, "{required} must work here");
        }
    }

    async fn project_files_stdin_and_compile_errors(app) {
        let owner = app.sign_up("owner").await;
        let project = project_of(&app, &owner).await;
        for (path, content) in [("main.py", "import helper, sys\nprint(helper.shout(sys.stdin.read()))"), ("helper.py", "def shout(s):\n    return s.upper()")] {
            app.gql_as(&owner.access, "mutation($p: ID!, $path: String!, $c: String) { createFile(projectId: $p, path: $path, content: $c) { path } }", json!({ "p": project, "path": path, "c": content }))
                .await
                .data();
        }
        let id = start(&app, &owner, json!({ "p": project, "e": "main.py", "i": "quiet words" })).await;
        let run = finished(&app, &owner, &id).await;
        assert_eq!(run["stdout"], "QUIET WORDS\n", "{run}");
        assert_eq!(run["entry"], "main.py");
        assert_eq!(run["language"], "PYTHON");

        let failing = python(&app, &owner, &project, "import sys\nprint('partial')\nsys.exit(4)").await;
        assert_eq!((&failing["status"], &failing["exitCode"], &failing["stdout"]), (&json!("FAILED"), &json!(4), &json!("partial\n")));
        let id = start(&app, &owner, json!({ "p": project, "l": "C", "s": "int main() { return nope; }" })).await;
        let compile = finished(&app, &owner, &id).await;
        assert_eq!(compile["status"], "FAILED");
        assert!(compile["stderr"].as_str().unwrap().contains("nope"), "{compile}");
        let timed_out = start(&app, &owner, json!({ "p": project, "l": "PYTHON", "s": "while True: pass", "lim": { "wallMs": 1500, "cpuMs": 1000 } })).await;
        assert_eq!(finished(&app, &owner, &timed_out).await["status"], "TIMED_OUT");
        let noisy = start(&app, &owner, json!({ "p": project, "l": "PYTHON", "s": "while True: print('x' * 1000)", "lim": { "outputKb": 8 } })).await;
        let noisy = finished(&app, &owner, &noisy).await;
        assert_eq!(noisy["status"], "OUTPUT_LIMIT");
        assert_eq!(noisy["stdoutTruncated"], true);
        assert!(noisy["stdout"].as_str().unwrap().len() <= 8 * 1024);
        let greedy = python(&app, &owner, &project, "x = []\nwhile True: x.append(bytearray(1 << 20))").await;
        assert_eq!(greedy["status"], "MEMORY_LIMIT");
        let nosy = python(&app, &owner, &project, "import os\nprint(sorted(os.environ))\ntry:\n    open('/etc/shadow').read(); print('READ')\nexcept Exception as e:\n    print('denied')").await;
        let out = nosy["stdout"].as_str().unwrap();
        assert!(out.contains("denied") && !out.contains("READ") && !out.contains("JWT") && !out.contains("DATABASE"), "{out}");
    }

    async fn who_may_run_and_bad_requests(app) {
        let owner = app.sign_up("owner").await;
        let viewer = app.sign_up("viewer").await;
        let stranger = app.sign_up("stranger").await;
        let project = project_of(&app, &owner).await;
        app.add_member(&owner, &project, &viewer, "VIEWER").await;
        let source = json!({ "p": project, "l": "PYTHON", "s": "print(1)" });
        app.gql_as(&viewer.access, RUN, source.clone()).await.assert_error("FORBIDDEN", None);
        app.gql_as(&stranger.access, RUN, source.clone()).await.assert_error("NOT_FOUND", None);
        app.gql(RUN, source.clone()).await.assert_error("UNAUTHENTICATED", None);
        for (vars, field) in [
            (json!({ "p": project, "s": "print(1)", "e": "main.py" }), "entry"),
            (json!({ "p": project }), "entry"),
            (json!({ "p": project, "e": "missing.py" }), "entry"),
            (json!({ "p": project, "e": "../etc/passwd" }), "entry"),
            (json!({ "p": project, "s": "x".repeat(64 * 1024 + 1) }), "source"),
            (json!({ "p": project, "s": "print(1)", "i": "y".repeat(64 * 1024 + 1) }), "stdin"),
            (json!({ "p": project, "s": "print(1)", "lim": { "wallMs": 0 } }), "limits.wallMs"),
            (json!({ "p": project, "s": "print(1)", "lim": { "wallMs": 3_600_000 } }), "limits.wallMs"),
            (json!({ "p": project, "s": "print(1)", "lim": { "memoryMb": 1_000_000 } }), "limits.memoryMb"),
        ] {
            app.gql_as(&owner.access, RUN, vars).await.assert_error("BAD_USER_INPUT", Some(field));
        }
        assert_eq!(app.count("runs").await, 0);
        // Whoever reads the project reads its runs; others do not see them.
        let id = start(&app, &owner, source.clone()).await;
        finished(&app, &owner, &id).await;
        let seen = app.gql_as(&viewer.access, GET, json!({ "id": id })).await;
        assert_eq!(seen.data()["run"]["stdout"], "1\n");
        app.gql_as(&stranger.access, GET, json!({ "id": id })).await.assert_error("NOT_FOUND", None);
        app.gql_as(&viewer.access, "mutation($id: ID!) { cancelRun(id: $id) { status } }", json!({ "id": id }))
            .await
            .assert_error("FORBIDDEN", None);
        let runs = app
            .gql_as(&viewer.access, "query($p: ID!) { runs(projectId: $p, first: 10) { edges { node { id status } } } }", json!({ "p": project }))
            .await;
        assert_eq!(runs.data()["runs"]["edges"][0]["node"]["id"], id.as_str());
    }

    async fn runs_are_rate_limited_per_user(app) {
        let app = app.restart_with(|c| c.runs_per_minute = 2).await;
        let owner = app.sign_up("owner").await;
        let project = project_of(&app, &owner).await;
        let source = json!({ "p": project, "l": "BASH", "s": "true" });
        start(&app, &owner, source.clone()).await;
        start(&app, &owner, source.clone()).await;
        let third = app.gql_as(&owner.access, RUN, source).await;
        third.assert_error("RATE_LIMITED", None);
        let retry = third.error()["extensions"]["retryAfter"].as_u64().unwrap();
        assert!((1..=60).contains(&retry));
        assert_eq!(app.count("runs").await, 2);
    }

    async fn output_streams_to_subscribers_late_ones_included(app) {
        let owner = app.sign_up("owner").await;
        let project = project_of(&app, &owner).await;
        let mut early = WsClient::connect(&app, Some(&owner.access)).await;
        let answer = early
            .request(RUN, json!({ "p": project, "l": "PYTHON", "s": "import time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(0.2)\nimport sys; print('err', file=sys.stderr)" }))
            .await;
        let id = answer["data"]["runCode"]["id"].as_str().unwrap().to_owned();
        let events = follow(&mut early, &id).await;
        assert_eq!(streamed(&events, "STDOUT"), "0\n1\n2\n3\n4\n");
        assert_eq!(streamed(&events, "STDERR"), "err\n");
        let seqs: Vec<i64> = events.iter().filter(|e| e["__typename"] == "RunOutput").map(|e| e["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        assert!(events.iter().any(|e| e["status"] == "RUNNING"));
        let last = events.last().unwrap();
        assert_eq!(last["run"]["status"], "SUCCEEDED");
        // A subscriber arriving after the end gets the output and the result at once.
        let mut late = WsClient::connect(&app, Some(&owner.access)).await;
        let events = follow(&mut late, &id).await;
        assert_eq!(streamed(&events, "STDOUT"), "0\n1\n2\n3\n4\n");
        assert_eq!(events.last().unwrap()["run"]["stdout"], "0\n1\n2\n3\n4\n");
        // And the project's followers heard that it started and finished.
        let runs = app.gql_as(&owner.access, "query($p: ID!) { runs(projectId: $p) { edges { node { status attempts } } } }", json!({ "p": project })).await;
        assert_eq!(runs.data()["runs"]["edges"][0]["node"], json!({ "status": "SUCCEEDED", "attempts": 1 }));
    }

    async fn cancelling_queued_and_running_runs(app) {
        // Without workers, a run waits in the queue.
        let app = app.restart_with(|c| c.in_process_workers = Some(false)).await;
        let owner = app.sign_up("owner").await;
        let project = project_of(&app, &owner).await;
        let queued = start(&app, &owner, json!({ "p": project, "l": "PYTHON", "s": "print('never')" })).await;
        let cancelled = app.gql_as(&owner.access, "mutation($id: ID!) { cancelRun(id: $id) { status } }", json!({ "id": queued })).await;
        assert_eq!(cancelled.data()["cancelRun"]["status"], "CANCELLED");
        // With workers back, the cancelled run stays cancelled and a long one is stopped.
        let app = app.restart_with(|c| c.in_process_workers = Some(true)).await;
        let running = start(&app, &owner, json!({ "p": project, "l": "PYTHON", "s": "import time\nprint('started', flush=True)\ntime.sleep(60)" })).await;
        let mut ws = WsClient::connect(&app, Some(&owner.access)).await;
        let sub = ws.subscribe(EVENTS, json!({ "id": running })).await;
        loop {
            let event = ws.next(&sub).await;
            if event.data()["runEvents"]["data"] == "started\n" {
                break;
            }
        }
        app.gql_as(&owner.access, "mutation($id: ID!) { cancelRun(id: $id) { id } }", json!({ "id": running })).await.data();
        let run = finished(&app, &owner, &running).await;
        assert_eq!(run["status"], "CANCELLED");
        assert_eq!(run["stdout"], "started\n");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(finished(&app, &owner, &queued).await["status"], "CANCELLED");
        assert_eq!(finished(&app, &owner, &queued).await["attempts"], 0);
    }

    async fn infrastructure_failures_are_retried_then_given_up(app) {
        // A bubblewrap that fails on its first start, then works.
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("started");
        let flaky = dir.path().join("flaky-bwrap");
        std::fs::write(&flaky, format!("#!/bin/sh\nif [ ! -e {0} ]; then : > {0}; echo 'bwrap: simulated failure' >&2; exit 1; fi\nexec bwrap \"$@\"\n", counter.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(&flaky, std::fs::Permissions::from_mode(0o755)).unwrap();
        let app = app.restart_with(|c| c.sandbox_bwrap = flaky.clone()).await;
        let owner = app.sign_up("owner").await;
        let project = project_of(&app, &owner).await;
        let run = python(&app, &owner, &project, "print('second time lucky')").await;
        assert_eq!(run["status"], "SUCCEEDED", "{run}");
        assert_eq!(run["attempts"], 2);
        assert_eq!(run["stdout"], "second time lucky\n");
        // A sandbox that never starts: three attempts, then INTERNAL_ERROR with the reason.
        let app = app.restart_with(|c| c.sandbox_bwrap = "/nonexistent/bwrap".into()).await;
        let run = python(&app, &owner, &project, "print('never')").await;
        assert_eq!(run["status"], "INTERNAL_ERROR", "{run}");
        assert_eq!(run["attempts"], 3);
        assert!(run["error"].as_str().unwrap().contains("gave up after 3 attempts"), "{run}");
        // A failing program is a result, not retried.
        let app = app.restart_with(|c| c.sandbox_bwrap = "bwrap".into()).await;
        let run = python(&app, &owner, &project, "raise SystemExit(1)").await;
        assert_eq!((&run["status"], &run["attempts"]), (&json!("FAILED"), &json!(1)));
    }
}
