//! The `dockerfile.v0` frontend on hutch's builder: the Dockerfile and the
//! context are fetched from the client's session (as BuildKit's dockerfile
//! frontend loads its `dockerfile` and `context` locals: the Dockerfile and
//! its own ignore file first, then `.dockerignore`, then the context minus
//! what it excludes), the frontend attributes become build options, and the
//! build reports its steps as vertexes. The image is written to the store
//! unnamed; the solve's exporter names it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hutch_builder::exec::{remote_cache, BuildError, BuildOptions, BuildTmp};
use hutch_builder::remote_context::RemoteContext;
use hutch_builder::{BuildArgs, NamedContext};
use hutch_images::registry::AuthConfig;
use hutch_images::Reference;
use tonic::Status;

use super::super::body_io;
use super::super::routes::build::{executor, LiveBuild};
use super::super::routes::build_context;
use super::super::Daemon;
use super::content::SessionStores;
use super::filesync::{self, Source};
use super::proto::upload::upload_client::UploadClient;
use super::proto::upload::BytesMessage as UploadBytes;
use super::secrets::SessionSecrets;
use super::sessions::{self, Session};
use super::solves::Solve;
use super::ssh::SessionAgents;
use super::status::{BuildStatus, Vertex};

pub use hutch_builder::exec::Built;

pub const DOCKERFILE: &str = "dockerfile.v0";
/// How buildx names a context it uploads through the session.
const UPLOAD_URL: &str = "http://buildkit-session/";
const UPLOAD_PULL: &str = "/moby.upload.v1.Upload/Pull";

/// The build's options from the frontend attributes buildx and buildctl
/// send (`filename`, `target`, `build-arg:*`, `label:*`, `no-cache`,
/// `image-resolve-mode`, `platform`, `force-network-mode`,
/// `dockerfilekey`).
struct Attrs {
    /// `platform`'s platforms; more than one builds once for each.
    platforms: Vec<hutch_builder::Platform>,
    /// The path of a context the client uploads as a tar (`docker build -
    /// < ctx.tar`): its `Upload` service serves it.
    upload: Option<String>,
    /// A git or http(s) URL for the context: fetched by the daemon.
    remote: Option<RemoteContext>,
    /// `dockerfilekey`: the Dockerfile comes from that local even when the
    /// context is uploaded.
    own_dockerfile: bool,
    /// `context:NAME` (`--build-context`): `local:LOCAL` or
    /// `docker-image://REF`, by name.
    named: BTreeMap<String, String>,
    filename: String,
    dockerfile_local: String,
    context_local: String,
    opts: BuildOptions,
}

