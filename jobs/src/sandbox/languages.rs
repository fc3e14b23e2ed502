//! The languages runs can use, whether their toolchain is installed, and how to run them.
//!
//! Toolchains are used from `/usr` (bound read-only into the sandbox); Rust's from the
//! sysroot `rustc --print sysroot` names, bound read-only at `/opt/rust`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::quote;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    Python,
    JavaScript,
    C,
    Cpp,
    Bash,
    Rust,
    Java,
    Go,
}

impl Language {
    pub const ALL: [Language; 8] = [
        Self::Python,
        Self::JavaScript,
        Self::C,
        Self::Cpp,
        Self::Bash,
        Self::Rust,
        Self::Java,
        Self::Go,
    ];
}

/// A language and whether runs can use it here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanguageInfo {
    pub language: Language,
    /// The toolchain's own version line, when installed.
    pub version: Option<String>,
    pub available: bool,
}

/// How to run a program (shell commands inside the sandbox, in `/work` once the files are
/// copied there).
pub struct Plan {
    /// The compile step, if any: it gets its own time budget and may write larger files.
    pub compile: Option<String>,
    /// The program, `exec`ed.
    pub run: String,
    /// Extra read-only binds: host path, path inside.
    pub extra_binds: Vec<(PathBuf, String)>,
}

fn first_line(program: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    // Some tools (javac, older gcc) print their version on stderr.
    let text = if output.stdout.is_empty() {
        output.stderr
    } else {
        output.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
}

fn rust_sysroot() -> Option<PathBuf> {
    static SYSROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    SYSROOT
        .get_or_init(|| {
            let output = Command::new("rustc")
                .args(["--print", "sysroot"])
                .output()
                .ok()?;
            let root = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            (root.join("bin/rustc").exists() && reachable_by_anyone(&root)).then_some(root)
        })
        .clone()
}

/// Whether a sandbox user (any uid) may enter `path`: every ancestor searchable by others.
/// A toolchain under a private home (`/root/.rustup`) is not usable by runs.
fn reachable_by_anyone(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.ancestors()
        .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

fn detect(language: Language) -> LanguageInfo {
    let usr = |name: &str| PathBuf::from("/usr/bin").join(name);
    let version = match language {
        Language::Python => first_line(&usr("python3"), &["--version"]),
        Language::JavaScript => first_line(&usr("node"), &["--version"]),
        Language::C => first_line(&usr("gcc"), &["--version"]),
        Language::Cpp => first_line(&usr("g++"), &["--version"]),
        Language::Bash => first_line(&usr("bash"), &["--version"]),
        Language::Rust => rust_sysroot()
            .filter(|_| usr("cc").exists())
            .and_then(|root| first_line(&root.join("bin/rustc"), &["--version"])),
        Language::Java => first_line(&usr("javac"), &["-version"])
            .filter(|_| first_line(&usr("java"), &["-version"]).is_some()),
        Language::Go => first_line(&usr("go"), &["version"]),
    };
    LanguageInfo {
        language,
        available: version.is_some(),
        version,
    }
}

/// Every language, detected once per process.
pub fn languages() -> &'static [LanguageInfo] {
    static LANGUAGES: OnceLock<Vec<LanguageInfo>> = OnceLock::new();
    LANGUAGES.get_or_init(|| Language::ALL.into_iter().map(detect).collect())
}

pub fn is_available(language: Language) -> bool {
    languages()
        .iter()
        .any(|info| info.language == language && info.available)
}

/// How to run `entry` in `language`, if its toolchain is here.
pub fn plan(language: Language, entry: &str) -> Option<Plan> {
    if !is_available(language) {
        return None;
    }
    // `./` so that a file named like an option (`-c`) is still a file.
    let file = quote(&format!("./{entry}"));
    let binary = "/work/.codecrafter-program";
    let (compile, run, extra_binds) = match language {
        Language::Python => (None, format!("python3 {file}"), vec![]),
        Language::JavaScript => (None, format!("node {file}"), vec![]),
        Language::Bash => (None, format!("bash {file}"), vec![]),
        Language::C => (
            Some(format!("gcc -O2 -pipe -o {binary} {file} -lm")),
            binary.to_owned(),
            vec![],
        ),
        Language::Cpp => (
            Some(format!("g++ -O2 -pipe -o {binary} {file}")),
            binary.to_owned(),
            vec![],
        ),
        Language::Rust => (
            Some(format!("/opt/rust/bin/rustc -O -o {binary} {file}")),
            binary.to_owned(),
            vec![(rust_sysroot()?, "/opt/rust".to_owned())],
        ),
        Language::Java => {
            let class = Path::new(entry)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "Main".into());
            (
                Some(format!("javac -d /work/.classes {file}")),
                format!(
                    "java -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto -cp /work/.classes {}",
                    quote(&class)
                ),
                vec![],
            )
        }
        Language::Go => (
            Some(format!(
                "GOCACHE=/work/.go-cache GOPATH=/work/.go go build -o {binary} {file}"
            )),
            binary.to_owned(),
            vec![],
        ),
    };
    Some(Plan {
        compile,
        run,
        extra_binds,
    })
}
