//! Tessera's control plane: a tonic gRPC server that owns the truth of the cluster (node registry,
//! slot -> master map, epochs, PFAIL/FAIL state, settings), persisted in its data directory, and
//! publishes every new topology version to watchers. `clusterctl` is its operator CLI.
//!
//! Deciding is kept apart from doing: `placement`, `failure`, `failover`, `settings` and `state` are pure
//! transitions with the clock passed in; `controller` locks, saves and publishes; `service` speaks
//! gRPC. `run` serves on a given listener so tests start real servers on port 0 in-process.

pub mod clusterctl;
pub mod config;
pub mod controller;
pub mod error;
pub mod failover;
pub mod failure;
pub mod placement;
pub mod resolve;
pub mod service;
pub mod settings;
pub mod state;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tessera_proto::pb;
use tessera_proto::topology::Settings;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, LogFormat};
pub use error::Error;

use controller::Controller;
use service::ControlPlaneService;
use store::{FileStore, StateStore};

/// How often the failure detector runs.
const DETECTOR_TICK: Duration = Duration::from_millis(100);

/// Serves the control plane on `listener` until `shutdown` completes, with state in
/// `config.data_dir`. Open WatchTopology streams end at shutdown; the detector task stops with it.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let store: Arc<dyn StateStore> = Arc::new(FileStore::new(&config.data_dir));
    run_with_store(config, store, listener, shutdown).await
}

/// `run` with any state store (a file by default; etcd later).
pub async fn run_with_store(
    config: Config,
    store: Arc<dyn StateStore>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let defaults = Settings {
        node_timeout_ms: u64::try_from(config.node_timeout.as_millis()).unwrap_or(u64::MAX),
        ..Settings::default()
    };
    let controller = Arc::new(Controller::open(store, defaults).await?);
    let stop = CancellationToken::new();

    let detector = tokio::spawn(detect_failures(controller.clone(), stop.clone()));

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::control_plane_server::ControlPlaneServer<ControlPlaneService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let service = ControlPlaneService::new(controller, stop.clone());
    let address = listener.local_addr().ok();
    tracing::info!(?address, data_dir = %config.data_dir.display(), "control plane serving");

    let signal = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down");
            stop.cancel();
        }
    };
    let served = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(pb::control_plane_server::ControlPlaneServer::new(service))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            signal,
        )
        .await;
    stop.cancel();
    let _ = detector.await;
    served?;
    tracing::info!("control plane stopped");
    Ok(())
}

/// The failure detector's clock: one round every `DETECTOR_TICK` until `stop`.
async fn detect_failures(controller: Arc<Controller>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(DETECTOR_TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {
                if let Err(e) = controller.tick().await {
                    tracing::error!(error = %e, "failure detector round not applied");
                }
            }
        }
    }
}