fn attrs(attrs: &HashMap<String, String>) -> Result<Attrs, Status> {
    tracing::debug!(?attrs, "dockerfile frontend attributes");
    let mut build_args = BuildArgs::new();
    let mut labels = Vec::new();
    let mut named = BTreeMap::new();
    for (k, v) in attrs {
        if let Some(name) = k.strip_prefix("build-arg:") {
            build_args.set(name, v);
        } else if let Some(name) = k.strip_prefix("label:") {
            labels.push((name.to_owned(), v.clone()));
        } else if let Some(name) = k.strip_prefix("context:") {
            named.insert(name.to_owned(), v.clone());
        }
    }
    labels.sort();
    // `--platform A,B`: one build per platform (cross-compiling
    // Dockerfiles run their RUNs on the build platform), pushed as one
    // index; the first is the options' platform.
    let platforms = match attrs.get("platform") {
        Some(v) => hutch_builder::Platform::parse_targets(v).map_err(Status::invalid_argument)?,
        None => Vec::new(),
    };
    let platform = platforms.first().cloned();
    let ulimits = attrs
        .get("ulimit")
        .map(|v| v.split(',').filter(|u| !u.is_empty()))
        .into_iter()
        .flatten()
        .map(|u| {
            hutch_engine::containers::config::Ulimit::parse(u).map_err(Status::invalid_argument)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let network_none = match attrs.get("force-network-mode").map(String::as_str) {
        None | Some("" | "default" | "host" | "sandbox") => false,
        Some("none") => true,
        Some(other) => {
            return Err(Status::invalid_argument(format!(
                "network mode {other:?} is not supported for builds by hutch (default, host, none)"
            )))
        }
    };
    let filename = attrs
        .get("filename")
        .filter(|f| !f.is_empty())
        .cloned()
        .unwrap_or_else(|| "Dockerfile".into());
    // The context is the `context` local, unless the option `context` (or
    // the one `contextkey` names) holds a git or http(s) URL, as BuildKit's
    // dockerfile frontend reads them.
    let context_key = attrs.get("contextkey").map_or("context", String::as_str);
    let (mut upload, mut remote) = (None, None);
    if let Some(value) = attrs.get(context_key).filter(|v| !v.is_empty()) {
        match value.strip_prefix(UPLOAD_URL) {
            Some(path) => upload = Some(format!("/{path}")),
            None => match RemoteContext::parse(value) {
                Some(parsed) => remote = Some(parsed.map_err(Status::invalid_argument)?),
                None => {
                    return Err(Status::unimplemented(format!(
                        "the build context {value:?} is not supported by hutch: a directory, \
                         a tar on stdin, a git repository or an http(s) URL"
                    )))
                }
            },
        }
    }
    if attrs.get("contextsubdir").is_some_and(|v| !v.is_empty()) {
        return Err(Status::unimplemented(
            "a context subdirectory (contextsubdir) is not supported by hutch",
        ));
    }
    Ok(Attrs {
        platforms,
        upload,
        remote,
        own_dockerfile: attrs.contains_key("dockerfilekey"),
        named,
        dockerfile_local: local_name(attrs, "dockerfilekey", "dockerfile"),
        context_local: "context".to_owned(),
        filename,
        opts: BuildOptions {
            build_args,
            labels,
            target: attrs.get("target").filter(|t| !t.is_empty()).cloned(),
            no_cache: attrs.contains_key("no-cache"),
            pull: attrs.get("image-resolve-mode").is_some_and(|m| m == "pull"),
            network_none,
            ulimits,
            shm_size: match attrs.get("shm-size").filter(|v| !v.is_empty() && *v != "0") {
                None => None,
                Some(v) => Some(v.parse::<u64>().map_err(|_| {
                    Status::invalid_argument(format!("invalid shm-size {v:?}: a number of bytes"))
                })?),
            },
            extra_hosts: attrs
                .get("add-hosts")
                .filter(|h| !h.is_empty())
                .map(|h| h.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            platform,
            ..BuildOptions::default()
        },
    })
}

/// A cache option the builder cannot use (its message says which it
/// can).
fn cache_refused(message: String) -> Status {
    Status::unimplemented(message)
}

fn local_name(attrs: &HashMap<String, String>, key: &str, default: &str) -> String {
    attrs
        .get(key)
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

/// Runs the Dockerfile frontend for `solve`.
pub async fn solve(
    daemon: &Arc<Daemon>,
    solve: &Arc<Solve>,
    frontend_attrs: &HashMap<String, String>,
) -> Result<Built, Status> {
    let context = solve.context().await?;
    let mut attrs = attrs(frontend_attrs)?;
    attrs.opts.cache_from = context
        .cache_from
        .iter()
        .map(|spec| remote_cache::parse_cache_from(spec))
        .collect::<Result<_, _>>()
        .map_err(cache_refused)?;
    attrs.opts.cache_to = context
        .cache_to
        .iter()
        .map(|spec| remote_cache::parse_cache_to(spec))
        .collect::<Result<_, _>>()
        .map_err(cache_refused)?;
    let (session, scratch) = session_and_scratch(daemon, &context.session).await?;
    let (context_dir, dockerfile, _uploaded) = match attrs.upload.clone() {
        None if attrs.remote.is_some() => {
            let cloned = load_remote(solve, &attrs, scratch.path(), &daemon.data_root).await?;
            let dockerfile = if attrs.own_dockerfile {
                load_dockerfile(&session, solve, &attrs, scratch.path()).await?
            } else {
                cloned
                    .dockerfile(Some(&attrs.filename))
                    .map_err(|e| Status::not_found(e.message))?
            };
            (cloned.root().to_path_buf(), dockerfile, Some(cloned))
        }
        None => {
            let dockerfile = load_dockerfile(&session, solve, &attrs, scratch.path()).await?;
            let excludes =
                load_dockerignore(&session, solve, &attrs, scratch.path(), &dockerfile).await?;
            let context_dir = scratch.path().join("context");
            fetch_into(
                &session,
                solve,
                "[internal] load build context",
                Source {
                    name: &attrs.context_local,
                    include: &[],
                    exclude: &excludes,
                    follow: &[],
                },
                &context_dir,
            )
            .await?;
            // Applied by the client; the builder warns by them.
            attrs.opts.ignore_patterns = Some(excludes);
            (context_dir, dockerfile, None)
        }
        Some(path) => {
            let uploaded = load_upload(&session, solve, &path, scratch.path()).await?;
            let dockerfile = if attrs.own_dockerfile {
                load_dockerfile(&session, solve, &attrs, scratch.path()).await?
            } else {
                uploaded
                    .dockerfile(Some(&attrs.filename))
                    .map_err(|e| Status::not_found(e.message))?
            };
            (uploaded.root().to_path_buf(), dockerfile, Some(uploaded))
        }
    };
    attrs.opts.named_contexts = named_contexts(
        &session,
        solve,
        &attrs.named,
        scratch.path(),
        &daemon.images,
        &daemon.data_root,
        attrs.opts.platform.as_ref(),
    )
    .await?;
    attrs.opts.registry_auths = base_image_credentials(&session, &dockerfile, &attrs.opts).await;
    attrs.opts.secret_source = Some(Arc::new(SessionSecrets::new(
        session.clone(),
        scratch.path().join("secrets"),
    )));
    attrs.opts.ssh_source = Some(Arc::new(SessionAgents::new(session.clone())));
    attrs.opts.cache_stores = Some(Arc::new(SessionStores::new(session.clone(), solve.clone())));
    attrs.opts.context = context_dir;
    attrs.opts.dockerfile = Some(dockerfile);
    if attrs.platforms.len() < 2 {
        let built = run(daemon, solve, attrs.opts, None).await;
        drop(scratch);
        return built;
    }
    // One build per platform, one after the other (what they share, the
    // stages FROM --platform=$BUILDPLATFORM, is a cache hit the second
    // time); the result is this machine's platform's image, or the first.
    let mut built = Vec::new();
    for platform in &attrs.platforms {
        let mut opts = attrs.opts.clone();
        opts.platform = Some(platform.clone());
        // One cache for all the platforms.
        opts.cache_merge = !built.is_empty();
        built.push(run(daemon, solve, opts, Some(platform.to_string())).await?);
    }
    drop(scratch);
    solve.set_platform_images(built.iter().map(|b| b.id.clone()).collect());
    Ok(built.swap_remove(hutch_builder::Platform::primary(&attrs.platforms)))
}

/// The client's session `id`, and a scratch directory for what is
/// fetched from it.
async fn session_and_scratch(
    daemon: &Arc<Daemon>,
    id: &str,
) -> Result<(Session, BuildTmp), Status> {
    let session = daemon
        .buildkit
        .sessions
        .get(id)
        .await
        .map_err(|e| Status::failed_precondition(e.message))?;
    let data_root = daemon.data_root.clone();
    let scratch = tokio::task::spawn_blocking(move || BuildTmp::create(&data_root, "context"))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("creating the context directory: {e}")))?;
    Ok((session, scratch))
}

/// The Dockerfile a solve with `frontend_attrs` would build, fetched as
/// the build fetches it (from the client's session, its uploaded context,
/// or the git or http context), for the subrequests that only read it
/// (`--check`, `--call`), with the target and build arguments asked for.
pub async fn definition(
    daemon: &Arc<Daemon>,
    solve: &Arc<Solve>,
    frontend_attrs: &HashMap<String, String>,
) -> Result<Definition, Status> {
    let context = solve.context().await?;
    let attrs = attrs(frontend_attrs)?;
    let (session, scratch) = session_and_scratch(daemon, &context.session).await?;
    // (The context, if one is fetched, holds the file until it is read.)
    let context = match (&attrs.upload, &attrs.remote) {
        _ if attrs.own_dockerfile => None,
        (Some(path), _) => Some(load_upload(&session, solve, path, scratch.path()).await?),
        (None, Some(_)) => {
            Some(load_remote(solve, &attrs, scratch.path(), &daemon.data_root).await?)
        }
        (None, None) => None,
    };
    let path = match &context {
        Some(context) => context
            .dockerfile(Some(&attrs.filename))
            .map_err(|e| Status::not_found(e.message))?,
        None => load_dockerfile(&session, solve, &attrs, scratch.path()).await?,
    };
    let bytes = std::fs::read(&path)
        .map_err(|e| Status::internal(format!("reading {}: {e}", path.display())))?;
    drop(context);
    Ok(Definition {
        filename: attrs.filename,
        bytes,
        target: attrs.opts.target,
        build_args: attrs.opts.build_args,
    })
}

/// A Dockerfile as a subrequest reads it.
pub struct Definition {
    pub filename: String,
    pub bytes: Vec<u8>,
    pub target: Option<String>,
    pub build_args: BuildArgs,
}

/// Clones the git context or downloads the http one, as BuildKit's
/// `[internal] load git source` / `load remote build context`.
async fn load_remote(
    solve: &Arc<Solve>,
    attrs: &Attrs,
    scratch: &Path,
    data_root: &Path,
) -> Result<build_context::Context, Status> {
    let Some(remote) = attrs.remote.clone() else {
        return Err(Status::internal("no remote context"));
    };
    let label = remote.label();
    let dir = scratch.join("remote");
    let data_root = data_root.to_path_buf();
    in_vertex(solve, &label, move || {
        build_context::fetch(&remote, &dir, &data_root).map_err(|e| e.message)
    })
    .await
}

/// Runs `work` on a blocking thread as vertex `label`; its error, an
/// invalid argument, fails the vertex.
async fn in_vertex<T: Send + 'static>(
    solve: &Arc<Solve>,
    label: &str,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Status> {
    let vertex = Vertex::start(solve, label);
    let done = tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(Status::invalid_argument);
    vertex.finish(done)
}

/// The `--build-context`s: a directory fetched from the client's local of
/// that name (no exclude patterns), or another image.
async fn named_contexts(
    session: &Session,
    solve: &Arc<Solve>,
    named: &BTreeMap<String, String>,
    scratch: &Path,
    images: &hutch_images::ImageStore,
    data_root: &Path,
    platform: Option<&hutch_builder::Platform>,
) -> Result<BTreeMap<String, NamedContext>, Status> {
    let mut out = BTreeMap::new();
    for (n, (name, value)) in named.iter().enumerate() {
        let context = if let Some(local) = value.strip_prefix("local:") {
            let dir = scratch.join(format!("named-{n}"));
            let source = Source {
                name: local,
                include: &[],
                exclude: &[],
                follow: &[],
            };
            let label = format!("[context {name}] load from client");
            fetch_into(session, solve, &label, source, &dir).await?;
            NamedContext::Dir(dir)
        } else {
            match NamedContext::parse(value)
                .map_err(|e| Status::unimplemented(format!("build context {name}={value}: {e}")))?
            {
                NamedContext::Remote(remote) => {
                    let label = match &remote {
                        RemoteContext::Git(g) => {
                            format!("[context {name}] load git source {}", g.url)
                        }
                        RemoteContext::Http(u) => format!("[context {name}] {u}"),
                    };
                    let into = scratch.join(format!("named-{n}"));
                    let what = format!("build context {name}={value}");
                    let data_root = data_root.to_path_buf();
                    let dir = in_vertex(solve, &label, move || {
                        remote
                            .fetch_named(&into, &data_root)
                            .map_err(|e| format!("{what}: {e}"))
                    })
                    .await?;
                    NamedContext::Dir(dir)
                }
                NamedContext::OciLayout(layout) => {
                    let label = format!("[context {name}] OCI load from client");
                    let store = super::content::oci_store(session, &layout.store)
                        .map_err(Status::failed_precondition)?;
                    let (images, tmp) = (images.clone(), scratch.join(format!("named-{n}")));
                    let platform = platform.cloned();
                    let what = format!("build context {name}");
                    let id = in_vertex(solve, &label, move || {
                        hutch_builder::oci_context::import(
                            &store,
                            &layout,
                            platform.as_ref(),
                            &images,
                            &tmp,
                        )
                        .map_err(|e| format!("{what}: {e}"))
                    })
                    .await?;
                    NamedContext::Image(id.to_string())
                }
                other => other,
            }
        };
        out.insert(name.clone(), context);
    }
    Ok(out)
}

async fn fetch_into(
    session: &Session,
    solve: &Arc<Solve>,
    name: &str,
    source: Source<'_>,
    dir: &Path,
) -> Result<String, Status> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Status::internal(format!("creating {}: {e}", dir.display())))?;
    let vertex = Vertex::start(solve, name);
    match filesync::fetch(session, source, dir, &vertex).await {
        Ok(_) => {
            vertex.done();
            Ok(vertex.id())
        }
        Err(e) => {
            vertex.fail(e.message());
            Err(e)
        }
    }
}

