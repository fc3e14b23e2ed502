//! The sandbox that runs untrusted code.
//!
//! Every run gets:
//! - a fresh run directory on the host (`codecrafter-run-<worker pid>-…`, mode 0700, owned
//!   by the run's uid), holding its files, mounted read-only at `/src` and copied by the run
//!   into `/work`, a size-limited tmpfs (so filling the disk fills only that, and its pages
//!   count against the run's memory), and a generated `/etc/passwd` and `/etc/group`;
//! - bubblewrap: new user, PID, network, IPC, UTS and cgroup namespaces, no nested user
//!   namespaces (`--disable-userns`), read-only `/usr` and the few `/etc` files toolchains
//!   need (never `/etc/shadow`, `/root`, the server's data or its environment), a private
//!   `/tmp`, `--die-with-parent`, `--new-session`, a clean environment, and seccomp filters
//!   (see `seccomp`) denying ptrace, the keyring, BPF, io_uring, mounts, namespaces…;
//! - a supervisor as PID 1 (see `supervisor`) that closes every inherited descriptor but
//!   0–2, and reports the exact exit code or signal of the compile step and of the program
//!   on a channel the program cannot reach;
//! - an unprivileged host uid no other concurrent run on the host has (see `uids`), so
//!   `RLIMIT_NPROC` is per run;
//! - limits: memory, processes and CPU bandwidth through cgroups (see `cgroup`) when the
//!   process may create them, else rlimits; the CPU time of the whole process tree from the
//!   cgroup, watched here; file size and core dumps through rlimits; wall time and output
//!   size watched here. A compile step has its own wall and CPU budget; the program's
//!   limits start when it starts. Any limit kills the whole process tree.
//!
//! The chain is the launcher (see `launcher`: joins the cgroups, sets the rlimits, opens the
//! status file and the filters, drops to the run's uid) -> `bwrap` -> the supervisor (copies
//! the files; `sh` only for a compile step) -> the program. No `unsafe`.
//!
//! All of it up to the supervisor depends only on the run's language and limits, so a
//! [`Sandbox`] is started before its run is known and told what to run when it is; a worker
//! keeps one started ahead for each run it may take (see `warm`).

mod cgroup;
mod languages;
mod launcher;
mod seccomp;
mod supervisor;
mod uids;
mod warm;

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

pub use crate::limits::RunLimits;
pub use cgroup::Isolation;
pub use languages::{Language, LanguageInfo, is_available, languages};
pub use seccomp::denied as denied_syscalls;
pub use warm::Warm;

/// One run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub language: Language,
    /// Relative paths and contents.
    pub files: Vec<(String, Vec<u8>)>,
    /// The file to run (relative).
    pub entry: String,
    pub stdin: Vec<u8>,
    pub limits: RunLimits,
}

/// A piece of output, in the order it was read. Chunks end on UTF-8 character boundaries
/// (bytes that are not UTF-8 pass through as they are).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    pub stderr: bool,
    pub data: Vec<u8>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    /// A non-zero exit, a signal, a compile error, or files that cannot be laid out.
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
    /// The program's exit code (0–255) when it exited; the compiler's when compiling failed.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// The program's wall time (the whole run's when it never started).
    pub wall_time: Duration,
    /// The program's CPU time, all its processes together where cgroups count it.
    pub cpu_time: Duration,
    pub peak_memory_bytes: Option<u64>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// Why the run ended without running the program, when that is the run's fault.
    pub error: Option<String>,
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

/// The protections runs get on this host, by name.
pub fn protections() -> Vec<&'static str> {
    let mut active = vec![
        "user, PID, network, IPC, UTS and cgroup namespaces",
        "no nested user namespaces",
        "seccomp filter",
        "inherited descriptors closed",
        "exact exit status from a supervisor the program cannot reach",
        "read-only system, private /tmp and /work",
        "generated /etc/passwd and /etc/group",
    ];
    if runs_as_root() {
        active.push("own host uid per run");
        active.push("run directory private to the run's uid");
    }
    match isolation() {
        Isolation::CgroupV2 | Isolation::CgroupV1 => {
            active.push("cgroup memory, process and CPU limits");
            active.push("CPU time of the whole process tree");
        }
        Isolation::Rlimits => active.push("rlimits only (no cgroups)"),
    }
    active
}

