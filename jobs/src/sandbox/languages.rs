//! The languages runs can use, whether their toolchain is installed, and how to run them.
//!
//! Toolchains are used from `/usr` (bound read-only into the sandbox), Debian's packages
//! (`rustc`, not a rustup toolchain under a private home).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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
    TypeScript,
    Ruby,
}

impl Language {
    pub const ALL: [Language; 10] = [
        Self::Python,
        Self::JavaScript,
        Self::C,
        Self::Cpp,
        Self::Bash,
        Self::Rust,
        Self::Java,
        Self::Go,
        Self::TypeScript,
        Self::Ruby,
    ];
}

impl Language {
    /// The file a run's `source` is written to.
    pub fn source_file(self) -> &'static str {
        match self {
            Self::Python => "main.py",
            Self::JavaScript => "main.js",
            Self::C => "main.c",
            Self::Cpp => "main.cpp",
            Self::Bash => "main.sh",
            Self::Rust => "main.rs",
            Self::Java => "Main.java",
            Self::Go => "main.go",
            Self::TypeScript => "main.ts",
            Self::Ruby => "main.rb",
        }
    }
}

/// A language and whether runs can use it here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanguageInfo {
    pub language: Language,
    /// The toolchain's own version line, when installed.
    pub version: Option<String>,
    pub available: bool,
}

/// How to run a program inside the sandbox, in `/work` once the files are copied there.
pub struct Plan {
    /// The compile step, if any (a shell command): it gets its own time budget and may
    /// write larger files.
    pub compile: Option<String>,
    /// The program and its arguments, `exec`ed as they are (no shell).
    pub run: Vec<String>,
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

fn detect(language: Language) -> LanguageInfo {
    let usr = |name: &str| PathBuf::from("/usr/bin").join(name);
    let version = match language {
        Language::Python => first_line(&usr("python3"), &["--version"]),
        Language::JavaScript => first_line(&usr("node"), &["--version"]),
        Language::C => first_line(&usr("gcc"), &["--version"]),
        Language::Cpp => first_line(&usr("g++"), &["--version"]),
        Language::Bash => first_line(&usr("bash"), &["--version"]),
        Language::Rust => first_line(&usr("rustc"), &["--version"]).filter(|_| usr("cc").exists()),
        Language::Java => first_line(&usr("javac"), &["-version"])
            .filter(|_| first_line(&usr("java"), &["-version"]).is_some()),
        Language::Go => first_line(&usr("go"), &["version"]),
        Language::TypeScript => first_line(&usr("tsc"), &["--version"])
            .filter(|_| usr("node").exists())
            .map(|v| format!("TypeScript {}", v.trim_start_matches("Version "))),
        Language::Ruby => first_line(&usr("ruby"), &["--version"]),
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
    let path = format!("./{entry}");
    let file = quote(&path);
    let binary = "/work/.codecrafter-program";
    let argv = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let (compile, run) = match language {
        Language::Python => (None, argv(&["python3", &path])),
        Language::JavaScript => (None, argv(&["node", &path])),
        Language::Bash => (None, argv(&["bash", &path])),
        Language::C => (
            Some(format!("gcc -O2 -pipe -o {binary} {file} -lm")),
            argv(&[binary]),
        ),
        Language::Cpp => (
            Some(format!("g++ -O2 -pipe -o {binary} {file}")),
            argv(&[binary]),
        ),
        Language::Rust => (
            Some(format!("rustc -O -o {binary} {file}")),
            argv(&[binary]),
        ),
        Language::Java => {
            let class = Path::new(entry)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "Main".into());
            (
                Some(format!("javac -d /work/.classes {file}")),
                argv(&[
                    "java",
                    "-XX:+UseSerialGC",
                    "-XX:TieredStopAtLevel=1",
                    "-Xshare:auto",
                    "-cp",
                    "/work/.classes",
                    &class,
                ]),
            )
        }
        Language::Ruby => (None, argv(&["ruby", &path])),
        Language::TypeScript => {
            // `--rootDir /work` keeps the entry's folders (`a/b.ts` becomes `a/b.js`); tsc reports
            // on stdout, and a compiler's messages belong on stderr.
            let js = Path::new(entry).with_extension("js");
            (
                Some(format!(
                    "tsc --pretty false --target es2020 --module commonjs --rootDir /work --outDir /work/.ts-out {file} 1>&2"
                )),
                argv(&["node", &format!("/work/.ts-out/{}", js.display())]),
            )
        }
        Language::Go => (
            Some(format!(
                "GOCACHE=/work/.go-cache GOPATH=/work/.go go build -o {binary} {file}"
            )),
            argv(&[binary]),
        ),
    };
    Some(Plan { compile, run })
}

/// The sandbox's name for a project's language: the one mapping.
impl From<entity::project::Language> for Language {
    fn from(language: entity::project::Language) -> Self {
        use entity::project::Language as L;
        match language {
            L::Python => Self::Python,
            L::JavaScript => Self::JavaScript,
            L::C => Self::C,
            L::Cpp => Self::Cpp,
            L::Bash => Self::Bash,
            L::Rust => Self::Rust,
            L::Java => Self::Java,
            L::Go => Self::Go,
            L::TypeScript => Self::TypeScript,
            L::Ruby => Self::Ruby,
        }
    }
}

/// Quote for `sh`.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
