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

/// `run(id)` once it has ended (a test of behaviour, not timing: the wait is generous).
async fn finished(app: &TestApp, user: &TestUser, id: &str) -> Value {
    codecrafter_tests::eventually_some(Duration::from_secs(60), || async {
        let answer = app.gql_as(&user.access, GET, json!({ "id": id })).await;
        let run = answer.data()["run"].clone();
        (!matches!(run["status"].as_str(), Some("QUEUED" | "RUNNING"))).then_some(run)
    })
    .await
}

pub(crate) async fn python(app: &TestApp, user: &TestUser, project: &str, source: &str) -> Value {
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
    follow_on(ws, &sub).await
}

/// The rest of subscription `sub`'s events until the run finishes.
async fn follow_on(ws: &mut WsClient, sub: &str) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        match ws.next(sub).await {
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

/// Take a run's events until a chunk of output equals `data`.
async fn wait_for_output(ws: &mut WsClient, sub: &str, data: &str) {
    while ws.next(sub).await.data()["runEvents"]["data"] != data {}
}

/// Start a Python run of `source`, which prints `one` first; once an early follower has that
/// output, a late one subscribes. The early socket, the late one, and the late subscription.
async fn follow_after_one(
    app: &TestApp,
    owner: &TestUser,
    project: &str,
    source: &str,
) -> (WsClient, WsClient, String) {
    let id = start(
        app,
        owner,
        json!({ "p": project, "l": "PYTHON", "s": source }),
    )
    .await;
    let mut early = WsClient::connect(app, Some(&owner.access)).await;
    let sub = early.subscribe(EVENTS, json!({ "id": id })).await;
    wait_for_output(&mut early, &sub, "one\n").await;
    let mut late = WsClient::connect(app, Some(&owner.access)).await;
    let sub = late.subscribe(EVENTS, json!({ "id": id })).await;
    (early, late, sub)
}

/// A follower who subscribes after output was published but before the worker wrote it to
/// the row (it does at heartbeats, each second) still gets all of it, in order, numbered
/// without a gap, while the run goes on: the worker replays what the follower missed.
async fn a_late_follower_gets_what_it_missed(app: &TestApp, owner: &TestUser, project: &str) {
    let source = "import time\nprint('one', flush=True)\ntime.sleep(0.3)\nprint('two', flush=True)\ntime.sleep(3)\nprint('three')";
    let (_early, mut late, sub) = follow_after_one(app, owner, project, source).await;
    let mut output = Vec::new();
    let mut seqs = Vec::new();
    while output.concat() != "one\ntwo\n" {
        let event = late.next(&sub).await.data()["runEvents"].clone();
        assert_ne!(
            event["__typename"], "RunFinished",
            "before the run ends: {output:?}"
        );
        if event["__typename"] == "RunOutput" {
            output.push(event["data"].as_str().unwrap().to_owned());
            seqs.push(event["seq"].as_i64().unwrap());
        }
    }
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    assert_eq!(seqs[0], 1, "nothing was in the row yet: {seqs:?}");
    let rest = follow_on(&mut late, &sub).await;
    assert_eq!(streamed(&rest, "STDOUT"), "three\n");
    assert_eq!(rest.last().unwrap()["run"]["stdout"], "one\ntwo\nthree\n");
}

/// A follower who subscribes after a run's last output so far, before the worker wrote it to
/// the row, gets it at once, not when more output or the end comes (nothing after it would
/// show the follower a gap).
async fn a_late_follower_gets_the_last_output(app: &TestApp, owner: &TestUser, project: &str) {
    let source = "import time\nprint('one', flush=True)\ntime.sleep(4)";
    let (_early, mut late, sub) = follow_after_one(app, owner, project, source).await;
    loop {
        let event = late.next(&sub).await.data()["runEvents"].clone();
        assert_ne!(
            event["__typename"], "RunFinished",
            "the output came only with the end"
        );
        if event["__typename"] == "RunOutput" {
            assert_eq!(
                (event["data"].as_str(), event["seq"].as_i64()),
                (Some("one\n"), Some(1))
            );
            break;
        }
    }
    assert_eq!(
        follow_on(&mut late, &sub).await.last().unwrap()["run"]["stdout"],
        "one\n"
    );
}

fn streamed(events: &[Value], stream: &str) -> String {
    events
        .iter()
        .filter(|e| e["__typename"] == "RunOutput" && e["stream"] == stream)
        .map(|e| e["data"].as_str().unwrap())
        .collect()
}

backend_tests! {
    async fn statuses_are_exact_and_any_output_is_kept(app) {
        let owner = app.sign_up("owner").await;
        let project = project_of(&app, &owner).await;
        // Exit codes are exit codes, whatever their number.
        for code in [125, 137, 152, 255] {
            let id = start(&app, &owner, json!({ "p": project, "l": "BASH", "s": format!("exit {code}") })).await;
            let run = finished(&app, &owner, &id).await;
            assert_eq!((&run["status"], &run["exitCode"], &run["signal"], &run["attempts"]), (&json!("FAILED"), &json!(code), &Value::Null, &json!(1)), "{run}");
        }
        // A signal is a signal.
        let id = start(&app, &owner, json!({ "p": project, "l": "BASH", "s": "kill -KILL $$" })).await;
        let run = finished(&app, &owner, &id).await;
        assert_eq!((&run["status"], &run["exitCode"], &run["signal"]), (&json!("FAILED"), &Value::Null, &json!(9)), "{run}");
        // What a program prints is its output, not the sandbox failing: no retry.
        let id = start(&app, &owner, json!({ "p": project, "l": "BASH", "s": "echo 'bwrap: Can not mount proc' >&2; exit 1" })).await;
        let run = finished(&app, &owner, &id).await;
        assert_eq!((&run["status"], &run["attempts"], &run["exitCode"]), (&json!("FAILED"), &json!(1), &json!(1)), "{run}");
        // NUL and bytes that are not UTF-8 are stored (as U+FFFD) on either database; the
        // heartbeat writes them while the run goes, and the result is written once.
        let run = python(&app, &owner, &project, "import sys, time\nsys.stdout.buffer.write(b'a\\x00b\\xffc\\n')\nsys.stdout.flush()\ntime.sleep(1.5)\nprint('end')").await;
        assert_eq!(run["status"], "SUCCEEDED", "{run}");
        assert_eq!(run["stdout"], "a\u{FFFD}b\u{FFFD}c\nend\n", "{run}");
        assert_eq!(run["attempts"], 1);
    }

    async fn a_follower_who_joins_mid_run_misses_nothing(app) {
        let owner = app.sign_up("owner").await;
        let project = project_of(&app, &owner).await;
        a_late_follower_gets_what_it_missed(&app, &owner, &project).await;
        a_late_follower_gets_the_last_output(&app, &owner, &project).await;
    }

    async fn a_requeued_run_never_runs_twice_at_once(app) {
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let owner = app.sign_up("owner").await;
        let project = project_of(&app, &owner).await;
        let id = start(&app, &owner, json!({ "p": project, "l": "PYTHON", "s": "import time\nprint('start', flush=True)\ntime.sleep(3)\nprint('end')" })).await;
        // Running, its output in the row (the heartbeat wrote it). Generous: on a loaded
        // host a job is sometimes taken only when the reaper enqueues it again (30 s).
        codecrafter_tests::eventually(Duration::from_secs(60), || async {
            let run = app.gql_as(&owner.access, GET, json!({ "id": id })).await.data()["run"].clone();
            run["status"] == "RUNNING" && run["stdout"] == "start\n"
        })
        .await;
        // What a reaper does when it believes the worker dead: back to the queue, enqueued.
        let requeued_at = chrono::Utc::now();
        let uuid: uuid::Uuid = id.parse().unwrap();
        let requeued = entity::run::Entity::update_many()
            .col_expr(entity::run::Column::Status, Expr::value(entity::run::RunStatus::Queued))
            .col_expr(entity::run::Column::WorkerId, Expr::value(Option::<String>::None))
            .filter(entity::run::Column::Id.eq(uuid))
            .exec(&app.db)
            .await
            .unwrap();
        assert_eq!(requeued.rows_affected, 1);
        app.services.runs.queue.push(uuid).await.unwrap();
        let run = finished(&app, &owner, &id).await;
        assert_eq!((&run["status"], &run["attempts"], &run["stdout"]), (&json!("SUCCEEDED"), &json!(2), &json!("start\nend\n")), "{run}");
        // The result is the second attempt's, whole: the first one's sandbox was stopped when
        // its worker saw the claim gone (it would have ended within 3 s of the requeue).
        let times = app.gql_as(&owner.access, "query($id: ID!) { run(id: $id) { finishedAt } }", json!({ "id": id })).await;
        let finished_at = chrono::DateTime::parse_from_rfc3339(times.data()["run"]["finishedAt"].as_str().unwrap()).unwrap();
        assert!(finished_at.signed_duration_since(requeued_at) >= chrono::Duration::milliseconds(2900), "{finished_at} vs {requeued_at}");
    }


    async fn hello_world_in_every_available_language(app) {
        let owner = app.sign_up("owner").await;
        let project = project_of(&app, &owner).await;
        let languages = app
            .gql("{ languages { language version available } sandboxIsolation sandboxProtections }", json!({}))
            .await;
        let data = languages.data().clone();
        assert!(["CGROUP_V2", "CGROUP_V1", "RLIMITS"].contains(&data["sandboxIsolation"].as_str().unwrap()));
        let protections: Vec<&str> = data["sandboxProtections"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
        for active in ["seccomp filter", "no nested user namespaces", "inherited descriptors closed"] {
            assert!(protections.contains(&active), "{protections:?}");
        }
        let programs = [
            ("PYTHON", "print('hello')"),
            ("JAVASCRIPT", "console.log('hello')"),
            ("C", "#include <stdio.h>\nint main(){puts(\"hello\");}"),
            ("CPP", "#include <iostream>\nint main(){std::cout<<\"hello\\n\";}"),
            ("BASH", "echo hello"),
            ("RUST", "fn main(){println!(\"hello\");}"),
            ("JAVA", "public class Main{public static void main(String[] a){System.out.println(\"hello\");}}"),
            ("GO", "package main\nimport \"fmt\"\nfunc main(){fmt.Println(\"hello\")}"),
            ("TYPESCRIPT", "const greeting: string = 'hello';\nconsole.log(greeting);"),
            ("RUBY", "puts 'hello'"),
        ];
        for (language, source) in programs {
            let info = data["languages"].as_array().unwrap().iter().find(|l| l["language"] == language).unwrap().clone();
            if info["available"] == false {
                assert_eq!(info["version"], Value::Null);
                let refused = app.gql_as(&owner.access, RUN, json!({ "p": project, "l": language, "s": source })).await;
                refused.assert_error("BAD_USER_INPUT", Some("language"));
                continue;
            }
            let id = start(&app, &owner, json!({ "p": project, "l": language, "s": source, "lim": { "memoryMb": 768, "processes": 256, "wallMs": 20000 } })).await;
            let run = finished(&app, &owner, &id).await;
            assert_eq!(run["status"], "SUCCEEDED", "{language}: {run}");
            assert_eq!(run["stdout"], "hello\n", "{language}");
            assert_eq!(run["exitCode"], 0);
            assert_eq!(run["requestedBy"]["username"], "owner");
        }
        for required in ["PYTHON", "JAVASCRIPT", "TYPESCRIPT", "C", "CPP", "BASH", "JAVA", "GO", "RUST", "RUBY"] {
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
        // The server's secrets, its data directory and the host's passwords are out of reach.
        let data_dir = app.config.database.data_dir.display().to_string();
        let nosy = python(&app, &owner, &project, &format!(
            "import os\nprint(sorted(os.environ))\nfor p in ['/etc/shadow', '{data_dir}/codecrafter.db', '{data_dir}/jobs.db']:\n    try:\n        open(p, 'rb').read(); print('READ', p)\n    except Exception as e:\n        print('denied', p)\nprint(open('/proc/1/environ', 'rb').read())"
        )).await;
        let out = nosy["stdout"].as_str().unwrap();
        // (/proc/1 is the sandbox's own init, in its PID namespace, with the clean environment.)
        assert_eq!(out.matches("denied").count(), 3, "{out}");
        assert!(!out.contains("READ") && !out.contains("JWT") && !out.contains("DATABASE"), "{out}");
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
        let app = app.restart_with(|c| c.runs.runs_per_minute = 2).await;
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
        let app = app.restart_with(|c| c.workers.in_process = Some(false)).await;
        let owner = app.sign_up("owner").await;
        let project = project_of(&app, &owner).await;
        let queued = start(&app, &owner, json!({ "p": project, "l": "PYTHON", "s": "print('never')" })).await;
        let cancelled = app.gql_as(&owner.access, "mutation($id: ID!) { cancelRun(id: $id) { status } }", json!({ "id": queued })).await;
        assert_eq!(cancelled.data()["cancelRun"]["status"], "CANCELLED");
        // With workers back, the cancelled run stays cancelled and a long one is stopped.
        let app = app.restart_with(|c| c.workers.in_process = Some(true)).await;
        let running = start(&app, &owner, json!({ "p": project, "l": "PYTHON", "s": "import time\nprint('started', flush=True)\ntime.sleep(60)" })).await;
        let mut ws = WsClient::connect(&app, Some(&owner.access)).await;
        let sub = ws.subscribe(EVENTS, json!({ "id": running })).await;
        wait_for_output(&mut ws, &sub, "started\n").await;
        app.gql_as(&owner.access, "mutation($id: ID!) { cancelRun(id: $id) { id } }", json!({ "id": running })).await.data();
        let run = finished(&app, &owner, &running).await;
        assert_eq!(run["status"], "CANCELLED");
        assert_eq!(run["stdout"], "started\n");
        // A run queued after it is taken and done: the worker has been past the cancelled one.
        let after = python(&app, &owner, &project, "print('after')").await;
        assert_eq!(after["stdout"], "after\n", "{after}");
        assert_eq!(finished(&app, &owner, &queued).await["status"], "CANCELLED");
        assert_eq!(finished(&app, &owner, &queued).await["attempts"], 0);
    }

    async fn infrastructure_failures_are_retried_then_given_up(app) {
        // A bubblewrap that fails on its first two starts, then works: the first run's own
        // sandbox and the one the worker starts ahead for the next run, in whichever order
        // they get there (`mkdir` decides, atomically), so the first attempt fails for sure
        // and the retry finds no sandbox waiting that works.
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first");
        let second = dir.path().join("second");
        let flaky = dir.path().join("flaky-bwrap");
        std::fs::write(&flaky, format!("#!/bin/sh\nif mkdir {0} 2>/dev/null || mkdir {1} 2>/dev/null; then echo 'bwrap: simulated failure' >&2; exit 1; fi\nexec bwrap \"$@\"\n", first.display(), second.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::set_permissions(&flaky, std::fs::Permissions::from_mode(0o755)).unwrap();
        let app = app.restart_with(|c| c.runs.sandbox_bwrap = flaky.clone()).await;
        let owner = app.sign_up("owner").await;
        let project = project_of(&app, &owner).await;
        let run = python(&app, &owner, &project, "print('second time lucky')").await;
        assert_eq!(run["status"], "SUCCEEDED", "{run}");
        assert_eq!(run["attempts"], 2);
        assert_eq!(run["stdout"], "second time lucky\n");
        // A sandbox that never starts: three attempts, then INTERNAL_ERROR with the reason.
        let app = app.restart_with(|c| c.runs.sandbox_bwrap = "/nonexistent/bwrap".into()).await;
        let run = python(&app, &owner, &project, "print('never')").await;
        assert_eq!(run["status"], "INTERNAL_ERROR", "{run}");
        assert_eq!(run["attempts"], 3);
        assert!(run["error"].as_str().unwrap().contains("gave up after 3 attempts"), "{run}");
        // A failing program is a result, not retried.
        let app = app.restart_with(|c| c.runs.sandbox_bwrap = "bwrap".into()).await;
        let run = python(&app, &owner, &project, "raise SystemExit(1)").await;
        assert_eq!((&run["status"], &run["attempts"]), (&json!("FAILED"), &json!(1)));
    }
}

/// A project's events, runs' ends with their status among them.
const RUNS_ENDED: &str = "subscription($p: ID!) { projectEvents(projectId: $p) { __typename ... on RunEnded { run { id status } } } }";

/// Run `test` in production mode: PostgreSQL, and Redis with a channel and a job queue of
/// its own; the API node runs workers itself when `workers_in_process`.
async fn on_redis<F, Fut>(workers_in_process: bool, test: F)
where
    F: FnOnce(codecrafter_tests::TestApp) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    codecrafter_tests::run_with(
        codecrafter_tests::Backend::Postgres,
        |config| {
            let unique = uuid::Uuid::new_v4().simple().to_string();
            config.redis.url = Some(secrecy::SecretString::from("redis://127.0.0.1:6379"));
            config.redis.channel = format!("cc-test-{unique}");
            config.workers.job_queue = format!("cc-test-runs-{unique}");
            config.workers.in_process = Some(workers_in_process);
        },
        test,
    )
    .await;
}

/// A run started on one API node streams to subscribers on both nodes (PostgreSQL + Redis).
#[tokio::test]
async fn a_run_streams_to_subscribers_on_two_nodes() {
    on_redis(
        true,
        |app| async move {
            let node_b = app.spawn_node().await;
            let owner = app.sign_up("owner").await;
            let project = project_of(&app, &owner).await;
            let id = start(&app, &owner, json!({ "p": project, "l": "PYTHON", "s": "import time\ntime.sleep(1)\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.1)" })).await;
            let mut on_a = WsClient::connect(&app, Some(&owner.access)).await;
            let mut on_b = WsClient::connect(&node_b, Some(&owner.access)).await;
            let (a, b) = tokio::join!(follow(&mut on_a, &id), follow(&mut on_b, &id));
            for events in [&a, &b] {
                assert_eq!(streamed(events, "STDOUT"), "line 0\nline 1\nline 2\n");
                assert_eq!(events.last().unwrap()["run"]["status"], "SUCCEEDED");
            }
        },
    )
    .await;
}

/// `codecrafter worker` as it is deployed: the real binary (`main.rs`, built for the tests as
/// `codecrafter-under-test`), configured like `app` through the environment and given nothing
/// else: no `JWT_SECRET`, no inherited variables but `PATH`. SIGTERM drains it.
fn spawn_worker(app: &TestApp, data_dir: &std::path::Path) -> tokio::process::Child {
    app.binary(
        env!("CARGO_BIN_EXE_codecrafter-under-test"),
        "worker",
        data_dir,
    )
    .env("WORKER_CONCURRENCY", "1")
    // Its /metrics on a port of its own: tests run worker processes side by side.
    .env("WORKER_METRICS_BIND", "127.0.0.1:0")
    .env("RUST_LOG", "warn")
    .spawn()
    .unwrap()
}

/// How many connections listen on each of the deployment's Redis channels: what the people
/// in a project share, run events, run control.
async fn listeners(app: &TestApp) -> [i64; 3] {
    let channels = schema::realtime::Channels::new(&app.config.redis.channel);
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&channels.projects)
        .arg(&channels.run_events)
        .arg(&channels.run_control)
        .query_async(&mut conn)
        .await
        .unwrap();
    [counts[0].1, counts[1].1, counts[2].1]
}

/// A worker process next to an API node whose own workers are off: started without
/// `JWT_SECRET` in production mode, it runs code whose output streams to a subscriber of the
/// API node, it is stopped by a cancel that reaches it only through its Redis link, it
/// replays output a late follower missed, and it
/// listens to run control alone: no edit, presence or project event reaches it.
#[tokio::test]
async fn a_worker_process_holds_no_secret_and_hears_only_run_signals() {
    on_redis(
        false,
        |app| async move {
            // The API node listens to everything.
            assert_eq!(listeners(&app).await, [1, 1, 1]);
            let dir = tempfile::tempdir().unwrap();
            let mut worker = spawn_worker(&app, dir.path());
            codecrafter_tests::eventually(Duration::from_secs(60), || async {
                listeners(&app).await[2] == 2
            })
            .await;
            // The worker subscribed to run control only.
            assert_eq!(listeners(&app).await, [1, 1, 2]);

            let owner = app.sign_up("owner").await;
            let project = project_of(&app, &owner).await;
            let mut ws = WsClient::connect(&app, Some(&owner.access)).await;
            let project_events = ws.subscribe(RUNS_ENDED, json!({ "p": project })).await;
            let id = start(&app, &owner, json!({ "p": project, "l": "PYTHON", "s": "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.2)" })).await;
            let events = follow(&mut ws, &id).await;
            assert_eq!(streamed(&events, "STDOUT"), "line 0\nline 1\nline 2\n");
            assert!(
                events.iter().filter(|e| e["__typename"] == "RunOutput").count() >= 2,
                "the output was streamed, not handed over at the end: {events:?}"
            );
            assert_eq!(events.last().unwrap()["run"]["status"], "SUCCEEDED");
            loop {
                let event = ws.next(&project_events).await;
                let event = &event.data()["projectEvents"];
                if event["__typename"] == "RunEnded" {
                    assert_eq!(event["run"]["id"], id.as_str());
                    break;
                }
            }

            // A cancel published on the run-control channel alone (the row does not ask for
            // it, so the worker's heartbeat cannot be what stops the run).
            let long = "import time\nprint('start', flush=True)\ntime.sleep(60)";
            let id = start(&app, &owner, json!({ "p": project, "l": "PYTHON", "s": long })).await;
            let sub = ws.subscribe(EVENTS, json!({ "id": id })).await;
            wait_for_output(&mut ws, &sub, "start\n").await;
            let channels = schema::realtime::Channels::new(&app.config.redis.channel);
            let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let cancel = json!({
                "origin": uuid::Uuid::new_v4(),
                "signal": { "kind": "run", "run": id, "signal": { "type": "cancel" } },
            });
            let heard: i64 = redis::cmd("PUBLISH")
                .arg(&channels.run_control)
                .arg(cancel.to_string())
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(heard, 2, "the API node and the worker");
            let ended = loop {
                let event = ws.next(&sub).await.data()["runEvents"].clone();
                if event["__typename"] == "RunFinished" {
                    break event;
                }
            };
            assert_eq!(ended["run"]["status"], "CANCELLED", "{ended}");

            // cancelRun on the API node stops a run on the worker.
            let id = start(&app, &owner, json!({ "p": project, "l": "PYTHON", "s": long })).await;
            let sub = ws.subscribe(EVENTS, json!({ "id": id })).await;
            wait_for_output(&mut ws, &sub, "start\n").await;
            app.gql_as(&owner.access, "mutation($id: ID!) { cancelRun(id: $id) { id } }", json!({ "id": id }))
                .await
                .data();
            let ended = loop {
                let event = ws.next(&sub).await.data()["runEvents"].clone();
                if event["__typename"] == "RunFinished" {
                    break event;
                }
            };
            assert_eq!(ended["run"]["status"], "CANCELLED", "{ended}");

            // A replay is asked of the worker process over run control, like a cancel.
            a_late_follower_gets_what_it_missed(&app, &owner, &project).await;
            a_late_follower_gets_the_last_output(&app, &owner, &project).await;

            // Still only the API node listens to what the project shares.
            assert_eq!(listeners(&app).await, [1, 1, 2]);
            let pid = worker.id().unwrap().to_string();
            let signalled = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
            assert!(signalled.success());
            let status = tokio::time::timeout(Duration::from_secs(30), worker.wait()).await.unwrap().unwrap();
            assert!(status.success(), "{status:?}");
        },
    )
    .await;
}

/// A worker process killed with SIGKILL in the middle of a run: another worker takes the run
/// up, and it ends exactly once.
#[tokio::test]
async fn a_killed_worker_loses_nothing() {
    on_redis(
        false,
        |app| async move {
            let dir = tempfile::tempdir().unwrap();
            let mut first = spawn_worker(&app, dir.path());
            let owner = app.sign_up("owner").await;
            let project = project_of(&app, &owner).await;
            let mut ws = WsClient::connect(&app, Some(&owner.access)).await;
            let project_events = ws.subscribe(RUNS_ENDED, json!({ "p": project })).await;
            let id = start(&app, &owner, json!({ "p": project, "l": "PYTHON", "s": "import time\nprint('start', flush=True)\ntime.sleep(3)\nprint('done')" })).await;
            let sub = ws.subscribe(EVENTS, json!({ "id": id })).await;
            wait_for_output(&mut ws, &sub, "start\n").await;
            first.start_kill().unwrap();
            first.wait().await.unwrap();
            let _second = spawn_worker(&app, dir.path());
            let mut finished_events = Vec::new();
            loop {
                let event = ws.next(&sub).await;
                let event = event.data()["runEvents"].clone();
                if event["__typename"] == "RunFinished" {
                    finished_events.push(event);
                    break;
                }
            }
            assert!(matches!(ws.next(&sub).await, Event::Complete));
            // The project heard of its end exactly once.
            let mut ended = 0;
            while !ws.is_quiet(&project_events, Duration::from_secs(2)).await {
                let event = ws.next(&project_events).await;
                if event.data()["projectEvents"]["__typename"] == "RunEnded" {
                    ended += 1;
                }
            }
            assert_eq!(ended, 1);
            let run = &finished_events[0]["run"];
            assert_eq!(run["status"], "SUCCEEDED", "{run}");
            assert_eq!(run["attempts"], 2);
            assert_eq!(run["stdout"], "start\ndone\n");
        },
    )
    .await;
}

/// SIGTERM drains a worker: the run in hand finishes, no new one is taken.
#[tokio::test]
async fn a_terminated_worker_finishes_its_run_and_takes_no_more() {
    on_redis(
        false,
        |app| async move {
            let dir = tempfile::tempdir().unwrap();
            let mut worker = spawn_worker(&app, dir.path());
            let owner = app.sign_up("owner").await;
            let project = project_of(&app, &owner).await;
            let id = start(&app, &owner, json!({ "p": project, "l": "PYTHON", "s": "import time\nprint('start', flush=True)\ntime.sleep(2)\nprint('done')" })).await;
            let mut ws = WsClient::connect(&app, Some(&owner.access)).await;
            let sub = ws.subscribe(EVENTS, json!({ "id": id })).await;
            wait_for_output(&mut ws, &sub, "start\n").await;
            let pid = worker.id().unwrap().to_string();
            let signalled = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
            assert!(signalled.success());
            let later = start(&app, &owner, json!({ "p": project, "l": "BASH", "s": "echo later" })).await;
            let status = tokio::time::timeout(Duration::from_secs(30), worker.wait()).await.unwrap().unwrap();
            assert!(status.success(), "{status:?}");
            let run = finished(&app, &owner, &id).await;
            assert_eq!((&run["status"], &run["attempts"], &run["stdout"]), (&json!("SUCCEEDED"), &json!(1), &json!("start\ndone\n")));
            let waiting = app.gql_as(&owner.access, GET, json!({ "id": later })).await;
            assert_eq!(waiting.data()["run"]["status"], "QUEUED");
        },
    )
    .await;
}

/// The most runs that were running at one moment, from their `startedAt`/`finishedAt`.
fn most_at_once(runs: &[Value]) -> usize {
    let at = |run: &Value, field: &str| {
        chrono::DateTime::parse_from_rfc3339(run[field].as_str().unwrap()).unwrap()
    };
    let mut edges: Vec<_> = runs
        .iter()
        .flat_map(|run| [(at(run, "startedAt"), 1i32), (at(run, "finishedAt"), -1)])
        .collect();
    // An end and a start at the same instant do not overlap.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    usize::try_from(most).unwrap()
}

/// A worker set to `WORKER_CONCURRENCY` N runs at most N runs at once, and does run N.
async fn worker_concurrency_is_honoured(app: TestApp) {
    const TIMES: &str = "query($id: ID!) { run(id: $id) { status stdout startedAt finishedAt } }";
    let owner = app.sign_up("owner").await;
    let project = project_of(&app, &owner).await;
    let mut app = app;
    for (concurrency, count) in [(1, 3), (2, 4)] {
        app = app
            .restart_with(|c| c.workers.concurrency = Some(concurrency))
            .await;
        let mut ids = Vec::new();
        for _ in 0..count {
            ids.push(start(&app, &owner, json!({ "p": project, "l": "PYTHON", "s": "import time\ntime.sleep(0.8)\nprint('slept')" })).await);
        }
        let mut runs = Vec::new();
        for id in &ids {
            finished(&app, &owner, id).await;
            let run = app.gql_as(&owner.access, TIMES, json!({ "id": id })).await;
            let run = run.data()["run"].clone();
            assert_eq!(
                (&run["status"], &run["stdout"]),
                (&json!("SUCCEEDED"), &json!("slept\n")),
                "{run}"
            );
            runs.push(run);
        }
        assert_eq!(
            most_at_once(&runs),
            concurrency,
            "WORKER_CONCURRENCY={concurrency}: {runs:?}"
        );
    }
}

/// In embedded mode (SQLite database and SQLite job queue).
#[tokio::test]
async fn worker_concurrency_on_the_sqlite_queue() {
    codecrafter_tests::run(
        codecrafter_tests::Backend::Sqlite,
        worker_concurrency_is_honoured,
    )
    .await;
}

/// In production mode (PostgreSQL database and Redis job queue).
#[tokio::test]
async fn worker_concurrency_on_the_redis_queue() {
    on_redis(true, worker_concurrency_is_honoured).await;
}
