//! The sandbox that runs untrusted code.
//!
//! Every run gets:
//! - a fresh temporary directory holding its files, mounted read-only at `/src` and copied
//!   by the sandboxed process into `/work`, a size-limited tmpfs (so filling the disk fills
//!   only that, and its pages count against the run's memory);
//! - bubblewrap: new user, PID, network, IPC, UTS and cgroup namespaces, read-only `/usr`
//!   and the few `/etc` files toolchains need (never `/etc/shadow`, `/root`, the server's
//!   data or its environment), a private `/tmp`, `--die-with-parent`, a clean environment;
//! - an unprivileged host uid no other concurrent run has, so `RLIMIT_NPROC` is per run;
//! - limits: memory and processes through cgroups (v2, or the v1 hierarchy this host has)
//!   when the process may create them, else rlimits; CPU time, file size and core dumps
//!   through rlimits; wall time and output size watched here. Any limit kills the whole
//!   process tree (killing bubblewrap ends its PID namespace).
//!
//! The wrapper chain is `sh` (joins the cgroups) -> `prlimit` -> `setpriv` (drops to the
//! run's uid) -> `bwrap` -> `sh` (copies the files, compiles) -> the program. No `unsafe`.

mod cgroup;
mod languages;

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

pub use cgroup::Isolation;
pub use languages::{Language, LanguageInfo, is_available, languages};

/// What a run may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub wall: Duration,
    pub cpu: Duration,
    pub memory_bytes: u64,
    pub processes: u32,
    /// Largest file the program may write.
    pub file_bytes: u64,
    /// Output kept per stream; more kills the run (OUTPUT_LIMIT).
    pub output_bytes: u64,
    /// Extra wall and CPU time for a compile step (C, C++, Rust, Java).
    pub compile_wall: Duration,
    pub compile_cpu: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall: Duration::from_secs(10),
            cpu: Duration::from_secs(5),
            memory_bytes: 256 * 1024 * 1024,
            processes: 64,
            file_bytes: 1024 * 1024,
            output_bytes: 64 * 1024,
            compile_wall: Duration::from_secs(20),
            compile_cpu: Duration::from_secs(15),
        }
    }
}

/// One run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub language: Language,
    /// Relative paths and contents.
    pub files: Vec<(String, Vec<u8>)>,
    /// The file to run (relative).
    pub entry: String,
    pub stdin: Vec<u8>,
    pub limits: Limits,
}

/// A piece of output, in the order it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    pub stderr: bool,
    pub data: Vec<u8>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    /// A non-zero exit, a signal, or a compile error.
    Failed,
    /// Wall or CPU time ran out.
    TimedOut,
    MemoryLimit,
    OutputLimit,
    Cancelled,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub wall_time: Duration,
    pub cpu_time: Duration,
    pub peak_memory_bytes: Option<u64>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

/// The sandbox could not do its job (not the program's fault): worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the run's files are invalid: {0}")]
    Files(String),
    #[error("the sandbox could not start: {0}")]
    Start(String),
    #[error("sandbox I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The isolation this host gives runs, decided once.
pub fn isolation() -> Isolation {
    static ISOLATION: OnceLock<Isolation> = OnceLock::new();
    *ISOLATION.get_or_init(cgroup::detect)
}

/// Whether this process may switch uids (and create cgroups): a worker is meant to run as
/// root; unprivileged (a developer's `cargo run`), runs keep the worker's uid, still inside
/// bubblewrap's namespaces, with rlimits only.
pub fn runs_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Largest file a compile step may write (a statically linked binary, a build cache entry).
const COMPILE_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Host uids for runs: each concurrent run has its own.
const UID_BASE: u32 = 20_000;
const UID_COUNT: u32 = 10_000;

struct Uid(u32);

