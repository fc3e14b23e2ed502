//! The real sandbox against ordinary and hostile programs. Needs root (cgroups, uids) and
//! bubblewrap, as the workers have.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use jobs::sandbox::{self, Language, Limits, Outcome, OutputChunk, RunSpec, Status};
use tokio::sync::{mpsc, watch};

fn bwrap() -> &'static Path {
    Path::new("bwrap")
}

fn spec(language: Language, file: &str, source: &str) -> RunSpec {
    RunSpec {
        language,
        files: vec![(file.to_owned(), source.as_bytes().to_vec())],
        entry: file.to_owned(),
        stdin: Vec::new(),
        limits: Limits {
            wall: Duration::from_secs(5),
            cpu: Duration::from_secs(2),
            memory_bytes: 128 * 1024 * 1024,
            processes: 32,
            file_bytes: 1024 * 1024,
            output_bytes: 16 * 1024,
            ..Limits::default()
        },
    }
}

struct Ran {
    outcome: Outcome,
    stdout: String,
    stderr: String,
    chunks: Vec<OutputChunk>,
}

async fn run(spec: RunSpec) -> Ran {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_cancel, cancel) = watch::channel(false);
    let outcome = sandbox::run(bwrap(), spec, tx, cancel)
        .await
        .expect("the sandbox works");
    let mut chunks = Vec::new();
    while let Ok(chunk) = rx.try_recv() {
        chunks.push(chunk);
    }
    let text = |stderr: bool| {
        let bytes: Vec<u8> = chunks
            .iter()
            .filter(|c| c.stderr == stderr)
            .flat_map(|c| c.data.clone())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ran {
        stdout: text(false),
        stderr: text(true),
        outcome,
        chunks,
    }
}

async fn python(source: &str) -> Ran {
    run(spec(Language::Python, "main.py", source)).await
}

#[tokio::test]
async fn hello_in_every_available_language() {
    let programs = [
        (Language::Python, "main.py", "print('hello')"),
        (Language::JavaScript, "main.js", "console.log('hello')"),
        (
            Language::C,
            "main.c",
            "#include <stdio.h>\nint main(){puts(\"hello\");return 0;}",
        ),
        (
            Language::Cpp,
            "main.cpp",
            "#include <iostream>\nint main(){std::cout<<\"hello\"<<std::endl;}",
        ),
        (Language::Bash, "main.sh", "echo hello"),
        (Language::Rust, "main.rs", "fn main(){println!(\"hello\");}"),
        (
            Language::Java,
            "Main.java",
            "public class Main{public static void main(String[] a){System.out.println(\"hello\");}}",
        ),
        (
            Language::Go,
            "main.go",
            "package main\nimport \"fmt\"\nfunc main(){fmt.Println(\"hello\")}",
        ),
    ];
    let mut ran = 0;
    for (language, file, source) in programs {
        if !sandbox::is_available(language) {
            continue;
        }
        let mut spec = spec(language, file, source);
        spec.limits.memory_bytes = 512 * 1024 * 1024;
        spec.limits.processes = 128;
        let result = run(spec).await;
        assert_eq!(
            result.outcome.status,
            Status::Succeeded,
            "{language:?}: {}",
            result.stderr
        );
        assert_eq!(result.stdout.trim(), "hello", "{language:?}");
        ran += 1;
    }
    for required in [
        Language::Python,
        Language::JavaScript,
        Language::C,
        Language::Cpp,
        Language::Bash,
    ] {
        assert!(
            sandbox::is_available(required),
            "{required:?} must be installed here"
        );
    }
    assert!(ran >= 5);
}

#[tokio::test]
async fn stdin_exit_codes_and_compile_errors() {
    let mut echo = spec(
        Language::Python,
        "main.py",
        "import sys; print(sys.stdin.read().upper())",
    );
    echo.stdin = b"shout".to_vec();
    let result = run(echo).await;
    assert_eq!(result.stdout.trim(), "SHOUT");

    let result = python("import sys; print('bye'); sys.exit(3)").await;
    assert_eq!(result.outcome.status, Status::Failed);
    assert_eq!(result.outcome.exit_code, Some(3));

    let result = run(spec(
        Language::C,
        "main.c",
        "int main() { return undefined_thing; }",
    ))
    .await;
    assert_eq!(result.outcome.status, Status::Failed);
    assert!(
        result.stderr.contains("undefined_thing"),
        "{}",
        result.stderr
    );
}

