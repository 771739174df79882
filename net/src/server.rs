//! A shard's listener. Every shard binds the same address with SO_REUSEPORT (glommio sets
//! it), so the kernel spreads connections over the shards; a shard that accepts a connection
//! while another serves fewer hands it over (see `spate_shard::ConnectionLoad`).

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpListener;
use spate_shard::Shard;

use crate::connection;
use crate::inter_broker::InterBrokerConnector;

/// How often a shard looks at the shutdown flag a signal handler sets. Signal handlers can
/// only touch atomics, so the shards poll it.
pub const SHUTDOWN_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Accepts connections until `shutdown` is set. A listener that cannot bind sets `shutdown`
/// for every shard and returns the error.
pub async fn serve(shard: Rc<Shard>, shutdown: Arc<AtomicBool>) -> Result<(), String> {
    let address = shard.config().listen.clone();
    shard.set_leader_connector(Rc::new(InterBrokerConnector {
        max_response_bytes: shard.config().socket_request_max_bytes,
        socket_timeout: Duration::from_millis(shard.config().replica_socket_timeout_ms),
    }));
    let listener = TcpListener::bind(&address).map_err(|e| {
        shutdown.store(true, Ordering::SeqCst);
        format!("shard {} cannot listen on {address}: {e}", shard.id())
    })?;
    tracing::info!(shard = shard.id(), "listening on {address}");
    let accept = async {
        loop {
            match listener.shared_accept().await {
                Ok(accepted) => {
                    let open = shard.place_connection();
                    if open.shard() == shard.id() {
                        let stream = accepted.bind_to_executor();
                        let run = connection::run(shard.clone(), stream, open);
                        glommio::spawn_local(run).detach();
                    } else {
                        let shard = shard.clone();
                        glommio::spawn_local(
                            async move { shard.hand_connection(accepted, open).await },
                        )
                        .detach();
                    }
                }
                Err(e) => tracing::warn!(shard = shard.id(), "accept failed: {e}"),
            }
        }
    };
    let adopt = async {
        while let Some((stream, open)) = shard.adopted_connection().await {
            glommio::spawn_local(connection::run(shard.clone(), stream, open)).detach();
        }
    };
    let stop = async {
        while !shutdown.load(Ordering::SeqCst) {
            glommio::timer::sleep(SHUTDOWN_POLL_INTERVAL).await;
        }
    };
    futures_lite::future::or(futures_lite::future::or(accept, adopt), stop).await;
    tracing::info!(shard = shard.id(), "stopped accepting connections");
    Ok(())
}