impl Uid {
    fn take() -> Result<Self, SandboxError> {
        let mut used = used_uids();
        let free = (UID_BASE..UID_BASE + UID_COUNT)
            .find(|uid| !used.contains(uid))
            .ok_or_else(|| SandboxError::Start("no free sandbox uid".into()))?;
        used.insert(free);
        Ok(Self(free))
    }
}

impl Drop for Uid {
    fn drop(&mut self) {
        used_uids().remove(&self.0);
    }
}

fn used_uids() -> std::sync::MutexGuard<'static, HashSet<u32>> {
    static USED: OnceLock<Mutex<HashSet<u32>>> = OnceLock::new();
    USED.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A relative path that stays inside its directory.
fn safe_path(path: &str) -> Result<PathBuf, SandboxError> {
    let candidate = Path::new(path);
    let ok = !path.is_empty()
        && candidate
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(candidate.to_path_buf())
    } else {
        Err(SandboxError::Files(format!(
            "{path:?} is not a relative path"
        )))
    }
}

/// Write the files into a new directory readable by the sandbox user.
fn materialise(spec: &RunSpec) -> Result<tempfile::TempDir, SandboxError> {
    safe_path(&spec.entry)?;
    let dir = tempfile::Builder::new()
        .prefix("codecrafter-run-")
        .tempdir()?;
    set_mode(dir.path(), 0o755)?;
    for (path, contents) in &spec.files {
        let relative = safe_path(path)?;
        let target = dir.path().join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
            let mut ancestor = parent;
            while ancestor != dir.path() {
                set_mode(ancestor, 0o755)?;
                match ancestor.parent() {
                    Some(up) => ancestor = up,
                    None => break,
                }
            }
        }
        // create_new: a second file of the same path (or a crafted one) cannot overwrite.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)?;
        std::io::Write::write_all(&mut file, contents)?;
        set_mode(&target, 0o644)?;
    }
    Ok(dir)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Quote for `sh`.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Run `spec` with `bwrap`, sending output to `output` as it comes, until it ends, hits a
