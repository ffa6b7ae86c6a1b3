//! docs/BENCHMARKS.md and docs/bench/ratios.svg from one run's results.

use std::fmt::Write as _;

use crate::scenarios::{Exec, Floor, Lifecycle, Memory, PerRuntime, Throughput};
use crate::stats::Summary;

/// The machine and versions the numbers come from.
pub struct Machine {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub containerd: String,
    pub runc: String,
    pub shim: String,
}

pub struct Results {
    pub machine: Machine,
    pub runs: usize,
    pub lifecycle: PerRuntime<Lifecycle>,
    /// The same lifecycle, in the same alternation, with the null shim (bench/null-shim): what
    /// containerd costs with a shim that makes no container.
    pub null: Option<Lifecycle>,
    /// The lifecycle again with sibling set to a daemon per container that exits with it.
    /// Scenario 1 with sibling's sharing option on.
    pub shared: Option<PerRuntime<Lifecycle>>,
    pub ctr_run: PerRuntime<Summary>,
    /// `ctr run --rm` with the null shim, in the same alternation.
    pub ctr_run_null: Summary,
    pub throughput: Vec<PerRuntime<Throughput>>,
    /// The null shim's throughput at each concurrency, in the same order.
    pub throughput_null: Vec<Throughput>,
    pub memory: PerRuntime<Memory>,
    pub exec: PerRuntime<Exec>,
    /// Execs through the null shim, in the same alternation.
    pub exec_null: Exec,
    pub exec_counts: (usize, usize, usize),
    pub floor: Floor,
}

/// A claim: how many times better sibling is, and the target the issue set.
pub struct Headline {
    pub what: &'static str,
    pub ratio: f64,
    pub target: Option<f64>,
    /// The best ratio any runtime could have reached in this run: runc.v2's figure against
    /// the least any runtime pays, the null shim's (containerd's own cost) plus the kernel's
    /// floor of section 5 (for own costs, the kernel's floor alone; for throughput, the CPU
    /// those two take). None where no floor was measured.
    pub ceiling: Option<f64>,
}

impl Headline {
    fn verdict(&self) -> &'static str {
        match (self.target, self.ceiling) {
            (Some(target), _) if self.ratio >= target => "met",
            (Some(target), Some(ceiling)) if ceiling < target => {
                "missed: the target is above the ceiling"
            }
            (Some(_), _) => "missed",
            (None, _) => "",
        }
    }
}

fn ratio(slower: f64, faster: f64) -> f64 {
    if faster > 0.0 { slower / faster } else { 0.0 }
}

/// A runtime's own cost: its median minus the null shim's (containerd's share), never below 0.
fn own(runtime: Summary, null: Summary) -> f64 {
    (runtime.median - null.median).max(0.0)
}