#[tokio::test]
async fn odd_file_names_are_files() {
    for name in ["-c", "it's $(id).py", "dir with space/x y.py"] {
        let result = run(spec(Language::Python, name, "print('ran')")).await;
        assert_eq!(result.stdout.trim(), "ran", "{name}: {}", result.stderr);
    }
}

#[tokio::test]
async fn output_arrives_in_order() {
    let result = python("import sys\nfor i in range(200):\n    print(i, flush=True)").await;
    assert_eq!(result.outcome.status, Status::Succeeded);
    let expected: String = (0..200).map(|i| format!("{i}\n")).collect();
    assert_eq!(result.stdout, expected);
    assert!(!result.chunks.is_empty());
}

#[tokio::test]
async fn limits_end_runs_with_the_status_that_names_them() {
    let result = python("while True: pass").await;
    assert_eq!(
        result.outcome.status,
        Status::TimedOut,
        "endless loop: {:?} {}",
        result.outcome,
        result.stderr
    );

    let result = python("import time; time.sleep(30)").await;
    assert_eq!(
        result.outcome.status,
        Status::TimedOut,
        "sleeping past the wall"
    );
    assert!(result.outcome.wall_time < Duration::from_secs(20));

    let result = python("x = []\nwhile True: x.append(bytearray(1 << 20))").await;
    assert_eq!(
        result.outcome.status,
        Status::MemoryLimit,
        "memory bomb: {}",
        result.stderr
    );

    let result = python("while True: print('spam' * 100)").await;
    assert_eq!(result.outcome.status, Status::OutputLimit, "endless output");
    assert!(result.stdout.len() <= 16 * 1024);
    assert!(result.outcome.stdout_truncated);

    let result = python(
        "import os\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            import time; time.sleep(5); os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('stopped at', n, e)",
    )
    .await;
    assert!(
        result.stdout.contains("stopped at"),
        "fork bomb: {} {}",
        result.stdout,
        result.stderr
    );
    let mut bomb = spec(Language::Bash, "main.sh", ":(){ :|:& };:\nwait");
    bomb.limits.wall = Duration::from_secs(3);
    let bomb = run(bomb).await;
    // Contained by the process limit: it ends (however bash reports it) within its time.
    assert!(bomb.outcome.wall_time < Duration::from_secs(10));
    assert_eq!(
        python("print('the host still forks')").await.stdout.trim(),
        "the host still forks"
    );
}

#[tokio::test]
async fn filling_the_disk_fills_only_the_sandbox() {
    let result = python(
        "i = 0\ntry:\n    while True:\n        open(f'f{i}', 'wb').write(b'x' * 1000000)\n        i += 1\nexcept OSError as e:\n    print('full after', i, e)",
    )
    .await;
    assert!(
        matches!(
            result.outcome.status,
            Status::Succeeded | Status::MemoryLimit | Status::Failed
        ),
        "{:?}",
        result.outcome
    );
    // One file larger than the file-size limit is stopped too, compiled programs included
    // (their compiler may write more; the program may not).
    let result = python("open('big', 'wb').write(b'x' * 5000000)").await;
    assert_ne!(result.outcome.status, Status::Succeeded);
    let c = run(spec(
        Language::C,
        "main.c",
        "#include <stdio.h>\nint main(){FILE*f=fopen(\"big\",\"wb\");for(int i=0;i<5000000;i++){if(fputc('x',f)==EOF){puts(\"stopped\");return 1;}}return fclose(f)==0?0:1;}",
    ))
    .await;
    assert_ne!(
        c.outcome.status,
        Status::Succeeded,
        "{:?} {}",
        c.outcome,
        c.stdout
    );
}

