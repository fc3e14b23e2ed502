//! The real sandbox against ordinary and hostile programs. Needs root (cgroups, uids) and
//! bubblewrap, as the workers have.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use jobs::RunLimits;
use jobs::sandbox::{self, Language, Outcome, OutputChunk, RunSpec, Status};
use tokio::sync::{mpsc, watch};

mod common;

use common::{bwrap, spec};

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

/// A project file larger than a written file may be: the copy into `/work` fails, and the run
/// fails with the reason instead of the program running without its file.
#[tokio::test]
async fn a_file_over_the_file_size_limit_fails_the_run_with_the_reason() {
    let mut spec = spec(Language::Python, "main.py", "print('ran')");
    let too_big = usize::try_from(spec.limits.file_bytes).unwrap() + 1;
    spec.files.push(("big.txt".into(), vec![b'x'; too_big]));
    let result = run(spec).await;
    assert_eq!(result.outcome.status, Status::Failed, "{}", result.stderr);
    assert_eq!(result.outcome.exit_code, Some(1));
    assert_eq!(result.stdout, "", "the program ran");
    assert!(
        result.stderr.contains("cannot write /work/big.txt"),
        "{}",
        result.stderr
    );
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
    bomb.limits.wall_ms = 3000;
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

/// A run going in the background, once its first output arrived.
struct Started {
    task: tokio::task::JoinHandle<Result<Outcome, sandbox::SandboxError>>,
    output: mpsc::UnboundedReceiver<OutputChunk>,
    first: OutputChunk,
    /// Send `true` to cancel it.
    cancel: watch::Sender<bool>,
}

/// Start `spec` and wait (at most 30 s) until it has printed something.
async fn started(spec: RunSpec) -> Started {
    let (cancel, cancelled) = watch::channel(false);
    let (tx, mut output) = mpsc::unbounded_channel();
    let task = tokio::spawn(sandbox::run(bwrap(), spec, tx, cancelled));
    let first = tokio::time::timeout(Duration::from_secs(30), output.recv())
        .await
        .ok()
        .flatten()
        .expect("the run starts");
    Started {
        task,
        output,
        first,
        cancel,
    }
}

/// The lines of `/proc/<pid>/status` that say who a process is and what it may do.
fn identity(status: &str) -> Vec<(String, String)> {
    status
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| {
            matches!(
                *key,
                "Uid" | "Gid" | "Groups" | "CapInh" | "CapPrm" | "CapEff" | "CapBnd" | "CapAmb"
            )
        })
        .map(|(key, value)| {
            (
                key.to_owned(),
                value.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_run_holds_no_privilege_and_exactly_its_limits() {
    let Started {
        task,
        mut output,
        first,
        cancel: _cancel,
    } = started(spec(
        Language::Python,
        "main.py",
        "import resource, sys, time\n\
         for name in ['NOFILE', 'CORE', 'NPROC', 'FSIZE', 'CPU']:\n\
         \x20   print(name, *resource.getrlimit(getattr(resource, 'RLIMIT_' + name)))\n\
         print(open('/proc/self/status').read(), flush=True)\n\
         time.sleep(3)\n",
    ))
    .await;

    // Outside: every sandbox this process started is its run's uid alone, in no group, with
    // no capability it could hand on (the launcher dropped them before `bwrap`).
    let me = std::process::id().to_string();
    let mut sandboxes = 0;
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}:")))
                .map(|v| v.trim().to_owned())
        };
        if field("Name").as_deref() != Some("bwrap") || field("PPid").as_deref() != Some(&me) {
            continue;
        }
        sandboxes += 1;
        let who = identity(&status);
        let value = |key: &str| who.iter().find(|(k, _)| k == key).unwrap().1.clone();
        let uid = value("Uid");
        let ids: Vec<&str> = uid.split(' ').collect();
        assert!(
            ids.iter().all(|id| *id == ids[0]) && ids[0] != "0",
            "{who:?}"
        );
        assert_eq!(value("Gid"), uid, "{who:?}");
        assert_eq!(value("Groups"), "", "{who:?}");
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(value(set), "0000000000000000", "{set}: {who:?}");
        }
    }
    assert!(sandboxes > 0, "a sandbox of this process is running");

    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.status, Status::Succeeded, "{outcome:?}");
    let mut text = String::from_utf8_lossy(&first.data).into_owned();
    while let Ok(chunk) = output.try_recv() {
        text.push_str(&String::from_utf8_lossy(&chunk.data));
    }
    // Inside: the limits of `spec` (CPU: the program's soft limit, the run's hard one a
    // second above the whole run's budget), and nothing to gain either.
    for line in [
        "NOFILE 256 256",
        "CORE 0 0",
        "NPROC 32 32",
        "FSIZE 1048576 1048576",
        "CPU 2 5",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
    let inside = identity(&text);
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let value = inside
            .iter()
            .find(|(k, _)| k == set)
            .map(|(_, v)| v.as_str());
        assert_eq!(value, Some("0000000000000000"), "{set}: {text}");
    }
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
}

