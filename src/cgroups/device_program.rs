//! Device access rules on cgroup2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program, built here from the
//! same rules the v1 controller gets, loaded and attached to the container's cgroup.
//!
//! The program checks the rules from the last to the first and the first one that matches
//! decides (so a later rule overrides an earlier one, as when v1 applies them in order); no
//! match denies. An allow rule matches when it grants every access asked for, a deny rule
//! when it refuses any of them. It is attached with `BPF_F_ALLOW_MULTI`: programs of parent
//! cgroups (systemd's) still apply too. Removing the cgroup detaches it.
//!
//! New rules (an Update) replace the program as runc and youki do: the programs attached to
//! the cgroup itself are listed (`BPF_PROG_QUERY`), the new one is attached, then the old ones
//! are detached. A device access must pass every attached program, so in between only what
//! both the old and the new rules allow is allowed; never more than either.
//!
//! Hand-assembled (a dozen instruction kinds, one block per rule) rather than through a BPF
//! library: the program is small and fixed in shape, and the shim's dependency tree stays lean.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;

/// One rule: device type (None for all), major and minor (None for any), access letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    /// 'b' or 'c'; None for both.
    pub kind: Option<char>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Any of "rwm".
    pub access: String,
}

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcodes (class | op | source) from <linux/bpf.h> and <linux/bpf_common.h>.
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const MOV64_REG: u8 = 0xbf; // dst = src
const MOV64_IMM: u8 = 0xb7; // dst = imm
const AND64_IMM: u8 = 0x57; // dst &= imm
const RSH64_IMM: u8 = 0x77; // dst >>= imm
const JNE32_IMM: u8 = 0x56; // if (u32)dst != imm goto +off
const JEQ32_IMM: u8 = 0x16; // if (u32)dst == imm goto +off
const EXIT: u8 = 0x95;

// `struct bpf_cgroup_dev_ctx`: access_type (access << 16 | type), major, minor.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

// Registers: r1 the context; r2 type, r3 access, r4 major, r5 minor, r6 scratch.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

fn access_bits(access: &str) -> i32 {
    access.chars().fold(0, |bits, c| {
        bits | match c {
            'm' => ACC_MKNOD,
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => 0,
        }
    })
}

/// The program for `rules` (in spec order).
pub fn build(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut program = vec![
        insn(LDX_MEM_W, R2, R1, CTX_ACCESS_TYPE, 0),
        insn(MOV64_REG, R3, R2, 0, 0),
        insn(AND64_IMM, R2, 0, 0, 0xffff),
        insn(RSH64_IMM, R3, 0, 0, 16),
        insn(LDX_MEM_W, R4, R1, CTX_MAJOR, 0),
        insn(LDX_MEM_W, R5, R1, CTX_MINOR, 0),
    ];
    for rule in rules.iter().rev() {
        program.extend(rule_block(rule));
    }
    program.extend([insn(MOV64_IMM, R0, 0, 0, 0), insn(EXIT, 0, 0, 0, 0)]);
    program
}

