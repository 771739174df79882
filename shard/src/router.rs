//! Cross-shard calls. Every ordered pair of shards has one bounded glommio shared channel;
//! a call sends a request tagged with an id, then awaits the reply that the owner sends
//! back on the reverse channel. No locks: each end of a channel belongs to one shard.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{
    ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};

use crate::messages::{Reply, Request};

pub(crate) enum Body {
    Request(Request),
    Reply(Reply),
}

pub(crate) struct Envelope {
    pub from: usize,
    pub id: u64,
    pub body: Body,
}

/// One shard's ends of the channel mesh, before its executor connects them.
pub struct Links {
    pub(crate) senders: Vec<Option<SharedSender<Envelope>>>,
    pub(crate) receivers: Vec<Option<SharedReceiver<Envelope>>>,
}

/// Builds the full mesh for `shards` shards: element `i` holds shard `i`'s ends.
/// `depth` bounds each channel (messages in flight from one shard to another).
pub fn mesh(shards: usize, depth: usize) -> Vec<Links> {
    let mut links: Vec<Links> = (0..shards)
        .map(|_| Links {
            senders: (0..shards).map(|_| None).collect(),
            receivers: (0..shards).map(|_| None).collect(),
        })
        .collect();
    for from in 0..shards {
        for to in 0..shards {
            if from != to {
                let (tx, rx) = glommio::channels::shared_channel::new_bounded(depth);
                links[from].senders[to] = Some(tx);
                links[to].receivers[from] = Some(rx);
            }
        }
    }
    links
}

pub(crate) struct Router {
    me: usize,
    senders: Vec<Option<ConnectedSender<Envelope>>>,
    pending: RefCell<HashMap<u64, LocalSender<Reply>>>,
    next_id: Cell<u64>,
}

impl Router {
    /// Connects this shard's ends; every shard must do so concurrently (a connect waits for
    /// its peer). Returns the router and the receivers, one per peer, for the caller to drain.
    pub async fn connect(
        me: usize,
        links: Links,
    ) -> (Router, Vec<(usize, ConnectedReceiver<Envelope>)>) {
        let senders = links.senders.into_iter().map(|s| async move {
            match s {
                Some(s) => Some(s.connect().await),
                None => None,
            }
        });
        let receivers = links
            .receivers
            .into_iter()
            .enumerate()
            .filter_map(|(peer, r)| r.map(|r| (peer, r)))
            .map(|(peer, r)| async move { (peer, r.connect().await) });
        let (senders, receivers) = futures_util::future::join(
            futures_util::future::join_all(senders),
            futures_util::future::join_all(receivers),
        )
        .await;
        let router = Router {
            me,
            senders,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
        };
        (router, receivers)
    }

    /// Sends `request` to shard `to` and returns where its reply will arrive; `None` if that
    /// shard is gone. Once this returns the request is in the channel, behind every request
    /// this shard sent there before: the owner takes them in that order.
    pub async fn send(&self, to: usize, request: Request) -> Option<LocalReceiver<Reply>> {
        let sender = self.senders.get(to)?.as_ref()?;
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(id, tx);
        let envelope = Envelope {
            from: self.me,
            id,
            body: Body::Request(request),
        };
        if sender.send(envelope).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return None;
        }
        Some(rx)
    }

    /// Sends the reply to call `id` back to shard `to`.
    pub async fn reply(&self, to: usize, id: u64, reply: Reply) {
        if let Some(sender) = self.senders.get(to).and_then(Option::as_ref) {
            let envelope = Envelope {
                from: self.me,
                id,
                body: Body::Reply(reply),
            };
            // The caller's shard may be shutting down; then nobody waits for this reply.
            let _ = sender.send(envelope).await;
        }
    }

    /// Hands a reply that arrived to the call waiting for it.
    pub fn deliver(&self, id: u64, reply: Reply) {
        if let Some(tx) = self.pending.borrow_mut().remove(&id) {
            // The caller may have given up (a fetch that returned early): drop the reply.
            let _ = tx.try_send(reply);
        }
    }
}
