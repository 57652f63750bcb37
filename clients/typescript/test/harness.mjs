// Starts the real creditd binary (`creditd demo`: a fresh data directory
// and a simulated NanoBanana on loopback) on a port the OS picks, and a
// loopback proxy in front of it that can play the faults a client must
// survive: a connection cut after the server answered, and a standby's
// 503 `not_leader`.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repository = path.resolve(fileURLToPath(new URL("../../..", import.meta.url)));

/** The binary: `CREDITD_BIN`, else the release build of `cargo build --release`. */
export function creditdBinary() {
  if (process.env.CREDITD_BIN) return process.env.CREDITD_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? path.join(repository, "target");
  const binary = path.join(target, "release", "creditd");
  if (!existsSync(binary)) {
    throw new Error(`${binary} is missing: run \`cargo build --release\` first, or set CREDITD_BIN`);
  }
  return binary;
}

/**
 * `creditd demo` with `providerCredits` and extra environment `env`; answers
 * its base URL, the admin token, the storefront+enhancement key it printed,
 * the simulated provider's URL, and `stop()`.
 */
export async function startCreditd({ providerCredits = 100_000, env = {} } = {}) {
  const adminToken = randomBytes(16).toString("hex");
  const child = spawn(creditdBinary(), ["demo", "--provider-credits", String(providerCredits)], {
    env: {
      ...process.env,
      CREDITD_LISTEN: "127.0.0.1:0",
      CREDITD_ADMIN_TOKEN: adminToken,
      RUST_LOG: "warn",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let printed = "";
  let logs = "";
  child.stderr.on("data", (chunk) => (logs += chunk));
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const started = new Promise((resolve, reject) => {
    child.stdout.on("data", (chunk) => {
      printed += chunk;
      const baseUrl = printed.match(/creditd listening on (http:\/\/\S+)/)?.[1];
      const apiKey = printed.match(/API key\s+(ck_\w+)/)?.[1];
      const providerUrl = printed.match(/NanoBanana \(simulated\)\s+(http:\/\/\S+)/)?.[1];
      if (baseUrl && apiKey && providerUrl) resolve({ baseUrl, apiKey, providerUrl });
    });
    exited.then(({ code, signal }) => reject(new Error(`creditd exited (${code ?? signal}) before it served:\n${logs}`)));
  });
  const { baseUrl, apiKey, providerUrl } = await started;
  await ready(baseUrl, exited);
  return {
    baseUrl,
    adminToken,
    apiKey,
    providerUrl,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/** Resolves once `/readyz` answers 200 (the first sync done); rejects if the process exits first. */
async function ready(baseUrl, exited) {
  let gone = false;
  exited.then(() => (gone = true));
  for (;;) {
    if (gone) throw new Error("creditd exited before it was ready");
    const answer = await fetch(`${baseUrl}/readyz`).catch(() => undefined);
    if (answer?.ok) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * A proxy in front of `target`. Each request takes the next planned fault
 * (`plan(...faults)`), or is passed through:
 * - `"cut"`: passed to creditd, which answers; then the client's connection
 *   is destroyed before a byte of that answer reaches it;
 * - `"notLeader"`: answered 503 `not_leader` as a standby would, without
 *   reaching creditd;
 * - `"unknown"`: passed to creditd, which applies it; its answer replaced by
 *   503 `outcome_unknown`, as when durability could not be confirmed;
 * - `"gateway"`: answered 503 with an HTML page, as HAProxy does with no
 *   node up, without reaching creditd;
 * - `"hang"`: never answered (until the proxy stops).
 * `requests` records every request's method, path and `Idempotency-Key`.
 */
export async function startProxy(target) {
  const faults = [];
  const requests = [];
  const waiters = [];
  const server = http.createServer(async (request, response) => {
    const chunks = [];
    for await (const chunk of request) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const fault = faults.shift();
    requests.push({ method: request.method, path: request.url, key: request.headers["idempotency-key"], fault });
    for (const waiter of waiters.splice(0)) waiter();
    if (fault === "hang") return;
    if (fault === "gateway") {
      response.writeHead(503, { "content-type": "text/html" });
      response.end("<html><body><h1>503 Service Unavailable</h1>No server is available.</body></html>");
      return;
    }
    if (fault === "notLeader") {
      response.writeHead(503, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: { code: "not_leader", message: "this node is a standby; the leader is http://127.0.0.1:1" } }));
      return;
    }
    const headers = { ...request.headers };
    delete headers.host;
    delete headers.connection;
    const answer = await fetch(`${target}${request.url}`, {
      method: request.method,
      headers,
      body: body.length > 0 ? body : undefined,
    });
    const text = Buffer.from(await answer.arrayBuffer());
    if (fault === "cut") {
      request.socket.destroy();
      return;
    }
    if (fault === "unknown") {
      response.writeHead(503, { "content-type": "application/json" });
      const message = "the change was handed to storage but its durability could not be confirmed";
      response.end(JSON.stringify({ error: { code: "outcome_unknown", message } }));
      return;
    }
    const passed = {};
    answer.headers.forEach((value, name) => {
      if (!["content-length", "transfer-encoding", "connection", "keep-alive"].includes(name)) passed[name] = value;
    });
    response.writeHead(answer.status, passed);
    response.end(text);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    requests,
    plan(...planned) {
      faults.push(...planned);
    },
    /** Resolves once `count` requests have arrived. */
    async seen(count) {
      while (requests.length < count) await new Promise((resolve) => waiters.push(resolve));
    },
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A loopback port free now (for a server that must know its own URL before it starts). */
export async function freePort() {
  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Runs `program` to its end; rejects with its output unless it exits 0. */
export function runToEnd(program, args, options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0 ? resolve(output) : reject(new Error(`${program} ${args.join(" ")}: exit ${code}\n${output}`)),
    );
  });
}

/**
 * A long-running process: resolves once its output matches `ready` (a
 * RegExp), with the match, the child and `stop()`; rejects if it exits first.
 */
export function startProcess(program, args, { env = {}, ready }) {
  const child = spawn(program, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const look = (chunk) => {
      output += chunk;
      const match = output.match(ready);
      if (match) {
        child.stdout.off("data", look);
        child.stderr.off("data", look);
        resolve({
          child,
          match,
          output: () => output,
          async stop(signal = "SIGTERM") {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            await exited;
          },
        });
      }
    };
    child.stdout.on("data", look);
    child.stderr.on("data", look);
    exited.then(({ code, signal }) => reject(new Error(`${program} exited (${code ?? signal}):\n${output}`)));
  });
}