/// One rule: each test jumps past the block when it fails; the block ends returning the
/// rule's verdict.
fn rule_block(rule: &DeviceRule) -> Vec<Insn> {
    // Tests as (opcode, register, immediate) with "skip the block" as their jump target.
    let mut tests: Vec<(u8, u8, i32)> = Vec::new();
    match rule.kind {
        Some('b') => tests.push((JNE32_IMM, R2, DEV_BLOCK)),
        Some(_) => tests.push((JNE32_IMM, R2, DEV_CHAR)),
        None => {}
    }
    let bits = access_bits(&rule.access);
    let mut block = Vec::new();
    // Access: r6 = asked & (allow: what the rule does not grant; deny: what it refuses).
    let mask = if rule.allow { !bits & 0x7 } else { bits };
    let skip_on = if rule.allow { JNE32_IMM } else { JEQ32_IMM };
    let access_test = [
        insn(MOV64_REG, R6, R3, 0, 0),
        insn(AND64_IMM, R6, 0, 0, mask),
    ];
    if let Some(major) = rule.major {
        tests.push((JNE32_IMM, R4, major as i32));
    }
    if let Some(minor) = rule.minor {
        tests.push((JNE32_IMM, R5, minor as i32));
    }
    // Layout: [type test] access_test(2) access jump, [major] [minor], mov r0, exit.
    let type_tests = usize::from(rule.kind.is_some());
    let total = tests.len() + access_test.len() + 1 + 2;
    let mut emitted = 0;
    let mut jump = |block: &mut Vec<Insn>, code: u8, reg: u8, imm: i32| {
        emitted += 1;
        let position = block.len() + 1;
        block.push(insn(code, reg, 0, (total - position) as i16, imm));
    };
    for &(code, reg, imm) in &tests[..type_tests] {
        jump(&mut block, code, reg, imm);
    }
    block.extend(access_test);
    jump(&mut block, skip_on, R6, 0);
    for &(code, reg, imm) in &tests[type_tests..] {
        jump(&mut block, code, reg, imm);
    }
    block.push(insn(MOV64_IMM, R0, 0, 0, i32::from(rule.allow)));
    block.push(insn(EXIT, 0, 0, 0, 0));
    debug_assert_eq!(block.len(), total);
    debug_assert_eq!(emitted, tests.len() + 1);
    block
}

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
/// The most programs one cgroup can have for one attach type (`BPF_CGROUP_MAX_PROGS`).
const MAX_PROGS: usize = 64;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The `bpf_attr` fields of BPF_PROG_LOAD up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `bpf_attr` fields of BPF_PROG_ATTACH.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// The `bpf_attr` fields of BPF_PROG_QUERY (up to `prog_cnt`, padded).
#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// The `bpf_attr` fields of BPF_PROG_GET_FD_BY_ID.
#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `bpf(cmd, attr, sizeof attr)`. Raw because neither nix nor rustix wraps bpf(2), and the
/// crates that do (aya, libbpf-rs) are large for one small device program.
///
/// # Safety
/// `attr` must be the `bpf_attr` prefix `cmd` expects, and every pointer in it valid for what
/// the kernel reads or writes through it during the call.
unsafe fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> Result<libc::c_long, Errno> {
    // SAFETY: the caller's contract; `attr` is valid for size_of::<T>() bytes both ways.
    let ret =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

/// Ids of the device programs attached to the cgroup itself (not its parents').
fn attached(cgroup: &OwnedFd) -> Result<Vec<u32>, String> {
    let mut ids = [0u32; MAX_PROGS];
    let mut query = ProgQueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: MAX_PROGS as u32,
        ..ProgQueryAttr::default()
    };
    // SAFETY: a BPF_PROG_QUERY attr; `prog_ids` points at `prog_cnt` writable u32s.
    unsafe { bpf(BPF_PROG_QUERY, &mut query) }
        .map_err(|errno| format!("list the device programs: {errno}"))?;
    let count = (query.prog_cnt as usize).min(MAX_PROGS);
    Ok(ids[..count].to_vec())
}

/// Detaches the attached program `id` from the cgroup; one gone meanwhile is fine.
fn detach(cgroup: &OwnedFd, id: u32) -> Result<(), String> {
    let mut by_id = GetFdByIdAttr {
        prog_id: id,
        ..GetFdByIdAttr::default()
    };
    // SAFETY: a BPF_PROG_GET_FD_BY_ID attr without pointers.
    let fd = match unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut by_id) } {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(errno) => return Err(format!("open device program {id}: {errno}")),
    };
    // SAFETY: a fresh descriptor that only we own.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut detach = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..ProgAttachAttr::default()
    };
    // SAFETY: a BPF_PROG_DETACH attr with fds we hold.
    match unsafe { bpf(BPF_PROG_DETACH, &mut detach) } {
        Ok(_) | Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(format!("detach device program {id}: {errno}")),
    }
}

/// Loads `program`, attaches it to the cgroup2 directory `cgroup` (an open fd of it), then
/// detaches every device program that was attached to it before: the cgroup ends with this
/// one alone. The verifier's log comes back in the error when it refuses the program; then
/// the old programs stay.
pub fn replace(program: &[Insn], cgroup: &OwnedFd) -> Result<(), String> {
    let old = attached(cgroup)?;
    attach(program, cgroup)?;
    for id in old {
        detach(cgroup, id)?;
    }
    Ok(())
}

