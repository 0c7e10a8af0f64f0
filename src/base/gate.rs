//! A gate over one shard's tasks, for an orderly shutdown (Seastar's `gate`): work
//! enters with a [`Pass`] and leaves when the pass drops; [`Gate::close`] refuses new
//! passes from then on and resolves once every pass has left. Single-threaded: one
//! gate belongs to one executor.
//!
//! Unlike `glommio::sync::Gate`, a close may be abandoned (raced against a deadline
//! and dropped) and passes may still leave afterwards.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Work inside the gate; cloning gives another handle on the same gate.
#[derive(Clone, Default)]
pub struct Gate {
    state: Rc<RefCell<State>>,
}

#[derive(Default)]
struct State {
    passes: usize,
    closing: bool,
    /// Tasks waiting for the close to begin ([`Gate::closing`]).
    on_closing: Vec<Waker>,
    /// Tasks waiting for the last pass to leave ([`Gate::close`]).
    on_empty: Vec<Waker>,
}

/// One piece of work inside the gate; it leaves when dropped.
pub struct Pass {
    state: Rc<RefCell<State>>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut state = self.state.borrow_mut();
        state.passes -= 1;
        if state.passes == 0 && state.closing {
            wake_all(&mut state.on_empty);
        }
    }
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// A pass for new work; `None` once the gate is closing.
    pub fn enter(&self) -> Option<Pass> {
        let mut state = self.state.borrow_mut();
        if state.closing {
            return None;
        }
        state.passes += 1;
        Some(Pass {
            state: Rc::clone(&self.state),
        })
    }

    pub fn is_closing(&self) -> bool {
        self.state.borrow().closing
    }

    /// How many passes have not left yet.
    pub fn passes(&self) -> usize {
        self.state.borrow().passes
    }

    /// Closes the gate now (no new pass from this call on; waiters in
    /// [`Gate::closing`] wake) and returns what resolves once every pass has left.
    pub fn close(&self) -> impl Future<Output = ()> + 'static {
        {
            let mut state = self.state.borrow_mut();
            state.closing = true;
            wake_all(&mut state.on_closing);
        }
        let gate = self.clone();
        poll_fn(move |cx| {
            let mut state = gate.state.borrow_mut();
            if state.passes == 0 {
                return Poll::Ready(());
            }
            remember(&mut state.on_empty, cx.waker());
            Poll::Pending
        })
    }

    /// Resolves once the gate is closing.
    pub fn closing(&self) -> impl Future<Output = ()> + 'static {
        let gate = self.clone();
        poll_fn(move |cx| {
            let mut state = gate.state.borrow_mut();
            if state.closing {
                return Poll::Ready(());
            }
            remember(&mut state.on_closing, cx.waker());
            Poll::Pending
        })
    }

    /// Runs `work` to its end inside the gate, entered now; `None` (and `work` never
    /// runs) when the gate is already closing.
    pub fn inside<F: Future>(&self, work: F) -> impl Future<Output = Option<F::Output>> {
        let pass = self.enter();
        async move {
            let _pass = pass?;
            Some(work.await)
        }
    }

    /// Runs `work` inside the gate, entered now, until it ends or the gate starts
    /// closing, whichever comes first (`None` then): for work that would otherwise
    /// never end, such as a timer's loop.
    pub fn until_closing<F: Future>(&self, work: F) -> impl Future<Output = Option<F::Output>> {
        let pass = self.enter();
        let closing = self.closing();
        async move {
            let _pass = pass?;
            // The close is looked at first: once it began, no more work starts.
            futures_lite::future::or(
                async {
                    closing.await;
                    None
                },
                async { Some(work.await) },
            )
            .await
        }
    }
}

/// Adds `waker` unless its task is there already: a task polls the same wait many
/// times.
fn remember(wakers: &mut Vec<Waker>, waker: &Waker) {
    if !wakers.iter().any(|w| w.will_wake(waker)) {
        wakers.push(waker.clone());
    }
}

fn wake_all(wakers: &mut Vec<Waker>) {
    for waker in wakers.drain(..) {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn an_empty_gate_closes_at_once() {
        let gate = Gate::new();
        assert!(!gate.is_closing());
        block_on(gate.close());
        assert!(gate.is_closing());
        assert!(gate.enter().is_none());
    }

    #[test]
    fn close_waits_for_every_pass_and_refuses_new_ones() {
        let gate = Gate::new();
        let first = gate.enter().unwrap();
        let second = gate.enter().unwrap();
        assert_eq!(gate.passes(), 2);
        let mut closed = Box::pin(gate.close());
        assert!(gate.enter().is_none(), "a pass after the close began");
        assert!(block_on(poll_once(&mut closed)).is_none());
        drop(first);
        assert!(block_on(poll_once(&mut closed)).is_none());
        drop(second);
        assert_eq!(block_on(poll_once(&mut closed)), Some(()));
        assert_eq!(gate.passes(), 0);
    }

    #[test]
    fn an_abandoned_close_lets_passes_leave_later() {
        let gate = Gate::new();
        let pass = gate.enter().unwrap();
        let mut closed = Box::pin(gate.close());
        assert!(block_on(poll_once(&mut closed)).is_none());
        drop(closed);
        drop(pass);
        assert_eq!(gate.passes(), 0);
        block_on(gate.close());
    }

    #[test]
    fn closing_resolves_once_the_close_begins() {
        let gate = Gate::new();
        let mut closing = Box::pin(gate.closing());
        assert!(block_on(poll_once(&mut closing)).is_none());
        let _pass = gate.enter().unwrap();
        let _closed = gate.close();
        assert_eq!(block_on(poll_once(&mut closing)), Some(()));
    }

    #[test]
    fn until_closing_stops_endless_work_and_leaves() {
        let gate = Gate::new();
        let mut endless = Box::pin(gate.until_closing(std::future::pending::<()>()));
        assert!(block_on(poll_once(&mut endless)).is_none());
        assert_eq!(gate.passes(), 1);
        let mut closed = Box::pin(gate.close());
        assert_eq!(block_on(poll_once(&mut endless)), Some(None));
        drop(endless);
        assert_eq!(block_on(poll_once(&mut closed)), Some(()));
    }

    #[test]
    fn inside_holds_a_pass_from_the_call_to_the_end_of_the_work() {
        let gate = Gate::new();
        let work = gate.inside(async { 7 });
        assert_eq!(gate.passes(), 1, "entered before the work first runs");
        let closed = gate.close();
        assert_eq!(
            block_on(work),
            Some(7),
            "work inside finishes after the close"
        );
        block_on(closed);
        assert_eq!(block_on(gate.inside(async { 8 })), None);
        assert_eq!(block_on(gate.until_closing(async { 9 })), None);
    }
}
