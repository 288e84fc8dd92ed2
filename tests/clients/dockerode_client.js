// dockerode (npm, the client under testcontainers-node) against hutch: the
// calls testcontainers-node makes. Run inside the pod with DOCKER_HOST set,
// NODE_PATH at the installed modules and the image loaded; argv: REFERENCE
// PULL_REFERENCE (an image in a registry the pod reaches). Prints one JSON
// object of what it saw; a failed call rejects and exits non-zero.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const { PassThrough } = require("stream");
const Docker = require("dockerode");
const tarFs = require("tar-fs");

const [reference, pullReference] = process.argv.slice(2);
const docker = new Docker(); // DOCKER_HOST=unix://...
const seen = {};

// Collects a demultiplexed attach/exec/logs stream into {stdout, stderr}.
function demuxed(stream) {
  const out = new PassThrough();
  const err = new PassThrough();
  const got = { stdout: "", stderr: "" };
  out.on("data", (d) => (got.stdout += d));
  err.on("data", (d) => (got.stderr += d));
  docker.modem.demuxStream(stream, out, err);
  return new Promise((resolve, reject) => {
    stream.on("end", () => resolve(got));
    stream.on("error", reject);
  });
}

function followProgress(stream) {
  return new Promise((resolve, reject) =>
    docker.modem.followProgress(stream, (err, output) => (err ? reject(err) : resolve(output)))
  );
}

async function main() {
  seen.ping = (await docker.ping()).toString();
  const version = await docker.version();
  seen.api_version = version.ApiVersion;
  seen.info_os = (await docker.info()).OSType;

  // pull with progress, as testcontainers' pullImage does.
  const progress = await followProgress(await docker.pull(pullReference));
  seen.pull_last_status = progress[progress.length - 1].status;
  seen.pulled_id = (await docker.getImage(pullReference).inspect()).Id;
  seen.image_listed = (await docker.listImages()).some((i) =>
    (i.RepoTags || []).includes(reference)
  );

  // create + attach + start + wait: a one-shot run with both streams.
  const run = await docker.createContainer({
    Image: reference,
    Cmd: ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"],
    Labels: { "org.testcontainers": "true", suite: "dockerode" },
  });
  const attached = await run.attach({ stream: true, stdout: true, stderr: true });
  const output = demuxed(attached);
  await run.start();
  seen.wait = await run.wait();
  seen.attach = await output;
  const logs = await run.logs({ stdout: true, stderr: true, follow: false });
  seen.logs_frames = logs.length > 8 && logs[0] === 1;
  await run.remove();

  // A long-running container with a published port, its mapping read from
  // inspect (testcontainers' getMappedPort), exec, files in and out.
  const svc = await docker.createContainer({
    Image: reference,
    Cmd: ["sh", "-c", "echo ready; exec sleep 300"],
    ExposedPorts: { "8080/tcp": {} },
    HostConfig: { PortBindings: { "8080/tcp": [{ HostPort: "" }] } },
    Labels: { suite: "dockerode" },
  });
  await svc.start();
  const inspected = await svc.inspect();
  seen.running = inspected.State.Running;
  const bound = inspected.NetworkSettings.Ports["8080/tcp"];
  seen.mapped_port = bound && Number(bound[0].HostPort) > 0;

  const exec = await svc.exec({
    Cmd: ["sh", "-c", "echo in-exec; exit 5"],
    AttachStdout: true,
    AttachStderr: true,
  });
  const execStream = await exec.start({ hijack: true, stdin: false });
  seen.exec = await demuxed(execStream);
  seen.exec_code = (await exec.inspect()).ExitCode;

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dockerode-"));
  fs.writeFileSync(path.join(dir, "copied.txt"), "copied in\n");
  await svc.putArchive(tarFs.pack(dir), { path: "/tmp" });
  const check = await svc.exec({ Cmd: ["cat", "/tmp/copied.txt"], AttachStdout: true });
  seen.put_archive = (await demuxed(await check.start({ hijack: true, stdin: false }))).stdout;
  const archive = await svc.getArchive({ path: "/tmp/copied.txt" });
  let archiveBytes = 0;
  archive.on("data", (d) => (archiveBytes += d.length));
  await new Promise((resolve) => archive.on("end", resolve));
  seen.get_archive_bytes = archiveBytes;

  const listed = await docker.listContainers({ filters: { label: ["suite=dockerode"] } });
  seen.listed = listed.map((c) => c.Id === svc.id);
  await svc.stop({ t: 1 });
  seen.after_stop = (await svc.inspect()).State.Status;
  await svc.remove({ force: true, v: true });

  // Networks and volumes, as testcontainers' Network and volumes use them.
  const network = await docker.createNetwork({ Name: "dockerode-net", Driver: "bridge" });
  seen.network_name = (await network.inspect()).Name;
  await network.remove();
  const volume = await docker.createVolume({ Name: "dockerode-vol" });
  seen.volume_name = (await volume.inspect()).Name;
  await volume.remove();

  // buildImage from a context directory (GenericContainer.fromDockerfile).
  const ctx = fs.mkdtempSync(path.join(os.tmpdir(), "dockerode-ctx-"));
  fs.writeFileSync(
    path.join(ctx, "Dockerfile"),
    `FROM ${reference}\nRUN echo built > /built\nCMD ["cat", "/built"]\n`
  );
  const build = await docker.buildImage({ context: ctx, src: ["Dockerfile"] }, { t: "dockerode-built:1" });
  const built = await followProgress(build);
  seen.build_error = built.find((m) => m.error) || null;
  seen.build_streamed = built.some((m) => (m.stream || "").includes("Successfully built"));
  const fromBuild = await docker.createContainer({ Image: "dockerode-built:1" });
  const buildOut = demuxed(await fromBuild.attach({ stream: true, stdout: true, stderr: true }));
  await fromBuild.start();
  await fromBuild.wait();
  seen.built_output = (await buildOut).stdout;
  await fromBuild.remove();
  await docker.getImage("dockerode-built:1").remove();

  seen.left = (await docker.listContainers({ all: true })).length;
  process.stdout.write(JSON.stringify(seen) + "\n");
}

main().catch((err) => {
  process.stderr.write(`dockerode: ${err.stack || err}\n`);
  process.exit(1);
});
