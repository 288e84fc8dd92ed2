//! Starts primed at create: the bookkeeping. Right after `docker create`
//! answers, the engine hands the container to a spare supervisor with
//! `Request::Prime`, which does all of a start but the exec (the init's
//! mounts and seccomp set-up, the network plug) and holds it there. The
//! docker CLI spends ~2.5 ms between create's answer and its start request
//! (it registers for every signal before it attaches), so a `docker run`'s
//! start finds that work done. A prime that is not used in time, or that
//! another change to the created container would make stale, is dropped
//! (see `Engine::unprime`).
//!
//! One slot per primed container, from the prime's request until it is
//! used or nothing of it is left: a start or a drop that comes while the
//! prime is under way, or while another drop undoes it, waits for that, so
//! a start never plugs the container in while a dropped prime's unplug is
//! still to come. The slot also holds the `connect` events of the prime's
//! plug, published when the container starts, as with Docker.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::networking::AfterReply;
use super::spare::Spare;

enum Stage {
    /// The spare has the prime request and has not answered yet.
    Priming,
    /// The start is begun and held.
    Ready(Spare),
    /// Being undone (see [`Primes::dropping`]).
    Dropping,
}

struct Slot {
    /// This prime, as opposed to a later one of the same container.
    generation: u64,
    stage: Stage,
    /// The plug's `connect` events, for when the container starts.
    held: Vec<AfterReply>,
}

/// What a start takes out of a ready slot.
pub struct Taken {
    pub spare: Spare,
    pub held: Vec<AfterReply>,
}

#[derive(Default)]
struct Slots {
    last_generation: u64,
    by_id: HashMap<String, Slot>,
}

#[derive(Default)]
pub struct Primes {
    slots: Mutex<Slots>,
    changed: Condvar,
}

