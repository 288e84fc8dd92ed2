//! The engine's side of primed starts (see [`crate::containers::primes`]):
//! a created container's start begun in the background right after its
//! create, used by its start, dropped when unused or made stale.

use std::io::Read;
use std::time::Duration;

use super::{ContainerDetails, Engine, EngineError, Result};
use crate::containers::client;
use crate::containers::config::CreateOptions;
use crate::containers::primes::Taken;
use crate::containers::protocol::{self, Kind, Reply, Request};
use crate::containers::spare::Spare;

/// How long a prime waits for its start. The docker CLI starts ~3 ms after
/// create; compose and testcontainers within milliseconds too. A
/// `docker create` kept for `docker cp` lets its prime go (a supervisor,
/// an init and a veth) soon after.
const PRIME_TTL: Duration = Duration::from_secs(2);
/// Primes held at once: a burst of creates (compose, a test suite's
/// fixtures) primes its first few and leaves the rest to their starts.
const MAX_PRIMES: usize = 4;
/// How long a start waits for a prime under way (it takes ~3 ms).
const PRIME_WAIT: Duration = Duration::from_secs(5);
/// How long dropping a prime waits for its supervisor to end its init.
const DROP_WAIT: Duration = Duration::from_secs(5);

impl Engine {
    /// Right after the create of a [`primable`] container: primes its
    /// start on a thread, and drops the prime if no start takes it in time.
    pub(super) fn prime_in_background(&self, id: &str) {
        if !self.inner.opts.prime_starts {
            return;
        }
        let Some(generation) = self.inner.primes.open(id, MAX_PRIMES) else {
            return;
        };
        let engine = self.clone();
        let owned = id.to_string();
        let spawned = std::thread::Builder::new()
            .name("prime".into())
            .stack_size(256 * 1024)
            .spawn(move || engine.prime_and_expire(&owned, generation));
        if let Err(e) = spawned {
            tracing::warn!(%e, "starting a prime thread");
            self.inner.primes.fail(id, generation);
            self.inner.primes.dropped(id, generation);
        }
    }

    /// The prime thread: primes, then drops the prime if no start takes
    /// it in time.
    fn prime_and_expire(&self, id: &str, generation: u64) {
        let primes = &self.inner.primes;
        match self.prime(id) {
            Ok(spare) => {
                if let Some(late) = primes.fill(id, generation, spare) {
                    // Dropped while it primed.
                    self.undo(id, Some(late));
                    primes.dropped(id, generation);
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(%id, %e, "no prime: the start does all of it");
                primes.fail(id, generation);
                self.undo(id, None);
                primes.dropped(id, generation);
                return;
            }
        }
        if !primes.wait_gone(id, generation, PRIME_TTL) {
            if let Some((g, spare)) = primes.dropping(id, Some(generation), Duration::ZERO) {
                tracing::debug!(%id, "dropping an unused prime");
                self.undo(id, Some(spare));
                primes.dropped(id, g);
            }
        }
    }

    /// Hands the created container to a spare to prime.
    fn prime(&self, id: &str) -> Result<Spare> {
        let dir = self.inner.store.dir(id);
        self.prepare_layers(id, &dir)?;
        self.rejoin_network(id, &dir)?;
        let mut spare = self.inner.spares.take()?;
        protocol::write_json(
            &mut spare.sock,
            Kind::Request,
            &Request::Prime {
                dir: dir.path.display().to_string(),
            },
        )?;
        let reply = client::reply(&mut spare.sock);
        self.inner.spares.refill();
        match reply? {
            Reply::Ok => Ok(spare),
            Reply::Failed { message, .. } => Err(EngineError::Io(std::io::Error::other(message))),
            other => Err(EngineError::Io(std::io::Error::other(format!(
                "unexpected supervisor reply {other:?}"
            )))),
        }
    }

    /// [`Engine::inspect`] for `docker cp`, `commit`, `export` and `diff`,
    /// which read or write a container's files through its upper
    /// directory: a created container's prime is dropped first, so no
    /// primed init holds its rootfs mounted meanwhile.
    pub fn inspect_at_rest(&self, query: &str) -> Result<ContainerDetails> {
        let id = self.resolve(query)?;
        self.unprime(&id);
        self.inspect(&id)
    }

    /// For a start: the container's primed spare, once its prime is done,
    /// with its held `connect` events (published once the start is under
    /// way). Without one, nothing of a prime is left either when this
    /// returns.
    pub(super) fn take_prime(&self, id: &str) -> Option<Taken> {
        let taken = self.inner.primes.take(id, PRIME_WAIT);
        if taken.is_none() {
            // One that did not answer in time.
            self.unprime(id);
        }
        taken
    }

    /// Drops `id`'s prime, if it has one, and waits until nothing of it is
    /// left: before a change the prime would not see (`docker cp` into
    /// the created container, `network connect`, `update`, `rename`), its
    /// removal, or the daemon's shutdown.
    pub fn unprime(&self, id: &str) {
        if let Some((generation, spare)) = self.inner.primes.dropping(id, None, PRIME_WAIT) {
            self.undo(id, Some(spare));
            self.inner.primes.dropped(id, generation);
        }
    }

    /// Drops every prime (the daemon's shutdown).
    pub(super) fn unprime_all(&self) {
        for id in self.inner.primes.ids() {
            self.unprime(&id);
        }
    }

    /// Undoes a prime: closes its spare's socket (the spare abandons the
    /// start: kills the init, records nothing) and waits for it to hang up,
    /// then unplugs the container (a failed prime may have been plugged in
    /// all the same). Its `connect` was never published: no `disconnect`.
    fn undo(&self, id: &str, spare: Option<Spare>) {
        if let Some(mut spare) = spare {
            let _ = spare.sock.shutdown(std::net::Shutdown::Write);
            let _ = spare.sock.set_read_timeout(Some(DROP_WAIT));
            let mut sink = [0u8; 64];
            while matches!(spare.sock.read(&mut sink), Ok(n) if n > 0) {}
        }
        self.release_network_quietly(id);
    }
}

/// Whether a prime may do a container's start early. Not with published
/// ports: Docker takes host ports at start, so a created container must not
/// hold one another container's run asks for. Not in another container's
/// network namespace, which may be gone or replaced by the start.
pub(super) fn primable(opts: &CreateOptions) -> bool {
    opts.network.port_bindings.is_empty()
        && !opts.network.publish_all
        // Its donor's namespaces are joined at the start, as it runs then.
        && crate::containers::sharing::parse(opts).is_ok_and(|s| s.donor.is_none())
        // Linked containers are checked, and their addresses written, as
        // they are at the start.
        && opts.network.links.is_empty()
        && opts.network.endpoints.values().all(|e| e.links.is_empty())
        && !opts
            .network_mode
            .as_deref()
            .is_some_and(|m| m.starts_with("container:"))
}