/// A context the client uploads as a tar, unpacked as `POST /build`'s
/// (plain, gzip or zstd; the layer unpacker's containment and limits).
async fn load_upload(
    session: &Session,
    solve: &Arc<Solve>,
    path: &str,
    scratch: &Path,
) -> Result<build_context::Context, Status> {
    let vertex = Vertex::start(solve, "[internal] load remote build context");
    let loaded = upload(session, path, scratch).await;
    match &loaded {
        Ok(_) => vertex.done(),
        Err(e) => vertex.fail(e.message()),
    }
    loaded
}

async fn upload(
    session: &Session,
    path: &str,
    scratch: &Path,
) -> Result<build_context::Context, Status> {
    if !session.serves(UPLOAD_PULL) {
        return Err(Status::failed_precondition(
            "the client's session does not serve the uploaded context",
        ));
    }
    let mut request = tonic::Request::new(futures_util::stream::empty::<UploadBytes>());
    let value = path
        .parse()
        .map_err(|_| Status::invalid_argument(format!("upload path {path:?}")))?;
    request.metadata_mut().insert("urlpath", value);
    request.metadata_mut().insert(
        "urlhost",
        tonic::metadata::MetadataValue::from_static("buildkit-session"),
    );
    let mut client = UploadClient::with_origin(session.channel.clone(), sessions::origin());
    let mut incoming = client.pull(request).await?.into_inner();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let dir = scratch.to_path_buf();
    let unpack = tokio::task::spawn_blocking(move || {
        build_context::unpack(body_io::channel_reader(rx), &dir)
    });
    while let Some(message) = incoming.message().await.transpose() {
        let chunk = message
            .map(|m| bytes::Bytes::from(m.data))
            .map_err(|e| std::io::Error::other(e.message().to_owned()));
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    unpack
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::invalid_argument(e.message))
}

