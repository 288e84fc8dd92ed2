// testcontainers-node (npm `testcontainers`, on dockerode) against hutch.
// Run inside the pod with DOCKER_HOST set, NODE_PATH at the installed
// modules and busybox loaded; prints ALL OK.
//
// 1. A GenericContainer with an exposed port, waited for by its log, reached
//    on the host and mapped port testcontainers reports.
// 2. Content copied in before start (withCopyContentToContainer, i.e. PUT
//    /archive on a created container), waited for by HTTP on the mapped
//    port, checked with exec, and copied out again (copyArchiveFromContainer).
"use strict";

const http = require("http");
const { GenericContainer, Wait } = require("testcontainers");

function get(url) {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve(body.trim()));
      })
      .on("error", reject);
  });
}

function check(ok, what) {
  if (!ok) {
    throw new Error(what);
  }
}

async function main() {
  const served = await new GenericContainer("busybox")
    .withExposedPorts(80)
    .withCommand([
      "sh",
      "-c",
      "mkdir -p /www && echo tc-ok > /www/index.html && echo serving && exec httpd -f -p 80 -h /www",
    ])
    .withWaitStrategy(Wait.forLogMessage("serving"))
    .start();
  const url = `http://${served.getHost()}:${served.getMappedPort(80)}/`;
  const body = await get(url);
  check(body === "tc-ok", `${url} answered ${JSON.stringify(body)}`);
  console.log(`reached ${url}`);
  await served.stop();

  const page = "copied-in-before-start\n";
  const files = await new GenericContainer("busybox")
    .withExposedPorts(80)
    .withCopyContentToContainer([{ content: page, target: "/www/index.html", mode: 0o644 }])
    .withCommand(["httpd", "-f", "-p", "80", "-h", "/www"])
    .withWaitStrategy(Wait.forHttp("/", 80).forResponsePredicate((b) => b.includes("copied-in")))
    .start();
  const copied = await get(`http://${files.getHost()}:${files.getMappedPort(80)}/`);
  check(copied === page.trim(), `the copied page answered ${JSON.stringify(copied)}`);
  const stat = await files.exec(["stat", "-c", "%a %s", "/www/index.html"]);
  check(
    stat.exitCode === 0 && stat.output.trim() === `644 ${page.length}`,
    `exec stat: ${JSON.stringify(stat)}`
  );
  const archive = await files.copyArchiveFromContainer("/www/index.html");
  let bytes = 0;
  for await (const chunk of archive) {
    bytes += chunk.length;
  }
  check(bytes >= 1024, `copied out ${bytes} bytes of tar`);
  console.log("copied in before start, exec, copied out");
  await files.stop();
  console.log("ALL OK");
}

main().catch((err) => {
  console.error(`testcontainers-node: ${err.stack || err}`);
  process.exit(1);
});
