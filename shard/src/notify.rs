//! A single-threaded "something changed" signal: fetch long polls wait on it, appends fire it.
//!
//! It lives on one shard (no atomics, no locks): waiters register a waker, `notify_all`
//! wakes every one of them. A waiter compares the version it saw before sleeping with the
//! current one, so a notification that lands between its check and its sleep is not lost.
//! A waiter that gives up (a long poll that timed out) takes its waker back out, so idle
//! partitions polled for days hold no pile of stale wakers.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Notify {
    version: Cell<u64>,
    next_key: Cell<u64>,
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl Notify {
    /// The current version; pass it to [`Notify::changed_since`].
    pub fn version(&self) -> u64 {
        self.version.get()
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.version.set(self.version.get().wrapping_add(1));
        let waiters: Vec<Waker> = self.waiters.borrow_mut().drain().map(|(_, w)| w).collect();
        for waker in waiters {
            waker.wake();
        }
    }

    /// Resolves once `notify_all` has run after `version` was read.
    pub fn changed_since(&self, version: u64) -> Changed<'_> {
        Changed {
            notify: self,
            version,
            key: None,
        }
    }
}

pub struct Changed<'a> {
    notify: &'a Notify,
    version: u64,
    /// This waiter's entry in `waiters`, once it has slept.
    key: Option<u64>,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.version.get() != self.version {
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(key) => key,
            None => {
                let key = self.notify.next_key.get();
                self.notify.next_key.set(key.wrapping_add(1));
                self.key = Some(key);
                key
            }
        };
        self.notify
            .waiters
            .borrow_mut()
            .insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.notify.waiters.borrow_mut().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    use crate::run_local as run;

    #[test]
    fn wakes_a_waiter_and_not_before() {
        run(async {
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

    #[test]
    fn a_waiter_that_gives_up_leaves_nothing_behind() {
        run(async {
            let notify = Notify::default();
            for _ in 0..100 {
                let seen = notify.version();
                let timeout = glommio::timer::sleep(std::time::Duration::from_millis(1));
                futures_lite::future::or(notify.changed_since(seen), timeout).await;
            }
            assert!(notify.waiters.borrow().is_empty());
        });
    }
}
