//! The run's first process inside the sandbox, and what it reports.
//!
//! bubblewrap starts it as PID 1 of the run's PID namespace (`--as-pid-1`), so nothing in
//! the run can kill it, and it makes itself non-dumpable, so nothing in the run can open its
//! descriptors or memory through `/proc`. It closes every descriptor but 0–2 and its status
//! descriptor (`STATUS_FD`, opened by the launcher on a file only the worker reads), then
//! runs the prepare phase (the copy into `/work`, then the compile step) and the program,
//! the compile step and the program each as its own child, reaping every orphan, and writes
//! one line per event: `ready`, `run start`, and `<phase> exit N` or `<phase> signal N` from
//! `waitpid` (`prepare exit 1` when the copy failed) — so an exit code is an exit code and a
//! signal a signal, and no output the program writes can be mistaken for either.
//!
//! It is started before its run is known (see `Sandbox`): once `ready`, it waits for what to
//! run on its standard input (see [`order`]), which then goes on as the program's.
//!
//! Perl because `perl-base` is part of every Debian system (the worker image included) and
//! its builtins (fork, exec, waitpid, syscall) do this without loading a module; the
//! system-call numbers it needs are passed in, as the Rust side knows them per target.

use std::sync::OnceLock;
use std::time::Instant;

pub const PERL: &str = "/usr/bin/perl";

/// Arguments: the numbers of `close`, `prctl` and `prlimit64`; the numbers of
/// `RLIMIT_FSIZE` and `RLIMIT_CPU`, the program's file-size limit (bytes) and CPU limit (soft,
/// seconds). Standard input starts with the order: the compile command (`sh`, empty for
/// none), then the program and its arguments (see [`order`]); standard input closed before
/// the order ends it with nothing run.
///
/// The prepare phase copies `/src` into `/work` itself (under the run's limits, which the
/// launcher set for the whole sandbox, as `cp -R` did) and then, when the language compiles,
/// runs the compile command with `sh` in a child; the program is `exec`ed directly, its own
/// limits set first.
const SCRIPT: &str = r#"
my ($close, $prctl, $prlimit, $fsize, $cpu, $file_bytes, $cpu_secs) = @ARGV;
my ($compile, @run);
($close, $prctl, $prlimit, $fsize, $cpu) = map { $_ + 0 } ($close, $prctl, $prlimit, $fsize, $cpu);
open(my $st, '>&=', STATUS_FD) or exit 70;
opendir(my $fds, '/proc/self/fd') or exit 71;
my @open = grep { /^\d+$/ && $_ > 2 && $_ != STATUS_FD } readdir($fds);
closedir($fds);
syscall($close, $_ + 0) for @open;
fcntl($st, 2, 1) or exit 72;
syscall($prctl, 4, 0, 0, 0, 0) == 0 or exit 73;
select((select($st), $| = 1)[0]);
print $st "ready\n";
# The order: its length in decimal and a newline, then fields each ending in a NUL. Read
# unbuffered, so that what follows stays the program's input.
my $length = '';
while (1) {
    sysread(STDIN, my $byte, 1) or exit 0;
    last if $byte eq "\n";
    $length .= $byte;
    exit 74 if length($length) > 9;
}
$length =~ /^\d+$/ or exit 74;
my $order = '';
while (length($order) < $length) {
    sysread(STDIN, $order, $length - length($order), length($order)) or exit 0;
}
($compile, @run) = split(/\0/, $order, -1);
pop(@run);
@run or exit 74;
sub phase {
    my ($name, $child) = @_;
    my $pid = fork();
    if (!defined $pid) { print $st "$name lost\n"; return -1; }
    if ($pid == 0) { $child->(); exit 127; }
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
sub copy_tree {
    my ($from, $to) = @_;
    opendir(my $dir, $from) or die "cannot read $from: $!\n";
    for my $name (sort grep { $_ ne '.' && $_ ne '..' } readdir($dir)) {
        my ($source, $target) = ("$from/$name", "$to/$name");
        my @stat = lstat($source) or die "cannot read $source: $!\n";
        my $mode = $stat[2] & 07777;
        if (-d _) {
            mkdir($target, $mode) or die "cannot create $target: $!\n";
            copy_tree($source, $target);
        } elsif (-f _) {
            open(my $in, '<:raw', $source) or die "cannot read $source: $!\n";
            open(my $out, '>:raw', $target) or die "cannot create $target: $!\n";
            chmod($mode, $out);
            while (1) {
                my $read = sysread($in, my $buffer, 65536);
                defined $read or die "cannot read $source: $!\n";
                last if $read == 0;
                for (my $at = 0; $at < $read;) {
                    my $wrote = syswrite($out, $buffer, $read - $at, $at);
                    defined $wrote or die "cannot write $target: $!\n";
                    $at += $wrote;
                }
            }
            close($out) or die "cannot write $target: $!\n";
        }
    }
}
# The copy in this process (a fork of its own cost a run about half a millisecond), the
# compile step in a child.
sub prepare {
    if (!eval { copy_tree('/src', '/work'); 1 }) {
        print STDERR $@;
        print $st "prepare exit 1\n";
        return 1 << 8;
    }
    return 0 if $compile eq '';
    return phase('prepare', sub { exec('/bin/sh', '-c', $compile); });
}
sub program {
    syscall($prlimit, 0, $fsize, pack('QQ', $file_bytes, $file_bytes), 0) == 0 or exit 126;
    my $old = "\0" x 16;
    syscall($prlimit, 0, $cpu, 0, $old) == 0 or exit 126;
    my (undef, $hard) = unpack('QQ', $old);
    syscall($prlimit, 0, $cpu, pack('QQ', $cpu_secs, $hard), 0) == 0 or exit 126;
    exec { $run[0] } @run;
    print STDERR "cannot run $run[0]: $!\n";
    exit 127;
}
exit 0 if prepare() != 0;
print $st "run start\n";
phase('run', \&program);
exit 0;
"#;

/// What the supervisor is told to run, as it reads it on its standard input: the compile
/// command (none: empty) and the program's arguments, each ending in a NUL (no argument can
/// hold one), after their length and a newline.
pub fn order(compile: Option<&str>, run: &[String]) -> Vec<u8> {
    let mut fields = Vec::new();
    for field in std::iter::once(compile.unwrap_or_default()).chain(run.iter().map(String::as_str))
    {
        fields.extend_from_slice(field.as_bytes());
        fields.push(0);
    }
    let mut order = format!("{}\n", fields.len()).into_bytes();
    order.append(&mut fields);
    order
}

/// The script with the status descriptor's number the launcher opens it on.
pub fn script() -> &'static str {
    static MADE: OnceLock<String> = OnceLock::new();
    super::with_descriptors(SCRIPT, &MADE)
}

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
