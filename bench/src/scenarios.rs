//! The benchmark scenarios. Every one runs both runtimes in the same run, alternating which goes
//! first, so that the machine's noise (other tenants, page cache, CPU frequency) hits both alike.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::lifecycle::{Containerd, Error, NULL, Phases, RUNC, SIBLING};
use crate::memory::{self, Usage};
use crate::stats::Summary;

/// One value per runtime.
#[derive(Debug, Clone, Default)]
pub struct PerRuntime<T> {
    pub sibling: T,
    pub runc: T,
}

impl<T> PerRuntime<T> {
    pub fn get_mut(&mut self, runtime: &str) -> &mut T {
        if runtime == SIBLING {
            &mut self.sibling
        } else {
            &mut self.runc
        }
    }
}

/// Run `i` goes sibling first when `i` is even, runc first when odd.
fn order(i: usize) -> [&'static str; 2] {
    if i.is_multiple_of(2) {
        [SIBLING, RUNC]
    } else {
        [RUNC, SIBLING]
    }
}

fn short(runtime: &str) -> &'static str {
    match runtime {
        SIBLING => "sib",
        NULL => "null",
        _ => "runc",
    }
}

/// Run `i` with the null shim too: sibling and runc in `order(i)`, the null shim first, between
/// them or last in turn.
fn order_with_null(i: usize) -> Vec<&'static str> {
    let mut runtimes = order(i).to_vec();
    runtimes.insert(i % 3, NULL);
    runtimes
}

/// Scenario 1: the task phases of a container running `true`, through gRPC.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    pub create: Summary,
    pub start: Summary,
    pub create_start: Summary,
    pub wait: Summary,
    pub delete: Summary,
    pub total: Summary,
    pub wrong_exits: usize,
}

/// Scenario 1 for sibling and runc.v2, and with `null` for the null shim too (containerd's own
/// cost: bench/null-shim), in the same alternation.
pub async fn lifecycle(
    cd: &Containerd,
    runs: usize,
    null: bool,
) -> Result<(PerRuntime<Lifecycle>, Option<Lifecycle>), Error> {
    let runtimes = |i| {
        if null {
            order_with_null(i)
        } else {
            order(i).to_vec()
        }
    };
    // Warm-up: the first shim start of each runtime pays for loading binaries into the page cache.
    for i in 0..3 {
        for runtime in runtimes(i) {
            cd.run_container(
                &format!("warm-{}-{i}", short(runtime)),
                runtime,
                &["/bin/true"],
            )
            .await?;
        }
    }
    let mut samples: PerRuntime<Vec<Phases>> = PerRuntime::default();
    let mut wrong: PerRuntime<usize> = PerRuntime::default();
    let mut null_samples = Vec::new();
    let mut null_wrong = 0;
    for i in 0..runs {
        for runtime in runtimes(i) {
            let id = format!("lat-{}-{i}", short(runtime));
            let (phases, exit) = cd.run_container(&id, runtime, &["/bin/true"]).await?;
            if runtime == NULL {
                null_samples.push(phases);
                null_wrong += usize::from(exit != 0);
                continue;
            }
            samples.get_mut(runtime).push(phases);
            if exit != 0 {
                *wrong.get_mut(runtime) += 1;
            }
        }
    }
    let per_runtime = PerRuntime {
        sibling: summarize(&samples.sibling, wrong.sibling),
        runc: summarize(&samples.runc, wrong.runc),
    };
    Ok((
        per_runtime,
        null.then(|| summarize(&null_samples, null_wrong)),
    ))
}

fn summarize(phases: &[Phases], wrong_exits: usize) -> Lifecycle {
    let of = |f: &dyn Fn(&Phases) -> Duration| {
        Summary::of_durations(&phases.iter().map(f).collect::<Vec<_>>())
    };
    Lifecycle {
        create: of(&|p| p.create),
        start: of(&|p| p.start),
        create_start: of(&|p| p.create + p.start),
        wait: of(&|p| p.wait),
        delete: of(&|p| p.delete),
        total: of(&|p| p.total()),
        wrong_exits,
    }
}

/// Where `ctr` finds containerd and keeps its files.
pub struct CtrSetup<'a> {
    pub socket: &'a str,
    pub namespace: &'a str,
    pub image: &'a str,
    pub fifo_dir: &'a Path,
    pub runc_root: &'a Path,
}