/// The Dockerfile (and its own `NAME.dockerignore`), from the
/// `dockerfile` local.
async fn load_dockerfile(
    session: &Session,
    solve: &Arc<Solve>,
    attrs: &Attrs,
    scratch: &Path,
) -> Result<PathBuf, Status> {
    let dir = scratch.join("dockerfile");
    let follow = [
        attrs.filename.clone(),
        format!("{}.dockerignore", attrs.filename),
    ];
    let vertex = fetch_into(
        session,
        solve,
        &format!("[internal] load build definition from {}", attrs.filename),
        Source {
            name: &attrs.dockerfile_local,
            include: &[],
            exclude: &[],
            follow: &follow,
        },
        &dir,
    )
    .await?;
    solve.set_definition_vertex(vertex);
    let path = dir.join(&attrs.filename);
    if !path.is_file() {
        return Err(Status::not_found(format!(
            "failed to read dockerfile: open {}: no such file or directory",
            attrs.filename
        )));
    }
    Ok(path)
}

/// The exclude patterns for the context: the Dockerfile's own ignore file
/// if it has one, else the context's `.dockerignore`.
async fn load_dockerignore(
    session: &Session,
    solve: &Arc<Solve>,
    attrs: &Attrs,
    scratch: &Path,
    dockerfile: &Path,
) -> Result<Vec<String>, Status> {
    let own = PathBuf::from(format!("{}.dockerignore", dockerfile.display()));
    let file = if own.is_file() {
        own
    } else {
        let dir = scratch.join("dockerignore");
        fetch_into(
            session,
            solve,
            "[internal] load .dockerignore",
            Source {
                name: &attrs.context_local,
                include: &[],
                exclude: &[],
                follow: &[".dockerignore".to_owned()],
            },
            &dir,
        )
        .await?;
        dir.join(".dockerignore")
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Status::internal(format!("reading .dockerignore: {e}"))),
    };
    Ok(patterns(&text))
}