#[tokio::test]
async fn cancelling_kills_the_run() {
    // Cancelled once it runs (not before it starts).
    let Started { task, cancel, .. } = started(spec(
        Language::Python,
        "main.py",
        "import time\nprint('started', flush=True)\ntime.sleep(60)",
    ))
    .await;
    cancel.send(true).unwrap();
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

fn with_limits(mut spec: RunSpec, change: impl FnOnce(&mut RunLimits)) -> RunSpec {
    change(&mut spec.limits);
    spec
}

/// Python that calls system call `number` with zero arguments and prints `name result errno`.
fn syscall_probe(calls: &[(String, i64, Vec<u64>)]) -> String {
    let mut source = String::from(
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall.restype = ctypes.c_long\n",
    );
    for (name, number, args) in calls {
        let args: Vec<String> = args
            .iter()
            .map(|a| format!("ctypes.c_ulong({a})"))
            .collect();
        source.push_str(&format!(
            "ctypes.set_errno(0)\nr = libc.syscall(ctypes.c_long({number}){}{})\nprint({name:?}, r, ctypes.get_errno(), flush=True)\n",
            if args.is_empty() { "" } else { ", " },
            args.join(", ")
        ));
    }
    source
}

#[tokio::test]
async fn every_denied_system_call_fails_with_eperm() {
    let mut calls: Vec<(String, i64, Vec<u64>)> = sandbox::denied_syscalls()
        .map(|(name, number)| (name.to_owned(), number, vec![0, 0, 0, 0, 0]))
        .collect();
    // The session keyring the worker holds: neither readable nor joinable.
    calls.push((
        "keyctl-session".into(),
        libc::SYS_keyctl,
        vec![0, (-3i64) as u64, 0],
    ));
    // ptrace of the sandbox's own init.
    calls.push((
        "ptrace-attach-1".into(),
        libc::SYS_ptrace,
        vec![16, 1, 0, 0],
    ));
    // clone into a new user (or network) namespace.
    calls.push((
        "clone-newuser".into(),
        libc::SYS_clone,
        vec![(libc::CLONE_NEWUSER | libc::SIGCHLD) as u64, 0, 0, 0, 0],
    ));
    calls.push((
        "clone-newnet".into(),
        libc::SYS_clone,
        vec![(libc::CLONE_NEWNET | libc::SIGCHLD) as u64, 0, 0, 0, 0],
    ));
    let result = python(&syscall_probe(&calls)).await;
    assert_eq!(
        result.outcome.status,
        Status::Succeeded,
        "{}",
        result.stderr
    );
    for (name, _, _) in &calls {
        let line = result
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not probed: {}", result.stdout));
        assert_eq!(
            line,
            format!("{name} -1 {}", libc::EPERM),
            "{name} was not denied"
        );
    }
    // clone3 says ENOSYS, so the C library falls back to clone (threads still work).
    let clone3 = python(&syscall_probe(&[(
        "clone3".into(),
        libc::SYS_clone3,
        vec![0, 0],
    )]))
    .await;
    assert_eq!(clone3.stdout.trim(), format!("clone3 -1 {}", libc::ENOSYS));
    let threads = python("import threading\nt = threading.Thread(target=lambda: print('thread ran'))\nt.start(); t.join()").await;
    assert_eq!(threads.stdout.trim(), "thread ran", "{}", threads.stderr);
}

#[tokio::test]
async fn no_nested_namespaces_no_keyring_no_supervisor_secrets() {
    let result = run(spec(
        Language::Bash,
        "main.sh",
        "unshare -U -r true && echo NESTED-USERNS\nunshare -n true && echo NESTED-NETNS\nls /proc/1/fd >/dev/null 2>&1 && echo SUPERVISOR-FDS\ncat /proc/1/environ >/dev/null 2>&1 && echo SUPERVISOR-ENV\nkill -9 1 2>/dev/null; echo still here",
    ))
    .await;
    assert_eq!(
        result.outcome.status,
        Status::Succeeded,
        "{}",
        result.stderr
    );
    assert_eq!(result.stdout.trim(), "still here", "{}", result.stderr);
}

#[tokio::test]
async fn inherited_descriptors_are_closed() {
    use std::os::fd::AsFd;
    // A descriptor the worker holds without close-on-exec, as an inherited one would be.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "inherited secret").unwrap();
    let file = std::fs::File::open(secret.path()).unwrap();
    rustix::io::fcntl_setfd(file.as_fd(), rustix::io::FdFlags::empty()).unwrap();
    let result = python(
        "import os\nfor fd in range(3, 1024):\n    try:\n        os.fstat(fd)\n        print('open', fd, os.readlink(f'/proc/self/fd/{fd}'))\n    except OSError:\n        pass\nprint('done')",
    )
    .await;
    drop(file);
    assert_eq!(result.stdout.trim(), "done", "{}", result.stderr);
}

/// The modes and owners of a run directory named `pattern…` and of its `src/main.sh`, once
/// both exist.
fn run_directory_modes(pattern: &str) -> Option<(u32, u32, u32, u32)> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::read_dir(std::env::temp_dir())
        .ok()?
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(pattern))
        .find_map(|entry| {
            let dir = entry.metadata().ok()?;
            let file = std::fs::metadata(entry.path().join("src").join("main.sh")).ok()?;
            Some((
                dir.permissions().mode() & 0o777,
                dir.uid(),
                file.permissions().mode() & 0o777,
                file.uid(),
            ))
        })
}