impl Results {
    /// The claims, default mode (a daemon per container) first; targets from issue 17.
    pub fn headlines(&self) -> Vec<Headline> {
        let (l, t8) = (&self.lifecycle, self.throughput_at(8));
        let kernel = self.floor.container.median;
        let mut headlines = Vec::new();
        if let Some(null) = &self.null {
            let runc_own = own(l.runc.create_start, null.create_start);
            headlines.push(Headline {
                what: "task create + start, own cost (minus the null shim)",
                ratio: ratio(runc_own, own(l.sibling.create_start, null.create_start)),
                target: Some(10.0),
                ceiling: Some(ratio(runc_own, kernel)),
            });
        }
        // runc.v2's figure against containerd's own cost plus the kernel's floor.
        let least = |runc: f64, null: f64, floor: f64| ratio(runc, null + floor);
        let null_of = |f: fn(&Lifecycle) -> Summary| self.null.as_ref().map(|n| f(n).median);
        headlines.extend([
            Headline {
                what: "task create + start, as containerd's client sees it",
                ratio: ratio(l.runc.create_start.median, l.sibling.create_start.median),
                target: None,
                ceiling: null_of(|n| n.create_start)
                    .map(|n| least(l.runc.create_start.median, n, kernel)),
            },
            Headline {
                what: "ctr run --rm, end to end",
                ratio: ratio(self.ctr_run.runc.median, self.ctr_run.sibling.median),
                target: Some(2.5),
                ceiling: Some(least(
                    self.ctr_run.runc.median,
                    self.ctr_run_null.median,
                    kernel,
                )),
            },
            Headline {
                what: "shim memory (PSS) per running container",
                ratio: ratio(
                    self.memory.runc.pss_per_container_kib(),
                    self.memory.sibling.pss_per_container_kib(),
                ),
                target: Some(3.0),
                ceiling: None,
            },
        ]);
        if let Some(t8) = t8 {
            headlines.push(Headline {
                what: "throughput at concurrency 8",
                ratio: ratio(t8.sibling.per_second, t8.runc.per_second),
                target: Some(3.5),
                ceiling: self
                    .best_throughput(8)
                    .map(|best| ratio(best, t8.runc.per_second)),
            });
        }
        headlines.extend([
            Headline {
                what: "exec of true, sequential",
                ratio: ratio(
                    self.exec.runc.sequential.median,
                    self.exec.sibling.sequential.median,
                ),
                target: Some(6.0),
                ceiling: Some(least(
                    self.exec.runc.sequential.median,
                    self.exec_null.sequential.median,
                    self.floor.exec.median,
                )),
            },
            Headline {
                what: "task lifecycle total (create to delete)",
                ratio: ratio(l.runc.total.median, l.sibling.total.median),
                target: None,
                ceiling: null_of(|n| n.total).map(|n| least(l.runc.total.median, n, kernel)),
            },
        ]);
        if let Some(d) = &self.shared {
            headlines.push(Headline {
                what: "task create + start, shared daemons (an option)",
                ratio: ratio(d.runc.create_start.median, d.sibling.create_start.median),
                target: None,
                ceiling: None,
            });
        }
        headlines
    }

    /// The most containers per second any runtime could have made at `concurrency`: the null
    /// shim's rate, and at most what the machine's CPUs allow when each container costs the
    /// null shim's CPU plus the kernel floor's.
    fn best_throughput(&self, concurrency: usize) -> Option<f64> {
        let null = self
            .throughput_null
            .iter()
            .find(|t| t.concurrency == concurrency)?;
        let cpu_ms = null.cpu_ms_per_container + self.floor.container_cpu_ms;
        let cpu_bound = self.machine.cores as f64 * 1000.0 / cpu_ms;
        Some(null.per_second.min(cpu_bound))
    }

    fn throughput_at(&self, concurrency: usize) -> Option<&PerRuntime<Throughput>> {
        self.throughput
            .iter()
            .find(|row| row.sibling.concurrency == concurrency)
    }

    pub fn markdown(&self, command: &str) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(w, "# Benchmarks: sibling side by side with runc.v2\n");
        let _ = writeln!(
            w,
            "Written by `{command}` on {}. Both runtimes ran in the same run, against the same \
             private containerd, alternating run by run. **Ratios are the claim**: the machine is \
             shared and noisy, absolute times move from run to run.\n",
            m.date
        );
        let _ = writeln!(w, "| | |\n|---|---|");
        let _ = writeln!(w, "| CPU | {} ({} cores) |", m.cpu, m.cores);
        let _ = writeln!(w, "| Memory | {} |", m.memory);
        let _ = writeln!(w, "| Kernel | {} |", m.kernel);
        let _ = writeln!(w, "| containerd | {} |", m.containerd);
        let _ = writeln!(
            w,
            "| runc.v2 | Debian's containerd-shim-runc-v2 with {} |",
            m.runc
        );
        let _ = writeln!(w, "| sibling | {} |\n", m.shim);