/// Scenario 1, end to end: wall time of `ctr run --rm IMAGE ID true`, ctr's own start-up
/// included; the null shim in the same alternation (what any runtime's ctr run costs at least).
pub fn ctr_run(setup: &CtrSetup, runs: usize) -> Result<(PerRuntime<Summary>, Summary), Error> {
    let mut samples: PerRuntime<Vec<Duration>> = PerRuntime::default();
    let mut null = Vec::new();
    let run = |runtime: &str, id: &str| -> Result<Duration, Error> {
        let mut cmd = Command::new("ctr");
        cmd.args(["-a", setup.socket, "-n", setup.namespace, "run", "--rm"])
            .args(["--runtime", runtime, "--fifo-dir"])
            .arg(setup.fifo_dir);
        if runtime == RUNC {
            cmd.arg("--runc-root").arg(setup.runc_root);
        }
        cmd.args([setup.image, id, "/bin/true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let t0 = Instant::now();
        let status = cmd.status()?;
        let took = t0.elapsed();
        if !status.success() {
            return Err(format!("ctr run --runtime {runtime} {id}: {status}").into());
        }
        Ok(took)
    };
    for i in 0..3 {
        for runtime in order_with_null(i) {
            run(runtime, &format!("ctr-warm-{}-{i}", short(runtime)))?;
        }
    }
    for i in 0..runs {
        for runtime in order_with_null(i) {
            let took = run(runtime, &format!("ctr-{}-{i}", short(runtime)))?;
            if runtime == NULL {
                null.push(took);
            } else {
                samples.get_mut(runtime).push(took);
            }
        }
    }
    Ok((
        PerRuntime {
            sibling: Summary::of_durations(&samples.sibling),
            runc: Summary::of_durations(&samples.runc),
        },
        Summary::of_durations(&null),
    ))
}

/// Scenario 2: `containers` whole containers (snapshot, record, task, removal) at a concurrency.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    pub concurrency: usize,
    pub containers: usize,
    pub seconds: f64,
    pub per_second: f64,
    /// The whole machine's busy CPU time during the batch (/proc/stat), per container.
    pub cpu_ms_per_container: f64,
    pub wrong_exits: usize,
    pub errors: usize,
}

/// Throughput of sibling and runc.v2 at each concurrency, and of the null shim (the most any
/// runtime could reach through this containerd), in turn.
pub async fn throughput(
    cd: &Containerd,
    containers: usize,
    concurrencies: &[usize],
) -> (Vec<PerRuntime<Throughput>>, Vec<Throughput>) {
    let mut rows = Vec::new();
    let mut null_rows = Vec::new();
    for (k, &concurrency) in concurrencies.iter().enumerate() {
        let mut row: PerRuntime<Throughput> = PerRuntime::default();
        for runtime in order_with_null(k) {
            let result = batch(cd, runtime, containers, concurrency).await;
            if runtime == NULL {
                null_rows.push(result);
            } else {
                *row.get_mut(runtime) = result;
            }
        }
        rows.push(row);
    }
    (rows, null_rows)
}

/// The machine's busy CPU time since boot, in ms: user, nice, system, irq, softirq and steal
/// of /proc/stat's `cpu` line (in USER_HZ, 100 per second on Linux).
fn busy_cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: f64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    busy * 10.0
}

/// Each container exits with its own code (`i % 50`), so a misrouted exit shows.
async fn batch(
    cd: &Containerd,
    runtime: &str,
    containers: usize,
    concurrency: usize,
) -> Throughput {
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = busy_cpu_ms();
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (cd, next, runtime) = (cd.clone(), Arc::clone(&next), runtime.to_string());
        workers.push(tokio::spawn(async move {
            let (mut wrong, mut errors) = (0, 0);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= containers {
                    return (wrong, errors);
                }
                let id = format!("tp-{}-c{concurrency}-{i}", short(&runtime));
                let code = (i % 50) as u32;
                let script = format!("exit {code}");
                match cd
                    .run_container(&id, &runtime, &["/bin/sh", "-c", &script])
                    .await
                {
                    // The null shim runs nothing: every task of it exits with 0.
                    Ok((_, exit)) if exit == code || runtime == NULL => {}
                    Ok((_, exit)) => {
                        eprintln!("bench: {id}: exit {exit}, expected {code}");
                        wrong += 1;
                    }
                    Err(e) => {
                        eprintln!("bench: {id}: {e}");
                        errors += 1;
                    }
                }
            }
        }));
    }
    let (mut wrong_exits, mut errors) = (0, 0);
    for worker in workers {
        let (wrong, failed) = worker.await.unwrap_or((0, 1));
        wrong_exits += wrong;
        errors += failed;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = busy_cpu_ms() - cpu0;
    Throughput {
        concurrency,
        containers,
        seconds,
        per_second: containers as f64 / seconds,
        cpu_ms_per_container: cpu / containers.max(1) as f64,
        wrong_exits,
        errors,
    }
}