#[tokio::test]
async fn users_are_generated_and_run_directories_private() {
    let pattern = format!("codecrafter-run-{}-", std::process::id());
    // The directory is looked at while the run is under way.
    let watcher = testkit::eventually_some(Duration::from_secs(10), async || {
        run_directory_modes(&pattern)
    });
    let running = run(spec(
        Language::Bash,
        "main.sh",
        "id -un; id -gn; cat /etc/passwd | cut -d: -f1 | tr '\\n' ' '; echo; sleep 1",
    ));
    let ((dir_mode, dir_uid, file_mode, file_uid), result) = tokio::join!(watcher, running);
    assert_eq!(
        result.outcome.status,
        Status::Succeeded,
        "{}",
        result.stderr
    );
    let lines: Vec<&str> = result.stdout.lines().collect();
    assert_eq!(&lines[..2], ["sandbox", "sandbox"]);
    assert_eq!(
        lines[2].trim(),
        "root sandbox nobody",
        "only generated users"
    );
    assert_eq!((dir_mode, file_mode), (0o700, 0o600));
    assert!(
        dir_uid >= 20_000 && dir_uid == file_uid,
        "owned by the run's uid: {dir_uid}"
    );
    // Nothing stays behind.
    let left = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&pattern))
        .count();
    assert!(
        left <= 1,
        "other tests of this process may still run; at most one left"
    );
}

#[tokio::test]
async fn exit_codes_are_exit_codes_and_signals_are_signals() {
    for code in [0, 1, 2, 125, 126, 127, 128, 137, 152, 255] {
        let result = run(spec(Language::Bash, "main.sh", &format!("exit {code}"))).await;
        assert_eq!(
            (result.outcome.exit_code, result.outcome.signal),
            (Some(code), None),
            "exit {code}"
        );
        let expected = if code == 0 {
            Status::Succeeded
        } else {
            Status::Failed
        };
        assert_eq!(result.outcome.status, expected, "exit {code}");
    }
    for (signal, name) in [(9, "KILL"), (11, "SEGV"), (15, "TERM"), (6, "ABRT")] {
        let result = run(spec(Language::Bash, "main.sh", &format!("kill -{name} $$"))).await;
        assert_eq!(
            (
                result.outcome.status,
                result.outcome.exit_code,
                result.outcome.signal
            ),
            (Status::Failed, None, Some(signal)),
            "SIG{name}"
        );
    }
    // What a program prints is never taken for the sandbox's own failure.
    for forged in [
        "bwrap: Can not mount proc on /newroot/proc",
        "sh: 1: cannot create",
        "setpriv: failed",
    ] {
        for code in [1, 125, 126, 127] {
            let result = run(spec(
                Language::Bash,
                "main.sh",
                &format!("echo '{forged}' >&2; exit {code}"),
            ))
            .await;
            assert_eq!(
                (result.outcome.status, result.outcome.exit_code),
                (Status::Failed, Some(code)),
                "{forged} / {code}"
            );
        }
    }
}

