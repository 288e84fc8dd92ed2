//! A local build cache through buildx (`--cache-to type=local,dest=DIR`,
//! `--cache-from type=local,src=DIR`): the directory is on the client's
//! side, and the client serves it on its session as containerd's content
//! service, one store per directory, chosen by the metadata
//! `buildkit-attachable-store-id: local:DIR`. hutch reads blobs with
//! `Read` and writes them with `Write` (a stat naming the blob, its data
//! at increasing offsets, then a commit that the client checks against
//! the digest and size). The client itself keeps `index.json`: it looks
//! the tag up before the build (and sends `digest=`), and after it names
//! the manifest hutch wrote, which the solve's response carries as
//! `cache.manifest`.

use std::io::{Read, Write};
use std::sync::Arc;

use futures_util::StreamExt;
use hutch_builder::exec::cache_store::{CacheStore, CacheStores};
use hutch_images::oci::Descriptor;
use hutch_images::Digest;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tonic::metadata::MetadataValue;
use tonic::Request;

use super::proto::content::content_client::ContentClient;
use super::proto::content::{
    ReadContentRequest, WriteAction, WriteContentRequest, WriteContentResponse,
};
use super::sessions::{self, Session};
use super::solves::Solve;

const STORE_ID: &str = "buildkit-attachable-store-id";
const READ: &str = "/containerd.services.content.v1.Content/Read";
/// Bytes per `Write` message.
const CHUNK: usize = 1 << 20;

/// The client's stores, for one solve.
pub struct SessionStores {
    session: Session,
    solve: Arc<Solve>,
    runtime: Handle,
}

impl std::fmt::Debug for SessionStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStores")
            .field("session", &self.session.id)
            .finish_non_exhaustive()
    }
}

impl SessionStores {
    /// Call on the runtime: the builder asks from its own thread, through
    /// this runtime's handle.
    pub fn new(session: Session, solve: Arc<Solve>) -> SessionStores {
        SessionStores {
            session,
            solve,
            runtime: Handle::current(),
        }
    }
}

impl CacheStores for SessionStores {
    fn open(&self, dir: &str) -> Result<Arc<dyn CacheStore>, String> {
        let store = SessionStore::open(
            &self.session,
            format!("local:{dir}"),
            Some(self.solve.clone()),
            self.runtime.clone(),
        )?;
        Ok(Arc::new(store))
    }
}

/// The store an `oci`/`docker` exporter with `tar=false` writes the
/// image's blobs to (id `export`: the client's output directory). Call on
/// the runtime; use from a blocking thread.
pub fn export_store(session: &Session) -> Result<SessionStore, String> {
    SessionStore::open(session, "export".to_owned(), None, Handle::current())
}

/// The OCI layout buildx serves for `--build-context NAME=oci-layout://`
/// (store `oci:STORE`, STORE the name buildx gave it). Call on the
/// runtime; use from a blocking thread.
pub fn oci_store(session: &Session, store: &str) -> Result<SessionStore, String> {
    SessionStore::open(session, format!("oci:{store}"), None, Handle::current())
}

pub struct SessionStore {
    id: String,
    session: Session,
    /// Where a local cache's manifest is reported (none for `export`).
    solve: Option<Arc<Solve>>,
    runtime: Handle,
}

impl SessionStore {
    /// The client's store `id`, if its session serves content stores at
    /// all (a store it does not have answers each call with an error).
    fn open(
        session: &Session,
        id: String,
        solve: Option<Arc<Solve>>,
        runtime: Handle,
    ) -> Result<SessionStore, String> {
        if !session.serves(READ) {
            return Err(format!(
                "the client does not serve {id} on its session (no content store)"
            ));
        }
        Ok(SessionStore {
            id,
            session: session.clone(),
            solve,
            runtime,
        })
    }

    fn request<T>(&self, message: T) -> Result<Request<T>, String> {
        let mut request = Request::new(message);
        let id: MetadataValue<_> = self
            .id
            .parse()
            .map_err(|_| format!("{} cannot be sent as metadata", self.id))?;
        request.metadata_mut().insert(STORE_ID, id);
        Ok(request)
    }

    fn client(&self) -> ContentClient<sessions::Channel> {
        ContentClient::with_origin(self.session.channel.clone(), sessions::origin())
    }