/// Whether the kernel expedites RCU grace periods (`/sys/kernel/rcu_expedited`), when it
/// says. A run's start waits for several (joining its cgroups, bubblewrap's mount namespace):
/// measured on a two-core host, a trivial run's sandbox took about 40 ms with normal grace
/// periods and 33 ms with expedited ones (BENCHMARKS.md). The host's choice, not this process's.
pub fn expedited_grace_periods() -> Option<bool> {
    std::fs::read_to_string("/sys/kernel/rcu_expedited")
        .ok()
        .map(|text| text.trim() != "0")
}

/// Whether this process may switch uids (and create cgroups): a worker is meant to run as
/// root; unprivileged (a developer's `cargo run`), runs keep the worker's uid, still inside
/// bubblewrap's namespaces, with rlimits only.
pub fn runs_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Remove what workers that died left behind: run directories and cgroups whose worker pid
/// is gone. Call once when a worker starts.
pub fn remove_leftovers() {
    let temp = std::env::temp_dir();
    if let Ok(read) = std::fs::read_dir(&temp) {
        for entry in read.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let dead = name
                .strip_prefix(RUN_DIR_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
                .is_some_and(|pid| !Path::new("/proc").join(pid).exists());
            if dead && std::fs::remove_dir_all(entry.path()).is_ok() {
                tracing::info!(dir = %entry.path().display(), "removed a dead worker's run directory");
            }
        }
    }
    cgroup::remove_leftovers();
}

/// Largest file a compile step may write (a statically linked binary, a build cache entry).
const COMPILE_FILE_BYTES: u64 = 256 * 1024 * 1024;

const RUN_DIR_PREFIX: &str = "codecrafter-run-";

/// How often the status file and the CPU time are looked at while a run goes.
const WATCH: Duration = Duration::from_millis(10);