#[tokio::test]
async fn conflicting_paths_fail_the_run_with_the_reason() {
    let result = run(RunSpec {
        files: vec![
            ("a".into(), b"x".to_vec()),
            ("a/b.py".into(), b"print(1)".to_vec()),
        ],
        ..spec(Language::Python, "a/b.py", "")
    })
    .await;
    assert_eq!(result.outcome.status, Status::Failed);
    assert!(
        result.stderr.contains("\"a\" is a file"),
        "{}",
        result.stderr
    );
    assert!(result.outcome.error.is_some());
}

#[tokio::test]
async fn output_is_cut_on_character_boundaries_and_any_bytes_pass() {
    let result = python(
        "import sys, time\nout = sys.stdout.buffer\nout.write(b'nul\\x00 bad\\xff ')\nout.flush()\nword = 'h\u{e9}\u{20ac}\u{1f600}'.encode()\nfor i in range(len(word)):\n    out.write(word[i:i+1]); out.flush(); time.sleep(0.02)\nout.write(b'\\n')",
    )
    .await;
    assert_eq!(
        result.outcome.status,
        Status::Succeeded,
        "{}",
        result.stderr
    );
    let bytes: Vec<u8> = result
        .chunks
        .iter()
        .filter(|c| !c.stderr)
        .flat_map(|c| c.data.clone())
        .collect();
    let mut expected = b"nul\x00 bad\xff ".to_vec();
    expected.extend_from_slice("h\u{e9}\u{20ac}\u{1f600}\n".as_bytes());
    assert_eq!(bytes, expected);
    for chunk in result.chunks.iter().filter(|c| !c.stderr) {
        if !chunk.data.contains(&0xff) {
            assert!(
                std::str::from_utf8(&chunk.data).is_ok(),
                "cut inside a character: {:?}",
                chunk.data
            );
        }
    }
}

#[tokio::test]
async fn cpu_time_is_the_whole_process_tree() {
    if sandbox::isolation() == sandbox::Isolation::Rlimits {
        return;
    }
    // Three children each below the limit, together well over it.
    let tree = with_limits(
        spec(
            Language::Python,
            "main.py",
            "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        while time.process_time() < 0.8: pass\n        os._exit(0)\nfor _ in range(3): os.wait()\nprint('all done')",
        ),
        |l| {
            l.cpu_ms = 1000;
            l.cpu_cores = 4.0;
        },
    );
    let result = run(tree).await;
    assert_eq!(
        result.outcome.status,
        Status::TimedOut,
        "{:?} {}",
        result.outcome,
        result.stdout
    );
    assert!(
        result.outcome.cpu_time >= Duration::from_millis(950),
        "{:?}",
        result.outcome
    );
}

#[tokio::test]
async fn a_run_gets_one_core_however_many_processes_it_starts() {
    if sandbox::isolation() == sandbox::Isolation::Rlimits {
        return;
    }
    let hog = with_limits(
        spec(
            Language::Python,
            "main.py",
            "import os, time\nend = time.time() + 1.5\nfor _ in range(4):\n    if os.fork() == 0:\n        os.setsid()\n        while time.time() < end: pass\n        os._exit(0)\nfor _ in range(4): os.wait()",
        ),
        |l| l.cpu_ms = 10000,
    );
    let result = run(hog).await;
    assert_eq!(
        result.outcome.status,
        Status::Succeeded,
        "{:?}",
        result.outcome
    );
    let (cpu, wall) = (result.outcome.cpu_time, result.outcome.wall_time);
    assert!(
        cpu.as_secs_f64() <= wall.as_secs_f64() * 1.25,
        "one core: {cpu:?} of CPU in {wall:?}"
    );
}