/// limit, or `cancel` turns true.
pub async fn run(
    bwrap: &Path,
    spec: RunSpec,
    output: mpsc::UnboundedSender<OutputChunk>,
    mut cancel: watch::Receiver<bool>,
) -> Result<Outcome, SandboxError> {
    let plan = languages::plan(spec.language, &spec.entry)
        .ok_or_else(|| SandboxError::Start(format!("{:?} is not installed", spec.language)))?;
    let limits = spec.limits;
    let (wall, cpu) = if plan.compile.is_some() {
        (
            limits.wall + limits.compile_wall,
            limits.cpu + limits.compile_cpu,
        )
    } else {
        (limits.wall, limits.cpu)
    };
    let dir = materialise(&spec)?;
    let uid = Uid::take()?;
    let isolation = isolation();
    let group = cgroup::Group::create(isolation, limits.memory_bytes, limits.processes)
        .map_err(|e| SandboxError::Start(format!("cgroup: {e}")))?;

    // The program's own file-size limit is set (in 512-byte blocks) right before it starts,
    // after a compile step that may write larger files (binaries, caches).
    let blocks = limits.file_bytes.div_ceil(512).max(1);
    let script = match &plan.compile {
        Some(compile) => format!(
            "cp -R /src/. /work/ && {compile} && ulimit -f {blocks} && exec {}",
            plan.run
        ),
        None => format!("cp -R /src/. /work/ && exec {}", plan.run),
    };
    let fsize = if plan.compile.is_some() {
        limits.file_bytes.max(COMPILE_FILE_BYTES)
    } else {
        limits.file_bytes
    };
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(
        r#"while [ "$1" != "--" ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@""#,
    );
    command.arg("sh");
    for procs in group.procs_files() {
        command.arg(procs);
    }
    command.arg("--");
    let cpu_secs = cpu.as_secs().max(1) + u64::from(cpu.subsec_nanos() > 0);
    command.args([
        "/usr/bin/prlimit".to_owned(),
        format!("--nproc={}", limits.processes),
        // Soft limit: SIGXCPU; the hard one a second later: SIGKILL for those who ignore it.
        format!("--cpu={cpu_secs}:{}", cpu_secs + 1),
        format!("--fsize={fsize}"),
        "--core=0".to_owned(),
        "--nofile=256".to_owned(),
    ]);
    if isolation == Isolation::Rlimits {
        // No cgroup: bound the address space instead (too tight for the JVM and Node,
        // which reserve much more than they use; see `languages`).
        command.arg(format!("--as={}", limits.memory_bytes));
    }
    command.arg("--");
    if runs_as_root() {
        command.args([
            "/usr/bin/setpriv",
            &format!("--reuid={}", uid.0),
            &format!("--regid={}", uid.0),
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]);
    }
    command.arg(bwrap);
    command.args(bwrap_args(dir.path(), limits, &plan.extra_binds));
    command.args(["/bin/sh", "-c", &script]);
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| SandboxError::Start(format!("cannot start the sandbox: {e}")))?;
    let mut stdin = child.stdin.take();
    let input = spec.stdin.clone();
    let feeder = tokio::spawn(async move {
        if let Some(stdin) = stdin.as_mut() {
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        }
    });
    let (over_tx, mut over_rx) = mpsc::channel::<()>(2);
    let readers = [false, true].map(|stderr| {
        let pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>> = if stderr {
            child.stderr.take().map(|p| Box::new(p) as _)
        } else {
            child.stdout.take().map(|p| Box::new(p) as _)
        };
        let output = output.clone();
        let over = over_tx.clone();
        let cap = usize::try_from(limits.output_bytes).unwrap_or(usize::MAX);
        tokio::spawn(read_stream(pipe, stderr, output, over, cap))
    });
    drop(over_tx);

    #[derive(PartialEq)]
    enum Ended {
        Wall,
        Output,
        Cancelled,
    }
    let deadline = tokio::time::sleep(wall);
    tokio::pin!(deadline);
    let mut ended = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = &mut deadline, if ended.is_none() => {
                ended = Some(Ended::Wall);
                kill(&mut child, &group).await;
            }
            Some(()) = over_rx.recv(), if ended.is_none() => {
                ended = Some(Ended::Output);
                kill(&mut child, &group).await;
            }
            changed = cancel.changed(), if ended.is_none() => {
                if changed.is_err() || *cancel.borrow() {
                    ended = Some(Ended::Cancelled);
                    kill(&mut child, &group).await;
                }
            }
        }
    };
    let wall_time = started.elapsed();
    group.kill_all().await;
    feeder.abort();
    let mut truncated = [false, false];
    let mut stderr_text = Vec::new();
    for (i, reader) in readers.into_iter().enumerate() {
        if let Ok(Ok(read)) = tokio::time::timeout(Duration::from_secs(2), reader).await {
            truncated[i] = read.truncated;
            if i == 1 {
                stderr_text = read.head;
            }
        }
    }
    let usage = group.usage();
    drop(group);
    drop(uid);
    drop(dir);

    let (exit_code, signal) = exit_of(status);
    // bubblewrap itself failed (not the program): an infrastructure failure.
    let wrapper_failed = [&b"bwrap: "[..], b"setpriv: ", b"prlimit: ", b"sh: "]
        .iter()
        .any(|prefix| stderr_text.starts_with(prefix));
    if ended.is_none() && matches!(exit_code, Some(1 | 126 | 127)) && wrapper_failed {
        return Err(SandboxError::Start(
            String::from_utf8_lossy(&stderr_text).trim().to_owned(),
        ));
    }
    if exit_code == Some(125) && stderr_text.is_empty() && ended.is_none() {
        return Err(SandboxError::Start(
            "could not join the run's cgroup".into(),
        ));
    }
    let status = match ended {
        Some(Ended::Cancelled) => Status::Cancelled,
        Some(Ended::Output) => Status::OutputLimit,
        Some(Ended::Wall) => Status::TimedOut,
        _ if usage.memory_limit_hit && signal == Some(9) => Status::MemoryLimit,
        // SIGXCPU, or the hard CPU limit's SIGKILL once the soft one was ignored.
        _ if signal == Some(24) || (signal == Some(9) && usage.cpu >= cpu.mul_f64(0.95)) => {
            Status::TimedOut
        }
        _ if exit_code == Some(0) => Status::Succeeded,
        _ => Status::Failed,
    };
    Ok(Outcome {
        status,
        exit_code,
        signal,
        wall_time,
        cpu_time: usage.cpu,
        peak_memory_bytes: usage.peak_memory,
        stdout_truncated: truncated[0],
        stderr_truncated: truncated[1],
    })
}