/// Loads `program` and attaches it to the cgroup2 directory `cgroup` (an open fd of it).
/// The verifier's log comes back in the error when it refuses the program.
fn attach(program: &[Insn], cgroup: &OwnedFd) -> Result<(), String> {
    let mut log = vec![0u8; 16 * 1024];
    let mut name = [0u8; 16];
    name[..14].copy_from_slice(b"sibling_device");
    let load = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: c"Apache-2.0".as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..ProgLoadAttr::default()
    };
    // SAFETY: `load` is a valid bpf_attr prefix whose pointers (program, license, log) outlive
    // the call; the kernel writes only into `log`, within log_size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &load as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        let errno = Errno::last();
        let text = String::from_utf8_lossy(&log);
        let verifier = text.trim_end_matches('\0').trim();
        return Err(format!("load the device program: {errno} {verifier}"));
    }
    // SAFETY: a fresh descriptor that only we own.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attach = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..ProgAttachAttr::default()
    };
    // SAFETY: `attach` is a valid bpf_attr for BPF_PROG_ATTACH with fds we hold.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if ret < 0 {
        return Err(format!("attach the device program: {}", Errno::last()));
    }
    // The attachment holds the program from here; closing our fd does not detach it.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `program` the way the kernel would on one device access: a tiny interpreter of
    /// the instructions `build` emits, so the rule logic is tested without loading anything.
    fn run(program: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((access as u32) << 16) | kind as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = program[pc];
            let (dst, src) = (usize::from(i.regs & 0xf), usize::from(i.regs >> 4));
            pc += 1;
            match i.code {
                LDX_MEM_W => r[dst] = u64::from(ctx[i.off as usize / 4]),
                MOV64_REG => r[dst] = r[src],
                MOV64_IMM => r[dst] = i.imm as i64 as u64,
                AND64_IMM => r[dst] &= i.imm as i64 as u64,
                RSH64_IMM => r[dst] >>= i.imm,
                JNE32_IMM if r[dst] as u32 != i.imm as u32 => pc += i.off as usize,
                JEQ32_IMM if r[dst] as u32 == i.imm as u32 => pc += i.off as usize,
                JNE32_IMM | JEQ32_IMM => {}
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn rule(
        allow: bool,
        kind: Option<char>,
        major: Option<u32>,
        minor: Option<u32>,
        access: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: access.into(),
        }
    }

    #[test]
    fn the_last_matching_rule_decides_and_nothing_matching_is_denied() {
        let rules = [
            rule(false, None, None, None, "rwm"),
            rule(true, Some('c'), None, None, "m"),
            rule(true, Some('c'), Some(1), Some(3), "rwm"),
            rule(true, Some('c'), Some(136), None, "rwm"),
            rule(true, Some('c'), Some(10), Some(200), "r"),
            rule(false, Some('c'), Some(1), Some(3), "w"),
        ];
        let p = build(&rules);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1, "read /dev/null");
        assert_eq!(
            run(&p, DEV_CHAR, ACC_WRITE, 1, 3),
            0,
            "write denied by the last rule"
        );
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 136, 4), 1, "a pty");
        assert_eq!(
            run(&p, DEV_CHAR, ACC_MKNOD, 4, 1),
            1,
            "mknod of any char device"
        );
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 4, 1), 0, "not granted");
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 0, "no block rule");
        assert_eq!(
            run(&p, DEV_CHAR, ACC_READ, 10, 200),
            1,
            "read-only rule, read"
        );
        assert_eq!(
            run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 10, 200),
            0,
            "and write"
        );
        assert_eq!(
            run(&build(&[]), DEV_CHAR, ACC_READ, 1, 3),
            0,
            "no rules: deny"
        );
        let all = build(&[rule(true, None, None, None, "rwm")]);
        assert_eq!(
            run(&all, DEV_BLOCK, ACC_READ | ACC_WRITE, 8, 0),
            1,
            "allow all"
        );
    }
}