/// A relative path that stays inside its directory (and has no NUL, which no file name can
/// hold, and which ends a field of what the supervisor is told to run).
fn safe_path(path: &str) -> Result<PathBuf, SandboxError> {
    let candidate = Path::new(path);
    let ok = !path.is_empty()
        && !path.contains('\0')
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

/// A file whose path is also a folder of another file (`a` and `a/b.py`), if any.
fn conflicting_paths(files: &[(String, Vec<u8>)]) -> Option<(String, String)> {
    let paths: std::collections::BTreeSet<PathBuf> =
        files.iter().map(|(p, _)| PathBuf::from(p)).collect();
    for (path, _) in files {
        let mut ancestor = Path::new(path).parent();
        while let Some(dir) = ancestor.filter(|d| !d.as_os_str().is_empty()) {
            if paths.contains(dir) {
                return Some((dir.display().to_string(), path.clone()));
            }
            ancestor = dir.parent();
        }
    }
    None
}

/// The run's directory on the host and the files the launcher opens.
struct RunDir {
    dir: tempfile::TempDir,
    /// How many seccomp filters it holds (`seccomp-<n>.bpf`).
    filters: usize,
}

impl RunDir {
    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Give `path` mode `mode` and, when runs have uids of their own, to the run's uid.
fn own(path: &Path, mode: u32, uid: Option<u32>) -> std::io::Result<()> {
    set_mode(path, mode)?;
    if let Some(uid) = uid {
        std::os::unix::fs::chown(path, Some(uid), Some(uid))?;
    }
    Ok(())
}

/// A new directory private to the run's uid, with what the sandbox starts with; the run's
/// files come with the run (see [`write_files`]).
fn run_dir(uid: Option<u32>) -> Result<RunDir, SandboxError> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{RUN_DIR_PREFIX}{}-", std::process::id()))
        .tempdir()?;
    own(dir.path(), 0o700, uid)?;
    let src = dir.path().join("src");
    std::fs::create_dir(&src)?;
    own(&src, 0o700, uid)?;
    // Who the run is, for tools that look themselves up (and nothing about the host's users).
    for (name, text) in [
        (
            "passwd",
            "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\nsandbox:x:1000:1000:sandbox:/work:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        ),
        ("group", "root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text)?;
        own(&path, 0o644, uid)?;
    }
    // Only the launcher (root) opens these; the run never sees the host's directory.
    let filters = seccomp::filters().map_err(|e| SandboxError::Start(format!("seccomp: {e}")))?;
    for (n, filter) in filters.iter().enumerate() {
        let path = dir.path().join(format!("seccomp-{n}.bpf"));
        std::fs::write(&path, filter)?;
        set_mode(&path, 0o600)?;
    }
    let status = dir.path().join("status");
    std::fs::write(&status, b"")?;
    set_mode(&status, 0o600)?;
    Ok(RunDir {
        dir,
        filters: filters.len(),
    })
}

/// Write the run's files into the directory the sandbox sees (read-only) as `/src`.
fn write_files(dir: &RunDir, spec: &RunSpec, uid: Option<u32>) -> Result<(), SandboxError> {
    safe_path(&spec.entry)?;
    let src = dir.src();
    for (path, contents) in &spec.files {
        let relative = safe_path(path)?;
        let target = src.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
            let mut ancestor = parent;
            while ancestor != src {
                own(ancestor, 0o700, uid)?;
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
        own(&target, 0o600, uid)?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// The descriptors the launcher opens: the supervisor's status file, then the filters.
const STATUS_FD: u32 = 6;
const FIRST_FILTER_FD: u32 = 7;

/// A Perl script of the sandbox (the launcher's, the supervisor's) with the numbers of those
/// descriptors in place of their names, made once per process rather than once per run.
fn with_descriptors(script: &'static str, made: &'static OnceLock<String>) -> &'static str {
    made.get_or_init(|| {
        script
            .replace("FIRST_FILTER_FD", &FIRST_FILTER_FD.to_string())
            .replace("STATUS_FD", &STATUS_FD.to_string())
    })
}

/// A run that ends before it starts, the run's own fault (files that cannot be laid out).
fn refused(output: &mpsc::UnboundedSender<OutputChunk>, reason: String) -> Outcome {
    let _ = output.send(OutputChunk {
        stderr: true,
        data: format!("{reason}\n").into_bytes(),
    });
    Outcome {
        status: Status::Failed,
        exit_code: None,
        signal: None,
        wall_time: Duration::ZERO,
        cpu_time: Duration::ZERO,
        peak_memory_bytes: None,
        stdout_truncated: false,
        stderr_truncated: false,
        error: Some(reason),
    }
}

/// The wall and CPU budget of the prepare step (copy, compile): its own when the language
/// compiles; a copy alone is counted against the program's.
fn prepare_budget(limits: RunLimits, compiled: bool) -> (Duration, Duration) {
    if compiled {
        (limits.compile_wall(), limits.compile_cpu())
    } else {
        (limits.wall(), limits.cpu())
    }
}

/// Run `spec` with `bwrap`, sending output to `output` as it comes, until it ends, hits a
/// limit, or `cancel` turns true. A sandbox started for it alone; a worker's runs take one
/// started ahead (see [`Warm`]).
pub async fn run(
    bwrap: &Path,
    spec: RunSpec,
    output: mpsc::UnboundedSender<OutputChunk>,
    cancel: watch::Receiver<bool>,
) -> Result<Outcome, SandboxError> {
    Sandbox::start(bwrap, spec.language, spec.limits)?
        .run(spec, output, cancel)
        .await
}

/// A sandbox started before its run is known: the run's uid, directory, cgroups, rlimits
/// and namespaces are in place and its supervisor waits to be told what to run (see
/// `supervisor`). Starting is most of a short run's time (the launcher's and bubblewrap's
/// execs, joining the cgroups, which waits for an RCU grace period, the mount namespace);
/// nothing of the run is in it until [`Sandbox::run`], and it serves one run only.
pub struct Sandbox {
    language: Language,
    limits: RunLimits,
    child: tokio::process::Child,
    group: cgroup::Group,
    dir: RunDir,
    uid: uids::Uid,
}

impl Sandbox {
    /// Start a sandbox for a run in `language` under `limits`.
    pub fn start(
        bwrap: &Path,
        language: Language,
        limits: RunLimits,
    ) -> Result<Self, SandboxError> {
        // Whether the language compiles decides the launcher's limits: its plan for its
        // usual entry says (the run's own plan comes with the run).
        let compiled = languages::plan(language, language.source_file())
            .ok_or_else(|| SandboxError::Start(format!("{language:?} is not installed")))?
            .compile
            .is_some();
        if !Path::new(supervisor::PERL).exists() {
            return Err(SandboxError::Start(format!(
                "{} (the sandbox's supervisor) is missing",
                supervisor::PERL
            )));
        }
        let (_, prepare_cpu) = prepare_budget(limits, compiled);
        let uid = uids::Uid::take()?;
        let root = runs_as_root();
        let dir = run_dir(root.then_some(uid.uid))?;
        let group = cgroup::Group::create(cgroup::GroupLimits {
            memory_bytes: limits.memory_bytes,
            processes: limits.processes,
            cpu_cores: limits.cpu_cores,
        })
        .map_err(|e| SandboxError::Start(format!("cgroup: {e}")))?;

        // The program's file-size limit (whole 512-byte blocks, as `ulimit -f` counted them)
        // and, as a per-process backstop to the cgroup's count, its CPU limit are set right
        // before it starts, after a compile step that may write larger files and use its own
        // CPU budget.
        let program_file_bytes = limits.file_bytes.div_ceil(512).max(1) * 512;
        let program_cpu_secs = whole_secs(limits.cpu());
        let fsize = if compiled {
            limits.file_bytes.max(COMPILE_FILE_BYTES)
        } else {
            limits.file_bytes
        };
        let filters = dir.filters;
        // Per process, a backstop: the cgroup counts the whole tree (watched while it runs).
        let cpu_secs = whole_secs(prepare_cpu + limits.cpu());
        let mut rlimits = vec![
            launcher::limit(
                libc::RLIMIT_NPROC,
                limits.processes.into(),
                limits.processes.into(),
            ),
            // Soft limit: SIGXCPU; the hard one a second later: SIGKILL for those who ignore it.
            launcher::limit(libc::RLIMIT_CPU, cpu_secs, cpu_secs + 1),
            launcher::limit(libc::RLIMIT_FSIZE, fsize, fsize),
            launcher::limit(libc::RLIMIT_CORE, 0, 0),
            launcher::limit(libc::RLIMIT_NOFILE, 256, 256),
        ];
        if isolation() == Isolation::Rlimits {
            // No cgroup: bound the address space instead (too tight for the JVM and Node,
            // which reserve much more than they use; see `languages`).
            rlimits.push(launcher::limit(
                libc::RLIMIT_AS,
                limits.memory_bytes,
                limits.memory_bytes,
            ));
        }
        let mut command = Command::new(supervisor::PERL);
        command
            .arg("-e")
            .arg(launcher::script())
            .arg(launcher::system_calls())
            .arg(dir.file("status"))
            .arg(dir.dir.path())
            .arg(filters.to_string())
            .arg(if root {
                uid.uid.to_string()
            } else {
                String::new()
            })
            .arg(rlimits.join(","))
            .args(group.join_files())
            .arg("--");
        command.arg(bwrap);
        command.args(bwrap_args(&dir, limits, filters));
        command
            .args([supervisor::PERL, "-e", supervisor::script()])
            .args([
                libc::SYS_close.to_string(),
                libc::SYS_prctl.to_string(),
                libc::SYS_prlimit64.to_string(),
                libc::RLIMIT_FSIZE.to_string(),
                libc::RLIMIT_CPU.to_string(),
                program_file_bytes.to_string(),
                program_cpu_secs.to_string(),
            ]);
        command
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| SandboxError::Start(format!("cannot start the sandbox: {e}")))?;
        Ok(Self {
            language,
            limits,
            child,
            group,
            dir,
            uid,
        })
    }

    /// Whether `spec` may run here: it was started for the run's language and limits.
    pub fn fits(&self, spec: &RunSpec) -> bool {
        self.language == spec.language && self.limits == spec.limits
    }

    /// Whether it still waits for its run (nothing on the way failed).
    pub fn waiting(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stop it unused, and remove what it had.
    pub async fn discard(mut self) {
        kill(&mut self.child, &self.group).await;
        let _ = self.child.wait().await;
        self.group.kill_all().await;
    }

    /// Run `spec` (which must [`fit`](Self::fits)), sending output to `output` as it comes,
    /// until it ends, hits a limit, or `cancel` turns true.
    pub async fn run(
        self,
        spec: RunSpec,
        output: mpsc::UnboundedSender<OutputChunk>,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, SandboxError> {
        if !self.fits(&spec) {
            self.discard().await;
            return Err(SandboxError::Start(
                "the sandbox was started for another language or other limits".into(),
            ));
        }
        let Some(plan) = languages::plan(spec.language, &spec.entry) else {
            self.discard().await;
            return Err(SandboxError::Start(format!(
                "{:?} is not installed",
                spec.language
            )));
        };
        if let Some((file, inside)) = conflicting_paths(&spec.files) {
            self.discard().await;
            return Ok(refused(
                &output,
                format!(
                    "the project cannot be laid out: {file:?} is a file, but {inside:?} needs it to be a folder"
                ),
            ));
        }
        if let Err(error) = write_files(&self.dir, &spec, runs_as_root().then_some(self.uid.uid)) {
            self.discard().await;
            return Err(error);
        }
        let Self {
            mut child,
            group,
            dir,
            uid,
            limits,
            ..
        } = self;
        let (prepare_wall, prepare_cpu) = prepare_budget(limits, plan.compile.is_some());
        group.hand_over();

        // The supervisor reads what to run, then the program reads its input.
        let mut input = supervisor::order(plan.compile.as_deref(), &plan.run);
        input.extend_from_slice(&spec.stdin);
        let started = Instant::now();
        // What the sandbox used while it waited is not the run's.
        let cpu_before = group.cpu().unwrap_or_default();
        let mut stdin = child.stdin.take();
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

        #[derive(Clone, Copy, PartialEq)]
        enum Stopped {
            Wall,
            Cpu,
            Output,
            Cancelled,
        }
        let status_path = dir.file("status");
        let mut report = supervisor::Report::default();
        // The CPU used by the time the program started (the prepare step's, and the
        // sandbox's while it waited).
        let mut prepare_cpu_used: Option<Duration> = None;
        let mut watch = tokio::time::interval(WATCH);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopped = None;
        loop {
            tokio::select! {
                status = child.wait() => { status?; break; }
                _ = watch.tick(), if stopped.is_none() => {
                    if let Ok(text) = std::fs::read(&status_path) {
                        report.update(&text);
                    }
                    let cpu = group.cpu();
                    if report.run_started.is_some() && prepare_cpu_used.is_none() {
                        prepare_cpu_used = Some(cpu.unwrap_or_default());
                    }
                    let over = match (report.run_started, prepare_cpu_used) {
                        (Some(at), Some(before)) => {
                            if at.elapsed() > limits.wall() {
                                Some(Stopped::Wall)
                            } else if cpu.is_some_and(|c| c.saturating_sub(before) > limits.cpu()) {
                                Some(Stopped::Cpu)
                            } else {
                                None
                            }
                        }
                        _ => {
                            if started.elapsed() > prepare_wall {
                                Some(Stopped::Wall)
                            } else if cpu.is_some_and(|c| c.saturating_sub(cpu_before) > prepare_cpu) {
                                Some(Stopped::Cpu)
                            } else {
                                None
                            }
                        }
                    };
                    if let Some(reason) = over {
                        stopped = Some(reason);
                        kill(&mut child, &group).await;
                    }
                }
                Some(()) = over_rx.recv(), if stopped.is_none() => {
                    stopped = Some(Stopped::Output);
                    kill(&mut child, &group).await;
                }
                changed = cancel.changed(), if stopped.is_none() => {
                    if changed.is_err() || *cancel.borrow() {
                        stopped = Some(Stopped::Cancelled);
                        kill(&mut child, &group).await;
                    }
                }
            }
        }
        let ended_at = Instant::now();
        let cpu_total = group.cpu();
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
        if let Ok(text) = std::fs::read(&status_path) {
            report.update(&text);
        }
        let usage = group.usage();
        // Removed once the outcome is on its way rather than before (a system call per
        // cgroup and per file, about half a millisecond of every run's end); the uid is free
        // again after they are gone.
        tokio::task::spawn_blocking(move || drop((group, dir, uid)));

        if !report.ready && stopped.is_none() {
            // The sandbox never came up: its own failure (the launcher, bubblewrap, the
            // cgroups), whatever a program would have printed, since none ran.
            let said = String::from_utf8_lossy(&stderr_text).trim().to_owned();
            return Err(SandboxError::Start(if said.is_empty() {
                "the sandbox ended before its supervisor started".to_owned()
            } else {
                said
            }));
        }
        let program_ran = report.run_started.is_some();
        let ended = if program_ran {
            report.ran
        } else {
            report.prepared
        };
        let (exit_code, signal) = match ended {
            Some(supervisor::Ended::Exit(code)) => (Some(code), None),
            Some(supervisor::Ended::Signal(signal)) => (None, Some(signal)),
            None => (None, None),
        };
        let (wall_time, cpu_time) = match report.run_started {
            Some(at) => (
                ended_at.saturating_duration_since(at),
                cpu_total
                    .zip(prepare_cpu_used)
                    .map_or(Duration::ZERO, |(total, before)| {
                        total.saturating_sub(before)
                    }),
            ),
            None => (
                ended_at - started,
                cpu_total.unwrap_or_default().saturating_sub(cpu_before),
            ),
        };
        let cpu_used = cpu_time;
        let status = match stopped {
            Some(Stopped::Cancelled) => Status::Cancelled,
            Some(Stopped::Output) => Status::OutputLimit,
            Some(Stopped::Wall | Stopped::Cpu) => Status::TimedOut,
            // The memory cgroup killed a process and the run did not succeed: whoever died
            // (the program, a child of it, the compiler under its driver), memory is the
            // cause.
            None if usage.memory_limit_hit && ended != Some(supervisor::Ended::Exit(0)) => {
                Status::MemoryLimit
            }
            // The supervisor vanished without a word and no limit explains it.
            None if ended.is_none() => {
                return Err(SandboxError::Start(
                    "the sandbox's supervisor ended without reporting".into(),
                ));
            }
            // SIGXCPU, or the hard CPU limit's SIGKILL once the soft one was ignored.
            None if signal == Some(24) => Status::TimedOut,
            None if signal == Some(9) && cpu_used >= limits.cpu().mul_f64(0.95) => Status::TimedOut,
            None if program_ran && exit_code == Some(0) => Status::Succeeded,
            None => Status::Failed,
        };
        Ok(Outcome {
            status,
            exit_code,
            signal,
            wall_time,
            cpu_time,
            peak_memory_bytes: usage.peak_memory,
            stdout_truncated: truncated[0],
            stderr_truncated: truncated[1],
            error: None,
        })
    }
}

/// Whole seconds, rounded up, at least one (rlimits count seconds).
fn whole_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

async fn kill(child: &mut tokio::process::Child, group: &cgroup::Group) {
    let _ = child.start_kill();
    group.kill_all().await;
}

fn bwrap_args(dir: &RunDir, limits: RunLimits, filters: usize) -> Vec<String> {
    let mut args: Vec<String> = [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--as-pid-1",
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
    for name in ["passwd", "group"] {
        args.extend([
            "--ro-bind".into(),
            dir.file(name).display().to_string(),
            format!("/etc/{name}"),
        ]);
    }
    for n in 0..filters {
        args.extend([
            "--add-seccomp-fd".into(),
            (FIRST_FILTER_FD + n as u32).to_string(),
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
        dir.src().display().to_string(),
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

/// Where `bytes` can be cut without splitting a UTF-8 character: before a trailing
/// sequence that is still incomplete (anything else, valid or not, is passed on).
fn utf8_boundary(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for i in (len.saturating_sub(4)..len).rev() {
        let byte = bytes[i];
        if byte & 0xC0 == 0x80 {
            continue;
        }
        let needed = match byte {
            0xF0..=0xF7 => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => 1,
        };
        return if i + needed > len { i } else { len };
    }
    len
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
    // The start of a character whose other bytes have not arrived yet.
    let mut pending: Vec<u8> = Vec::new();
    let send = |data: Vec<u8>| {
        if !data.is_empty() {
            let _ = output.send(OutputChunk { stderr, data });
        }
    };
    loop {
        let n = match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                send(std::mem::take(&mut pending));
                return read;
            }
            Ok(n) => n,
        };
        if read.head.len() < 256 {
            let take = n.min(256 - read.head.len());
            read.head.extend_from_slice(&buffer[..take]);
        }
        let room = cap.saturating_sub(total);
        if room > 0 {
            pending.extend_from_slice(&buffer[..n.min(room)]);
            let cut = if n >= room {
                pending.len()
            } else {
                utf8_boundary(&pending)
            };
            let rest = pending.split_off(cut);
            send(std::mem::replace(&mut pending, rest));
        }
        total = total.saturating_add(n);
        if total > cap && !read.truncated {
            read.truncated = true;
            let _ = over.send(()).await;
        }
    }
}
