//! Writes the network state file off the request path.
//!
//! Every container create, start and removal changes the state (an
//! endpoint reserved, ports resolved, both freed), and replacing a file
//! by rename on ext4 first flushes its data (`auto_da_alloc`): 0.2 ms on
//! a quiet node disk and 4 ms or more on a busy one, several times per
//! `docker run --rm`. So those changes are handed to one writer thread,
//! which writes the newest snapshot and skips the ones it superseded.
//! Changes to the networks themselves (create, remove, connect,
//! disconnect) still wait until their snapshot is on disk.
//!
//! What a crash can lose is the last few milliseconds of endpoint
//! changes: a removed container's reservation comes back (the engine
//! drops endpoints of unknown containers when it opens,
//! [`super::Networks::keep_only`]), and a just-created container's
//! reservation is made again at its next start.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::state::{State, Store};

/// The snapshot handed over and what became of the earlier ones.
#[derive(Default)]
struct Slot {
    /// The newest snapshot not yet written, with its generation.
    pending: Option<(u64, Vec<u8>)>,
    /// The last generation submitted.
    submitted: u64,
    /// The last generation written (or given up on, see `failed`).
    done: u64,
    /// The error of the last write, if it failed, with its generation.
    failed: Option<(u64, String)>,
    closing: bool,
}

struct Shared {
    slot: Mutex<Slot>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writer thread and its hand-over slot.
pub struct Persister {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Persister {
    pub fn spawn(store: Store) -> io::Result<Persister> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            changed: Condvar::new(),
        });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("network-state".into())
            .spawn(move || write_loop(&store, &theirs))?;
        Ok(Persister {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands `state` to the writer and returns its generation. Serialised
    /// here, under the caller's lock, so snapshots reach the disk in the
    /// order their changes were made.
    pub fn submit(&self, state: &State) -> io::Result<u64> {
        let bytes = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        let mut slot = self.shared.lock();
        slot.submitted += 1;
        let generation = slot.submitted;
        slot.pending = Some((generation, bytes));
        drop(slot);
        self.shared.changed.notify_all();
        Ok(generation)
    }

    /// Waits until `generation` (or a newer snapshot) is on disk.
    pub fn wait(&self, generation: u64) -> io::Result<()> {
        let mut slot = self.shared.lock();
        while slot.done < generation {
            slot = self
                .shared
                .changed
                .wait(slot)
                .unwrap_or_else(|p| p.into_inner());
        }
        match &slot.failed {
            Some((failed, e)) if *failed >= generation => Err(io::Error::other(e.clone())),
            _ => Ok(()),
        }
    }

    /// Waits until everything submitted so far is on disk.
    pub fn flush(&self) -> io::Result<()> {
        let last = self.shared.lock().submitted;
        self.wait(last)
    }
}

impl Drop for Persister {
    /// Writes what is pending, then ends the thread.
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_loop(store: &Store, shared: &Shared) {
    loop {
        let mut slot = shared.lock();
        while slot.pending.is_none() && !slot.closing {
            slot = shared.changed.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
        let Some((generation, bytes)) = slot.pending.take() else {
            return;
        };
        drop(slot);
        let result = store.write_bytes(&bytes);
        let mut slot = shared.lock();
        slot.done = generation;
        match result {
            Ok(()) => slot.failed = None,
            Err(e) => {
                // The next change writes the whole state again; until then
                // the file is one snapshot behind.
                tracing::warn!(%e, "saving the network state");
                slot.failed = Some((generation, e.to_string()));
            }
        }
        drop(slot);
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::state::PortBinding;
    use std::net::{IpAddr, Ipv4Addr};

    fn state_with_port(port: u16) -> State {
        let mut state = State::default();
        state.ports.insert(
            "c1".into(),
            vec![PortBinding {
                container_port: 80,
                proto: crate::network::state::Proto::Tcp,
                host_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                host_port: port,
            }],
        );
        state
    }

    #[test]
    fn the_newest_snapshot_is_on_disk_after_a_flush() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::new(dir.path());
        let persister = Persister::spawn(store.clone())?;
        for port in 1..=200 {
            persister.submit(&state_with_port(port))?;
        }
        persister.flush()?;
        assert_eq!(store.load()?.ports, state_with_port(200).ports);
        Ok(())
    }

    #[test]
    fn dropping_the_persister_writes_what_is_pending() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::new(dir.path());
        let persister = Persister::spawn(store.clone())?;
        persister.submit(&state_with_port(7))?;
        drop(persister);
        assert_eq!(store.load()?.ports, state_with_port(7).ports);
        Ok(())
    }

    #[test]
    fn a_failed_write_is_the_waiters_error_and_the_next_one_recovers() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        // The state file's directory is a file: every write fails.
        let blocked = dir.path().join("network");
        std::fs::write(&blocked, b"")?;
        let persister = Persister::spawn(Store::new(&blocked))?;
        let generation = persister.submit(&state_with_port(1))?;
        assert!(persister.wait(generation).is_err());
        std::fs::remove_file(&blocked)?;
        let generation = persister.submit(&state_with_port(2))?;
        persister.wait(generation)?;
        assert_eq!(Store::new(&blocked).load()?.ports, state_with_port(2).ports);
        Ok(())
    }
}
