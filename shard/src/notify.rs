//! A single-threaded "something changed" signal: fetch long polls wait on it, appends fire it.
//!
//! It lives on one shard (no atomics, no locks): waiters register a waker, `notify_all`
//! wakes every one of them. A waiter compares the version it saw before sleeping with the
//! current one, so a notification that lands between its check and its sleep is not lost.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Notify {
    version: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    /// The current version; pass it to [`Notify::changed_since`].
    pub fn version(&self) -> u64 {
        self.version.get()
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.version.set(self.version.get().wrapping_add(1));
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Resolves once `notify_all` has run after `version` was read.
    pub fn changed_since(&self, version: u64) -> Changed<'_> {
        Changed {
            notify: self,
            version,
        }
    }
}

pub struct Changed<'a> {
    notify: &'a Notify,
    version: u64,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.version.get() != self.version {
            return Poll::Ready(());
        }
        let mut waiters = self.notify.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn wakes_a_waiter_and_not_before() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(512 * 1024)
            .make()
            .unwrap();
        ex.run(async {
            let notify = Rc::new(Notify::default());
            let woken = Rc::new(Cell::new(false));
            let seen = notify.version();
            let (n, w) = (notify.clone(), woken.clone());
            let waiter = glommio::spawn_local(async move {
                n.changed_since(seen).await;
                w.set(true);
            });
            glommio::executor().yield_now().await;
            assert!(!woken.get());
            notify.notify_all();
            waiter.await;
            assert!(woken.get());
            // A stale version resolves at once.
            notify.changed_since(seen).await;
        });
    }
}
