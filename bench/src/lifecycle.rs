//! One container's life through containerd's gRPC API, the way `ctr run` drives it, with the
//! four task phases timed on their own: the snapshot and the container record (containerd's work,
//! the same for every runtime) are prepared before the clock starts and removed after it stops.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{PrepareSnapshotRequest, RemoveSnapshotRequest};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateRequest as CreateLeaseRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteProcessRequest, DeleteTaskRequest, ExecProcessRequest,
    KillRequest, StartRequest, WaitRequest, containers_client::ContainersClient,
};
use containerd_client::types::Mount;
use prost::Message;
use prost_types::Any;
use tonic::Request;
use tonic::transport::Channel;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

pub const SIBLING: &str = "io.containerd.sibling.v2";
pub const RUNC: &str = "io.containerd.runc.v2";
/// bench/null-shim: answers the Task API at once and makes no container.
pub const NULL: &str = "io.containerd.null.v2";

const SNAPSHOTTER: &str = "overlayfs";
const SPEC_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// runc's shim options; only `root`, so runc's state stays inside the benchmark's directory
/// instead of /run/containerd/runc, which the machine's own containerd shares.
#[derive(Clone, PartialEq, Message)]
struct RuncOptions {
    #[prost(string, tag = "7")]
    root: String,
}

/// CRI's `runtimeoptions.v1.Options`: what `ctr run --runtime-config-path` and a CRI runtime
/// class send; sibling reads its own options (sharing) from the TOML file it names.
#[derive(Clone, PartialEq, Message)]
struct ConfigFileOptions {
    #[prost(string, tag = "2")]
    config_path: String,
}

/// How long each task phase took.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    pub create: Duration,
    pub start: Duration,
    /// From Start's return until Wait returned the exit.
    pub wait: Duration,
    pub delete: Duration,
}

impl Phases {
    pub fn total(&self) -> Duration {
        self.create + self.start + self.wait + self.delete
    }
}

/// What every container of a run shares: the connection, the namespace, the image.
#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
    namespace: String,
    image: String,
    /// The image's top snapshot (its chain id), parent of every container's snapshot.
    parent: String,
    /// `ctr oci spec`, the spec every container starts from.
    spec: serde_json::Value,
    runc_root: PathBuf,
    /// sibling's runtime options file (sharing turned on), if any.
    pub sibling_config: Option<String>,
    /// Every request carries this lease, as ctr's do: without one, containerd's garbage collector
    /// may remove a snapshot between its Prepare and the Create of the container that uses it.
    lease: String,
}

/// A container whose snapshot and record exist; its task does not yet.
pub struct Prepared {
    pub id: String,
    mounts: Vec<Mount>,
}

impl Containerd {
    pub async fn connect(
        socket: &str,
        namespace: &str,
        image: &str,
        parent: &str,
        spec: serde_json::Value,
        runc_root: PathBuf,
    ) -> Result<Self, Error> {
        let channel = containerd_client::connect(socket).await?;
        let mut containerd = Containerd {
            channel,
            namespace: namespace.into(),
            image: image.into(),
            parent: parent.into(),
            spec,
            runc_root,
            sibling_config: None,
            lease: String::new(),
        };
        // The lease lives as long as the private containerd the benchmark runs against.
        containerd.lease = LeasesClient::new(containerd.channel.clone())
            .create(containerd.request(CreateLeaseRequest {
                id: "sibling-bench".into(),
                ..Default::default()
            }))
            .await?
            .into_inner()
            .lease
            .map(|lease| lease.id)
            .ok_or("containerd created a lease without an id")?;
        Ok(containerd)
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        let namespace = self.namespace.parse().expect("namespace is ASCII");
        metadata.insert("containerd-namespace", namespace);
        if !self.lease.is_empty() {
            let lease = self.lease.parse().expect("lease id is ASCII");
            metadata.insert("containerd-lease", lease);
        }
        request
    }

    fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    fn runtime(&self, name: &str) -> Runtime {
        let options = match (name, &self.sibling_config) {
            (RUNC, _) => Some(Any {
                type_url: "containerd.runc.v1.Options".into(),
                value: RuncOptions {
                    root: self.runc_root.display().to_string(),
                }
                .encode_to_vec(),
            }),
            (SIBLING, Some(config_path)) => Some(Any {
                type_url: "runtimeoptions.v1.Options".into(),
                value: ConfigFileOptions {
                    config_path: config_path.clone(),
                }
                .encode_to_vec(),
            }),
            _ => None,
        };
        Runtime {
            name: name.into(),
            options,
        }
    }

