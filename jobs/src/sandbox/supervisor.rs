//! The run's first process inside the sandbox, and what it reports.
//!
//! bubblewrap starts it as PID 1 of the run's PID namespace (`--as-pid-1`), so nothing in
//! the run can kill it, and it makes itself non-dumpable, so nothing in the run can open its
//! descriptors or memory through `/proc`. It closes every descriptor but 0–2 and its status
//! descriptor (6, opened by the launcher on a file only the worker reads), then runs the
//! prepare/compile phase and the program, each as its own child, reaping every orphan, and
//! writes one line per event: `ready`, `run start`, and `<phase> exit N` or
//! `<phase> signal N` from `waitpid` — so an exit code is an exit code and a signal a
//! signal, and no output the program writes can be mistaken for either.
//!
//! Perl because `perl-base` is part of every Debian system (the worker image included) and
//! its builtins (fork, exec, waitpid, syscall) do this without loading a module; the
//! system-call numbers it needs are passed in, as the Rust side knows them per target.

use std::time::Instant;

pub const PERL: &str = "/usr/bin/perl";

/// Arguments: the numbers of `close` and `prctl`, the prepare command, the program command.
pub const SCRIPT: &str = r#"
my ($close, $prctl, $prepare, $run) = @ARGV;
open(my $st, '>&=', 6) or exit 70;
opendir(my $fds, '/proc/self/fd') or exit 71;
my @open = grep { /^\d+$/ && $_ > 2 && $_ != 6 } readdir($fds);
closedir($fds);
syscall($close, $_ + 0) for @open;
fcntl($st, 2, 1) or exit 72;
syscall($prctl, 4, 0, 0, 0, 0) == 0 or exit 73;
select((select($st), $| = 1)[0]);
print $st "ready\n";
sub phase {
    my ($name, $command) = @_;
    my $pid = fork();
    if (!defined $pid) { print $st "$name lost\n"; return -1; }
    if ($pid == 0) { exec('/bin/sh', '-c', $command); exit 127; }
    while (1) {
        my $done = waitpid(-1, 0);
        if ($done == $pid) {
            my $status = $?;
            if ($status & 127) { print $st "$name signal ", $status & 127, "\n"; }
            else { print $st "$name exit ", $status >> 8, "\n"; }
            return $status;
        }
        if ($done < 0) { print $st "$name lost\n"; return -1; }
    }
}
exit 0 if phase('prepare', $prepare) != 0;
print $st "run start\n";
phase('run', $run);
exit 0;
"#;

/// How a phase ended, as `waitpid` told the supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Exit(i32),
    Signal(i32),
}

/// What the supervisor has reported so far.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The sandbox was set up and the supervisor runs.
    pub ready: bool,
    pub prepared: Option<Ended>,
    /// When the worker read `run start`: the program's limits count from here.
    pub run_started: Option<Instant>,
    pub ran: Option<Ended>,
    read: usize,
}

impl Report {
    /// Take in the status file's text (everything written so far).
    pub fn update(&mut self, text: &[u8]) {
        let Some(unread) = text.get(self.read..) else {
            return;
        };
        // Only whole lines: the supervisor writes each one in one write.
        let Some(end) = unread.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        for line in String::from_utf8_lossy(&unread[..end]).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let ended = |kind: &str, value: &str| {
                let value = value.parse().ok()?;
                match kind {
                    "exit" => Some(Ended::Exit(value)),
                    "signal" => Some(Ended::Signal(value)),
                    _ => None,
                }
            };
            match words.as_slice() {
                ["ready"] => self.ready = true,
                ["run", "start"] => self.run_started = Some(Instant::now()),
                ["prepare", kind, value] => self.prepared = ended(kind, value),
                ["run", kind, value] => self.ran = ended(kind, value),
                _ => {}
            }
        }
        self.read += end + 1;
    }
}