#[tokio::test]
async fn the_program_cannot_use_the_compile_budget() {
    let sleeper = with_limits(
        spec(
            Language::C,
            "main.c",
            "#include <unistd.h>\nint main(){sleep(4);return 0;}",
        ),
        |l| l.wall_ms = 1000,
    );
    let result = run(sleeper).await;
    assert_eq!(
        result.outcome.status,
        Status::TimedOut,
        "sleeping past its wall: {:?}",
        result.outcome
    );
    assert!(
        result.outcome.wall_time < Duration::from_secs(3),
        "{:?}",
        result.outcome
    );
    let burner = with_limits(
        spec(
            Language::C,
            "main.c",
            "int main(){volatile unsigned long i=0;for(;;)i++;}",
        ),
        |l| {
            l.cpu_ms = 1000;
            l.wall_ms = 8000;
        },
    );
    let result = run(burner).await;
    assert_eq!(
        result.outcome.status,
        Status::TimedOut,
        "burning past its CPU: {:?}",
        result.outcome
    );
    assert!(
        result.outcome.cpu_time < Duration::from_millis(2500),
        "{:?}",
        result.outcome
    );
    // The compile step itself has a budget of its own.
    let slow_compile = with_limits(spec(Language::C, "main.c", "int main(){return 0;}"), |l| {
        l.compile_wall_ms = 1;
    });
    assert_eq!(run(slow_compile).await.outcome.status, Status::TimedOut);
}

#[tokio::test]
async fn a_compiler_killed_at_the_memory_limit_is_a_memory_limit() {
    if sandbox::isolation() == sandbox::Isolation::Rlimits {
        return;
    }
    let heavy = with_limits(
        spec(
            Language::Cpp,
            "main.cpp",
            "#include <iostream>\n#include <regex>\n#include <map>\nint main(){std::map<int,int> m; std::regex r(\"a+\"); std::cout<<std::regex_match(\"aa\", r)<<m.size();}",
        ),
        |l| l.memory_bytes = 24 * 1024 * 1024,
    );
    let result = run(heavy).await;
    assert_eq!(
        result.outcome.status,
        Status::MemoryLimit,
        "{:?} {}",
        result.outcome,
        result.stderr
    );
}

/// Not a test: a worker process of its own for the tests below (re-executed with
/// `CODECRAFTER_SANDBOX_CHILD` set): it runs `CODECRAFTER_SANDBOX_RUNS` runs at once, each
/// sleeping `CODECRAFTER_SANDBOX_SLEEP` seconds.
#[tokio::test]
#[ignore = "started by other tests"]
async fn worker_process() {
    let Ok(runs) = std::env::var("CODECRAFTER_SANDBOX_CHILD") else {
        return;
    };
    let sleep = std::env::var("CODECRAFTER_SANDBOX_SLEEP").unwrap();
    let runs: usize = runs.parse().unwrap();
    let all: Vec<_> = (0..runs)
        .map(|_| {
            tokio::spawn(run(with_limits(
                spec(
                    Language::Bash,
                    "main.sh",
                    &format!("sleep {sleep}; echo slept"),
                ),
                |l| l.wall_ms = 60000,
            )))
        })
        .collect();
    for run in all {
        assert_eq!(run.await.unwrap().stdout.trim(), "slept");
    }
}

