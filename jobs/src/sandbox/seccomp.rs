//! The seccomp filters every run's processes start under (bubblewrap installs them right
//! before it starts the run's first process).
//!
//! Built with `seccompiler` (rust-vmm's, used by Firecracker): pure Rust, so nothing to
//! install or link on build machines, unlike libseccomp's C library.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

/// System calls a run never needs and that reach outside it (other processes' memory, the
/// kernel keyring, BPF, io_uring, mounts, namespaces, modules, the machine itself). They fail
/// with EPERM.
const DENIED: &[(&str, libc::c_long)] = &[
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("acct", libc::SYS_acct),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("quotactl", libc::SYS_quotactl),
];

/// The denied system calls: name and number on this target.
#[allow(clippy::useless_conversion)] // `c_long` is `i64` on 64-bit targets only.
pub fn denied() -> impl Iterator<Item = (&'static str, i64)> {
    DENIED
        .iter()
        .map(|(name, number)| (*name, i64::from(*number)))
}

/// `clone` flags that would make a new namespace.
const NEW_NAMESPACES: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// The filters as bubblewrap reads them (raw `struct sock_filter` arrays): the deny list
/// (EPERM); `clone3` answered ENOSYS (its flags sit in memory a filter cannot read, and
/// ENOSYS makes the C library fall back to `clone`, whose flags the deny list checks); and
/// on x86-64 every x32 system call (numbers from 0x4000_0000, which would bypass the list).
#[allow(clippy::useless_conversion)] // `c_long` is `i64` on 64-bit targets only.
pub fn filters() -> Result<Vec<Vec<u8>>, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED
        .iter()
        .map(|(_, number)| (i64::from(*number), Vec::new()))
        .collect();
    let clone_rules = NEW_NAMESPACES
        .iter()
        .map(|flag| {
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(*flag),
                *flag,
            )
            .and_then(|condition| SeccompRule::new(vec![condition]))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    rules.insert(i64::from(libc::SYS_clone), clone_rules);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(i64::from(libc::SYS_clone3), Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let mut filters = vec![bytes(deny)?, bytes(clone3)?];
    if arch == TargetArch::x86_64 {
        filters.push(raw(&X32));
    }
    Ok(filters)
}

/// Deny the x32 ABI: seccompiler matches exact numbers, not a range, so these four
/// instructions are written out (load the number; at or past the x32 bit, ENOSYS).
const X32: [sock_filter; 4] = [
    sock_filter {
        code: 0x20,
        jt: 0,
        jf: 0,
        k: 0,
    },
    sock_filter {
        code: 0x35,
        jt: 0,
        jf: 1,
        k: 0x4000_0000,
    },
    sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0x0005_0000 | libc::ENOSYS as u32,
    },
    sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0x7fff_0000,
    },
];

fn bytes(filter: SeccompFilter) -> Result<Vec<u8>, String> {
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    Ok(raw(&program))
}

fn raw(program: &[sock_filter]) -> Vec<u8> {
    program
        .iter()
        .flat_map(|op| {
            let mut raw = Vec::with_capacity(8);
            raw.extend_from_slice(&op.code.to_ne_bytes());
            raw.push(op.jt);
            raw.push(op.jf);
            raw.extend_from_slice(&op.k.to_ne_bytes());
            raw
        })
        .collect()
}