        let _ = writeln!(
            w,
            "## Headline ratios\n\nsibling in its default mode, a daemon per container (the \
             sharing option is the last row). *Own cost* is a runtime's time minus the null \
             shim's, containerd's own cost measured in the same run (section 1). The *ceiling* \
             is the best ratio any runtime could have reached in this run: runc.v2's figure \
             against the least any runtime pays, containerd's own cost (the null shim's) plus \
             the kernel's work of a container or an exec with the system calls alone (section \
             5, which leaves out the mounts, cgroups and pivot_root a spec asks for, so the \
             ceiling is if anything high); for the own cost, against the kernel's floor alone; \
             for throughput, the null shim's rate, or what the CPUs allow if every container \
             costs the null shim's CPU plus the kernel floor's.\n"
        );
        let _ = writeln!(
            w,
            "| | sibling is | target | ceiling | |\n|---|---:|---:|---:|---|"
        );
        for h in self.headlines() {
            let target = h.target.map(|t| format!("{t}x")).unwrap_or_default();
            let ceiling = h.ceiling.map(|c| format!("{c:.1}x")).unwrap_or_default();
            let _ = writeln!(
                w,
                "| {} | {:.1}x better | {} | {} | {} |",
                h.what,
                h.ratio,
                target,
                ceiling,
                h.verdict()
            );
        }
        let _ = writeln!(w, "\n![ratios](bench/ratios.svg)\n");
        let _ = writeln!(
            w,
            "Where the time and memory go, and why the missed targets are missed: \
             [PERFORMANCE.md](PERFORMANCE.md).\n"
        );

        let _ = writeln!(
            w,
            "## 1. Lifecycle of one container running `true`\n\nThrough containerd's gRPC API \
             (bench/, on the containerd-client crate), {} runs per runtime after 3 warm-ups. The \
             snapshot and container record are made before the clock starts. Milliseconds.\n",
            self.runs
        );
        lifecycle_table(
            w,
            &self.lifecycle,
            &[
                ("Create", |l| l.create),
                ("Start", |l| l.start),
                ("Create + Start", |l| l.create_start),
                ("Start → exit seen by Wait", |l| l.wait),
                ("Delete", |l| l.delete),
                ("total", |l| l.total),
            ],
        );
        let _ = writeln!(
            w,
            "sibling runs in its default mode here: a daemon per container that exits with it, \
             as runc.v2's does. Every sibling Create starts a daemon and its spawner.\n"
        );
        if let Some(null) = &self.null {
            null_table(w, &self.lifecycle, null);
        }
        if let Some(d) = &self.shared {
            let _ = writeln!(
                w,
                "The same with sibling's sharing option turned on (runtime options naming a file \
                 with `containers_per_shim = 16`, `idle_seconds = 10`; README, \"Shared \
                 daemons\"), against a second private containerd: every container after the \
                 first finds its daemon running. This trades failure isolation for speed: a \
                 daemon's crash takes all of its containers with it.\n"
            );
            lifecycle_table(
                w,
                d,
                &[
                    ("Create", |l| l.create),
                    ("Create + Start", |l| l.create_start),
                    ("Delete", |l| l.delete),
                    ("total", |l| l.total),
                ],
            );
        }
        let _ = writeln!(
            w,
            "End to end, `ctr run --rm <image> <id> /bin/true` (ctr's own start-up included):\n"
        );
        let _ = writeln!(
            w,
            "| | sibling median | sibling p95 | runc.v2 median | runc.v2 p95 | ratio |\n\
             |---|---:|---:|---:|---:|---:|"
        );
        let _ = writeln!(
            w,
            "{}\n",
            summary_row("ctr run --rm", self.ctr_run.sibling, self.ctr_run.runc)
        );
        let _ = writeln!(
            w,
            "The null shim in the same alternation: median {:.2} ms, p95 {:.2} ms. Own costs \
             (minus it): sibling {:.2} ms, runc.v2 {:.2} ms, {:.1}x.\n",
            self.ctr_run_null.median,
            self.ctr_run_null.p95,
            own(self.ctr_run.sibling, self.ctr_run_null),
            own(self.ctr_run.runc, self.ctr_run_null),
            ratio(
                own(self.ctr_run.runc, self.ctr_run_null),
                own(self.ctr_run.sibling, self.ctr_run_null)
            ),
        );