/// Scenario 3: the shims' memory with `containers` long-running containers per runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub containers: usize,
    pub usage: Usage,
}

impl Memory {
    pub fn pss_per_container_kib(&self) -> f64 {
        self.usage.pss_kib as f64 / self.containers.max(1) as f64
    }
    pub fn rss_per_container_kib(&self) -> f64 {
        self.usage.rss_kib as f64 / self.containers.max(1) as f64
    }
}

pub async fn memory(
    cd: &Containerd,
    socket: &str,
    containers: usize,
) -> Result<PerRuntime<Memory>, Error> {
    let mut result: PerRuntime<Memory> = PerRuntime::default();
    for runtime in order(0) {
        let ids: Vec<String> = (0..containers)
            .map(|i| format!("mem-{}-{i}", short(runtime)))
            .collect();
        let mut started = Vec::new();
        let mut failure = None;
        for id in &ids {
            match cd.start_long_running(id, runtime).await {
                Ok(()) => started.push(id.clone()),
                Err(e) => {
                    failure = Some(format!("{id}: {e}"));
                    break;
                }
            }
        }
        if failure.is_none() {
            // Let the shims reach their steady state (the Go runtime grows its heap and
            // threads after start-up): measuring at once would flatter runc.v2.
            tokio::time::sleep(Duration::from_secs(2)).await;
            *result.get_mut(runtime) = Memory {
                containers,
                usage: memory::shims_of(socket, runtime),
            };
        }
        let stops: Vec<_> = started
            .iter()
            .map(|id| {
                let (cd, id) = (cd.clone(), id.clone());
                tokio::spawn(async move { cd.stop_long_running(&id).await })
            })
            .collect();
        for stop in stops {
            stop.await??;
        }
        if let Some(failure) = failure {
            return Err(failure.into());
        }
    }
    Ok(result)
}

/// Scenario 4: `true` exec'd into one running container, one after another and 32 at once.
#[derive(Debug, Clone, Default)]
pub struct Exec {
    pub sequential: Summary,
    /// Wall time of a batch of concurrent execs.
    pub concurrent_batch: Summary,
    /// Latency of each exec within the concurrent batches.
    pub concurrent_each: Summary,
    pub wrong_exits: usize,
}

/// Scenario 4 for sibling and runc.v2, and for the null shim in the same alternation (its
/// execs answer at once: containerd's own cost of an exec).
pub async fn exec(
    cd: &Containerd,
    sequential: usize,
    concurrent: usize,
    batches: usize,
) -> Result<(PerRuntime<Exec>, Exec), Error> {
    let container = |runtime: &str| format!("exec-{}", short(runtime));
    for runtime in [SIBLING, RUNC, NULL] {
        cd.start_long_running(&container(runtime), runtime).await?;
    }
    let result = exec_in(cd, &container, sequential, concurrent, batches).await;
    for runtime in [SIBLING, RUNC, NULL] {
        cd.stop_long_running(&container(runtime)).await?;
    }
    result
}

/// One runtime's exec samples.
#[derive(Default)]
struct ExecSamples {
    sequential: Vec<Duration>,
    batch_walls: Vec<Duration>,
    each: Vec<Duration>,
    wrong: usize,
}

impl ExecSamples {
    fn summary(&self) -> Exec {
        Exec {
            sequential: Summary::of_durations(&self.sequential),
            concurrent_batch: Summary::of_durations(&self.batch_walls),
            concurrent_each: Summary::of_durations(&self.each),
            wrong_exits: self.wrong,
        }
    }
}