/// The patterns of a `.dockerignore`, as the client's filter reads them
/// (comments and blank lines dropped, each trimmed).
fn patterns(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Credentials for the registries the Dockerfile's stages pull from and
/// the registry caches (`--cache-from`, `--cache-to`) live in, asked
/// of the client's session as BuildKit's resolver asks for them (the
/// client's `docker login` counts, not the daemon's). A Dockerfile that
/// does not parse gets none: the build reports its error.
async fn base_image_credentials(
    session: &Session,
    dockerfile: &Path,
    opts: &BuildOptions,
) -> BTreeMap<String, AuthConfig> {
    let mut domains = BTreeSet::new();
    if let Ok(bytes) = std::fs::read(dockerfile) {
        let plan = hutch_builder::parse("Dockerfile", &bytes)
            .ok()
            .and_then(|df| {
                hutch_builder::plan(
                    &df,
                    opts.target.as_deref(),
                    &opts.build_args,
                    opts.platform.as_ref(),
                )
                .ok()
            })
            .map(|mut plan| {
                // A docker-image:// context stands in for the image it names.
                let _ = plan.use_named_contexts(&opts.named_contexts);
                plan
            });
        for stage in plan.iter().flat_map(|p| &p.stages) {
            let sources = std::iter::once(&stage.base).chain(stage.sources.iter().flatten());
            for source in sources {
                if let hutch_builder::Source::Image(image) = source {
                    if let Ok(r) = Reference::parse(image) {
                        domains.insert(r.domain().to_owned());
                    }
                }
            }
        }
    }
    let caches = opts
        .cache_from
        .iter()
        .filter_map(|c| match c {
            remote_cache::CacheImport::Registry(r) => Some(r.as_str()),
            remote_cache::CacheImport::Local { .. } => None,
        })
        .chain(opts.cache_to.iter().filter_map(|c| match &c.dest {
            remote_cache::CacheDest::Registry(r) => Some(r.as_str()),
            _ => None,
        }));
    for cache in caches {
        if let Ok(r) = Reference::parse(cache) {
            domains.insert(r.domain().to_owned());
        }
    }
    let mut auths = BTreeMap::new();
    for domain in domains {
        if let Some(auth) = session.credentials(&domain).await {
            auths.insert(domain, auth);
        }
    }
    auths
}

/// The build itself, on a thread of its own; a client that goes away
/// (this future dropped) cancels it.
/// `platform` names its vertexes (`[linux/arm64 2/3] RUN`) when a solve
/// builds for several.
async fn run(
    daemon: &Arc<Daemon>,
    solve: &Arc<Solve>,
    opts: BuildOptions,
    platform: Option<String>,
) -> Result<Built, Status> {
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let executor = executor(daemon, cancel.clone());
    let status = BuildStatus::new(solve).for_platform(platform);
    let live = LiveBuild::enter(cancel);
    let built = tokio::task::spawn_blocking(move || {
        let _live = live;
        let result = executor.build(&opts, &status);
        status.close(result.as_ref().err().map(error_text).as_deref());
        result
    })
    .await
    .map_err(|e| Status::internal(format!("the build thread failed: {e}")))?;
    // Code Unknown: BuildKit's clients print the message of such an error
    // as it is, where another code would prefix it ("InvalidArgument: ").
    built.map_err(|e| match e {
        BuildError::Cancelled => Status::cancelled("the build was cancelled"),
        other => Status::unknown(error_text(&other)),
    })
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A build error as BuildKit words it (buildx prints "ERROR: failed to
/// solve: " before it).
pub fn error_text(err: &BuildError) -> String {
    match err {
        BuildError::RunFailed { command, code, .. } => {
            format!("process \"{command}\" did not complete successfully: exit code: {code}")
        }
        other => other.to_string(),
    }
}