        let _ = writeln!(
            w,
            "## 2. Throughput\n\nWhole containers (snapshot, record, task, removal) each running \
             `sh -c 'exit N'` with its own N, so a misrouted exit code shows. The null shim \
             ran the same containers in turn (its tasks all exit with 0, so it has no wrong \
             exits to count): the most any runtime could reach through this containerd. CPU ms \
             per container is the whole machine's busy time during the batch (/proc/stat) over \
             its containers: containerd, the shims, the containers and whatever else ran.\n"
        );
        let _ = writeln!(
            w,
            "| concurrency | containers | sibling /s | runc.v2 /s | ratio | null shim /s | CPU ms per container (sibling / runc.v2 / null shim) | wall s (sibling / runc.v2) | wrong exits | errors |\n\
             |---:|---:|---:|---:|---:|---:|---|---|---|---|"
        );
        for (k, row) in self.throughput.iter().enumerate() {
            let (s, r) = (&row.sibling, &row.runc);
            let n = self.throughput_null.get(k).cloned().unwrap_or_default();
            let _ = writeln!(
                w,
                "| {} | {} | {:.1} | {:.1} | {:.1}x | {:.1} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} | {} / {} | {} / {} |",
                s.concurrency,
                s.containers,
                s.per_second,
                r.per_second,
                ratio(s.per_second, r.per_second),
                n.per_second,
                s.cpu_ms_per_container,
                r.cpu_ms_per_container,
                n.cpu_ms_per_container,
                s.seconds,
                r.seconds,
                s.wrong_exits,
                r.wrong_exits,
                s.errors,
                r.errors
            );
        }

        let (ms, mr) = (&self.memory.sibling, &self.memory.runc);
        let _ = writeln!(
            w,
            "\n## 3. Memory\n\n{} long-running containers per runtime; the sum over every process \
             the runtime keeps running for them (sibling: shim daemon and spawner; runc.v2: the Go \
             shim), from `/proc/<pid>/smaps_rollup`, 2 s after the last start. KiB per container.\n",
            ms.containers
        );
        let _ = writeln!(
            w,
            "| | processes | RSS per container | PSS per container |\n|---|---:|---:|---:|"
        );
        for (name, mem) in [("sibling", ms), ("runc.v2", mr)] {
            let _ = writeln!(
                w,
                "| {name} | {} | {:.0} | {:.0} |",
                mem.usage.processes,
                mem.rss_per_container_kib(),
                mem.pss_per_container_kib()
            );
        }

        let (es, er) = (&self.exec.sibling, &self.exec.runc);
        let (seq, conc, batches) = self.exec_counts;
        let _ = writeln!(
            w,
            "\n## 4. Exec\n\n`true` exec'd into one running container (Exec, Start, Wait, \
             DeleteProcess): {seq} one after another, then {batches} batches of {conc} at once. \
             Milliseconds.\n"
        );
        let _ = writeln!(
            w,
            "| | sibling median | sibling p95 | runc.v2 median | runc.v2 p95 | ratio |\n\
             |---|---:|---:|---:|---:|---:|"
        );
        let _ = writeln!(
            w,
            "{}",
            summary_row("sequential, each", es.sequential, er.sequential)
        );
        let _ = writeln!(
            w,
            "{}",
            summary_row(
                &format!("{conc} concurrent, batch wall"),
                es.concurrent_batch,
                er.concurrent_batch
            )
        );
        let _ = writeln!(
            w,
            "{}",
            summary_row(
                &format!("{conc} concurrent, each"),
                es.concurrent_each,
                er.concurrent_each
            )
        );
        let en = &self.exec_null;
        let _ = writeln!(
            w,
            "\nThe null shim (its execs answer at once; containerd's own cost of an exec), in the \
             same alternation: sequential median {:.2} ms, p95 {:.2} ms; {conc} concurrent, \
             batch wall median {:.2} ms. Own costs of a sequential exec (minus it): sibling \
             {:.2} ms, runc.v2 {:.2} ms, {:.1}x.",
            en.sequential.median,
            en.sequential.p95,
            en.concurrent_batch.median,
            own(es.sequential, en.sequential),
            own(er.sequential, en.sequential),
            ratio(
                own(er.sequential, en.sequential),
                own(es.sequential, en.sequential)
            ),
        );
        let _ = writeln!(
            w,
            "\nWrong exit codes: sibling {}, runc.v2 {}, null shim {}.\n",
            es.wrong_exits, er.wrong_exits, en.wrong_exits
        );

