//! `containerd-shim-sibling-v2`: a containerd shim v2 that is its own OCI runtime.
//!
//! containerd runs this binary three ways: `start` (print the daemon's ttrpc address), `delete`
//! (clean up after a daemon that died), and with no action as the daemon itself; containerd
//! 2.x also runs `-info` (print the RuntimeInfo with the OCI features document).

use std::io::Write;

use containerd_shim_sibling_v2::shim;

use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::protobuf::well_known_types::any::Any;

/// On musl, dlmalloc instead of musl's malloc, which maps and unmaps pages as small
/// allocations come and go (Cargo.toml says what that cost). Every process this binary becomes
/// uses it: `start`, the daemon, the spawner and its helpers, and a container's init until its
/// execve. Its lock is taken around fork (pthread_atfork); the spawner forks and clones only
/// while single-threaded.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() {
    shim::cold_start::mark_main();
    let args: Vec<_> = std::env::args_os().collect();
    // containerd 2.x runs `<shim> -info` (no other flag) and reads a RuntimeInfo from stdout;
    // containerd_shim::parse does not know the flag.
    if args.iter().skip(1).any(|a| a == "-info" || a == "--info") {
        std::process::exit(run_info());
    }
    let flags = match containerd_shim::parse(&args[1..]) {
        Ok(flags) => flags,
        Err(e) => {
            eprintln!("{}: {e}", shim::RUNTIME_NAME);
            std::process::exit(1);
        }
    };
    if flags.version {
        println!("containerd-shim-sibling-v2:");
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!("  Runtime:  {}", shim::RUNTIME_NAME);
        return;
    }
    if flags.namespace.is_empty() {
        eprintln!("{}: -namespace is required", shim::RUNTIME_NAME);
        std::process::exit(1);
    }
    let code = match flags.action.as_str() {
        "start" => run_start(&flags),
        "delete" => run_delete(&flags),
        // Not for containerd: how the daemon restarts a spawner that died (spawn::Spawner::exec).
        containerd_shim_sibling_v2::spawn::spawner::SPAWNER_ACTION => {
            containerd_shim_sibling_v2::spawn::spawner::run_exec_spawner()
        }
        "" => shim::daemon::run(&flags),
        other => {
            eprintln!("{}: unknown action {other:?}", shim::RUNTIME_NAME);
            1
        }
    };
    std::process::exit(code);
}

/// Prints the address and nothing else: containerd reads stdout and stderr together.
fn run_start(flags: &containerd_shim::Flags) -> i32 {
    match shim::manager::start(flags) {
        Ok(address) => {
            print!("{address}");
            let _ = std::io::stdout().flush();
            0
        }
        Err(e) => {
            eprint!("{e}");
            1
        }
    }
}

/// Reads the runtime options from stdin (a marshalled `Any`, possibly empty), checks them as
/// `start` would, and prints the marshalled RuntimeInfo. Errors go to stderr, which containerd
/// quotes.
fn run_info() -> i32 {
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let bytes = if nix::unistd::isatty(stdin.as_fd()).unwrap_or(true) {
        Vec::new()
    } else {
        match shim::options::read_until_eof(stdin.as_fd(), shim::options::STDIN_TIMEOUT) {
            Ok(bytes) => bytes,
            Err(e) => {
                eprintln!("{}: {e}", shim::RUNTIME_NAME);
                return 1;
            }
        }
    };
    if let Err(e) = shim::options::parse_shim_options(&bytes) {
        eprintln!("{}: {e}", shim::RUNTIME_NAME);
        return 1;
    }
    let options = match (!bytes.is_empty()).then(|| Any::parse_from_bytes(&bytes)) {
        None => None,
        Some(Ok(any)) => (!any.type_url.is_empty()).then_some(any),
        Some(Err(e)) => {
            eprintln!("{}: runtime options: {e}", shim::RUNTIME_NAME);
            return 1;
        }
    };
    let encoded = match containerd_shim_sibling_v2::info::runtime_info_bytes(options) {
        Ok(encoded) => encoded,
        Err(e) => {
            eprintln!("{}: {e}", shim::RUNTIME_NAME);
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(&encoded).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}: write RuntimeInfo: {e}", shim::RUNTIME_NAME);
            1
        }
    }
}

fn run_delete(flags: &containerd_shim::Flags) -> i32 {
    let response = shim::manager::delete(flags);
    let mut out = std::io::stdout().lock();
    match response.write_to_writer(&mut out).and_then(|()| {
        out.flush()
            .map_err(containerd_shim_protos::protobuf::Error::from)
    }) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("write delete response: {e}");
            1
        }
    }
}
