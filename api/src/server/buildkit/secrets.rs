//! `--secret` through buildx: the client's session serves its secrets by
//! id (`moby.buildkit.secrets.v1.Secrets/GetSecret`), and a RUN's
//! `--mount=type=secret` is the only place their ids are known, so the
//! builder asks this source as each RUN mounts one. A secret is written
//! once per build to a file only the daemon can read, in the build's
//! scratch directory (removed with it), and bound read-only into the RUN
//! as a `--secret src=` file is; it never reaches a layer.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use hutch_builder::exec::SecretSource;
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;

use super::proto::secrets::secrets_client::SecretsClient;
use super::proto::secrets::GetSecretRequest;
use super::sessions::{self, Session};

const GET_SECRET: &str = "/moby.buildkit.secrets.v1.Secrets/GetSecret";
/// Largest secret accepted (BuildKit's limit is 500 KiB).
const MAX_SECRET: usize = 500 << 10;

pub struct SessionSecrets {
    session: Session,
    dir: PathBuf,
    runtime: Handle,
    fetched: Mutex<HashMap<String, Option<PathBuf>>>,
}

impl std::fmt::Debug for SessionSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSecrets")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SessionSecrets {
    /// Secrets of `session`, written under `dir`. Call on the runtime: the
    /// builder asks from its own thread, through this runtime's handle.
    pub fn new(session: Session, dir: PathBuf) -> SessionSecrets {
        SessionSecrets {
            session,
            dir,
            runtime: Handle::current(),
            fetched: Mutex::default(),
        }
    }

    fn fetch(&self, id: &str) -> Result<Option<Vec<u8>>, String> {
        if !self.session.serves(GET_SECRET) {
            return Ok(None);
        }
        let mut client =
            SecretsClient::with_origin(self.session.channel.clone(), sessions::origin());
        let asked = self.runtime.block_on(client.get_secret(GetSecretRequest {
            id: id.to_owned(),
            annotations: HashMap::new(),
        }));
        match asked {
            Ok(answer) => {
                let data = answer.into_inner().data;
                if data.len() > MAX_SECRET {
                    return Err(format!("larger than {} KiB", MAX_SECRET >> 10));
                }
                Ok(Some(data))
            }
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(format!(
                "the client could not give it: {}",
                status.message()
            )),
        }
    }

    fn write(&self, id: &str, data: &[u8]) -> Result<PathBuf, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        // Named by a hash: an id is the client's text, not a path.
        let path = self
            .dir
            .join(format!("{:x}", Sha256::digest(id.as_bytes())));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&path)
            .map_err(|e| format!("writing it: {e}"))?;
        file.write_all(data)
            .map_err(|e| format!("writing it: {e}"))?;
        Ok(path)
    }
}

impl SecretSource for SessionSecrets {
    fn secret_file(&self, id: &str) -> Result<Option<PathBuf>, String> {
        let mut fetched = self.fetched.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = fetched.get(id) {
            return Ok(known.clone());
        }
        let file = match self.fetch(id)? {
            Some(data) => Some(self.write(id, &data)?),
            None => None,
        };
        fetched.insert(id.to_owned(), file.clone());
        Ok(file)
    }
}
