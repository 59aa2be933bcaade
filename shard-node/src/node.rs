//! Wires a node together: data directory, node id, AOF replay, the replication history, the
//! cluster tasks, then serving; and the ordered stop: stop accepting -> drain clients -> stop
//! replication -> flush and fsync the AOF -> save the replication state -> stop the cluster tasks.

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::aof::{self, Aof};
use crate::cluster::{self, ClusterView, Member, Registration};
use crate::config::Config;
use crate::error::{AofError, NodeError};
use crate::keyspace::Keyspace;
use crate::node_id;
use crate::replication::{self, Replication};
use crate::state::NodeState;
use crate::{bus, cmd, server};

/// Runs a node on `listener` until `shutdown` is cancelled, then stops in order and returns.
/// Errs only when the node cannot start (bad config, unreadable data directory, damaged AOF) or
/// when the final flush of the AOF fails.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    run_observed(config, listener, shutdown, |_| {}).await
}

/// `run`, handing the node's shared state to `started` once it is wired and about to serve: the
/// in-process clusters of tests drive it through there (`state.replication.follow`, ...), as the
/// cluster layer does from the topology.
pub async fn run_observed(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    started: impl FnOnce(&Arc<NodeState>),
) -> Result<(), NodeError> {
    config.validate()?;
    let bound = listener.local_addr().map_err(NodeError::Listener)?;
    let data_dir = config.data_dir();
    std::fs::create_dir_all(&data_dir).map_err(|source| NodeError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let myself = node_id::load_or_create(&data_dir)?;
    let announce_port = config.service.announced_port(bound.port());
    let bus_listener = bind_bus(&config, bound).await?;
    let registration = Registration {
        control_plane: config.service.control_plane.clone(),
        announce_host: config.service.announced_host(),
        announce_port,
        announce_bus_port: bus_listener
            .local_addr()
            .map_err(NodeError::Listener)?
            .port(),
    };
    tracing::info!(
        node_id = %myself,
        bind = %bound,
        announce = %format!("{}:{}", registration.announce_host, announce_port),
        data_dir = %data_dir.display(),
        appendonly = config.appendonly(),
        "shard node starting"
    );

    let mut state = NodeState {
        keyspace: Keyspace::new(),
        cluster: ClusterView::new(myself),
        aof: None,
        stats: server::ServerStats::default(),
        config: crate::config::Live::from_config(&config),
        evictor: crate::evict::Evictor::default(),
        pubsub: Default::default(),
        replication: Replication::new(config.repl_backlog_size, Some(data_dir.clone())),
        migrate_links: Default::default(),
    };
    state.stats.node_secret = config
        .service
        .node_secret()
        .map(|s| bytes::Bytes::copy_from_slice(s.as_bytes()));
    if config.appendonly() {
        let path = data_dir.join(aof::FILE_NAME);
        state = replay(state, &path).await?;
        let opened = Arc::new(Aof::open(&path, config.appendfsync)?);
        state.replication.log.attach_aof(Arc::clone(&opened));
        state.aof = Some(opened);
    }
    // The history this data belongs to: kept when it provably matches the AOF (replication::ids).
    let aof_size = state.aof.as_ref().map(|aof| aof.progress().file_size);
    let (ids, offset) =
        replication::ids::Saved::resume(replication::ids::load(&data_dir)?, aof_size);
    tracing::info!(replid = %ids.replid, offset, "replication history");
    state.replication.resume(ids, offset);
    let state = Arc::new(state);
    state.replication.start(&state, announce_port);

    let tasks = cluster::start(Arc::clone(&state) as Arc<dyn Member>, registration)?;
    // The bus keeps serving peers while clients drain; it stops with the cluster tasks.
    let bus_stop = CancellationToken::new();
    let bus = tokio::spawn(bus::serve(
        bus_listener,
        Arc::clone(&state),
        bus_stop.clone(),
    ));
    // Slot moves stop before the clients drain: a batch in flight finishes or fails first.
    let mover = tokio::spawn(crate::migrate::run(Arc::clone(&state), shutdown.clone()));
    let channels = tokio::spawn(crate::pubsub::drop_moved_channels(
        Arc::clone(&state),
        shutdown.clone(),
    ));
    let rewriter = tokio::spawn(aof::rewrite::run(
        Arc::clone(&state),
        config.auto_rewrite(),
        shutdown.clone(),
    ));
    started(&state);
    tracing::info!(port = bound.port(), "ready to accept connections");
    server::serve(listener, Arc::clone(&state), shutdown).await;
    tracing::info!("clients drained; flushing the append-only file");
    state.pubsub.forward.stop();
    // No more writes from a master's stream, and no more replicas served, after this.
    state.replication.shutdown().await;

    // Closing the file also cancels a rewrite in progress, which the rewrite task then reports.
    let flushed = match &state.aof {
        Some(aof) => aof.flush_and_sync().await,
        None => Ok(()),
    };
    // With the AOF's final size, so a restart can tell the history still matches its data.
    let final_size = match (&flushed, &state.aof) {
        (Ok(()), Some(aof)) => Some(aof.progress().file_size),
        _ => None,
    };
    if let Err(error) = state.replication.save_final(final_size) {
        tracing::error!(%error, "cannot save the replication state at shutdown");
    }
    let _ = rewriter.await;
    let _ = mover.await;
    let _ = channels.await;
    bus_stop.cancel();
    let _ = bus.await;
    tasks.stop().await;
    match flushed {
        Ok(()) => {
            tracing::info!("shard node stopped");
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "the append-only file could not be flushed at shutdown");
            Err(e.into())
        }
    }
}

/// Binds the cluster bus next to the client listener (`bound`): on the configured bus port, else
/// the client port + 10000. A default port that is taken or does not fit falls back to any free
/// port (peers learn the bus address from the topology, so any port works); an explicit port that
/// cannot be bound is an error.
async fn bind_bus(config: &Config, bound: std::net::SocketAddr) -> Result<TcpListener, NodeError> {
    let port = config.bus_port(bound.port());
    match TcpListener::bind((bound.ip(), port)).await {
        Ok(listener) => Ok(listener),
        Err(error) if config.bus_port.is_none() => {
            tracing::warn!(port, %error, "cluster bus port unavailable; binding any free port");
            TcpListener::bind((bound.ip(), 0))
                .await
                .map_err(NodeError::Listener)
        }
        Err(error) => Err(NodeError::Listener(error)),
    }
}

/// Replays the AOF at `path` into `state` before anything is served. Runs on a blocking thread:
/// it reads the whole file.
async fn replay(state: NodeState, path: &Path) -> Result<NodeState, NodeError> {
    let started = std::time::Instant::now();
    let file = path.to_path_buf();
    let (state, summary) = tokio::task::spawn_blocking(move || {
        let summary = aof::load(&file, |args| cmd::replay(&state, args));
        (state, summary)
    })
    .await
    .map_err(|e| AofError::Replay {
        path: path.to_path_buf(),
        offset: 0,
        reason: format!("the loader stopped: {e}"),
    })?;
    let summary = summary?;
    if summary.records > 0 || summary.truncated_bytes > 0 {
        tracing::info!(
            records = summary.records,
            bytes = summary.end_offset,
            keys = state.key_count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "DB loaded from append only file"
        );
    }
    Ok(state)
}
