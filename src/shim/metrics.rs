//! Statistics of a container's cgroup for the task service's `Stats` RPC (`ctr task metrics`),
//! read from the cgroup files: containerd's `io.containerd.cgroups.v1.Metrics` when the
//! controllers are on v1 hierarchies (legacy and hybrid hosts), `io.containerd.cgroups.v2.Metrics`
//! on pure cgroup v2.
//!
//! Which file fills which field follows containerd's own collectors (containerd/cgroups
//! `cgroup1` and `cgroup2`), so the numbers mean what containerd's users expect. A file that
//! does not exist (controller not mounted, swap accounting off, cgroup already removed) is
//! skipped (its fields stay 0, as in containerd); a file that exists but does not have the
//! kernel's shape is an error naming it.
//! Not collected: rdma, network, v1 cgroup_stats (task states) and v2 pressure (PSI).

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use log::debug;
use protobuf::well_known_types::any::Any;
use protobuf::{Message, MessageField};

use crate::cgroups::{Cgroup, CgroupError, CgroupMode};

/// The type URL containerd 1.6+ decodes a v1 `Metrics` from: the message's full protobuf name,
/// without the `type.googleapis.com/` prefix (containerd's typeurl registry has no prefix).
pub const V1_METRICS_TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";
/// The type URL of a v2 `Metrics`, likewise.
pub const V2_METRICS_TYPE_URL: &str = "io.containerd.cgroups.v2.Metrics";

/// Block device names for blkio entries, as containerd resolves them.
const PARTITIONS_PATH: &str = "/proc/partitions";

/// `cpuacct.stat` counts in USER_HZ ticks. The kernel fixes USER_HZ at 100 for userspace on
/// every architecture containerd supports (containerd hard-codes it too), so no `sysconf`.
const USER_HZ: u64 = 100;
const NANOS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;

/// What cgroup v2 prints for "no limit"; containerd's v2 collector reports it as `u64::MAX`.
const V2_UNLIMITED: u64 = u64::MAX;
/// containerd's v1 collector reports a `max` pids limit as 0.
const V1_PIDS_UNLIMITED: u64 = 0;

/// The container's cgroup statistics, packed for `StatsResponse.stats`.
pub fn collect(cgroup: &Cgroup) -> Result<Any, CgroupError> {
    match cgroup.mode() {
        CgroupMode::Legacy | CgroupMode::Hybrid => {
            let metrics = collect_v1(cgroup, Path::new(PARTITIONS_PATH))?;
            pack(V1_METRICS_TYPE_URL, &metrics, cgroup)
        }
        CgroupMode::Unified => {
            let metrics = match cgroup.unified_dir() {
                Some(dir) => collect_v2(dir)?,
                None => v2::Metrics::new(),
            };
            pack(V2_METRICS_TYPE_URL, &metrics, cgroup)
        }
    }
}

/// Built by hand rather than with `Any::pack`, which would add the `type.googleapis.com/`
/// prefix containerd does not expect.
fn pack<M: Message>(type_url: &str, metrics: &M, cgroup: &Cgroup) -> Result<Any, CgroupError> {
    let value = metrics.write_to_bytes().map_err(|e| {
        let dir = cgroup.dirs().first().map_or(Path::new("/"), |d| d.path());
        stats_error(dir, io::Error::other(e))
    })?;
    let mut any = Any::new();
    any.type_url = type_url.to_string();
    any.value = value;
    Ok(any)
}

// ---------------------------------------------------------------------------------------------
// Errors

/// A statistics file that exists but does not have the kernel's documented shape.
#[derive(Debug, PartialEq, Eq)]
struct Malformed {
    line: String,
    reason: &'static str,
}

impl Malformed {
    fn new(line: &str, reason: &'static str) -> Malformed {
        Malformed {
            line: line.to_string(),
            reason,
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed statistics line {:?}: {}",
            self.line, self.reason
        )
    }
}

impl Error for Malformed {}

/// The one place statistics errors become the module's error. `CgroupError` has no variant
/// for statistics (yet), so the failure travels as the `io::Error` of `ReadProcs`, which
/// carries the file's path; a parse failure is an `InvalidData` error wrapping [`Malformed`].
fn stats_error(path: &Path, source: io::Error) -> CgroupError {
    CgroupError::ReadProcs {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading files

/// Whether a read failure means "no such statistic". ENODEV as well as ENOENT: reading a file
/// of a cgroup that is being removed (the container just exited) answers ENODEV.
fn is_missing(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(nix::libc::ENODEV)
}

/// Reads `dir/name` and parses it; `None` when the file does not exist.
fn read_parsed<T>(
    dir: &Path,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, Malformed>,
) -> Result<Option<T>, CgroupError> {
    let path = dir.join(name);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) => return Err(stats_error(&path, e)),
    };
    parse(&text)
        .map(Some)
        .map_err(|m| stats_error(&path, io::Error::new(io::ErrorKind::InvalidData, m)))
}

/// Names of the files in `dir` (the per-page-size hugetlb files are found this way); none
/// when `dir` is gone.
fn list_file_names(dir: &Path) -> Result<Vec<String>, CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_missing(&e) => return Ok(Vec::new()),
        Err(e) => return Err(stats_error(dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| stats_error(dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// Parsing (pure)

/// One number. cgroup v1 prints a few unset values as negative numbers; containerd reads
/// those as 0, and so does this.
fn parse_number(field: &str, line: &str) -> Result<u64, Malformed> {
    if let Ok(value) = field.parse::<u64>() {
        return Ok(value);
    }
    match field.parse::<i64>() {
        Ok(negative) if negative < 0 => Ok(0),
        _ => Err(Malformed::new(line, "not a number")),
    }
}

/// A file holding one number (`memory.usage_in_bytes`, `pids.current`).
fn parse_single(text: &str) -> Result<u64, Malformed> {
    let value = text.trim();
    parse_number(value, value)
}

/// A limit file: a number, or `max` for "no limit", reported as `unlimited`.
fn parse_limit(text: &str, unlimited: u64) -> Result<u64, Malformed> {
    match text.trim() {
        "max" => Ok(unlimited),
        _ => parse_single(text),
    }
}

/// Space-separated numbers on one line (`cpuacct.usage_percpu`).
fn parse_number_list(text: &str) -> Result<Vec<u64>, Malformed> {
    let line = text.trim();
    line.split_whitespace()
        .map(|field| parse_number(field, line))
        .collect()
}

/// A flat-keyed file: `key value` per line (`memory.stat`, `cpu.stat`, `memory.events`).
#[derive(Debug, Default)]
struct FlatKeyed(HashMap<String, u64>);

impl FlatKeyed {
    /// Absent keys read as 0, as in containerd: older kernels lack some, newer ones add others.
    fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }
}

fn parse_flat_keyed(text: &str) -> Result<FlatKeyed, Malformed> {
    let mut values = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let (Some(key), Some(value), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(Malformed::new(line, "expected `key value`"));
        };
        values.insert(key.to_string(), parse_number(value, line)?);
    }
    Ok(FlatKeyed(values))
}

/// `major:minor` of a block device.
fn parse_device(field: &str, line: &str) -> Result<(u64, u64), Malformed> {
    let malformed = || Malformed::new(line, "expected a `major:minor` device");
    let (major, minor) = field.split_once(':').ok_or_else(malformed)?;
    let major = major.parse().map_err(|_| malformed())?;
    let minor = minor.parse().map_err(|_| malformed())?;
    Ok((major, minor))
}

/// Block device names by `(major, minor)`, from `/proc/partitions`
/// (`major minor #blocks name`): the first name of a device wins, as in containerd. The
/// header, and any line that is not a device, is skipped: the names are only decoration.
fn parse_partitions(text: &str) -> HashMap<(u64, u64), String> {
    let mut devices = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [major, minor, _blocks, name] = fields[..] else {
            continue;
        };
        if let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) {
            devices
                .entry((major, minor))
                .or_insert_with(|| format!("/dev/{name}"));
        }
    }
    devices
}