impl Primes {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `done` holds or `deadline` passes.
    fn wait_until<'a>(
        &self,
        mut guard: MutexGuard<'a, Slots>,
        deadline: Instant,
        done: impl Fn(&Slots) -> bool,
    ) -> MutexGuard<'a, Slots> {
        loop {
            let now = Instant::now();
            if done(&guard) || now >= deadline {
                return guard;
            }
            guard = self
                .changed
                .wait_timeout(guard, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Waits (up to `deadline`) while `id`'s slot is under way: priming,
    /// or being dropped.
    fn settled<'a>(
        &self,
        guard: MutexGuard<'a, Slots>,
        id: &str,
        deadline: Instant,
    ) -> MutexGuard<'a, Slots> {
        self.wait_until(guard, deadline, |slots| {
            slots
                .by_id
                .get(id)
                .is_none_or(|s| matches!(s.stage, Stage::Ready(_)))
        })
    }

    /// Opens a slot for `id`; its generation, or `None` when it has one
    /// or `most` slots are open.
    pub fn open(&self, id: &str, most: usize) -> Option<u64> {
        let mut slots = self.lock();
        if slots.by_id.len() >= most || slots.by_id.contains_key(id) {
            return None;
        }
        slots.last_generation += 1;
        let generation = slots.last_generation;
        slots.by_id.insert(
            id.to_string(),
            Slot {
                generation,
                stage: Stage::Priming,
                held: Vec::new(),
            },
        );
        Some(generation)
    }

    /// The prime of `generation` answered with its spare. Gives the spare
    /// back when the prime is being dropped meanwhile: the caller undoes
    /// it, then calls [`Primes::dropped`].
    pub fn fill(&self, id: &str, generation: u64, spare: Spare) -> Option<Spare> {
        let mut slots = self.lock();
        let back = match slots.by_id.get_mut(id) {
            Some(slot) if slot.generation == generation && matches!(slot.stage, Stage::Priming) => {
                slot.stage = Stage::Ready(spare);
                None
            }
            _ => Some(spare),
        };
        drop(slots);
        self.changed.notify_all();
        back
    }

    /// The prime of `generation` failed: the caller undoes what it may
    /// have done (its plug), then calls [`Primes::dropped`].
    pub fn fail(&self, id: &str, generation: u64) {
        if let Some(slot) = self.lock().by_id.get_mut(id) {
            if slot.generation == generation {
                slot.stage = Stage::Dropping;
            }
        }
    }

    /// For a start: takes `id`'s ready prime, waiting up to `limit` for one
    /// under way (or being dropped). `None`: there is none to use.
    pub fn take(&self, id: &str, limit: Duration) -> Option<Taken> {
        let mut slots = self.settled(self.lock(), id, Instant::now() + limit);
        if !matches!(slots.by_id.get(id)?.stage, Stage::Ready(_)) {
            return None;
        }
        let Some(Slot {
            stage: Stage::Ready(spare),
            held,
            ..
        }) = slots.by_id.remove(id)
        else {
            return None;
        };
        drop(slots);
        self.changed.notify_all();
        Some(Taken { spare, held })
    }

    /// For a drop: once `id`'s prime (only that of `generation`, if given)
    /// answered, waiting up to `limit`, marks it as being dropped and
    /// returns its spare for the caller to undo; the caller then calls
    /// [`Primes::dropped`]. `None` when there is nothing to drop, or the
    /// prime is still under way after `limit` (its answer then finds it
    /// dropping, see [`Primes::fill`]).
    pub fn dropping(
        &self,
        id: &str,
        generation: Option<u64>,
        limit: Duration,
    ) -> Option<(u64, Spare)> {
        let mut slots = self.settled(self.lock(), id, Instant::now() + limit);
        let slot = slots.by_id.get_mut(id)?;
        if generation.is_some_and(|g| g != slot.generation) {
            return None;
        }
        match std::mem::replace(&mut slot.stage, Stage::Dropping) {
            Stage::Ready(spare) => Some((slot.generation, spare)),
            Stage::Priming | Stage::Dropping => None,
        }
    }

    /// A drop of `generation` is done: nothing of that prime is left. Its
    /// held events go unpublished.
    pub fn dropped(&self, id: &str, generation: u64) {
        let mut slots = self.lock();
        if slots
            .by_id
            .get(id)
            .is_some_and(|s| s.generation == generation)
        {
            slots.by_id.remove(id);
        }
        drop(slots);
        self.changed.notify_all();
    }

    /// Holds a `connect` event of `id` while it is primed (and discards one
    /// of a prime being dropped); gives it back, to publish now, when the
    /// container is not primed.
    pub fn hold(&self, id: &str, event: AfterReply) -> Option<AfterReply> {
        match self.lock().by_id.get_mut(id) {
            Some(slot) => {
                if !matches!(slot.stage, Stage::Dropping) {
                    slot.held.push(event);
                }
                None
            }
            None => Some(event),
        }
    }

    /// Waits up to `ttl` for `id`'s prime of `generation` to be used or
    /// dropped; true when it was.
    pub fn wait_gone(&self, id: &str, generation: u64, ttl: Duration) -> bool {
        let gone = |slots: &Slots| {
            slots
                .by_id
                .get(id)
                .is_none_or(|s| s.generation != generation)
        };
        let slots = self.wait_until(self.lock(), Instant::now() + ttl, gone);
        gone(&slots)
    }

    /// Every primed container.
    pub fn ids(&self) -> Vec<String> {
        self.lock().by_id.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn spare() -> Spare {
        let (sock, _) = UnixStream::pair().expect("socketpair");
        Spare { sock }
    }

    fn counter() -> (Arc<AtomicUsize>, AfterReply) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        (
            n,
            Box::new(move || {
                m.fetch_add(1, Ordering::SeqCst);
            }),
        )
    }

    #[test]
    fn a_start_takes_a_ready_prime_with_its_held_events() {
        let p = Primes::default();
        let g = p.open("c", 4).expect("opened");
        assert!(p.open("c", 4).is_none(), "one slot per container");
        let (n, event) = counter();
        assert!(p.hold("c", event).is_none(), "held while priming");
        assert!(p.fill("c", g, spare()).is_none());
        let taken = p.take("c", Duration::ZERO).expect("ready");
        assert_eq!(taken.held.len(), 1);
        for publish in taken.held {
            publish();
        }
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert!(p.take("c", Duration::ZERO).is_none(), "taken once");
        let (_, event) = counter();
        assert!(p.hold("c", event).is_some(), "not primed: publish now");
    }

    #[test]
    fn a_start_waits_for_a_prime_under_way() {
        let p = Arc::new(Primes::default());
        let g = p.open("c", 4).expect("opened");
        let filler = {
            let p = p.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                p.fill("c", g, spare())
            })
        };
        assert!(p.take("c", Duration::from_secs(10)).is_some());
        assert!(filler.join().expect("filler").is_none());
    }

    #[test]
    fn a_drop_during_the_prime_hands_the_spare_back_to_the_primer() {
        let p = Primes::default();
        let g = p.open("c", 4).expect("opened");
        // The prime has not answered within the drop's wait.
        assert!(p.dropping("c", None, Duration::ZERO).is_none());
        let (_, event) = counter();
        assert!(
            p.hold("c", event).is_none(),
            "a dropping prime's event is discarded"
        );
        // A start meanwhile finds nothing to use, and nothing ready.
        assert!(p.take("c", Duration::ZERO).is_none());
        assert!(p.fill("c", g, spare()).is_some(), "back to be undone");
        p.dropped("c", g);
        assert!(p.ids().is_empty());
        assert!(p.open("c", 4).is_some(), "primed again later");
    }

    #[test]
    fn a_ready_prime_is_dropped_once() {
        let p = Primes::default();
        let g = p.open("c", 4).expect("opened");
        assert!(p.fill("c", g, spare()).is_none());
        let (dg, _spare) = p.dropping("c", Some(g), Duration::ZERO).expect("ready");
        assert_eq!(dg, g);
        assert!(
            p.dropping("c", None, Duration::ZERO).is_none(),
            "one dropper"
        );
        assert!(
            !p.wait_gone("c", g, Duration::ZERO),
            "gone only when dropped"
        );
        p.dropped("c", g);
        assert!(p.wait_gone("c", g, Duration::ZERO));
    }

    #[test]
    fn an_older_generation_touches_nothing() {
        let p = Primes::default();
        let old = p.open("c", 4).expect("opened");
        p.fail("c", old);
        p.dropped("c", old);
        let new = p.open("c", 4).expect("opened again");
        assert!(
            p.fill("c", old, spare()).is_some(),
            "not the old prime's slot"
        );
        assert!(p.dropping("c", Some(old), Duration::ZERO).is_none());
        p.dropped("c", old);
        assert!(p.fill("c", new, spare()).is_none());
        assert!(p.take("c", Duration::ZERO).is_some());
    }

    #[test]
    fn at_most_so_many_primes_at_once() {
        let p = Primes::default();
        assert!(p.open("a", 2).is_some());
        assert!(p.open("b", 2).is_some());
        assert!(p.open("c", 2).is_none());
    }
}