#[tokio::test]
async fn the_host_stays_out_of_reach() {
    // SAFETY of the test process: its own environment carries a secret that must not leak.
    // (set_var is unsafe in edition 2024; the sandbox must not see the parent's variables.)
    let result = python(concat!(
        "import os\n",
        "print(sorted(os.environ))\n",
        "print(os.getuid())\n",
        "for path in ['/etc/shadow', '/root/.cargo/env', '/work/../etc/passwd', '/proc/1/environ']:\n",
        "    try:\n",
        "        open(path).read(); print('READ', path)\n",
        "    except Exception as e:\n",
        "        print('denied', path, type(e).__name__)\n",
    ))
    .await;
    assert_eq!(
        result.outcome.status,
        Status::Succeeded,
        "{}",
        result.stderr
    );
    assert!(
        !result.stdout.contains("READ /etc/shadow"),
        "{}",
        result.stdout
    );
    assert!(!result.stdout.contains("READ /root"), "{}", result.stdout);
    for secret in ["JWT_SECRET", "DATABASE_URL", "REDIS_URL", "CARGO"] {
        assert!(
            !result.stdout.contains(secret),
            "{secret} leaked: {}",
            result.stdout
        );
    }

    let net = python(
        "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=2); print('CONNECTED')\nexcept OSError as e:\n    print('no network', e)",
    )
    .await;
    assert!(
        net.stdout.contains("no network"),
        "{} {}",
        net.stdout,
        net.stderr
    );

    let escape = RunSpec {
        files: vec![("main.py".into(), b"import os\nos.symlink('/etc/shadow', 'link')\ntry:\n    print(open('link').read())\nexcept Exception as e:\n    print('denied', e)".to_vec())],
        ..spec(Language::Python, "main.py", "")
    };
    let result = run(escape).await;
    assert!(result.stdout.contains("denied"), "{}", result.stdout);

    let signal = python("import os, signal\nfor pid in [1, os.getppid()]:\n    try:\n        os.kill(pid, signal.SIGKILL)\n    except Exception as e:\n        print('no', e)\nprint('alive')").await;
    assert_ne!(signal.outcome.status, Status::Cancelled);
    // The test process (the worker's stand-in) is unharmed: we are still here.
    let after = python("print('still fine')").await;
    assert_eq!(after.stdout.trim(), "still fine");
}

#[tokio::test]
async fn runs_do_not_see_each_other() {
    let (a, b) = tokio::join!(
        python(
            "import os, time\nopen('/work/secret-a', 'w').write('a')\nopen('/tmp/secret-a', 'w').write('a')\ntime.sleep(1)\nprint(sorted(os.listdir('/work')), sorted(os.listdir('/tmp')))"
        ),
        python(
            "import os, time\ntime.sleep(0.5)\nprint(sorted(os.listdir('/work')), sorted(os.listdir('/tmp')))"
        ),
    );
    assert!(a.stdout.contains("secret-a"));
    assert!(!b.stdout.contains("secret-a"), "{}", b.stdout);
}

#[tokio::test]
async fn paths_outside_the_work_directory_are_refused() {
    let bad = RunSpec {
        files: vec![("../escape.py".into(), b"print(1)".to_vec())],
        ..spec(Language::Python, "main.py", "")
    };
    let (tx, _rx) = mpsc::unbounded_channel();
    let (_c, cancel) = watch::channel(false);
    assert!(sandbox::run(bwrap(), bad, tx, cancel).await.is_err());
}

#[tokio::test]
async fn cancelling_kills_the_run() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let (cancel_tx, cancel) = watch::channel(false);
    let task = tokio::spawn(sandbox::run(
        bwrap(),
        spec(Language::Python, "main.py", "import time; time.sleep(60)"),
        tx,
        cancel,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel_tx.send(true).unwrap();
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.status, Status::Cancelled);
}

#[tokio::test]
async fn a_missing_sandbox_is_an_infrastructure_error() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let (_c, cancel) = watch::channel(false);
    let result = sandbox::run(
        Path::new("/nonexistent/bwrap"),
        spec(Language::Python, "main.py", "print(1)"),
        tx,
        cancel,
    )
    .await;
    assert!(result.is_err(), "{result:?}");
}
