//! The controller listener: accepts connections from voters and brokers and answers their
//! frames one at a time with the [`Voter`].

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::rpc::{read_frame, write_frame, Request};
use super::voter::Voter;

/// Accepts for as long as the cluster thread's runtime runs: it keeps serving during a
/// controlled shutdown, whose fence this controller may have to commit.
pub(crate) async fn serve(listener: TcpListener, voter: Arc<Voter>, max_frame_bytes: usize) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, voter.clone(), max_frame_bytes));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!("controller listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(mut stream: TcpStream, voter: Arc<Voter>, max_frame_bytes: usize) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".to_string());
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("controller connection from {peer}: {e}");
    }
    loop {
        let request: Request = match read_frame(&mut stream, max_frame_bytes).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("controller connection from {peer} closed: {e}");
                return;
            }
        };
        let response = voter.handle(request).await;
        if let Err(e) = write_frame(&mut stream, &response).await {
            tracing::debug!("controller connection from {peer}: {e}");
            return;
        }
    }
}