        let f = &self.floor;
        let _ = writeln!(
            w,
            "## 5. Floor\n\nThe kernel's work of a container and of an exec without any \
             runtime, {} runs each. Milliseconds.\n\n\
             | | median | p95 |\n|---|---:|---:|\n\
             | `unshare --fork --pid --mount --uts --ipc --net chroot <rootfs> /bin/true` (three \
             process starts: unshare, chroot, true) | {:.2} | {:.2} |\n\
             | the same namespaces with the system calls alone, one exec of `true` \
             (bench/null-shim's `sibling-floor container`: fork, unshare, fork, chroot, execve, \
             wait; {:.2} ms of CPU each) | {:.2} | {:.2} |\n\
             | an exec into a running container of those namespaces (`sibling-floor exec`: fork, \
             setns of all five through a pidfd, fork, chroot, execve, wait) | {:.2} | {:.2} |\n",
            f.container.samples,
            f.unshare.median,
            f.unshare.p95,
            f.container_cpu_ms,
            f.container.median,
            f.container.p95,
            f.exec.median,
            f.exec.p95,
        );
        let _ = writeln!(
            w,
            "Neither floor mounts proc, dev or sys, joins or makes a cgroup or pivots the root, \
             all of which a spec asks for: they are below what any runtime can do. sibling's \
             task Create + Start is {:.1}x the container floor; runc.v2's {:.1}x.",
            ratio(
                self.lifecycle.sibling.create_start.median,
                f.container.median
            ),
            ratio(self.lifecycle.runc.create_start.median, f.container.median),
        );
        if let Some(null) = &self.null {
            let (s, r) = (&self.lifecycle.sibling, &self.lifecycle.runc);
            let _ = writeln!(
                w,
                "\nOwn costs (minus the null shim) against that floor: sibling's Create + Start \
                 {:.2} ms, {:.1}x the floor; runc.v2's {:.2} ms, {:.1}x. Own cost of a \
                 sequential exec against the exec floor: sibling {:.2} ms, {:.1}x; runc.v2 \
                 {:.2} ms, {:.1}x.",
                own(s.create_start, null.create_start),
                ratio(own(s.create_start, null.create_start), f.container.median),
                own(r.create_start, null.create_start),
                ratio(own(r.create_start, null.create_start), f.container.median),
                own(self.exec.sibling.sequential, self.exec_null.sequential),
                ratio(
                    own(self.exec.sibling.sequential, self.exec_null.sequential),
                    f.exec.median
                ),
                own(self.exec.runc.sequential, self.exec_null.sequential),
                ratio(
                    own(self.exec.runc.sequential, self.exec_null.sequential),
                    f.exec.median
                ),
            );
        }
        out
    }

    /// A horizontal bar per headline: how many times better sibling is, with the target marked.
    pub fn svg(&self) -> String {
        let headlines = self.headlines();
        let (label_w, bar_w, row_h, top) = (300.0, 420.0, 34.0, 40.0);
        let max = headlines
            .iter()
            .map(|h| h.ratio.max(h.target.unwrap_or(0.0)))
            .fold(1.0, f64::max)
            * 1.1;
        let scale = |x: f64| label_w + bar_w * x / max;
        let height = top + row_h * headlines.len() as f64 + 30.0;
        let width = label_w + bar_w + 80.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">"#
        );
        let _ = writeln!(
            s,
            r#"<text x="10" y="22" font-size="15" font-weight="bold">sibling vs runc.v2: times better (higher is better; | = target)</text>"#
        );
        for (i, h) in headlines.iter().enumerate() {
            let y = top + row_h * i as f64;
            let color = match h.verdict() {
                "missed" => "#d9822b",
                _ => "#2b7bd9",
            };
            let _ = writeln!(
                s,
                r#"<text x="10" y="{:.0}">{}</text>"#,
                y + 19.0,
                escape(h.what)
            );
            let _ = writeln!(
                s,
                r#"<rect x="{label_w}" y="{y:.0}" width="{:.1}" height="24" fill="{color}"/>"#,
                scale(h.ratio) - label_w
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.0}">{:.1}x</text>"#,
                scale(h.ratio) + 5.0,
                y + 17.0,
                h.ratio
            );
            if let Some(target) = h.target {
                let x = scale(target);
                let _ = writeln!(
                    s,
                    r#"<line x1="{x:.1}" x2="{x:.1}" y1="{:.0}" y2="{:.0}" stroke="black" stroke-width="2"/>"#,
                    y - 3.0,
                    y + 27.0
                );
            }
        }
        let one = scale(1.0);
        let _ = writeln!(
            s,
            r##"<line x1="{one:.1}" x2="{one:.1}" y1="{top}" y2="{:.0}" stroke="#888" stroke-dasharray="4"/>"##,
            height - 25.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.0}" fill="#555">1x (equal)</text>"##,
            one - 20.0,
            height - 8.0
        );
        s.push_str("</svg>\n");
        s
    }
}

