//! The run's first process, outside the sandbox: it joins the run's cgroups, sets the run's
//! rlimits, opens the descriptors bubblewrap and the supervisor read, drops to the run's uid,
//! and becomes `bwrap`.
//!
//! One Perl process instead of the `sh` -> `prlimit` -> `setpriv` chain it replaces: each
//! of those was an exec of its own, and `setpriv` alone cost more than the rest, looking the
//! uid up through NSS. The worker cannot do this itself before the exec without a `pre_exec`
//! hook (`unsafe`, and a fork of the whole worker instead of a `vfork`); Perl's builtins do it
//! without loading a module, and the system-call numbers it needs are passed in, as the Rust
//! side knows them per target.
//!
//! Arguments: the system calls (`prlimit64,prctl,dup3,setgroups,setresgid,setresuid,capget,
//! capset`), the status file, the run directory (its `seccomp-<n>.bpf` filters), the number of
//! filters, the uid to become (empty: stay), the rlimits (`resource=soft:hard,…`), the
//! cgroup files to join (see `cgroup::Group::join_files`), `--`, then the command. It exits
//! 125 with a line on stderr when a step fails, before anything of the run started.

use std::sync::OnceLock;

const SCRIPT: &str = r#"
my ($calls, $status, $dir, $filters, $uid, $limits) = splice(@ARGV, 0, 6);
my ($prlimit, $prctl, $dup3, $setgroups, $setresgid, $setresuid, $capget, $capset) =
    map { $_ + 0 } split(/,/, $calls);
sub fail { print STDERR "sandbox launcher: $_[0]: $!\n"; exit 125; }
# What is opened from here on stays open across exec: bubblewrap and the supervisor read it.
$^F = 1 << 20;
sub place {
    my ($path, $mode, $fd) = @_;
    open(my $fh, $mode, $path) or fail("open $path");
    return if fileno($fh) == $fd;
    syscall($dup3, fileno($fh), $fd, 0) == $fd or fail("dup3 $fd");
    close($fh);
}
place($status, '>>', STATUS_FD);
place("$dir/seccomp-$_.bpf", '<', FIRST_FILTER_FD + $_) for 0 .. $filters - 1;
while (@ARGV && $ARGV[0] ne '--') {
    my $join = shift(@ARGV);
    open(my $fh, '>', $join) or fail("open $join");
    print $fh "0\n";
    close($fh) or fail("join $join");
}
shift(@ARGV);
for my $limit (split(/,/, $limits)) {
    my ($resource, $soft, $hard) = $limit =~ /^(\d+)=(\d+):(\d+)$/ or fail("limit $limit");
    syscall($prlimit, 0, $resource + 0, pack('QQ', $soft, $hard), 0) == 0
        or fail("limit $resource");
}
if ($uid ne '') {
    $uid += 0;
    open(my $last, '<', '/proc/sys/kernel/cap_last_cap') or fail('cap_last_cap');
    my $caps = <$last> + 0;
    # PR_CAPBSET_DROP, every capability: nothing a later exec could gain back.
    syscall($prctl, 24, $_ + 0, 0, 0, 0) == 0 or fail("drop capability $_") for 0 .. $caps;
    # The inheritable set, emptied (_LINUX_CAPABILITY_VERSION_3: two words per set).
    my $header = pack('LL', 0x20080522, 0);
    my $sets = "\0" x 24;
    syscall($capget, $header, $sets) == 0 or fail('capget');
    my @sets = unpack('L6', $sets);
    @sets[2, 5] = (0, 0);
    syscall($capset, $header, pack('L6', @sets)) == 0 or fail('capset');
    # No supplementary groups, then real, effective and saved ids all the run's.
    syscall($setgroups, 0, 0) == 0 or fail('setgroups');
    syscall($setresgid, $uid, $uid, $uid) == 0 or fail('setresgid');
    syscall($setresuid, $uid, $uid, $uid) == 0 or fail('setresuid');
}
exec { $ARGV[0] } @ARGV;
fail("exec $ARGV[0]");
"#;

/// The script with the descriptor numbers the rest of the sandbox expects.
pub fn script() -> &'static str {
    static MADE: OnceLock<String> = OnceLock::new();
    super::with_descriptors(SCRIPT, &MADE)
}

/// The system calls the script makes, in its order.
pub fn system_calls() -> String {
    [
        libc::SYS_prlimit64,
        libc::SYS_prctl,
        libc::SYS_dup3,
        libc::SYS_setgroups,
        libc::SYS_setresgid,
        libc::SYS_setresuid,
        libc::SYS_capget,
        libc::SYS_capset,
    ]
    .map(|number| number.to_string())
    .join(",")
}

/// One rlimit as the script takes it.
pub fn limit(resource: impl std::fmt::Display, soft: u64, hard: u64) -> String {
    format!("{resource}={soft}:{hard}")
}