    async fn write(&self, desc: &Descriptor, data: &mut dyn Read) -> Result<(), String> {
        let (tx, rx) = mpsc::channel::<WriteContentRequest>(2);
        let outgoing =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            );
        let total = i64::try_from(desc.size).map_err(|_| "blob too large".to_owned())?;
        let expected = desc.digest.to_string();
        // The first message names the blob; a store that has it answers
        // AlreadyExists.
        let first = WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: format!("hutch-{}", desc.digest.hex()),
            total,
            expected: expected.clone(),
            ..WriteContentRequest::default()
        };
        tx.send(first)
            .await
            .map_err(|_| "the write ended".to_owned())?;
        let mut client = self.client();
        let mut answers = match client.write(self.request(outgoing)?).await {
            Ok(a) => a.into_inner(),
            Err(s) if s.code() == tonic::Code::AlreadyExists => return Ok(()),
            Err(s) => return Err(format!("{}: {}", self.id, s.message())),
        };
        if self.answer(&mut answers).await?.is_none() {
            return Ok(());
        }
        let mut offset = 0i64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = read_full(data, &mut buf).map_err(|e| format!("reading the blob: {e}"))?;
            if n == 0 {
                break;
            }
            let chunk = WriteContentRequest {
                action: WriteAction::Write as i32,
                offset,
                data: buf[..n].to_vec(),
                ..WriteContentRequest::default()
            };
            tx.send(chunk)
                .await
                .map_err(|_| "the write ended".to_owned())?;
            offset += n as i64;
            if self.answer(&mut answers).await?.is_none() {
                return Ok(());
            }
        }
        let commit = WriteContentRequest {
            action: WriteAction::Commit as i32,
            total,
            expected,
            offset,
            ..WriteContentRequest::default()
        };
        tx.send(commit)
            .await
            .map_err(|_| "the write ended".to_owned())?;
        match self.answer(&mut answers).await? {
            None => Ok(()),
            Some(answer) if answer.digest == desc.digest.to_string() => Ok(()),
            Some(answer) => Err(format!(
                "{} stored {} as {}",
                self.id, desc.digest, answer.digest
            )),
        }
    }

    /// The store's answer to a write message; `None` once it says it has
    /// the blob already.
    async fn answer(
        &self,
        answers: &mut tonic::Streaming<WriteContentResponse>,
    ) -> Result<Option<WriteContentResponse>, String> {
        match answers.next().await {
            Some(Ok(answer)) => Ok(Some(answer)),
            Some(Err(s)) if s.code() == tonic::Code::AlreadyExists => Ok(None),
            Some(Err(s)) => Err(format!("{}: {}", self.id, s.message())),
            None => Err(format!("{}: the write ended early", self.id)),
        }
    }

    async fn read(&self, digest: &Digest, out: &mut dyn Write) -> Result<(), String> {
        let mut client = self.client();
        let request = self.request(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        })?;
        let mut chunks = client
            .read(request)
            .await
            .map_err(|s| format!("{} has no {digest}: {}", self.id, s.message()))?
            .into_inner();
        while let Some(chunk) = chunks.next().await {
            let chunk =
                chunk.map_err(|s| format!("reading {digest} of {}: {}", self.id, s.message()))?;
            out.write_all(&chunk.data)
                .map_err(|e| format!("reading {digest} of {}: {e}", self.id))?;
        }
        Ok(())
    }
}

impl CacheStore for SessionStore {
    fn name(&self) -> String {
        self.id.clone()
    }

    fn put(&self, desc: &Descriptor, data: &mut dyn Read) -> Result<(), String> {
        self.runtime.block_on(self.write(desc, data))
    }

    fn copy_to(&self, digest: &Digest, out: &mut dyn Write) -> Result<(), String> {
        self.runtime.block_on(self.read(digest, out))
    }

    fn tagged(&self, tag: &str) -> Result<Option<Digest>, String> {
        // buildx reads index.json itself and sends `digest=`; what an
        // earlier build of this solve wrote (a build for several
        // platforms) is known here.
        let written = self.solve.as_ref().and_then(|s| s.cache_manifest());
        match written {
            Some(json) => serde_json::from_str::<Descriptor>(&json)
                .map(|d| Some(d.digest))
                .map_err(|e| e.to_string()),
            None => Err(format!(
                "the client did not say which manifest {tag:?} names in {}",
                self.id
            )),
        }
    }

    fn set_tag(&self, _tag: &str, manifest: &Descriptor) -> Result<(), String> {
        let json = serde_json::to_string(manifest).map_err(|e| e.to_string())?;
        if let Some(solve) = &self.solve {
            solve.set_cache_manifest(json);
        }
        Ok(())
    }
}

/// Fills `buf` as far as `data` goes; 0 at its end.
fn read_full(data: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match data.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