async fn exec_in(
    cd: &Containerd,
    container: &dyn Fn(&str) -> String,
    sequential: usize,
    concurrent: usize,
    batches: usize,
) -> Result<(PerRuntime<Exec>, Exec), Error> {
    let mut samples: std::collections::HashMap<&str, ExecSamples> = [SIBLING, RUNC, NULL]
        .into_iter()
        .map(|runtime| (runtime, ExecSamples::default()))
        .collect();
    for i in 0..3 {
        for runtime in order_with_null(i) {
            cd.exec(&container(runtime), &format!("warm-{i}"), &["/bin/true"])
                .await?;
        }
    }
    for i in 0..sequential {
        for runtime in order_with_null(i) {
            let (took, exit) = cd
                .exec(&container(runtime), &format!("seq-{i}"), &["/bin/true"])
                .await?;
            let s = samples.get_mut(runtime).expect("every runtime has samples");
            s.sequential.push(took);
            s.wrong += usize::from(exit != 0);
        }
    }
    for b in 0..batches {
        for runtime in order_with_null(b) {
            let t0 = Instant::now();
            let execs: Vec<_> = (0..concurrent)
                .map(|j| {
                    let (cd, id) = (cd.clone(), container(runtime));
                    tokio::spawn(async move {
                        cd.exec(&id, &format!("conc-{b}-{j}"), &["/bin/true"]).await
                    })
                })
                .collect();
            let s = samples.get_mut(runtime).expect("every runtime has samples");
            for exec in execs {
                let (took, exit) = exec.await??;
                s.each.push(took);
                s.wrong += usize::from(exit != 0);
            }
            s.batch_walls.push(t0.elapsed());
        }
    }
    Ok((
        PerRuntime {
            sibling: samples[SIBLING].summary(),
            runc: samples[RUNC].summary(),
        },
        samples[NULL].summary(),
    ))
}

/// Scenario 5: the kernel's floor.
#[derive(Debug, Clone, Default)]
pub struct Floor {
    /// `unshare --fork --pid --mount --uts --ipc --net chroot <rootfs> /bin/true`.
    pub unshare: Summary,
    /// The same namespaces and one exec of `true`, with the system calls alone (sibling-floor).
    pub container: Summary,
    /// CPU time of one such container start, in ms.
    pub container_cpu_ms: f64,
    /// Entering those namespaces of a running container and executing `true` (sibling-floor).
    pub exec: Summary,
}

pub fn floor(rootfs: &Path, runs: usize) -> Result<Floor, Error> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs + 3 {
        let t0 = Instant::now();
        let status = Command::new("unshare")
            .args([
                "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "chroot",
            ])
            .arg(rootfs)
            .arg("/bin/true")
            .status()?;
        samples.push(t0.elapsed());
        if !status.success() {
            return Err(format!(
                "unshare ... chroot {} /bin/true: {status}",
                rootfs.display()
            )
            .into());
        }
    }
    let (container, container_cpu_ms) = floor_tool("container", rootfs, runs)?;
    let (exec, _) = floor_tool("exec", rootfs, runs)?;
    Ok(Floor {
        unshare: Summary::of_durations(&samples[3..]),
        container,
        container_cpu_ms,
        exec,
    })
}

/// Runs `sibling-floor KIND ROOTFS RUNS` (built beside this binary, bench/null-shim): its runs'
/// times (the first 3 dropped as warm-up) and its CPU time per run in ms.
fn floor_tool(kind: &str, rootfs: &Path, runs: usize) -> Result<(Summary, f64), Error> {
    let tool = std::env::current_exe()?.with_file_name("sibling-floor");
    let output = Command::new(&tool)
        .arg(kind)
        .arg(rootfs)
        .arg((runs + 3).to_string())
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!("{} {kind}: {}", tool.display(), output.status).into());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut times = Vec::new();
    let mut cpu_ms = 0.0;
    for line in text.lines() {
        if let Some(cpu) = line.strip_prefix("cpu ") {
            cpu_ms = cpu.parse::<f64>()? / 1000.0;
        } else {
            times.push(Duration::from_micros(line.parse()?));
        }
    }
    let times = times.get(3..).unwrap_or_default();
    Ok((Summary::of_durations(times), cpu_ms))
}
