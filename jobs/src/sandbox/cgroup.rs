//! Control groups for runs: memory and process limits, peak memory, CPU time, and killing a
//! whole process tree.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// What bounds a run's memory and processes on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// A cgroup v2 per run (memory.max, pids.max).
    CgroupV2,
    /// A cgroup per run in the v1 `memory`, `pids` (and `cpuacct`) hierarchies.
    CgroupV1,
    /// No cgroups could be created: address-space and process rlimits only.
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
const PARENT: &str = "codecrafter";

fn writable_parent(hierarchy: &Path) -> bool {
    let parent = hierarchy.join(PARENT);
    let probe = parent.join(format!("probe-{}", uuid::Uuid::new_v4().simple()));
    let ok = std::fs::create_dir_all(&probe).is_ok();
    let _ = std::fs::remove_dir(&probe);
    ok
}

/// Decide once what this host allows.
pub fn detect() -> Isolation {
    let root = Path::new(ROOT);
    if let Ok(controllers) = std::fs::read_to_string(root.join("cgroup.controllers"))
        && controllers.contains("memory")
        && controllers.contains("pids")
        && enable_v2_controllers().is_ok()
        && writable_parent(root)
    {
        return Isolation::CgroupV2;
    }
    if root.join("memory/memory.limit_in_bytes").exists()
        && root.join("pids").is_dir()
        && writable_parent(&root.join("memory"))
        && writable_parent(&root.join("pids"))
    {
        return Isolation::CgroupV1;
    }
    Isolation::Rlimits
}

fn enable_v2_controllers() -> std::io::Result<()> {
    let root = Path::new(ROOT);
    std::fs::write(root.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
    let parent = root.join(PARENT);
    std::fs::create_dir_all(&parent)?;
    std::fs::write(parent.join("cgroup.subtree_control"), "+memory +pids +cpu")
}

/// Resource use of a finished run.
pub struct Usage {
    pub memory_limit_hit: bool,
    pub cpu: Duration,
    pub peak_memory: Option<u64>,
}

/// The cgroups of one run; removed when dropped.
pub struct Group {
    isolation: Isolation,
    dirs: Vec<PathBuf>,
}

impl Group {
    pub fn create(isolation: Isolation, memory: u64, processes: u32) -> std::io::Result<Self> {
        let name = format!("run-{}", uuid::Uuid::new_v4().simple());
        let root = Path::new(ROOT);
        let mut group = Self {
            isolation,
            dirs: Vec::new(),
        };
        match isolation {
            Isolation::Rlimits => {}
            Isolation::CgroupV2 => {
                let dir = root.join(PARENT).join(&name);
                std::fs::create_dir(&dir)?;
                group.dirs.push(dir.clone());
                std::fs::write(dir.join("memory.max"), memory.to_string())?;
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
                std::fs::write(dir.join("pids.max"), processes.to_string())?;
            }
            Isolation::CgroupV1 => {
                let memory_dir = root.join("memory").join(PARENT).join(&name);
                std::fs::create_dir(&memory_dir)?;
                group.dirs.push(memory_dir.clone());
                std::fs::write(memory_dir.join("memory.limit_in_bytes"), memory.to_string())?;
                // Without swap accounting this file is absent; with it, no swapping out.
                let _ = std::fs::write(
                    memory_dir.join("memory.memsw.limit_in_bytes"),
                    memory.to_string(),
                );
                let pids_dir = root.join("pids").join(PARENT).join(&name);
                std::fs::create_dir(&pids_dir)?;
                group.dirs.push(pids_dir.clone());
                std::fs::write(pids_dir.join("pids.max"), processes.to_string())?;
                let cpu_dir = root.join("cpuacct").join(PARENT).join(&name);
                if std::fs::create_dir_all(&cpu_dir).is_ok() {
                    group.dirs.push(cpu_dir);
                }
            }
        }
        Ok(group)
    }

    /// The `cgroup.procs` files the run's first process writes itself into.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    fn pids(&self) -> Vec<String> {
        self.dirs
            .first()
            .and_then(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|text| text.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// SIGKILL everything left in the run's cgroup.
    pub async fn kill_all(&self) {
        if let (Isolation::CgroupV2, Some(dir)) = (self.isolation, self.dirs.first())
            && std::fs::write(dir.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        for _ in 0..20 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            let _ = tokio::process::Command::new("/bin/kill")
                .arg("-9")
                .args(&pids)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn usage(&self) -> Usage {
        let read = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file)).ok();
        let field = |text: &str, key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        match (self.isolation, self.dirs.first()) {
            (Isolation::CgroupV2, Some(dir)) => Usage {
                memory_limit_hit: read(dir, "memory.events")
                    .and_then(|t| field(&t, "oom_kill "))
                    .is_some_and(|n| n > 0),
                cpu: read(dir, "cpu.stat")
                    .and_then(|t| field(&t, "usage_usec "))
                    .map_or(Duration::ZERO, Duration::from_micros),
                peak_memory: read(dir, "memory.peak").and_then(|t| t.trim().parse().ok()),
            },
            (Isolation::CgroupV1, Some(memory)) => Usage {
                memory_limit_hit: read(memory, "memory.oom_control")
                    .and_then(|t| field(&t, "oom_kill "))
                    .is_some_and(|n| n > 0),
                cpu: self
                    .dirs
                    .get(2)
                    .and_then(|d| read(d, "cpuacct.usage"))
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .map_or(Duration::ZERO, Duration::from_nanos),
                peak_memory: read(memory, "memory.max_usage_in_bytes")
                    .and_then(|t| t.trim().parse().ok()),
            },
            _ => Usage {
                memory_limit_hit: false,
                cpu: Duration::ZERO,
                peak_memory: None,
            },
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // Emptied by `kill_all`; a straggler makes this fail and the directory stays
            // (an empty cgroup costs nothing and holds no process).
            let _ = std::fs::remove_dir(dir);
        }
    }
}
