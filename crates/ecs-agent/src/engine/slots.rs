//! The Docker slots: at most [`DOCKER_SLOTS`] creates and starts in flight,
//! a start served before any waiting create (docs/engine.md §6.4).
//!
//! A plain first-come semaphore would queue each start behind every create
//! of a burst that arrived before it, so no container of 100 would start
//! until nearly all were created: the first task RUNNING seconds late and
//! Docker's start work idle meanwhile. Serving starts first finishes the
//! containers already begun before beginning more, as a client that creates
//! and starts one container after the other does.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// Creates and starts in flight at once. A burst of tasks would otherwise
/// have one Docker connection per container waiting in dockerd, each with
/// its buffers and futures (about 25 KiB: most of the heap at the peak of a
/// 100-task burst, and the fragmentation left after it), while Docker
/// starts containers no faster with more calls waiting (docs/footprint.md
/// §3).
pub const DOCKER_SLOTS: usize = 10;

/// What a slot is for; starts are served first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotUse {
    Start,
    Create,
}

/// Held for the length of one Docker call; dropping it hands the slot on.
#[derive(Debug)]
pub struct Slot {
    /// `None` once the slot has been handed back some other way.
    slots: Option<Arc<DockerSlots>>,
}

impl Slot {
    fn of(slots: &Arc<DockerSlots>) -> Self {
        Self {
            slots: Some(Arc::clone(slots)),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.release();
        }
    }
}

#[derive(Debug, Default)]
struct Waiting {
    free: usize,
    starts: VecDeque<oneshot::Sender<Slot>>,
    creates: VecDeque<oneshot::Sender<Slot>>,
}

/// The agent's slots, shared by every action.
#[derive(Debug)]
pub struct DockerSlots {
    // Free slots exist only while nobody waits: a released slot goes
    // straight to the next waiter.
    waiting: Mutex<Waiting>,
}

impl DockerSlots {
    pub fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            waiting: Mutex::new(Waiting {
                free: slots,
                ..Waiting::default()
            }),
        })
    }

    /// Waits for a slot. Cancel-safe: a waiter dropped before its turn
    /// takes nothing, and one dropped as the slot reached it passes it on.
    pub async fn acquire(self: &Arc<Self>, purpose: SlotUse) -> Slot {
        let handed = {
            let mut w = self.lock();
            if w.free > 0 {
                w.free -= 1;
                return Slot::of(self);
            }
            let (tx, rx) = oneshot::channel();
            match purpose {
                SlotUse::Start => w.starts.push_back(tx),
                SlotUse::Create => w.creates.push_back(tx),
            }
            rx
        };
        match handed.await {
            Ok(slot) => slot,
            // Senders are only dropped by sending; this cannot happen while
            // `self` lives, since the queues belong to it.
            Err(_) => unreachable!("a slot waiter is dropped only by being served"),
        }
    }

    /// Slots free now (none while anyone waits).
    #[cfg(test)]
    fn free(&self) -> usize {
        self.lock().free
    }

    fn release(self: &Arc<Self>) {
        loop {
            let next = {
                let mut w = self.lock();
                match w.starts.pop_front().or_else(|| w.creates.pop_front()) {
                    Some(next) => next,
                    None => {
                        w.free += 1;
                        return;
                    }
                }
            };
            // Outside the lock: a slot sent to a waiter that has gone comes
            // back here and goes to the next one, disarmed first so that
            // dropping it does not release it a second time.
            match next.send(Slot::of(self)) {
                Ok(()) => return,
                Err(mut unused) => unused.slots = None,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    async fn queued(slots: &Arc<DockerSlots>, purpose: SlotUse) -> tokio::task::JoinHandle<Slot> {
        let slots = Arc::clone(slots);
        let waiter = tokio::spawn(async move { slots.acquire(purpose).await });
        // Let it reach the queue.
        tokio::time::sleep(Duration::from_millis(1)).await;
        waiter
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_waiting_goes_before_creates_that_waited_longer() {
        let slots = DockerSlots::new(1);
        let held = slots.acquire(SlotUse::Create).await;
        let create = queued(&slots, SlotUse::Create).await;
        let start = queued(&slots, SlotUse::Start).await;
        drop(held);
        let started = start.await.unwrap();
        assert!(!create.is_finished(), "the create waits for the start");
        drop(started);
        drop(create.await.unwrap());
        assert_eq!(slots.free(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_of_one_kind_are_served_in_order() {
        let slots = DockerSlots::new(1);
        let held = slots.acquire(SlotUse::Create).await;
        let first = queued(&slots, SlotUse::Create).await;
        let second = queued(&slots, SlotUse::Create).await;
        drop(held);
        let got = first.await.unwrap();
        assert!(!second.is_finished());
        drop(got);
        drop(second.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_takes_no_slot() {
        let slots = DockerSlots::new(2);
        let a = slots.acquire(SlotUse::Start).await;
        let b = slots.acquire(SlotUse::Create).await;
        assert_eq!(slots.free(), 0);
        let gone = queued(&slots, SlotUse::Start).await;
        gone.abort();
        let _ = gone.await;
        let next = queued(&slots, SlotUse::Create).await;
        drop(a);
        // The slot skips the aborted waiter.
        drop(next.await.unwrap());
        drop(b);
        assert_eq!(slots.free(), 2);
        assert_eq!(Arc::strong_count(&slots), 1, "no slot kept a reference");
    }

    #[tokio::test]
    async fn slots_are_never_lost_or_exceeded_under_contention() {
        let slots = DockerSlots::new(3);
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..64)
            .map(|i| {
                let (slots, in_flight, most) = (slots.clone(), in_flight.clone(), most.clone());
                tokio::spawn(async move {
                    let purpose = if i % 2 == 0 {
                        SlotUse::Start
                    } else {
                        SlotUse::Create
                    };
                    let acquire = slots.acquire(purpose);
                    // Every fifth gives up early, sometimes as it is served.
                    let slot = if i % 5 == 0 {
                        match tokio::time::timeout(Duration::from_micros(50), acquire).await {
                            Ok(slot) => slot,
                            Err(_) => return,
                        }
                    } else {
                        acquire.await
                    };
                    let now = in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    drop(slot);
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        assert!(most.load(std::sync::atomic::Ordering::SeqCst) <= 3);
        assert_eq!(slots.free(), 3);
    }
}
