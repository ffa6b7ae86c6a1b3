//! `sibling-floor`: the kernel's floor for a container and for an exec, measured with the
//! syscalls alone, for `make bench` (section 5 of BENCHMARKS.md).
//!
//! - `sibling-floor container ROOTFS RUNS`: each run forks a child that unshares the mount, UTS,
//!   IPC, network and PID namespaces, forks the new PID namespace's first process, which
//!   chroots into ROOTFS and executes `/bin/true`; the run ends when the child has waited for it.
//!   One exec, as a runtime's container start has one; none of what a spec adds (mounts of
//!   proc, dev and sys, cgroups, pivot_root), so the floor is low, never flattering a runtime.
//! - `sibling-floor exec ROOTFS RUNS`: makes such a container running `/bin/sleep` first (not
//!   timed); each run forks a child that enters all five of its namespaces through a pidfd
//!   (setns), forks into its PID namespace, chroots and executes `/bin/true`. No cgroup is
//!   joined (a runtime's exec also does that), so again the floor is low.
//!
//! Prints each run's wall time in microseconds, one per line, then `cpu <µs>`: the user and
//! system CPU time of all the runs' processes, per run (getrusage of the waited-for children).
//! Single-threaded, so forking here is safe; everything the children need is prepared before
//! the fork, and they only make system calls.

use std::ffi::CString;
use std::time::Instant;

use libc::{c_char, c_int, pid_t};

const NAMESPACES: c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWPID;

/// What a child needs, as C strings made before any fork.
struct Program {
    rootfs: CString,
    root: CString,
    path: CString,
    argv: Vec<CString>,
}

impl Program {
    fn new(rootfs: &str, argv: &[&str]) -> Program {
        let c = |s: &str| CString::new(s).expect("no NUL in arguments");
        Program {
            rootfs: c(rootfs),
            root: c("/"),
            path: c(argv[0]),
            argv: argv.iter().map(|a| c(a)).collect(),
        }
    }

    /// In a child: chroot into the rootfs and execute the program; never returns.
    fn chroot_and_exec(&self) -> ! {
        let mut argv: Vec<*const c_char> = self.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let envp: [*const c_char; 1] = [std::ptr::null()];
        // SAFETY: in a forked child of a single-threaded process; every pointer is to a C
        // string made before the fork and alive here; _exit if any step fails.
        unsafe {
            if libc::chroot(self.rootfs.as_ptr()) != 0 || libc::chdir(self.root.as_ptr()) != 0 {
                libc::_exit(126);
            }
            libc::execve(self.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127)
        }
    }
}

/// fork(2); in the child, runs `child`, which ends in execve or _exit.
fn fork(child: impl FnOnce()) -> pid_t {
    // SAFETY: this process is single-threaded, so the child is a faithful copy; the child
    // only makes system calls (see `child`), and never returns from here.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => die("fork"),
        0 => {
            child();
            // SAFETY: _exit in a forked child.
            unsafe { libc::_exit(127) }
        }
        pid => pid,
    }
}

/// Waits for `pid`; its exit status (or 128 + signal).
fn wait(pid: pid_t) -> c_int {
    let mut status = 0;
    // SAFETY: waitpid with a pointer to a local.
    while unsafe { libc::waitpid(pid, &mut status, 0) } == -1 {
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            die("waitpid");
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

/// In a child: fork the program's process (the new PID namespace's first one, if any), wait
/// for it and exit with its status.
fn run_and_exit(program: &Program) -> ! {
    let pid = fork(|| program.chroot_and_exec());
    let status = wait(pid);
    // SAFETY: _exit in a forked child.
    unsafe { libc::_exit(status) }
}

fn die(what: &str) -> ! {
    eprintln!("sibling-floor: {what}: {}", std::io::Error::last_os_error());
    std::process::exit(1);
}

/// User + system CPU of the waited-for children so far, in microseconds.
fn children_cpu_us() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// A container running `/bin/sleep` to exec into: (the sleep's pid, the child that made it).
fn start_target(rootfs: &str) -> (pid_t, pid_t) {
    let sleep = Program::new(rootfs, &["/bin/sleep", "100000"]);
    let mut fds = [0 as c_int; 2];
    // SAFETY: pipe fills the two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        die("pipe");
    }
    let maker = fork(|| {
        // SAFETY: system calls in a forked child; the pid is written from a local.
        unsafe {
            if libc::unshare(NAMESPACES) != 0 {
                libc::_exit(125);
            }
            let pid = fork(|| sleep.chroot_and_exec());
            libc::write(fds[1], (&pid as *const pid_t).cast(), size_of::<pid_t>());
            let status = wait(pid);
            libc::_exit(status)
        }
    });
    let mut pid: pid_t = 0;
    // SAFETY: reads into a local of the size given.
    let n = unsafe { libc::read(fds[0], (&mut pid as *mut pid_t).cast(), size_of::<pid_t>()) };
    if n != size_of::<pid_t>() as isize {
        die("start the target container");
    }
    // SAFETY: closing our two pipe ends.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    (pid, maker)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: sibling-floor container|exec ROOTFS RUNS");
        std::process::exit(2)
    };
    let (Some(kind), Some(rootfs), Some(runs)) = (args.get(1), args.get(2), args.get(3)) else {
        usage()
    };
    let runs: usize = runs.parse().unwrap_or_else(|_| usage());
    // Absolute: entering a mount namespace moves the working directory to its root.
    let rootfs = std::fs::canonicalize(rootfs).unwrap_or_else(|_| die("the rootfs"));
    let rootfs = rootfs.to_str().unwrap_or_else(|| usage());
    let program = Program::new(rootfs, &["/bin/true"]);
    let target = match kind.as_str() {
        "container" => None,
        "exec" => Some(start_target(rootfs)),
        _ => usage(),
    };
    let pidfd = target.map(|(pid, _)| {
        // SAFETY: pidfd_open of a child we made; the descriptor is ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as c_int;
        if fd < 0 {
            die("pidfd_open");
        }
        fd
    });
    let cpu_before = children_cpu_us();
    let mut failed = 0;
    for _ in 0..runs {
        let t0 = Instant::now();
        let child = fork(|| {
            // SAFETY: system calls in a forked child.
            let entered = unsafe {
                match pidfd {
                    Some(fd) => libc::setns(fd, NAMESPACES),
                    None => libc::unshare(NAMESPACES),
                }
            };
            if entered != 0 {
                // SAFETY: _exit in a forked child.
                unsafe { libc::_exit(125) }
            }
            run_and_exit(&program)
        });
        let status = wait(child);
        let took = t0.elapsed();
        if status != 0 && failed == 0 {
            eprintln!("sibling-floor: a run ended with status {status}");
        }
        failed += usize::from(status != 0);
        println!("{}", took.as_micros());
    }
    let cpu = (children_cpu_us() - cpu_before) / runs.max(1) as f64;
    println!("cpu {cpu:.0}");
    if let Some((sleep, maker)) = target {
        // SAFETY: killing the target's first process ends its PID namespace; then its maker.
        unsafe { libc::kill(sleep, libc::SIGKILL) };
        wait(maker);
    }
    if failed > 0 {
        eprintln!("sibling-floor: {failed} of {runs} runs failed");
        std::process::exit(1);
    }
}