    /// The snapshot and the container record for `id`, running `args`.
    pub async fn prepare(&self, id: &str, runtime: &str, args: &[&str]) -> Result<Prepared, Error> {
        let mounts = SnapshotsClient::new(self.channel.clone())
            .prepare(self.request(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: id.into(),
                parent: self.parent.clone(),
                ..Default::default()
            }))
            .await?
            .into_inner()
            .mounts;
        let mut spec = self.spec.clone();
        spec["process"]["args"] = serde_json::json!(args);
        spec["process"]["terminal"] = serde_json::json!(false);
        spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/{}/{id}", self.namespace));
        let container = Container {
            id: id.into(),
            image: self.image.clone(),
            runtime: Some(self.runtime(runtime)),
            spec: Some(Any {
                type_url: SPEC_URL.into(),
                value: serde_json::to_vec(&spec)?,
            }),
            snapshotter: SNAPSHOTTER.into(),
            snapshot_key: id.into(),
            ..Default::default()
        };
        ContainersClient::new(self.channel.clone())
            .create(self.request(CreateContainerRequest {
                container: Some(container),
            }))
            .await?;
        Ok(Prepared {
            id: id.into(),
            mounts,
        })
    }

    /// Removes the container record and its snapshot.
    pub async fn remove(&self, id: &str) -> Result<(), Error> {
        ContainersClient::new(self.channel.clone())
            .delete(self.request(DeleteContainerRequest { id: id.into() }))
            .await?;
        SnapshotsClient::new(self.channel.clone())
            .remove(self.request(RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.into(),
                key: id.into(),
            }))
            .await?;
        Ok(())
    }

    async fn create_task(&self, prepared: &Prepared) -> Result<(), Error> {
        self.tasks()
            .create(self.request(CreateTaskRequest {
                container_id: prepared.id.clone(),
                rootfs: prepared.mounts.clone(),
                ..Default::default()
            }))
            .await?;
        Ok(())
    }

    /// Start of the task (`exec_id` empty) or of one of its execs.
    async fn start_task(&self, id: &str, exec_id: &str) -> Result<(), Error> {
        self.tasks()
            .start(self.request(StartRequest {
                container_id: id.into(),
                exec_id: exec_id.into(),
            }))
            .await?;
        Ok(())
    }

    /// Waits for the task (`exec_id` empty) or an exec; returns its exit status.
    async fn wait_task(&self, id: &str, exec_id: &str) -> Result<u32, Error> {
        Ok(self
            .tasks()
            .wait(self.request(WaitRequest {
                container_id: id.into(),
                exec_id: exec_id.into(),
            }))
            .await?
            .into_inner()
            .exit_status)
    }

    async fn delete_task(&self, id: &str) -> Result<(), Error> {
        self.tasks()
            .delete(self.request(DeleteTaskRequest {
                container_id: id.into(),
            }))
            .await?;
        Ok(())
    }

    /// Create, Start, Wait, Delete of the task, each timed; returns the phases and exit status.
    pub async fn run_task(&self, prepared: &Prepared) -> Result<(Phases, u32), Error> {
        let id = &prepared.id;
        let t0 = Instant::now();
        self.create_task(prepared).await?;
        let t1 = Instant::now();
        self.start_task(id, "").await?;
        let t2 = Instant::now();
        let exit = self.wait_task(id, "").await?;
        let t3 = Instant::now();
        self.delete_task(id).await?;
        let t4 = Instant::now();
        let phases = Phases {
            create: t1 - t0,
            start: t2 - t1,
            wait: t3 - t2,
            delete: t4 - t3,
        };
        Ok((phases, exit))
    }

    /// Prepare, run and remove: a whole container; returns its exit status.
    pub async fn run_container(
        &self,
        id: &str,
        runtime: &str,
        args: &[&str],
    ) -> Result<(Phases, u32), Error> {
        let prepared = self.prepare(id, runtime, args).await?;
        let result = self.run_task(&prepared).await;
        let removed = self.remove(id).await;
        let result = result?;
        removed?;
        Ok(result)
    }

    /// Creates and starts a long-running task (for memory and exec scenarios).
    pub async fn start_long_running(&self, id: &str, runtime: &str) -> Result<(), Error> {
        let prepared = self.prepare(id, runtime, &["/bin/sleep", "100000"]).await?;
        self.create_task(&prepared).await?;
        self.start_task(id, "").await
    }

    /// Kills a long-running task, waits for it, deletes it and removes the container.
    pub async fn stop_long_running(&self, id: &str) -> Result<(), Error> {
        self.tasks()
            .kill(self.request(KillRequest {
                container_id: id.into(),
                signal: 9,
                all: true,
                ..Default::default()
            }))
            .await?;
        self.wait_task(id, "").await?;
        self.delete_task(id).await?;
        self.remove(id).await
    }

    /// One exec of `args` in a running container: Exec, Start, Wait, DeleteProcess.
    /// Returns the time it took and the exit status.
    pub async fn exec(
        &self,
        container: &str,
        exec_id: &str,
        args: &[&str],
    ) -> Result<(Duration, u32), Error> {
        let mut process = self.spec["process"].clone();
        process["args"] = serde_json::json!(args);
        process["terminal"] = serde_json::json!(false);
        let mut tasks = self.tasks();
        let t0 = Instant::now();
        tasks
            .exec(self.request(ExecProcessRequest {
                container_id: container.into(),
                exec_id: exec_id.into(),
                spec: Some(Any {
                    type_url: PROCESS_URL.into(),
                    value: serde_json::to_vec(&process)?,
                }),
                ..Default::default()
            }))
            .await?;
        self.start_task(container, exec_id).await?;
        let exit = self.wait_task(container, exec_id).await?;
        tasks
            .delete_process(self.request(DeleteProcessRequest {
                container_id: container.into(),
                exec_id: exec_id.into(),
            }))
            .await?;
        Ok((t0.elapsed(), exit))
    }
}
