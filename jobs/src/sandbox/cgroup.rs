//! Control groups for runs: memory, process and CPU limits, CPU time of the whole process
//! tree, peak memory, and killing everything a run started.
//!
//! Runs' cgroups live below the worker's own cgroup (as `/proc/self/cgroup` names it), so a
//! container's or a service manager's limits bind them too:
//! - cgroup v2 (first-class): the worker's cgroup delegates `memory pids cpu` to its
//!   children (when it holds processes itself, the worker first moves into a leaf
//!   `codecrafter-worker-<pid>`, as v2 allows no processes beside enabled controllers), and
//!   each run is `codecrafter-runs-<pid>/run-<id>`;
//! - cgroup v1 (fallback): `codecrafter/run-<pid>-<id>` below the worker's own cgroup in each
//!   of the `memory`, `pids`, `cpu` and `cpuacct` hierarchies.
//!
//! Names carry the worker's pid, so at start-up a worker removes what workers that died
//! left behind (their pid is gone) and nothing that belongs to a live one.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// What bounds a run's memory, processes and CPU on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// A cgroup v2 per run (memory.max, memory.swap.max, pids.max, cpu.max).
    CgroupV2,
    /// A cgroup per run in the v1 `memory`, `pids`, `cpu` and `cpuacct` hierarchies.
    CgroupV1,
    /// No cgroups could be created: address-space, process and CPU rlimits only.
    Rlimits,
}

impl Isolation {
    pub fn name(self) -> &'static str {
        match self {
            Self::CgroupV2 => "cgroup v2",
            Self::CgroupV1 => "cgroup v1",
            Self::Rlimits => "rlimits",
        }
    }
}

const ROOT: &str = "/sys/fs/cgroup";

/// Where this worker's runs' cgroups go, decided once.
#[derive(Clone, Debug)]
struct Layout {
    isolation: Isolation,
    /// v2: one parent. v1: the parent in each hierarchy, memory first, then pids, then the
    /// CPU ones if present.
    parents: Vec<(&'static str, PathBuf)>,
}

fn layout() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        v2().or_else(v1).unwrap_or(Layout {
            isolation: Isolation::Rlimits,
            parents: Vec::new(),
        })
    })
}

/// Decide once what this host allows.
pub fn detect() -> Isolation {
    layout().isolation
}

/// The worker's own cgroup path in the hierarchy with `controller` (`""` for v2).
fn own_path(controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then(|| path.trim_start_matches('/').to_owned())
    })
}

fn v2() -> Option<Layout> {
    let root = Path::new(ROOT);
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
    if !["memory", "pids", "cpu"]
        .iter()
        .all(|c| controllers.split_whitespace().any(|have| have == *c))
    {
        return None;
    }
    let base = root.join(own_path("")?);
    let enable =
        |dir: &Path| std::fs::write(dir.join("cgroup.subtree_control"), "+memory +pids +cpu");
    if enable(&base).is_err() {
        // Processes in `base` itself (this one): move into a leaf, then delegate.
        let leaf = base.join(format!("codecrafter-worker-{}", std::process::id()));
        std::fs::create_dir_all(&leaf).ok()?;
        std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string()).ok()?;
        enable(&base).ok()?;
    }
    let parent = base.join(format!("codecrafter-runs-{}", std::process::id()));
    std::fs::create_dir_all(&parent).ok()?;
    enable(&parent).ok()?;
    Some(Layout {
        isolation: Isolation::CgroupV2,
        parents: vec![("", parent)],
    })
}

fn v1() -> Option<Layout> {
    let mut parents = Vec::new();
    let mut seen = Vec::new();
    for controller in ["memory", "pids", "cpu", "cpuacct"] {
        let mount = Path::new(ROOT).join(controller);
        let Ok(real) = mount.canonicalize() else {
            continue;
        };
        let Some(own) = own_path(controller) else {
            continue;
        };
        let parent = mount.join(own).join("codecrafter");
        let usable = std::fs::create_dir_all(&parent).is_ok() && writable(&parent);
        if !usable {
            continue;
        }
        // `cpu` and `cpuacct` are often one hierarchy: one directory serves both.
        if seen.contains(&real) {
            continue;
        }
        seen.push(real);
        parents.push((controller, parent));
    }
    let has = |c: &str| parents.iter().any(|(name, _)| *name == c);
    (has("memory") && has("pids")).then_some(Layout {
        isolation: Isolation::CgroupV1,
        parents,
    })
}

fn writable(parent: &Path) -> bool {
    let probe = parent.join(format!("probe-{}", uuid::Uuid::new_v4().simple()));
    let ok = std::fs::create_dir(&probe).is_ok();
    let _ = std::fs::remove_dir(&probe);
    ok
}

fn alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

/// The pid in a name `<prefix><pid>` or `<prefix><pid>-…`, if it is one.
fn pid_in<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(prefix)?;
    let pid = rest.split('-').next()?;
    (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then_some(pid)
}

fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    std::fs::read_dir(dir)
        .map(|read| {
            read.filter_map(Result::ok)
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILL to each pid (a cgroup's `cgroup.procs`); those already gone are skipped.
fn kill_pids<'a>(pids: impl Iterator<Item = &'a str>) {
    for pid in pids.filter_map(|p| p.parse::<i32>().ok()) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Kill what is left in a dead worker's run cgroup and remove it.
fn remove_group(dir: &Path) {
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    // Killed processes leave the group once the kernel has finished them, which on a busy
    // host takes a while; the group can only be removed after that.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let pids = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        kill_pids(pids.split_whitespace());
        if pids.trim().is_empty() && std::fs::remove_dir(dir).is_ok() {
            tracing::info!(cgroup = %dir.display(), "removed a dead worker's run cgroup");
            return;
        }
        if std::time::Instant::now() >= deadline {
            tracing::warn!(cgroup = %dir.display(), "cannot remove a dead worker's run cgroup");
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Remove the run cgroups of workers that died (SIGKILL, a crash) without removing them.
pub fn remove_leftovers() {
    let layout = layout();
    match layout.isolation {
        Isolation::Rlimits => {}
        Isolation::CgroupV1 => {
            for (_, parent) in &layout.parents {
                for (name, path) in entries(parent) {
                    if pid_in(&name, "run-").is_some_and(|pid| !alive(pid)) {
                        remove_group(&path);
                    }
                }
            }
        }
        Isolation::CgroupV2 => {
            let Some(base) = layout.parents.first().and_then(|(_, p)| p.parent()) else {
                return;
            };
            for (name, path) in entries(base) {
                if pid_in(&name, "codecrafter-runs-").is_some_and(|pid| !alive(pid)) {
                    for (_, run) in entries(&path) {
                        if run.is_dir() {
                            remove_group(&run);
                        }
                    }
                    let _ = std::fs::remove_dir(&path);
                }
                if pid_in(&name, "codecrafter-worker-").is_some_and(|pid| !alive(pid)) {
                    let _ = std::fs::remove_dir(&path);
                }
            }
        }
    }
}

/// Resource use of a finished run.
pub struct Usage {
    pub memory_limit_hit: bool,
    pub peak_memory: Option<u64>,
}

/// What one run's cgroup enforces.
#[derive(Clone, Copy, Debug)]
pub struct GroupLimits {
    pub memory_bytes: u64,
    pub processes: u32,
    /// CPU bandwidth, in cores (a fair share between concurrent runs).
    pub cpu_cores: f64,
}

/// The cgroups of one run; removed when dropped.
pub struct Group {
    isolation: Isolation,
    /// Memory (the one whose `cgroup.procs` lists the run's processes) first.
    dirs: Vec<(&'static str, PathBuf)>,
}

const CPU_PERIOD_US: u64 = 100_000;

#[derive(Clone, Copy)]
enum Weight {
    Lowest,
    Default,
}

impl Group {
    pub fn create(limits: GroupLimits) -> std::io::Result<Self> {
        let layout = layout();
        let mut group = Self {
            isolation: layout.isolation,
            dirs: Vec::new(),
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let quota = ((CPU_PERIOD_US as f64) * limits.cpu_cores.max(0.01)) as u64;
        match layout.isolation {
            Isolation::Rlimits => {}
            Isolation::CgroupV2 => {
                let Some((_, parent)) = layout.parents.first() else {
                    return Ok(group);
                };
                let dir = parent.join(format!("run-{id}"));
                std::fs::create_dir(&dir)?;
                group.dirs.push(("", dir.clone()));
                std::fs::write(dir.join("memory.max"), limits.memory_bytes.to_string())?;
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                std::fs::write(dir.join("pids.max"), limits.processes.to_string())?;
                std::fs::write(dir.join("cpu.max"), format!("{quota} {CPU_PERIOD_US}"))?;
            }
            Isolation::CgroupV1 => {
                let name = format!("run-{}-{id}", std::process::id());
                for (controller, parent) in &layout.parents {
                    let dir = parent.join(&name);
                    std::fs::create_dir(&dir)?;
                    group.dirs.push((controller, dir.clone()));
                    match *controller {
                        "memory" => {
                            let bytes = limits.memory_bytes.to_string();
                            std::fs::write(dir.join("memory.limit_in_bytes"), &bytes)?;
                            // Present with swap accounting only; with it, no swapping out.
                            let _ = std::fs::write(dir.join("memory.memsw.limit_in_bytes"), &bytes);
                        }
                        "pids" => {
                            std::fs::write(dir.join("pids.max"), limits.processes.to_string())?
                        }
                        _ => {
                            if dir.join("cpu.cfs_quota_us").exists() {
                                std::fs::write(
                                    dir.join("cpu.cfs_period_us"),
                                    CPU_PERIOD_US.to_string(),
                                )?;
                                std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
                            }
                        }
                    }
                }
            }
        }
        // Until its run is handed over, the lowest weight: a sandbox started ahead yields the
        // core to the run in hand wherever the two meet on one.
        group.set_cpu_weight(Weight::Lowest);
        Ok(group)
    }

    /// The run is handed over: its processes get the default CPU weight.
    pub fn hand_over(&self) {
        self.set_cpu_weight(Weight::Default);
    }

    /// The lowest CPU weight, or the default (v2's `cpu.weight` 1 or 100, v1's `cpu.shares`
    /// 2 or 1024), in the group of the cpu controller.
    fn set_cpu_weight(&self, weight: Weight) {
        let (controller, file, value) = match (self.isolation, weight) {
            (Isolation::Rlimits, _) => return,
            (Isolation::CgroupV2, Weight::Lowest) => ("", "cpu.weight", "1"),
            (Isolation::CgroupV2, Weight::Default) => ("", "cpu.weight", "100"),
            (Isolation::CgroupV1, Weight::Lowest) => ("cpu", "cpu.shares", "2"),
            (Isolation::CgroupV1, Weight::Default) => ("cpu", "cpu.shares", "1024"),
        };
        if let Some((_, dir)) = self.dirs.iter().find(|(c, _)| *c == controller) {
            let _ = std::fs::write(dir.join(file), value);
        }
    }

    /// The files the run's first process joins the run's cgroups through, by writing `0`
    /// (itself) into each.
    ///
    /// Under v1, `tasks`: the launcher is one thread, so moving that thread moves the process,
    /// and a thread moving itself is the one migration the kernel does without taking the
    /// global lock on every thread group (`cgroup_threadgroup_rwsem`), whose write side waits
    /// for an RCU grace period: measured here, 12 to 20 ms for the first write to
    /// `cgroup.procs` after a quiet second, 0.2 ms through `tasks`. Under v2, `cgroup.procs`
    /// (its `tasks` is gone, and a threaded subtree would be needed for `cgroup.threads`).
    pub fn join_files(&self) -> Vec<PathBuf> {
        let file = match self.isolation {
            Isolation::CgroupV1 => "tasks",
            _ => "cgroup.procs",
        };
        self.dirs.iter().map(|(_, d)| d.join(file)).collect()
    }

    fn pids(&self) -> Vec<String> {
        self.dirs
            .first()
            .and_then(|(_, d)| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|text| text.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// SIGKILL everything left in the run's cgroup.
    pub async fn kill_all(&self) {
        if let (Isolation::CgroupV2, Some((_, dir))) = (self.isolation, self.dirs.first())
            && std::fs::write(dir.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        for _ in 0..20 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            kill_pids(pids.iter().map(String::as_str));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// CPU time used so far by every process of the run, when the host accounts it.
    pub fn cpu(&self) -> Option<Duration> {
        let read = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file)).ok();
        match self.isolation {
            Isolation::Rlimits => None,
            Isolation::CgroupV2 => {
                let (_, dir) = self.dirs.first()?;
                read(dir, "cpu.stat")
                    .and_then(|t| field(&t, "usage_usec "))
                    .map(Duration::from_micros)
            }
            Isolation::CgroupV1 => self
                .dirs
                .iter()
                .find_map(|(_, dir)| read(dir, "cpuacct.usage"))
                .and_then(|t| t.trim().parse::<u64>().ok())
                .map(Duration::from_nanos),
        }
    }

    pub fn usage(&self) -> Usage {
        let read = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file)).ok();
        match (self.isolation, self.dirs.first()) {
            (Isolation::CgroupV2, Some((_, dir))) => Usage {
                memory_limit_hit: read(dir, "memory.events")
                    .and_then(|t| field(&t, "oom_kill "))
                    .is_some_and(|n| n > 0),
                peak_memory: read(dir, "memory.peak").and_then(|t| t.trim().parse().ok()),
            },
            (Isolation::CgroupV1, Some((_, memory))) => Usage {
                memory_limit_hit: read(memory, "memory.oom_control")
                    .and_then(|t| field(&t, "oom_kill "))
                    .is_some_and(|n| n > 0),
                peak_memory: read(memory, "memory.max_usage_in_bytes")
                    .and_then(|t| t.trim().parse().ok()),
            },
            _ => Usage {
                memory_limit_hit: false,
                peak_memory: None,
            },
        }
    }
}

fn field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse::<u64>().ok())
}

impl Drop for Group {
    fn drop(&mut self) {
        for (_, dir) in &self.dirs {
            // Emptied by `kill_all`; a straggler makes this fail, and the next worker to
            // start removes it (see `remove_leftovers`) once this one is gone.
            let _ = std::fs::remove_dir(dir);
        }
    }
}