/// bubblewrap reports a program killed by signal N as exit code 128 + N.
fn exit_of(status: std::process::ExitStatus) -> (Option<i32>, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        return (None, Some(signal));
    }
    match status.code() {
        Some(code) if (129..=159).contains(&code) => (Some(code), Some(code - 128)),
        code => (code, None),
    }
}

async fn kill(child: &mut tokio::process::Child, group: &cgroup::Group) {
    let _ = child.start_kill();
    group.kill_all().await;
}

fn bwrap_args(src: &Path, limits: Limits, extra: &[(PathBuf, String)]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ]
    .map(str::to_owned)
    .to_vec();
    for etc in [
        "/etc/alternatives",
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/etc/java-17-openjdk",
        "/etc/localtime",
    ] {
        if Path::new(etc).exists() {
            args.extend(["--ro-bind".into(), etc.into(), etc.into()]);
        }
    }
    for (host, inside) in extra {
        args.extend([
            "--ro-bind".into(),
            host.display().to_string(),
            inside.clone(),
        ]);
    }
    let work_bytes = limits
        .memory_bytes
        .clamp(16 * 1024 * 1024, 512 * 1024 * 1024);
    args.extend([
        "--size".into(),
        (16 * 1024 * 1024).to_string(),
        "--tmpfs".into(),
        "/tmp".into(),
        "--size".into(),
        work_bytes.to_string(),
        "--tmpfs".into(),
        "/work".into(),
        "--ro-bind".into(),
        src.display().to_string(),
        "/src".into(),
        "--chdir".into(),
        "/work".into(),
        "--clearenv".into(),
        "--setenv".into(),
        "PATH".into(),
        "/usr/local/bin:/usr/bin:/bin".into(),
        "--setenv".into(),
        "HOME".into(),
        "/work".into(),
        "--setenv".into(),
        "LANG".into(),
        "C.UTF-8".into(),
        "--setenv".into(),
        "TMPDIR".into(),
        "/tmp".into(),
        "--uid".into(),
        "1000".into(),
        "--gid".into(),
        "1000".into(),
        "--hostname".into(),
        "sandbox".into(),
    ]);
    args
}

struct Read {
    truncated: bool,
    /// The first bytes (to recognise bubblewrap's own errors).
    head: Vec<u8>,
}

async fn read_stream(
    pipe: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>,
    stderr: bool,
    output: mpsc::UnboundedSender<OutputChunk>,
    over: mpsc::Sender<()>,
    cap: usize,
) -> Read {
    let mut read = Read {
        truncated: false,
        head: Vec::new(),
    };
    let Some(mut pipe) = pipe else { return read };
    let mut total = 0usize;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => return read,
            Ok(n) => n,
        };
        if read.head.len() < 256 {
            let take = n.min(256 - read.head.len());
            read.head.extend_from_slice(&buffer[..take]);
        }
        let room = cap.saturating_sub(total);
        if room > 0 {
            let keep = n.min(room);
            let _ = output.send(OutputChunk {
                stderr,
                data: buffer[..keep].to_vec(),
            });
        }
        total = total.saturating_add(n);
        if total > cap && !read.truncated {
            read.truncated = true;
            let _ = over.send(()).await;
        }
    }
}
