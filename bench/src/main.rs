//! `make bench`: io.containerd.sibling.v2 side by side with io.containerd.runc.v2.
//!
//! scripts/bench.sh prepares a private containerd, imports the busybox image and calls this
//! with where everything is; this runs the scenarios (scenarios.rs) and writes the report
//! (report.rs) to docs/BENCHMARKS.md and docs/bench/.

mod lifecycle;
mod memory;
mod report;
mod scenarios;
mod stats;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use lifecycle::{Containerd, Error};
use report::{Machine, Results};
use scenarios::CtrSetup;

const USAGE: &str = "usage: sibling-bench --socket S --namespace NS --image NAME --parent CHAINID \
--spec FILE --rootfs DIR --work DIR --out DIR [--runs N] [--containers N] [--concurrency 1,8,32] \
[--memory N] [--execs N] [--concurrent-execs N] [--batches N] [--shim TEXT] \
[--shared-socket S --shared-parent CHAINID --shared-config FILE]";

struct Args {
    values: HashMap<String, String>,
}

impl Args {
    fn parse() -> Result<Args, Error> {
        let mut values = HashMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected {flag:?}\n{USAGE}"))?;
            let value = args
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            values.insert(name.to_string(), value);
        }
        Ok(Args { values })
    }

    fn text(&self, name: &str) -> Result<String, Error> {
        self.values
            .get(name)
            .cloned()
            .ok_or_else(|| format!("--{name} is required\n{USAGE}").into())
    }

    fn number(&self, name: &str, default: usize) -> Result<usize, Error> {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("--{name} {v:?}: {e}").into()),
        }
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("sibling-bench: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Error> {
    let args = Args::parse()?;
    let socket = args.text("socket")?;
    let namespace = args.text("namespace")?;
    let image = args.text("image")?;
    let work = PathBuf::from(args.text("work")?);
    let out = PathBuf::from(args.text("out")?);
    let rootfs = PathBuf::from(args.text("rootfs")?);
    let runs = args.number("runs", 50)?;
    let containers = args.number("containers", 200)?;
    let concurrencies: Vec<usize> = args
        .values
        .get("concurrency")
        .map(String::as_str)
        .unwrap_or("1,8,32")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let memory_containers = args.number("memory", 50)?;
    let execs = args.number("execs", 100)?;
    let concurrent_execs = args.number("concurrent-execs", 32)?;
    let batches = args.number("batches", 5)?;
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(args.text("spec")?)?)?;
    let runc_root = work.join("runc");
    let fifo_dir = work.join("fifo");

    let cd = Containerd::connect(
        &socket,
        &namespace,
        &image,
        &args.text("parent")?,
        spec,
        runc_root.clone(),
    )
    .await?;

    eprintln!("bench: 1. lifecycle, {runs} runs per runtime");
    let (lifecycle, null) = scenarios::lifecycle(&cd, runs, true).await?;
    // The same lifecycle with sibling's sharing option turned on (runtime options naming a
    // config file with containers_per_shim and idle_seconds), against a second containerd so
    // that its idle daemons never mix with the default mode's figures.
    let shared = match args.values.get("shared-socket") {
        Some(shared_socket) => {
            eprintln!("bench: 1. lifecycle with shared sibling daemons, {runs} runs per runtime");
            let mut cd = Containerd::connect(
                shared_socket,
                &namespace,
                &image,
                &args.text("shared-parent")?,
                serde_json::from_slice(&std::fs::read(args.text("spec")?)?)?,
                runc_root.clone(),
            )
            .await?;
            cd.sibling_config = Some(args.text("shared-config")?);
            Some(scenarios::lifecycle(&cd, runs, false).await?.0)
        }
        None => None,
    };
    eprintln!("bench: 1. ctr run --rm, {runs} runs per runtime");
    let setup = CtrSetup {
        socket: &socket,
        namespace: &namespace,
        image: &image,
        fifo_dir: &fifo_dir,
        runc_root: &runc_root,
    };
    let (ctr_run, ctr_run_null) = tokio::task::block_in_place(|| scenarios::ctr_run(&setup, runs))?;
    eprintln!("bench: 2. throughput, {containers} containers at {concurrencies:?}");
    let (throughput, throughput_null) =
        scenarios::throughput(&cd, containers, &concurrencies).await;
    eprintln!("bench: 3. memory, {memory_containers} containers per runtime");
    let memory = scenarios::memory(&cd, &socket, memory_containers).await?;
    eprintln!("bench: 4. exec, {execs} sequential, {batches} x {concurrent_execs} concurrent");
    let (exec, exec_null) = scenarios::exec(&cd, execs, concurrent_execs, batches).await?;
    eprintln!("bench: 5. floor");
    let floor = tokio::task::block_in_place(|| scenarios::floor(&rootfs, runs))?;

    let results = Results {
        machine: machine(args.values.get("shim").cloned().unwrap_or_default()),
        runs,
        lifecycle,
        null,
        shared,
        ctr_run,
        ctr_run_null,
        throughput,
        throughput_null,
        memory,
        exec,
        exec_null,
        exec_counts: (execs, concurrent_execs, batches),
        floor,
    };
    let markdown = results.markdown("make bench");
    std::fs::create_dir_all(out.join("bench"))?;
    std::fs::write(out.join("BENCHMARKS.md"), &markdown)?;
    std::fs::write(out.join("bench/ratios.svg"), results.svg())?;
    println!("{markdown}");
    Ok(())
}

fn machine(shim: String) -> Machine {
    let first_line = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.lines().next().map(str::to_string))
            .unwrap_or_else(|| format!("{program}: unknown"))
    };
    let proc_field = |file: &str, name: &str| {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    Machine {
        date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        cpu: proc_field("/proc/cpuinfo", "model name"),
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        memory: proc_field("/proc/meminfo", "MemTotal"),
        kernel: first_line("uname", &["-r"]),
        containerd: first_line("containerd", &["--version"]),
        runc: first_line("runc", &["--version"]),
        shim,
    }
}