/// A v1 blkio statistics file: `major:minor op value` (or `major:minor value` for files
/// without operations, such as `blkio.sectors_recursive`), and a closing `Total value` line
/// that containerd drops.
fn parse_blkio(
    text: &str,
    devices: &HashMap<(u64, u64), String>,
) -> Result<Vec<v1::BlkIOEntry>, Malformed> {
    let mut entries = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (device, op, value) = match fields[..] {
            ["Total", _] => continue,
            [device, value] => (device, "", value),
            [device, op, value] => (device, op, value),
            _ => return Err(Malformed::new(line, "expected `major:minor [op] value`")),
        };
        let (major, minor) = parse_device(device, line)?;
        let mut entry = v1::BlkIOEntry::new();
        entry.device = devices.get(&(major, minor)).cloned().unwrap_or_default();
        entry.major = major;
        entry.minor = minor;
        entry.op = op.to_string();
        entry.value = parse_number(value, line)?;
        entries.push(entry);
    }
    Ok(entries)
}

/// cgroup v2 `io.stat`: `major:minor key=value...` per device. Keys other than the four
/// containerd reports (`dbytes`, `dios`, iocost's `cost.*` with decimals) are ignored.
fn parse_io_stat(text: &str) -> Result<Vec<v2::IOEntry>, Malformed> {
    let mut entries = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let device = fields.next().unwrap_or_default();
        let (major, minor) = parse_device(device, line)?;
        let mut entry = v2::IOEntry::new();
        entry.major = major;
        entry.minor = minor;
        for pair in fields {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| Malformed::new(line, "expected `key=value`"))?;
            let slot = match key {
                "rbytes" => &mut entry.rbytes,
                "wbytes" => &mut entry.wbytes,
                "rios" => &mut entry.rios,
                "wios" => &mut entry.wios,
                _ => continue,
            };
            *slot = parse_number(value, line)?;
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// The page sizes that have a `hugetlb.<size>.<suffix>` file (`2MB`, `1GB`), sorted. Files
/// with more parts (`hugetlb.2MB.rsvd.usage_in_bytes`) are other counters.
fn hugetlb_page_sizes(names: &[String], suffix: &str) -> Vec<String> {
    let mut sizes: Vec<String> = names
        .iter()
        .filter_map(|name| {
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            let size = size.strip_suffix('.')?;
            (!size.is_empty() && !size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    sizes.dedup();
    sizes
}

fn ticks_to_nanos(ticks: u64) -> u64 {
    ticks.saturating_mul(NANOS_PER_TICK)
}

// ---------------------------------------------------------------------------------------------
// cgroup v1

/// Reads every v1 controller that has a hierarchy. `partitions` names the block devices.
fn collect_v1(cgroup: &Cgroup, partitions: &Path) -> Result<v1::Metrics, CgroupError> {
    let mut metrics = v1::Metrics::new();
    if let Some(dir) = cgroup.v1_dir("pids") {
        metrics.pids = MessageField::from_option(read_v1_pids(dir)?);
    }
    // Always present, usage and throttling included, as containerd fills it: `ctr task
    // metrics` dereferences `CPU.Usage` whenever `CPU` is set.
    metrics.cpu = MessageField::some(read_v1_cpu(cgroup.v1_dir("cpuacct"), cgroup.v1_dir("cpu"))?);
    if let Some(dir) = cgroup.v1_dir("memory") {
        metrics.memory = MessageField::from_option(read_v1_memory(dir)?);
        metrics.memory_oom_control = MessageField::from_option(
            read_parsed(dir, "memory.oom_control", parse_flat_keyed)?
                .map(|stat| oom_control_from_v1(&stat)),
        );
    }
    if let Some(dir) = cgroup.v1_dir("blkio") {
        let devices = read_partitions(partitions);
        metrics.blkio = MessageField::some(read_v1_blkio(dir, &devices)?);
    }
    if let Some(dir) = cgroup.v1_dir("hugetlb") {
        metrics.hugetlb = read_v1_hugetlb(dir)?;
    }
    Ok(metrics)
}

fn read_v1_pids(dir: &Path) -> Result<Option<v1::PidsStat>, CgroupError> {
    let Some(current) = read_parsed(dir, "pids.current", parse_single)? else {
        return Ok(None);
    };
    let mut pids = v1::PidsStat::new();
    pids.current = current;
    pids.limit = read_parsed(dir, "pids.max", |t| parse_limit(t, V1_PIDS_UNLIMITED))?.unwrap_or(0);
    Ok(Some(pids))
}

/// Usage from cpuacct (nanoseconds; `cpuacct.stat` converted from ticks), throttling from
/// the cpu controller's `cpu.stat`. The two may be separate hierarchies (they are here).
fn read_v1_cpu(cpuacct: Option<&Path>, cpu: Option<&Path>) -> Result<v1::CPUStat, CgroupError> {
    let mut usage = v1::CPUUsage::new();
    if let Some(dir) = cpuacct {
        usage.total = read_parsed(dir, "cpuacct.usage", parse_single)?.unwrap_or(0);
        usage.per_cpu =
            read_parsed(dir, "cpuacct.usage_percpu", parse_number_list)?.unwrap_or_default();
        if let Some(stat) = read_parsed(dir, "cpuacct.stat", parse_flat_keyed)? {
            usage.user = ticks_to_nanos(stat.get("user"));
            usage.kernel = ticks_to_nanos(stat.get("system"));
        }
    }
    let mut throttling = v1::Throttle::new();
    if let Some(stat) = cpu
        .map(|dir| read_parsed(dir, "cpu.stat", parse_flat_keyed))
        .transpose()?
        .flatten()
    {
        throttling.periods = stat.get("nr_periods");
        throttling.throttled_periods = stat.get("nr_throttled");
        throttling.throttled_time = stat.get("throttled_time");
    }
    let mut stat = v1::CPUStat::new();
    stat.usage = MessageField::some(usage);
    stat.throttling = MessageField::some(throttling);
    Ok(stat)
}

/// `memory.stat` plus the usage/max/failcnt/limit entries. The plain entry is always set when
/// memory is (`ctr task metrics` dereferences it); swap (`memsw`) and kernel (`kmem`) entries
/// only when the kernel has those files (swap accounting on, kmem not compiled out).
fn read_v1_memory(dir: &Path) -> Result<Option<v1::MemoryStat>, CgroupError> {
    let Some(stat) = read_parsed(dir, "memory.stat", parse_flat_keyed)? else {
        return Ok(None);
    };
    let mut memory = memory_stat_from_v1(&stat);
    memory.usage = MessageField::some(read_v1_memory_entry(dir, "memory")?.unwrap_or_default());
    memory.swap = MessageField::from_option(read_v1_memory_entry(dir, "memory.memsw")?);
    memory.kernel = MessageField::from_option(read_v1_memory_entry(dir, "memory.kmem")?);
    memory.kernel_tcp = MessageField::from_option(read_v1_memory_entry(dir, "memory.kmem.tcp")?);
    Ok(Some(memory))
}

/// `<prefix>.usage_in_bytes` and its siblings; `None` without the usage file.
fn read_v1_memory_entry(dir: &Path, prefix: &str) -> Result<Option<v1::MemoryEntry>, CgroupError> {
    let read = |suffix: &str| read_parsed(dir, &format!("{prefix}.{suffix}"), parse_single);
    let Some(usage) = read("usage_in_bytes")? else {
        return Ok(None);
    };
    let mut entry = v1::MemoryEntry::new();
    entry.usage = usage;
    entry.max = read("max_usage_in_bytes")?.unwrap_or(0);
    entry.failcnt = read("failcnt")?.unwrap_or(0);
    entry.limit = read("limit_in_bytes")?.unwrap_or(0);
    Ok(Some(entry))
}

/// containerd's mapping of v1 `memory.stat` keys (`pgpgin` → `pg_pg_in`, the memsw hierarchy
/// limit → `hierarchical_swap_limit`).
fn memory_stat_from_v1(s: &FlatKeyed) -> v1::MemoryStat {
    v1::MemoryStat {
        cache: s.get("cache"),
        rss: s.get("rss"),
        rss_huge: s.get("rss_huge"),
        mapped_file: s.get("mapped_file"),
        dirty: s.get("dirty"),
        writeback: s.get("writeback"),
        pg_pg_in: s.get("pgpgin"),
        pg_pg_out: s.get("pgpgout"),
        pg_fault: s.get("pgfault"),
        pg_maj_fault: s.get("pgmajfault"),
        inactive_anon: s.get("inactive_anon"),
        active_anon: s.get("active_anon"),
        inactive_file: s.get("inactive_file"),
        active_file: s.get("active_file"),
        unevictable: s.get("unevictable"),
        hierarchical_memory_limit: s.get("hierarchical_memory_limit"),
        hierarchical_swap_limit: s.get("hierarchical_memsw_limit"),
        total_cache: s.get("total_cache"),
        total_rss: s.get("total_rss"),
        total_rss_huge: s.get("total_rss_huge"),
        total_mapped_file: s.get("total_mapped_file"),
        total_dirty: s.get("total_dirty"),
        total_writeback: s.get("total_writeback"),
        total_pg_pg_in: s.get("total_pgpgin"),
        total_pg_pg_out: s.get("total_pgpgout"),
        total_pg_fault: s.get("total_pgfault"),
        total_pg_maj_fault: s.get("total_pgmajfault"),
        total_inactive_anon: s.get("total_inactive_anon"),
        total_active_anon: s.get("total_active_anon"),
        total_inactive_file: s.get("total_inactive_file"),
        total_active_file: s.get("total_active_file"),
        total_unevictable: s.get("total_unevictable"),
        ..Default::default()
    }
}

fn oom_control_from_v1(s: &FlatKeyed) -> v1::MemoryOomControl {
    v1::MemoryOomControl {
        oom_kill_disable: s.get("oom_kill_disable"),
        under_oom: s.get("under_oom"),
        oom_kill: s.get("oom_kill"),
        ..Default::default()
    }
}

/// Which list of [`v1::BlkIOStat`] a blkio file fills.
#[derive(Debug, Clone, Copy)]
enum BlkioList {
    ServiceBytes,
    Serviced,
    Queued,
    ServiceTime,
    WaitTime,
    Merged,
    Time,
    Sectors,
}

impl BlkioList {
    fn of(self, stat: &mut v1::BlkIOStat) -> &mut Vec<v1::BlkIOEntry> {
        match self {
            Self::ServiceBytes => &mut stat.io_service_bytes_recursive,
            Self::Serviced => &mut stat.io_serviced_recursive,
            Self::Queued => &mut stat.io_queued_recursive,
            Self::ServiceTime => &mut stat.io_service_time_recursive,
            Self::WaitTime => &mut stat.io_wait_time_recursive,
            Self::Merged => &mut stat.io_merged_recursive,
            Self::Time => &mut stat.io_time_recursive,
            Self::Sectors => &mut stat.sectors_recursive,
        }
    }
}

/// The blkio file sets, best first: the CFQ scheduler's (what containerd reads first), BFQ's
/// (CFQ's successor on blk-mq kernels, as runc reads), then the throttle files, which count
/// I/O under every scheduler (recursive ones where the kernel has them). The first set that
/// names a device wins: a kernel with CFQ files may still send this cgroup's I/O elsewhere.
const BLKIO_SOURCES: &[&[(&str, BlkioList)]] = &[
    &[
        ("blkio.io_service_bytes_recursive", BlkioList::ServiceBytes),
        ("blkio.io_serviced_recursive", BlkioList::Serviced),
        ("blkio.io_queued_recursive", BlkioList::Queued),
        ("blkio.io_service_time_recursive", BlkioList::ServiceTime),
        ("blkio.io_wait_time_recursive", BlkioList::WaitTime),
        ("blkio.io_merged_recursive", BlkioList::Merged),
        ("blkio.time_recursive", BlkioList::Time),
        ("blkio.sectors_recursive", BlkioList::Sectors),
    ],
    &[
        (
            "blkio.bfq.io_service_bytes_recursive",
            BlkioList::ServiceBytes,
        ),
        ("blkio.bfq.io_serviced_recursive", BlkioList::Serviced),
    ],
    &[
        (
            "blkio.throttle.io_service_bytes_recursive",
            BlkioList::ServiceBytes,
        ),
        ("blkio.throttle.io_serviced_recursive", BlkioList::Serviced),
    ],
    &[
        ("blkio.throttle.io_service_bytes", BlkioList::ServiceBytes),
        ("blkio.throttle.io_serviced", BlkioList::Serviced),
    ],
];

fn read_v1_blkio(
    dir: &Path,
    devices: &HashMap<(u64, u64), String>,
) -> Result<v1::BlkIOStat, CgroupError> {
    for source in BLKIO_SOURCES {
        let mut stat = v1::BlkIOStat::new();
        let mut found = false;
        for (file, list) in *source {
            if let Some(entries) = read_parsed(dir, file, |t| parse_blkio(t, devices))? {
                found |= !entries.is_empty();
                *list.of(&mut stat) = entries;
            }
        }
        if found {
            return Ok(stat);
        }
    }
    Ok(v1::BlkIOStat::new())
}

/// Device names are decoration: without `/proc/partitions` the entries keep their numbers.
fn read_partitions(path: &Path) -> HashMap<(u64, u64), String> {
    match fs::read_to_string(path) {
        Ok(text) => parse_partitions(&text),
        Err(e) => {
            debug!("cgroups: stats: read {}: {e}", path.display());
            HashMap::new()
        }
    }
}

fn read_v1_hugetlb(dir: &Path) -> Result<Vec<v1::HugetlbStat>, CgroupError> {
    let names = list_file_names(dir)?;
    let mut stats = Vec::new();
    for size in hugetlb_page_sizes(&names, "usage_in_bytes") {
        let read =
            |suffix: &str| read_parsed(dir, &format!("hugetlb.{size}.{suffix}"), parse_single);
        let mut stat = v1::HugetlbStat::new();
        stat.usage = read("usage_in_bytes")?.unwrap_or(0);
        stat.max = read("max_usage_in_bytes")?.unwrap_or(0);
        stat.failcnt = read("failcnt")?.unwrap_or(0);
        stat.pagesize = size;
        stats.push(stat);
    }
    Ok(stats)
}

// ---------------------------------------------------------------------------------------------
// cgroup v2

/// Reads the cgroup2 directory. `cpu.stat` times stay in microseconds: the v2 message has
/// `*_usec` fields, unlike v1's nanoseconds.
fn collect_v2(dir: &Path) -> Result<v2::Metrics, CgroupError> {
    let mut metrics = v2::Metrics::new();
    metrics.pids = MessageField::from_option(read_v2_pids(dir)?);
    metrics.cpu = MessageField::from_option(
        read_parsed(dir, "cpu.stat", parse_flat_keyed)?.map(|stat| cpu_stat_from_v2(&stat)),
    );
    metrics.memory = MessageField::from_option(read_v2_memory(dir)?);
    metrics.memory_events = MessageField::from_option(
        read_parsed(dir, "memory.events", parse_flat_keyed)?
            .map(|events| memory_events_from_v2(&events)),
    );
    metrics.io =
        MessageField::from_option(read_parsed(dir, "io.stat", parse_io_stat)?.map(|usage| {
            v2::IOStat {
                usage,
                ..Default::default()
            }
        }));
    metrics.hugetlb = read_v2_hugetlb(dir)?;
    Ok(metrics)
}

fn read_v2_pids(dir: &Path) -> Result<Option<v2::PidsStat>, CgroupError> {
    let Some(current) = read_parsed(dir, "pids.current", parse_single)? else {
        return Ok(None);
    };
    let mut pids = v2::PidsStat::new();
    pids.current = current;
    pids.limit = read_parsed(dir, "pids.max", |t| parse_limit(t, V2_UNLIMITED))?.unwrap_or(0);
    Ok(Some(pids))
}

fn cpu_stat_from_v2(s: &FlatKeyed) -> v2::CPUStat {
    v2::CPUStat {
        usage_usec: s.get("usage_usec"),
        user_usec: s.get("user_usec"),
        system_usec: s.get("system_usec"),
        nr_periods: s.get("nr_periods"),
        nr_throttled: s.get("nr_throttled"),
        throttled_usec: s.get("throttled_usec"),
        nr_bursts: s.get("nr_bursts"),
        burst_usec: s.get("burst_usec"),
        ..Default::default()
    }
}

/// `memory.stat` plus the usage and limit files; `None` when the memory controller is not
/// enabled for this cgroup (neither `memory.stat` nor `memory.current`). Swap is the swap
/// controller's own usage (`memory.swap.current`), not memory+swap as on v1.
fn read_v2_memory(dir: &Path) -> Result<Option<v2::MemoryStat>, CgroupError> {
    let stat = read_parsed(dir, "memory.stat", parse_flat_keyed)?;
    let usage = read_parsed(dir, "memory.current", parse_single)?;
    if stat.is_none() && usage.is_none() {
        return Ok(None);
    }
    let read_limit = |name: &str| read_parsed(dir, name, |t| parse_limit(t, V2_UNLIMITED));
    let mut memory = memory_stat_from_v2(&stat.unwrap_or_default());
    memory.usage = usage.unwrap_or(0);
    memory.usage_limit = read_limit("memory.max")?.unwrap_or(0);
    memory.max_usage = read_parsed(dir, "memory.peak", parse_single)?.unwrap_or(0);
    memory.swap_usage = read_parsed(dir, "memory.swap.current", parse_single)?.unwrap_or(0);
    memory.swap_limit = read_limit("memory.swap.max")?.unwrap_or(0);
    memory.swap_max_usage = read_parsed(dir, "memory.swap.peak", parse_single)?.unwrap_or(0);
    Ok(Some(memory))
}

/// containerd's mapping of v2 `memory.stat` keys (the same names).
fn memory_stat_from_v2(s: &FlatKeyed) -> v2::MemoryStat {
    v2::MemoryStat {
        anon: s.get("anon"),
        file: s.get("file"),
        kernel_stack: s.get("kernel_stack"),
        slab: s.get("slab"),
        sock: s.get("sock"),
        shmem: s.get("shmem"),
        file_mapped: s.get("file_mapped"),
        file_dirty: s.get("file_dirty"),
        file_writeback: s.get("file_writeback"),
        anon_thp: s.get("anon_thp"),
        inactive_anon: s.get("inactive_anon"),
        active_anon: s.get("active_anon"),
        inactive_file: s.get("inactive_file"),
        active_file: s.get("active_file"),
        unevictable: s.get("unevictable"),
        slab_reclaimable: s.get("slab_reclaimable"),
        slab_unreclaimable: s.get("slab_unreclaimable"),
        pgfault: s.get("pgfault"),
        pgmajfault: s.get("pgmajfault"),
        workingset_refault: s.get("workingset_refault"),
        workingset_activate: s.get("workingset_activate"),
        workingset_nodereclaim: s.get("workingset_nodereclaim"),
        pgrefill: s.get("pgrefill"),
        pgscan: s.get("pgscan"),
        pgsteal: s.get("pgsteal"),
        pgactivate: s.get("pgactivate"),
        pgdeactivate: s.get("pgdeactivate"),
        pglazyfree: s.get("pglazyfree"),
        pglazyfreed: s.get("pglazyfreed"),
        thp_fault_alloc: s.get("thp_fault_alloc"),
        thp_collapse_alloc: s.get("thp_collapse_alloc"),
        ..Default::default()
    }
}

fn memory_events_from_v2(s: &FlatKeyed) -> v2::MemoryEvents {
    v2::MemoryEvents {
        low: s.get("low"),
        high: s.get("high"),
        max: s.get("max"),
        oom: s.get("oom"),
        oom_kill: s.get("oom_kill"),
        oom_group_kill: s.get("oom_group_kill"),
        ..Default::default()
    }
}

/// Per page size: `hugetlb.<size>.current`, `.max`, and the `max` count of `.events` (how
/// often an allocation hit the limit: v1's failcnt).
fn read_v2_hugetlb(dir: &Path) -> Result<Vec<v2::HugeTlbStat>, CgroupError> {
    let names = list_file_names(dir)?;
    let mut stats = Vec::new();
    for size in hugetlb_page_sizes(&names, "current") {
        let file = |suffix: &str| format!("hugetlb.{size}.{suffix}");
        let mut stat = v2::HugeTlbStat::new();
        stat.current = read_parsed(dir, &file("current"), parse_single)?.unwrap_or(0);
        stat.max = read_parsed(dir, &file("max"), |t| parse_limit(t, V2_UNLIMITED))?.unwrap_or(0);
        stat.failcnt = read_parsed(dir, &file("events"), parse_flat_keyed)?
            .map_or(0, |events| events.get("max"));
        stat.pagesize = size;
        stats.push(stat);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::path::PathBuf;
    use std::process::{self, Child, Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use nix::unistd::Uid;
    use protobuf::MessageFull;

    use super::*;
    use crate::cgroups::{CgroupPath, Hierarchies};

    /// `memory.stat` of a v1 memory cgroup on this machine (kernel 6.18, hybrid).
    const V1_MEMORY_STAT: &str = "\
cache 0
rss 0
rss_huge 0
shmem 0
mapped_file 0
dirty 0
writeback 0
workingset_refault_anon 0
workingset_refault_file 0
swap 0
swapcached 0
pgpgin 0
pgpgout 0
pgfault 0
pgmajfault 0
inactive_anon 0
active_anon 0
inactive_file 0
active_file 0
unevictable 0
hierarchical_memory_limit 9223372036854771712
hierarchical_memsw_limit 9223372036854771712
total_cache 3467923456
total_rss 294584320
total_rss_huge 0
total_shmem 0
total_mapped_file 204787712
total_dirty 354578432
total_writeback 0
total_workingset_refault_anon 0
total_workingset_refault_file 2731176
total_swap 0
total_swapcached 0
total_pgpgin 86074888
total_pgpgout 85376495
total_pgfault 102719520
total_pgmajfault 26440
total_inactive_anon 294424576
total_active_anon 98304
total_inactive_file 1541525504
total_active_file 1926397952
total_unevictable 0
";

    /// This machine's `cpuacct.usage_percpu` (two CPUs; the kernel ends it with a space).
    const V1_USAGE_PERCPU: &str = "3176021837006 3318668236539 \n";
    const V1_CPUACCT_STAT: &str = "user 531758\nsystem 117710\n";
    const V1_CPU_STAT: &str =
        "nr_periods 12\nnr_throttled 3\nthrottled_time 4500000\nnr_bursts 0\nburst_time 0\n";
    const V1_OOM_CONTROL: &str = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";

    /// The kernel's blkio shape (Documentation/admin-guide/cgroup-v1/blkio-controller.rst);
    /// this machine's files only hold `Total 0`: its virtio disk's I/O is not attributed.
    const V1_BLKIO_SERVICE_BYTES: &str = "\
254:0 Read 65536
254:0 Write 32768
254:0 Sync 98304
254:0 Async 0
254:0 Discard 0
254:0 Total 98304
Total 98304
";

    /// This machine's `/proc/partitions`.
    const PARTITIONS: &str = "major minor  #blocks  name\n\n 254        0  268435456 vda\n";

    /// cgroup v2 shapes (Documentation/admin-guide/cgroup-v2.rst); `cost.*` appears with
    /// the iocost controller.
    const V2_IO_STAT: &str = "\
8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0
8:0 rbytes=90430464 wbytes=299008000 rios=8950 wios=1252 dbytes=50331648 dios=3021 \
cost.vrate=100.00 cost.usage=49 cost.wait=0 cost.indebt=0 cost.indelay=0
";
    const V2_CPU_STAT: &str = "\
usage_usec 6435072468
user_usec 5268638304
system_usec 1166434163
nice_usec 0
nr_periods 10
nr_throttled 2
throttled_usec 3000
nr_bursts 0
burst_usec 0
";
    const V2_MEMORY_STAT: &str = "\
anon 1327104
file 4096
kernel 274432
kernel_stack 16384
pagetables 45056
sock 0
shmem 0
file_mapped 0
file_dirty 4096
file_writeback 0
anon_thp 0
inactive_anon 1318912
active_anon 8192
inactive_file 4096
active_file 0
unevictable 0
slab_reclaimable 57992
slab_unreclaimable 111632
slab 169624
workingset_refault_anon 0
pgfault 1090
pgmajfault 0
";

    #[test]
    fn parse_single_values_and_limits() {
        assert_eq!(parse_single("3947610112\n"), Ok(3_947_610_112));
        // v1 prints some unset values as negative numbers; containerd reads them as 0.
        assert_eq!(parse_single("-1\n"), Ok(0));
        assert_eq!(parse_limit("max\n", 7), Ok(7));
        assert_eq!(parse_limit("32\n", 7), Ok(32));
        assert_eq!(
            parse_single("12 kB\n"),
            Err(Malformed::new("12 kB", "not a number"))
        );
        assert!(parse_single("").is_err());
        assert!(parse_limit("maximum", 0).is_err());
    }

    #[test]
    fn parse_v1_memory_stat_with_containerd_names() {
        let memory = memory_stat_from_v1(&parse_flat_keyed(V1_MEMORY_STAT).unwrap());
        assert_eq!(memory.total_cache, 3_467_923_456);
        assert_eq!(memory.total_rss, 294_584_320);
        assert_eq!(memory.total_mapped_file, 204_787_712);
        assert_eq!(memory.total_dirty, 354_578_432);
        assert_eq!(memory.total_pg_pg_in, 86_074_888);
        assert_eq!(memory.total_pg_pg_out, 85_376_495);
        assert_eq!(memory.total_pg_fault, 102_719_520);
        assert_eq!(memory.total_pg_maj_fault, 26_440);
        assert_eq!(memory.total_inactive_anon, 294_424_576);
        assert_eq!(memory.total_active_anon, 98_304);
        assert_eq!(memory.total_inactive_file, 1_541_525_504);
        assert_eq!(memory.total_active_file, 1_926_397_952);
        assert_eq!(memory.hierarchical_memory_limit, 9_223_372_036_854_771_712);
        assert_eq!(memory.hierarchical_swap_limit, 9_223_372_036_854_771_712);
        assert_eq!(memory.cache, 0);
    }

    #[test]
    fn parse_flat_keyed_rejects_lines_without_two_fields() {
        assert_eq!(
            parse_flat_keyed("cache 0\nrss\n").unwrap_err(),
            Malformed::new("rss", "expected `key value`")
        );
        assert_eq!(
            parse_flat_keyed("cache 0 1\n").unwrap_err().reason,
            "expected `key value`"
        );
        assert_eq!(
            parse_flat_keyed("rss lots\n").unwrap_err(),
            Malformed::new("rss lots", "not a number")
        );
        assert_eq!(parse_flat_keyed("\n").unwrap().get("rss"), 0);
    }

    #[test]
    fn parse_v1_cpu_files() {
        assert_eq!(
            parse_number_list(V1_USAGE_PERCPU),
            Ok(vec![3_176_021_837_006, 3_318_668_236_539])
        );
        assert!(parse_number_list("1 two 3\n").is_err());
        let stat = parse_flat_keyed(V1_CPUACCT_STAT).unwrap();
        // 100 ticks a second: one tick is 10ms.
        assert_eq!(ticks_to_nanos(stat.get("user")), 5_317_580_000_000);
        assert_eq!(ticks_to_nanos(stat.get("system")), 1_177_100_000_000);
        assert_eq!(ticks_to_nanos(u64::MAX), u64::MAX);
    }

    #[test]
    fn parse_blkio_entries_with_device_names() {
        let devices = parse_partitions(PARTITIONS);
        assert_eq!(devices.len(), 1);
        let entries = parse_blkio(V1_BLKIO_SERVICE_BYTES, &devices).unwrap();
        let ops: Vec<(&str, u64)> = entries.iter().map(|e| (e.op.as_str(), e.value)).collect();
        assert_eq!(
            ops,
            [
                ("Read", 65536),
                ("Write", 32768),
                ("Sync", 98304),
                ("Async", 0),
                ("Discard", 0),
                ("Total", 98304)
            ]
        );
        assert!(
            entries
                .iter()
                .all(|e| e.device == "/dev/vda" && e.major == 254 && e.minor == 0)
        );
        // Files without operations, and devices missing from /proc/partitions.
        let sectors = parse_blkio("8:0 1024\n", &devices).unwrap();
        assert_eq!((sectors[0].op.as_str(), sectors[0].value), ("", 1024));
        assert_eq!(sectors[0].device, "");
        // This machine's files: nothing but the total.
        assert!(parse_blkio("Total 0\n", &devices).unwrap().is_empty());
        assert_eq!(
            parse_blkio("254-0 Read 1\n", &devices).unwrap_err().reason,
            "expected a `major:minor` device"
        );
        assert!(parse_blkio("254:0 Read 1 2\n", &devices).is_err());
    }

    #[test]
    fn parse_v2_io_stat() {
        let entries = parse_io_stat(V2_IO_STAT).unwrap();
        assert_eq!(entries.len(), 2);
        let sdb = &entries[0];
        assert_eq!((sdb.major, sdb.minor), (8, 16));
        assert_eq!(
            (sdb.rbytes, sdb.wbytes, sdb.rios, sdb.wios),
            (1_459_200, 314_773_504, 192, 353)
        );
        assert_eq!(entries[1].rios, 8950);
        assert!(parse_io_stat("").unwrap().is_empty());
        assert!(parse_io_stat("8:0 rbytes\n").is_err());
        assert!(parse_io_stat("8:0 rbytes=x\n").is_err());
        assert!(parse_io_stat("sda rbytes=1\n").is_err());
    }

    #[test]
    fn parse_v2_cpu_and_memory_stat() {
        let cpu = cpu_stat_from_v2(&parse_flat_keyed(V2_CPU_STAT).unwrap());
        assert_eq!(
            (cpu.usage_usec, cpu.user_usec, cpu.system_usec),
            (6_435_072_468, 5_268_638_304, 1_166_434_163)
        );
        assert_eq!(
            (cpu.nr_periods, cpu.nr_throttled, cpu.throttled_usec),
            (10, 2, 3000)
        );
        let memory = memory_stat_from_v2(&parse_flat_keyed(V2_MEMORY_STAT).unwrap());
        assert_eq!(
            (memory.anon, memory.file, memory.slab),
            (1_327_104, 4096, 169_624)
        );
        assert_eq!(
            (memory.inactive_file, memory.inactive_anon, memory.pgfault),
            (4096, 1_318_912, 1090)
        );
    }

    #[test]
    fn find_hugetlb_page_sizes() {
        let names: Vec<String> = [
            "hugetlb.2MB.usage_in_bytes",
            "hugetlb.2MB.rsvd.usage_in_bytes",
            "hugetlb.1GB.usage_in_bytes",
            "hugetlb.1GB.max_usage_in_bytes",
            "hugetlb.2MB.current",
            "hugetlb..usage_in_bytes",
            "memory.usage_in_bytes",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(hugetlb_page_sizes(&names, "usage_in_bytes"), ["1GB", "2MB"]);
        assert_eq!(hugetlb_page_sizes(&names, "current"), ["2MB"]);
    }

    #[test]
    fn type_urls_are_the_messages_full_names() {
        // What containerd_shim::util::convert_to_any would produce, and what ctr looks up.
        assert_eq!(v1::Metrics::descriptor().full_name(), V1_METRICS_TYPE_URL);
        assert_eq!(v2::Metrics::descriptor().full_name(), V2_METRICS_TYPE_URL);
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("sibling-stats-{name}-{}-{n}", process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Hierarchies mounted under `root`: one line per `(directory, fs type, super options)`.
    fn fake_hierarchies(root: &TempDir, mounts: &[(&str, &str, &str)]) -> Hierarchies {
        let mut mountinfo = String::new();
        for (i, (dir, fs_type, options)) in mounts.iter().enumerate() {
            let mount_point = root.0.join(dir);
            fs::create_dir_all(&mount_point).unwrap();
            mountinfo.push_str(&format!(
                "{} 31 0:{i} / {} rw,relatime - {fs_type} {fs_type} {options}\n",
                40 + i,
                mount_point.display()
            ));
        }
        Hierarchies::parse(&mountinfo, "0::/\n").unwrap()
    }

    fn create(hierarchies: &Hierarchies) -> Cgroup {
        let path = CgroupPath::Absolute(PathBuf::from("/c1"));
        Cgroup::create(hierarchies, &path).unwrap()
    }

    fn write_files(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
    }

    /// Like this machine: cpu and cpuacct apart; no memsw (swap accounting off) and no blkio
    /// files, which must simply be skipped.
    fn fake_v1(root: &TempDir) -> Cgroup {
        let hierarchies = fake_hierarchies(
            root,
            &[
                ("cpu", "cgroup", "rw,cpu"),
                ("cpuacct", "cgroup", "rw,cpuacct"),
                ("memory", "cgroup", "rw,memory"),
                ("pids", "cgroup", "rw,pids"),
                ("blkio", "cgroup", "rw,blkio"),
                ("hugetlb", "cgroup", "rw,hugetlb"),
                ("unified", "cgroup2", "rw"),
            ],
        );
        let cgroup = create(&hierarchies);
        write_files(
            cgroup.v1_dir("cpuacct").unwrap(),
            &[
                ("cpuacct.usage", "6494673918322\n"),
                ("cpuacct.usage_percpu", V1_USAGE_PERCPU),
                ("cpuacct.stat", V1_CPUACCT_STAT),
            ],
        );
        write_files(cgroup.v1_dir("cpu").unwrap(), &[("cpu.stat", V1_CPU_STAT)]);
        write_files(
            cgroup.v1_dir("memory").unwrap(),
            &[
                ("memory.stat", V1_MEMORY_STAT),
                ("memory.oom_control", V1_OOM_CONTROL),
                ("memory.usage_in_bytes", "3947610112\n"),
                ("memory.max_usage_in_bytes", "5592588288\n"),
                ("memory.failcnt", "0\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.kmem.usage_in_bytes", "184217600\n"),
                ("memory.kmem.limit_in_bytes", "9223372036854771712\n"),
            ],
        );
        write_files(
            cgroup.v1_dir("pids").unwrap(),
            &[("pids.current", "3\n"), ("pids.max", "max\n")],
        );
        write_files(
            cgroup.v1_dir("hugetlb").unwrap(),
            &[
                ("hugetlb.2MB.usage_in_bytes", "4194304\n"),
                ("hugetlb.2MB.max_usage_in_bytes", "8388608\n"),
                ("hugetlb.2MB.failcnt", "1\n"),
            ],
        );
        cgroup
    }

    fn decode_v1(any: &Any) -> v1::Metrics {
        assert_eq!(any.type_url, V1_METRICS_TYPE_URL);
        v1::Metrics::parse_from_bytes(&any.value).unwrap()
    }

    #[test]
    fn collect_v1_from_files() {
        let root = TempDir::new("v1");
        let cgroup = fake_v1(&root);
        let metrics = decode_v1(&collect(&cgroup).unwrap());

        assert_eq!((metrics.pids.current, metrics.pids.limit), (3, 0));
        let usage = &metrics.cpu.usage;
        assert_eq!(usage.total, 6_494_673_918_322);
        assert_eq!(usage.per_cpu, [3_176_021_837_006, 3_318_668_236_539]);
        assert_eq!(
            (usage.user, usage.kernel),
            (5_317_580_000_000, 1_177_100_000_000)
        );
        let throttling = &metrics.cpu.throttling;
        assert_eq!(
            (
                throttling.periods,
                throttling.throttled_periods,
                throttling.throttled_time
            ),
            (12, 3, 4_500_000)
        );

        let memory = &metrics.memory;
        assert_eq!(memory.total_cache, 3_467_923_456);
        assert_eq!(
            (memory.usage.usage, memory.usage.max, memory.usage.limit),
            (3_947_610_112, 5_592_588_288, 9_223_372_036_854_771_712)
        );
        assert_eq!(memory.kernel.usage, 184_217_600);
        // No memsw or kmem.tcp files: swap accounting is off, so no entries.
        assert!(memory.swap.is_none() && memory.kernel_tcp.is_none());
        assert_eq!(metrics.memory_oom_control.oom_kill, 2);

        // blkio has no files at all in the fake tree: present, empty.
        assert!(metrics.blkio.io_service_bytes_recursive.is_empty());
        assert_eq!(metrics.hugetlb.len(), 1);
        let huge = &metrics.hugetlb[0];
        assert_eq!(
            (huge.pagesize.as_str(), huge.usage, huge.max, huge.failcnt),
            ("2MB", 4_194_304, 8_388_608, 1)
        );
    }

    #[test]
    fn collect_v1_blkio_falls_back_to_throttle_files() {
        let root = TempDir::new("blkio");
        let cgroup = fake_v1(&root);
        let blkio = cgroup.v1_dir("blkio").unwrap();
        // Like this machine: BFQ files with nothing but a total; throttle files with data.
        write_files(
            blkio,
            &[
                ("blkio.bfq.io_service_bytes_recursive", "Total 0\n"),
                ("blkio.bfq.io_serviced_recursive", "Total 0\n"),
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    V1_BLKIO_SERVICE_BYTES,
                ),
                (
                    "blkio.throttle.io_serviced_recursive",
                    "254:0 Read 16\nTotal 16\n",
                ),
            ],
        );
        let metrics = collect_v1(&cgroup, Path::new("/nonexistent/partitions")).unwrap();
        assert_eq!(metrics.blkio.io_service_bytes_recursive.len(), 6);
        let serviced = &metrics.blkio.io_serviced_recursive;
        assert_eq!(serviced.len(), 1);
        assert_eq!((serviced[0].op.as_str(), serviced[0].value), ("Read", 16));
        // Without /proc/partitions the entries keep only their numbers.
        assert_eq!(serviced[0].device, "");
    }

    #[test]
    fn collect_v1_without_cgroup_files_skips_them() {
        // The cgroup directories exist but hold nothing (as after the container's removal
        // raced with the read): nothing fails, and ctr still finds cpu usage to print.
        let root = TempDir::new("empty");
        let hierarchies = fake_hierarchies(
            &root,
            &[
                ("cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
                ("memory", "cgroup", "rw,memory"),
            ],
        );
        let cgroup = create(&hierarchies);
        let metrics = decode_v1(&collect(&cgroup).unwrap());
        assert!(metrics.cpu.usage.is_some() && metrics.cpu.throttling.is_some());
        assert_eq!(metrics.cpu.usage.total, 0);
        assert!(metrics.memory.is_none() && metrics.pids.is_none() && metrics.blkio.is_none());
    }

    #[test]
    fn collect_names_the_malformed_file() {
        let root = TempDir::new("malformed");
        let cgroup = fake_v1(&root);
        let stat = cgroup.v1_dir("memory").unwrap().join("memory.stat");
        fs::write(&stat, "cache 0\nrss many\n").unwrap();
        let error = collect(&cgroup).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&stat.display().to_string()), "{message}");
        assert!(message.contains("\"rss many\": not a number"), "{message}");
        let source = error.source().unwrap();
        let io_error = source.downcast_ref::<io::Error>().unwrap();
        assert_eq!(io_error.kind(), io::ErrorKind::InvalidData);
    }

    fn fake_v2(root: &TempDir) -> Cgroup {
        let hierarchies = fake_hierarchies(root, &[("", "cgroup2", "rw,nsdelegate")]);
        let cgroup = create(&hierarchies);
        write_files(
            cgroup.unified_dir().unwrap(),
            &[
                ("pids.current", "2\n"),
                ("pids.max", "max\n"),
                ("cpu.stat", V2_CPU_STAT),
                ("memory.stat", V2_MEMORY_STAT),
                ("memory.current", "1634304\n"),
                ("memory.max", "67108864\n"),
                ("memory.swap.current", "0\n"),
                ("memory.swap.max", "max\n"),
                (
                    "memory.events",
                    "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n",
                ),
                ("io.stat", V2_IO_STAT),
                ("hugetlb.2MB.current", "0\n"),
                ("hugetlb.2MB.max", "max\n"),
                ("hugetlb.2MB.events", "max 3\n"),
                ("hugetlb.2MB.rsvd.current", "0\n"),
            ],
        );
        cgroup
    }

    #[test]
    fn collect_v2_from_files() {
        let root = TempDir::new("v2");
        let cgroup = fake_v2(&root);
        assert_eq!(cgroup.mode(), CgroupMode::Unified);
        let any = collect(&cgroup).unwrap();
        assert_eq!(any.type_url, V2_METRICS_TYPE_URL);
        let metrics = v2::Metrics::parse_from_bytes(&any.value).unwrap();

        assert_eq!((metrics.pids.current, metrics.pids.limit), (2, u64::MAX));
        assert_eq!(metrics.cpu.usage_usec, 6_435_072_468);
        let memory = &metrics.memory;
        assert_eq!((memory.usage, memory.usage_limit), (1_634_304, 67_108_864));
        assert_eq!((memory.swap_usage, memory.swap_limit), (0, u64::MAX));
        assert_eq!(memory.max_usage, 0, "no memory.peak: skipped");
        assert_eq!(memory.inactive_file, 4096);
        assert_eq!(
            (metrics.memory_events.max, metrics.memory_events.oom_kill),
            (4, 1)
        );
        assert_eq!(metrics.io.usage.len(), 2);
        assert_eq!(metrics.io.usage[1].wbytes, 299_008_000);
        assert_eq!(metrics.hugetlb.len(), 1);
        let huge = &metrics.hugetlb[0];
        assert_eq!(
            (huge.pagesize.as_str(), huge.current, huge.max, huge.failcnt),
            ("2MB", 0, u64::MAX, 3)
        );
    }

    #[test]
    fn collect_v2_without_controllers_skips_them() {
        // A cgroup whose parent delegated no controller has only the core files.
        let root = TempDir::new("v2-core");
        let hierarchies = fake_hierarchies(&root, &[("", "cgroup2", "rw")]);
        let cgroup = create(&hierarchies);
        write_files(
            cgroup.unified_dir().unwrap(),
            &[("cpu.stat", "usage_usec 5\n")],
        );
        let metrics = v2::Metrics::parse_from_bytes(&collect(&cgroup).unwrap().value).unwrap();
        assert_eq!(metrics.cpu.usage_usec, 5);
        assert!(metrics.memory.is_none() && metrics.pids.is_none() && metrics.io.is_none());
        assert!(metrics.hugetlb.is_empty());
    }

    /// The real hierarchies when this test can use them: root, v1 pids/memory/cpuacct.
    fn real_v1_hierarchies() -> Option<Hierarchies> {
        if !Uid::effective().is_root() {
            return None;
        }
        let hierarchies = Hierarchies::detect().ok()?;
        let has = |c| hierarchies.v1_controller(c).is_some();
        (has("pids") && has("memory") && has("cpuacct")).then_some(hierarchies)
    }

    /// Kills the child and removes the cgroup even if the test fails half-way.
    struct Cleanup {
        cgroup: Cgroup,
        child: Option<Child>,
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Some(child) = &mut self.child {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = self.cgroup.remove();
        }
    }

    /// Waits for "go" on stdin (so all its work happens after it joined the cgroup), burns
    /// cpu, grows a 128 KiB string (heap pages charged to the cgroup's memory), says "done",
    /// then stays alive until stdin closes (and exits 0: `read` at end of input fails).
    const BUSY_SCRIPT: &str = "read go; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; \
                               s=x; j=0; while [ $j -lt 17 ]; do s=$s$s; j=$((j+1)); done; \
                               echo done; read end; exit 0";

    #[test]
    fn real_cgroup_stats() {
        let Some(hierarchies) = real_v1_hierarchies() else {
            eprintln!("skipping real_cgroup_stats: needs root and v1 pids, memory, cpuacct");
            return;
        };
        let name = format!("/sibling-stats-test-{}", process::id());
        let path = CgroupPath::Absolute(PathBuf::from(&name));
        let cgroup = Cgroup::create(&hierarchies, &path).unwrap();
        let mut cleanup = Cleanup {
            cgroup: cgroup.clone(),
            child: None,
        };
        let child = cleanup.child.insert(
            Command::new("sh")
                .args(["-c", BUSY_SCRIPT])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        cgroup.join(i32::try_from(child.id()).unwrap()).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "done\n");

        let metrics = decode_v1(&collect(&cgroup).unwrap());
        eprintln!(
            "real cgroup: cpu total {} ns (user {}, kernel {}), per cpu {:?}, memory usage {}, \
             pids {}/{}",
            metrics.cpu.usage.total,
            metrics.cpu.usage.user,
            metrics.cpu.usage.kernel,
            metrics.cpu.usage.per_cpu,
            metrics.memory.usage.usage,
            metrics.pids.current,
            metrics.pids.limit
        );
        assert!(metrics.cpu.usage.total > 0);
        // Read after the total, and the counters only grow.
        assert!(metrics.cpu.usage.per_cpu.iter().sum::<u64>() >= metrics.cpu.usage.total);
        assert!(metrics.memory.usage.usage > 0);
        assert!(metrics.pids.current >= 1);

        drop(stdin);
        let status = cleanup.child.take().unwrap().wait().unwrap();
        assert!(status.success());
        cgroup.remove().unwrap();
        for dir in cgroup.dirs() {
            assert!(!dir.path().exists(), "{} left behind", dir.path().display());
        }
    }
}
