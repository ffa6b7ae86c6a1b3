//! `containerd-shim-sibling-v2`: a containerd shim v2 that is its own OCI runtime.
//!
//! containerd runs this binary three ways: `start` (print the daemon's ttrpc address), `delete`
//! (clean up after a daemon that died), and with no action as the daemon itself.

use std::io::Write;

use containerd_shim_sibling_v2::shim;

use containerd_shim_protos::protobuf::Message;

fn main() {
    let args: Vec<_> = std::env::args_os().collect();
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