/// A row of a lifecycle table: its name and the phase it shows.
type Phase<'a> = (&'a str, fn(&Lifecycle) -> Summary);

/// A lifecycle table: the given phases of both runtimes, then their wrong exit codes.
fn lifecycle_table(w: &mut String, lifecycle: &PerRuntime<Lifecycle>, phases: &[Phase]) {
    let _ = writeln!(
        w,
        "| phase | sibling median | sibling p95 | runc.v2 median | runc.v2 p95 | ratio |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    let (s, r) = (&lifecycle.sibling, &lifecycle.runc);
    for (name, phase) in phases {
        let _ = writeln!(w, "{}", summary_row(name, phase(s), phase(r)));
    }
    let _ = writeln!(
        w,
        "\nWrong exit codes: sibling {}, runc.v2 {}.\n",
        s.wrong_exits, r.wrong_exits
    );
}

/// containerd's own cost (the null shim's times) and each runtime's own cost beside it.
fn null_table(w: &mut String, lifecycle: &PerRuntime<Lifecycle>, null: &Lifecycle) {
    let _ = writeln!(
        w,
        "containerd's own cost: the same lifecycle, in the same alternation, with a null shim \
         (bench/null-shim, `io.containerd.null.v2`): a shim built on the same ttrpc crates and \
         linked as sibling is (static-pie on musl, .cargo/config.toml, with dlmalloc as its \
         allocator), whose `start` execs its daemon \
         as a real shim does, and which answers Create, Start, Wait and \
         Delete at once and publishes their events, making no container. A runtime's *own* cost \
         is its median minus the null shim's. Milliseconds.\n"
    );
    let _ = writeln!(
        w,
        "| phase | null shim median | null shim p95 | sibling own | runc.v2 own | ratio of own costs |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    let phases: [Phase; 5] = [
        ("Create", |l| l.create),
        ("Start", |l| l.start),
        ("Create + Start", |l| l.create_start),
        ("Delete", |l| l.delete),
        ("total", |l| l.total),
    ];
    for (name, phase) in phases {
        let (n, s, r) = (
            phase(null),
            phase(&lifecycle.sibling),
            phase(&lifecycle.runc),
        );
        let _ = writeln!(
            w,
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1}x |",
            n.median,
            n.p95,
            own(s, n),
            own(r, n),
            ratio(own(r, n), own(s, n))
        );
    }
    let _ = writeln!(w, "\nWrong exit codes: null shim {}.\n", null.wrong_exits);
}

fn summary_row(name: &str, s: Summary, r: Summary) -> String {
    format!(
        "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1}x |",
        s.median,
        s.p95,
        r.median,
        r.p95,
        ratio(r.median, s.median)
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn median(median: f64) -> Summary {
        Summary {
            median,
            ..Default::default()
        }
    }

    #[test]
    fn own_cost_is_the_time_above_the_null_shim() {
        assert_eq!(own(median(12.0), median(8.0)), 4.0);
        // Noise can put a runtime's median under the null shim's: no negative cost.
        assert_eq!(own(median(7.5), median(8.0)), 0.0);
        // runc 68 ms, sibling 12 ms, containerd 8 ms: own costs 60 and 4, 15x.
        let ratio_of_own = ratio(
            own(median(68.0), median(8.0)),
            own(median(12.0), median(8.0)),
        );
        assert_eq!(ratio_of_own, 15.0);
    }

    #[test]
    fn a_target_above_the_ceiling_is_called_so() {
        let headline = |ratio, ceiling| Headline {
            what: "x",
            ratio,
            target: Some(2.5),
            ceiling,
        };
        assert_eq!(headline(2.6, Some(2.4)).verdict(), "met");
        assert_eq!(
            headline(1.9, Some(2.4)).verdict(),
            "missed: the target is above the ceiling"
        );
        assert_eq!(headline(1.9, Some(3.0)).verdict(), "missed");
        assert_eq!(headline(1.9, None).verdict(), "missed");
    }
}