/// Start [`worker_process`] in a process of its own.
fn spawn_worker(runs: usize, sleep: u32) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "worker_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CODECRAFTER_SANDBOX_CHILD", runs.to_string())
        .env("CODECRAFTER_SANDBOX_SLEEP", sleep.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// The run directories of process `pid` now: path and owner uid.
fn run_dirs_of(pid: u32) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    let prefix = format!("codecrafter-run-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.uid())))
        .collect()
}

/// Wait until `pid` has `count` run directories.
async fn wait_for_runs(pid: u32, count: usize) -> Vec<(std::path::PathBuf, u32)> {
    testkit::eventually_some(Duration::from_secs(20), async || {
        let dirs = run_dirs_of(pid);
        // A directory exists before its files are written; give each a moment's slack.
        (dirs.len() >= count && dirs.iter().all(|(p, _)| p.join("status").exists())).then_some(dirs)
    })
    .await
}

/// Cgroup directories below /sys/fs/cgroup whose name carries `pid` as a run's worker.
fn cgroups_of(pid: u32) -> Vec<std::path::PathBuf> {
    let names = [format!("run-{pid}-"), format!("codecrafter-runs-{pid}")];
    let mut found = Vec::new();
    let mut stack = vec![(std::path::PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in read.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() || kind.is_symlink() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if names.iter().any(|n| name.starts_with(n.as_str())) {
                found.push(entry.path());
            } else if depth < 6 {
                stack.push((entry.path(), depth + 1));
            }
        }
    }
    found
}

#[tokio::test]
async fn two_worker_processes_never_share_a_uid() {
    if !sandbox::runs_as_root() {
        return;
    }
    let mut first = spawn_worker(3, 2);
    let mut second = spawn_worker(3, 2);
    let a = wait_for_runs(first.id(), 3).await;
    let b = wait_for_runs(second.id(), 3).await;
    let mut uids: Vec<u32> = a.iter().chain(&b).map(|(_, uid)| *uid).collect();
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(
        uids.len(),
        6,
        "every concurrent run has its own uid: {a:?} {b:?}"
    );
    assert!(first.wait().unwrap().success());
    assert!(second.wait().unwrap().success());
}

#[tokio::test]
async fn a_killed_worker_leaves_nothing_the_next_one_does_not_remove() {
    let mut worker = spawn_worker(1, 30);
    let pid = worker.id();
    wait_for_runs(pid, 1).await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert_eq!(run_dirs_of(pid).len(), 1, "SIGKILL left its run directory");
    sandbox::remove_leftovers();
    assert!(run_dirs_of(pid).is_empty(), "the next worker removes it");
    assert!(
        cgroups_of(pid).is_empty(),
        "and its cgroups: {:?}",
        cgroups_of(pid)
    );
}

/// Ten languages, installed as `.ci/run` and the worker image install them: hello world,
/// stdin, and a compile (or syntax) error that fails with the toolchain's message.
#[tokio::test]
async fn ten_languages_hello_stdin_and_compile_errors() {
    let programs: [(Language, &str, &str, &str, &str); 10] = [
        (
            Language::Python,
            "main.py",
            "print('hello')",
            "import sys; print(sys.stdin.read().upper())",
            "print('unclosed'",
        ),
        (
            Language::JavaScript,
            "main.js",
            "console.log('hello')",
            "console.log(require('fs').readFileSync(0, 'utf8').toUpperCase())",
            "console.log('unclosed'",
        ),
        (
            Language::TypeScript,
            "main.ts",
            "const greeting: string = 'hello';\nconsole.log(greeting);",
            "declare const require: any;\nconsole.log(require('fs').readFileSync(0, 'utf8').toUpperCase());",
            "const n: number = 'not a number';",
        ),
        (
            Language::C,
            "main.c",
            "#include <stdio.h>\nint main(){puts(\"hello\");return 0;}",
            "#include <stdio.h>\n#include <ctype.h>\nint main(){int c;while((c=getchar())!=EOF)putchar(toupper(c));puts(\"\");return 0;}",
            "int main(){return undefined_name;}",
        ),
        (
            Language::Cpp,
            "main.cpp",
            "#include <iostream>\nint main(){std::cout<<\"hello\\n\";}",
            "#include <iostream>\n#include <cctype>\nint main(){char c;while(std::cin.get(c))std::cout<<(char)std::toupper(c);std::cout<<\"\\n\";}",
            "int main(){return undefined_name;}",
        ),
        (
            Language::Bash,
            "main.sh",
            "echo hello",
            "tr a-z A-Z; echo",
            "if then fi",
        ),
        (
            Language::Java,
            "Main.java",
            "public class Main{public static void main(String[] a){System.out.println(\"hello\");}}",
            "public class Main{public static void main(String[] a)throws Exception{System.out.println(new String(System.in.readAllBytes()).toUpperCase());}}",
            "public class Main{public static void main(String[] a){undefinedName();}}",
        ),
        (
            Language::Go,
            "main.go",
            "package main\nimport \"fmt\"\nfunc main(){fmt.Println(\"hello\")}",
            "package main\nimport (\"fmt\";\"io\";\"os\";\"strings\")\nfunc main(){b,_:=io.ReadAll(os.Stdin);fmt.Println(strings.ToUpper(string(b)))}",
            "package main\nfunc main(){undefinedName()}",
        ),
        (
            Language::Rust,
            "main.rs",
            "fn main(){println!(\"hello\");}",
            "use std::io::Read;\nfn main(){let mut s=String::new();std::io::stdin().read_to_string(&mut s).unwrap();println!(\"{}\", s.to_uppercase());}",
            "fn main(){undefined_name();}",
        ),
        (
            Language::Ruby,
            "main.rb",
            "puts 'hello'",
            "puts STDIN.read.upcase",
            "puts('unclosed'",
        ),
    ];
    let roomy = |spec: RunSpec| {
        with_limits(spec, |l| {
            l.memory_bytes = 768 * 1024 * 1024;
            l.processes = 256;
            l.wall_ms = 20000;
            l.cpu_ms = 10000;
            l.compile_wall_ms = 60000;
            l.compile_cpu_ms = 60000;
        })
    };
    for (language, file, hello, echo, broken) in programs {
        assert!(
            sandbox::is_available(language),
            "{language:?} must be installed here"
        );
        let result = run(roomy(spec(language, file, hello))).await;
        assert_eq!(
            (result.outcome.status, result.stdout.as_str()),
            (Status::Succeeded, "hello\n"),
            "{language:?} hello: {:?} {}",
            result.outcome,
            result.stderr
        );
        let mut with_stdin = roomy(spec(language, file, echo));
        with_stdin.stdin = b"quiet".to_vec();
        let result = run(with_stdin).await;
        assert_eq!(
            result.stdout.trim(),
            "QUIET",
            "{language:?} stdin: {}",
            result.stderr
        );
        let result = run(roomy(spec(language, file, broken))).await;
        assert_eq!(
            result.outcome.status,
            Status::Failed,
            "{language:?} broken: {:?}",
            result.outcome
        );
        assert!(
            !result.stderr.trim().is_empty(),
            "{language:?}: the toolchain says why"
        );
    }
}

/// A fixed amount of CPU work; prints how long it took, from inside the program (so the
/// sandbox's own start-up is not counted).
const VICTIM: &str = "import time\nt = time.monotonic()\nn = 0\nwhile n < 6_000_000: n += 1\nprint(time.monotonic() - t)";

async fn victim_seconds() -> f64 {
    let victim = with_limits(spec(Language::Python, "main.py", VICTIM), |l| {
        l.wall_ms = 60000;
        l.cpu_ms = 30000;
    });
    let result = run(victim).await;
    assert_eq!(
        result.outcome.status,
        Status::Succeeded,
        "{:?}",
        result.outcome
    );
    result.stdout.trim().parse().unwrap()
}

/// The victim's time beside a hog (many children, each in a session of its own, spinning).
async fn victim_seconds_beside_a_hog() -> f64 {
    let hog = with_limits(
        spec(
            Language::Python,
            "main.py",
            // Each child says it spins before it does, so the victim starts beside all 8.
            "import os, sys, time\nr, w = os.pipe()\nfor _ in range(8):\n    if os.fork() == 0:\n        os.setsid()\n        os.write(w, b'x')\n        while True: pass\nn = 0\nwhile n < 8:\n    n += len(os.read(r, 8))\nprint('spinning', flush=True)\ntime.sleep(120)",
        ),
        |l| {
            l.wall_ms = 60000;
            l.cpu_ms = 60000;
        },
    );
    let (tx, mut hog_output) = mpsc::unbounded_channel();
    let (stop_hog, cancel) = watch::channel(false);
    let hog = tokio::spawn(sandbox::run(bwrap(), hog, tx, cancel));
    let said = tokio::time::timeout(Duration::from_secs(30), hog_output.recv())
        .await
        .expect("the hog starts")
        .expect("the hog speaks");
    assert_eq!(String::from_utf8_lossy(&said.data), "spinning\n");
    let beside = victim_seconds().await;
    stop_hog.send(true).unwrap();
    let hog = hog.await.unwrap().unwrap();
    assert_eq!(hog.status, Status::Cancelled, "{hog:?}");
    beside
}

/// Another user's run next to a hog: the hog gets its one core, and the other run is slowed
/// by less than 3× (unbounded, eight spinning children took it ~8× slower). The other tests
/// of this binary run at the same time and load the machine unevenly, so a round is timed
/// alone, beside the hog, and alone again, and one round in three within the bound passes:
/// a hog that starves its neighbours fails them all.
#[tokio::test]
async fn a_hog_does_not_starve_another_run() {
    if sandbox::isolation() == sandbox::Isolation::Rlimits {
        return;
    }
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let before = victim_seconds().await;
        let beside = victim_seconds_beside_a_hog().await;
        let after = victim_seconds().await;
        let alone = before.max(after);
        println!(
            "the victim's work: alone {before:.2}s / {after:.2}s, beside the hog {beside:.2}s"
        );
        rounds.push((alone, beside));
        if beside < alone * 3.0 {
            return;
        }
    }
    panic!(
        "beside the hog the victim was 3× slower or worse in every round (alone, beside): {rounds:.2?}"
    );
}
