//! berthd's life: claim the root dir, open the store, bind the socket,
//! serve, and shut down cleanly on SIGTERM/SIGINT.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use berth_store::{Store, StoreError};
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::Config;
use crate::inflight::InFlight;
use crate::lock::{LockError, RootLock};
use crate::service::{self, Shared};
use crate::socket::{self, SocketError};

/// Why berthd could not start. Each is printed as one line and exits 1.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot create {what} {path}: {source}")]
    CreateDir {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} {path} is not writable: {source}")]
    NotWritable {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image store: {0}")]
    Images(#[from] berth_image::ImageError),
    #[error("cgroups: {0}")]
    Cgroups(String),
    #[error("recovering pod sandboxes: {0}")]
    Recover(#[source] berth_pod::PodError),
    #[error("containers: {0}")]
    Containers(#[source] berth_containers::RuntimeError),
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// The sealed copy of a binary that runs in pods' namespaces
    /// (berth_process::sealed) could not be made.
    #[error("cannot make a sealed copy of {path}: {source}")]
    Seal {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen: {0}")]
    Listen(#[source] io::Error),
    #[error("streaming server ([streaming] address and port): {0}")]
    Streaming(#[source] io::Error),
    #[error("metrics endpoint ([metrics] address): {0}")]
    Metrics(#[source] io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] io::Error),
    #[error("server failed: {0}")]
    Serve(#[source] tonic::transport::Error),
}

/// Creates `path` (mode 0711 for new directories) and proves it writable.
fn prepare_dir(what: &'static str, path: &Path) -> Result<(), StartupError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(path)
        .map_err(|source| StartupError::CreateDir {
            what,
            path: path.to_owned(),
            source,
        })?;
    let probe = path.join(format!(".berthd-write-check-{}", std::process::id()));
    fs::write(&probe, b"")
        .and_then(|()| fs::remove_file(&probe))
        .map_err(|source| StartupError::NotWritable {
            what,
            path: path.to_owned(),
            source,
        })
}

/// Runs the daemon until SIGTERM or SIGINT. Returns Ok after a clean stop.
pub async fn run(config: Config, config_file: Option<PathBuf>) -> Result<(), StartupError> {
    let d = &config.daemon;
    prepare_dir("root dir", &d.root_dir)?;
    prepare_dir("state dir", &d.state_dir)?;
    let lock = RootLock::acquire(&d.root_dir)?;
    let store_path = d.root_dir.join("meta.redb");
    let store = tokio::task::block_in_place(|| Store::open(&store_path))?;
    tracing::info!(store = %store_path.display(), schema = berth_store::SCHEMA_VERSION, "metadata store open");
    let images = tokio::task::block_in_place(|| {
        berth_image::Images::open(&d.root_dir, config.image.clone(), store.clone())
    })?;

    let bound = socket::bind(&d.socket)?;
    bound
        .listener
        .set_nonblocking(true)
        .map_err(StartupError::Listen)?;
    let listener = tokio::net::UnixListener::from_std(
        bound.listener.try_clone().map_err(StartupError::Listen)?,
    )
    .map_err(StartupError::Listen)?;

    let mut sigterm = signal(SignalKind::terminate()).map_err(StartupError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(StartupError::Signals)?;
    let shutdown_timeout = d.shutdown_timeout;
    let socket_path = d.socket.clone();

    let hierarchy = berth_cgroups::detect(std::path::Path::new("/sys/fs/cgroup"))
        .map_err(StartupError::Cgroups)?;
    let cgroups = berth_cgroups::Cgroups::new(std::path::Path::new("/sys/fs/cgroup"), hierarchy);
    let health = Arc::new(berth_metrics::health::Health::default());
    let containers = berth_containers::Containers::new(
        config.runtime.clone(),
        store.clone(),
        berth_containers::Paths {
            containers: d.root_dir.join("containers"),
            state: d.state_dir.clone(),
            protected: vec![d.root_dir.clone(), d.state_dir.clone()],
        },
        cgroups.clone(),
        config.pod.cgroup_driver,
    )
    .map_err(StartupError::Containers)?;
    let pods = berth_pod::Pods::new(
        config.pod.clone(),
        store.clone(),
        cgroups,
        berth_pod::Dirs {
            root: d.root_dir.clone(),
            state: d.state_dir.clone(),
        },
        crate::network::CniNetwork::new(
            config.cni.clone(),
            d.root_dir.join("cni/results"),
            health.clone(),
        ),
    )
    .with_pid_holder(Arc::new(
        berth_process::sealed::SealedExe::seal(containers.shim_bin()).map_err(|source| {
            StartupError::Seal {
                path: containers.shim_bin().to_owned(),
                source,
            }
        })?,
    ));
    // The pod CIDRs kubelet sent before a restart (it sends them once).
    match crate::settings::NetworkSettings::load(&store) {
        Ok(s) => pods.network().set_pod_cidrs(s.pod_cidrs),
        Err(e) => tracing::warn!(error = %e, "reading the stored pod CIDR"),
    }
    pods.recover().await.map_err(StartupError::Recover)?;
    let pod_ids: Vec<String> = pods
        .list(&berth_pod::PodFilter::default())
        .map_err(StartupError::Recover)?
        .iter()
        .map(|p| p.id.clone())
        .collect();
    containers
        .recover(&pod_ids)
        .await
        .map_err(StartupError::Containers)?;
    let stats = crate::stats::Stats::new(std::path::Path::new("/sys/fs/cgroup"), &config.metrics);
    let (streaming, stream_listener) = berth_streaming::bind(&config.streaming)
        .await
        .map_err(StartupError::Streaming)?;
    let writable_layers = Arc::new(crate::layerusage::WritableLayers::new(
        containers.root(),
        config.metrics.disk_interval,
    ));
    let shared = Arc::new(Shared {
        streaming,
        images,
        pods,
        writable_layers,
        containers,
        stats,
        health: health.clone(),
        config,
        config_file,
        store,
        started_at: SystemTime::now(),
    });
    if let Err(e) = crate::leases::reconcile(&shared.images, &shared.containers).await {
        tracing::warn!(error = %e, "reconciling image leases");
    }
    let sampler = tokio::spawn(crate::service::run_stats(shared.clone()));
    let stream_server = berth_streaming::serve(
        stream_listener,
        Arc::new(crate::streambackend::CriBackend::new(&shared)),
    );
    tracing::info!(address = %shared.streaming.addr(), "streaming server listening");
    let metrics = crate::exporter::start(&shared)
        .await
        .map_err(StartupError::Metrics)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let in_flight = InFlight::default();
    let server = tonic::transport::Server::builder()
        .layer(in_flight.clone())
        .layer(crate::callmetrics::CallMetrics::new(health))
        .add_service(service::runtime_server(shared.clone()))
        .add_service(service::image_server(shared.clone()))
        .add_service(service::berth_api_server(shared.clone()))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            let _ = stop_rx.await;
        });
    let mut server = tokio::spawn(server);

    tracing::info!(socket = %socket_path.display(), pid = std::process::id(), version = env!("CARGO_PKG_VERSION"), "berthd ready");
    if let Some((endpoint, _)) = &metrics {
        endpoint
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
    }
    match crate::notify::notify("READY=1") {
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot notify the service manager"),
    }

    let signal_name = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
        res = &mut server => {
            // The server ended on its own: an accept error.
            bound.remove();
            return match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(StartupError::Serve(e)),
                Err(e) => Err(StartupError::Listen(io::Error::other(e))),
            };
        }
    };
    tracing::info!(
        signal = signal_name,
        "shutting down: no new calls, waiting for calls in flight"
    );
    let _ = crate::notify::notify("STOPPING=1");
    // Stop accepting at once, also while in-flight calls finish.
    bound.remove();
    let _ = stop_tx.send(());
    // Done when the server has closed every connection, or when no call is
    // in flight (idle client connections are simply dropped).
    let drained = async {
        tokio::select! {
            res = &mut server => match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "server ended with an error"),
                Err(e) => tracing::warn!(error = %e, "server task failed"),
            },
            () = in_flight.idle() => {}
        }
    };
    match tokio::time::timeout(shutdown_timeout, drained).await {
        Ok(()) => tracing::info!("stopped"),
        Err(_) => tracing::warn!(
            timeout = ?shutdown_timeout,
            in_flight = in_flight.count(),
            "calls still in flight after the shutdown timeout; exiting anyway"
        ),
    }
    server.abort();
    sampler.abort();
    stream_server.abort();
    if let Some((_, task)) = metrics {
        task.abort();
        let _ = std::fs::remove_file(
            shared
                .config
                .daemon
                .state_dir
                .join(crate::exporter::ADDRESS_FILE),
        );
    }
    // Containers removed just before: their state goes now rather than at
    // the next start.
    match tokio::time::timeout(shutdown_timeout, shared.containers.finish_removals()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "finishing container removals at shutdown"),
        Err(_) => tracing::warn!(
            "container removals still running at shutdown; finished at the next start"
        ),
    }
    drop(shared);
    drop(lock);
    Ok(())
}
