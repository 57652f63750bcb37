// A real standby's 503 `not_leader`, then success (SPEC §12, §14): a
// PostgreSQL cluster made by `initdb` in a temp dir, two `creditd serve`
// nodes on it and the simulated NanoBanana. The client talks to the
// standby; once it has been answered `not_leader`, the leader is killed
// (SIGKILL), the standby takes over after the lease, and the client's own
// retries of the same purchase, with the same key, succeed: credited once.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { Creditd } from "../dist/index.js";
import { creditdBinary, freePort, runToEnd, startProcess } from "./harness.mjs";

/** Debian's PostgreSQL server binaries, newest version first; undefined when not installed. */
function postgresBinaries() {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .map((version) => path.join(root, version, "bin"))
    .filter((bin) => existsSync(path.join(bin, "initdb")))
    .sort((a, b) => b.localeCompare(a, undefined, { numeric: true }));
  return versions[0];
}

const bin = postgresBinaries();
const required = Boolean(process.env.CREDITD_REQUIRE_TOOLS);
const root = process.getuid?.() === 0;
/** `program` as the `postgres` user when we are root (initdb refuses root). */
const asPostgres = (program, args) => (root ? ["runuser", ["-u", "postgres", "--", program, ...args]] : [program, args]);

let directory;
let postgres;
let provider;
const nodes = [];

async function startPostgres() {
  directory = mkdtempSync(path.join(os.tmpdir(), "creditd-client-pg-"));
  if (root) await runToEnd("chown", ["-R", "postgres:postgres", directory]);
  const data = path.join(directory, "data");
  await runToEnd(...asPostgres(path.join(bin, "initdb"), ["-D", data, "-U", "creditd", "-A", "trust", "-E", "UTF8", "--no-sync"]));
  const port = await freePort();
  const options = `-c listen_addresses=127.0.0.1 -p ${port} -k ${directory}`;
  const log = path.join(directory, "postgres.log");
  await runToEnd(...asPostgres(path.join(bin, "pg_ctl"), ["start", "-D", data, "-o", options, "-l", log, "-w", "-t", "60"]));
  return {
    url: `postgres://creditd@127.0.0.1:${port}/postgres`,
    stop: () => runToEnd(...asPostgres(path.join(bin, "pg_ctl"), ["stop", "-D", data, "-m", "immediate"])),
  };
}

async function serve(store, adminToken, providerUrl, providerKey) {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const node = await startProcess(creditdBinary(), ["serve"], {
    env: {
      CREDITD_STORE: store,
      CREDITD_LISTEN: `127.0.0.1:${port}`,
      CREDITD_ADVERTISE_URL: baseUrl,
      CREDITD_ADMIN_TOKEN: adminToken,
      NANOBANANA_BASE_URL: providerUrl,
      NANOBANANA_API_KEY: providerKey,
      CREDITD_WORKERS: "2",
      RUST_LOG: "warn",
    },
    ready: /listening on/,
  });
  nodes.push(node);
  return { ...node, baseUrl };
}

/** Resolves once `url` answers `status`. */
async function answers(url, status) {
  for (;;) {
    const answer = await fetch(url).catch(() => undefined);
    if (answer?.status === status) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

before(async () => {
  if (!bin) return;
  postgres = await startPostgres();
});

after(async () => {
  for (const node of nodes) await node.stop("SIGKILL");
  await provider?.stop();
  await postgres?.stop();
  if (directory) rmSync(directory, { recursive: true, force: true });
});

test("a standby answers not_leader; the client retries the same purchase until the new leader applies it once", { skip: !bin && !required && "PostgreSQL is not installed (.ci/run installs it)" }, async (t) => {
  assert.ok(bin, "PostgreSQL is required (CREDITD_REQUIRE_TOOLS is set) but /usr/lib/postgresql/*/bin is missing");
  await runToEnd(creditdBinary(), ["init", "--store", postgres.url]);
  const providerKey = randomBytes(16).toString("hex");
  provider = await startProcess(creditdBinary(), ["fake-provider", "--listen", "127.0.0.1:0", "--credits", "100000"], {
    env: { NANOBANANA_API_KEY: providerKey },
    ready: /simulated NanoBanana at (http:\/\/\S+)/,
  });
  const providerUrl = provider.match[1];
  const adminToken = randomBytes(16).toString("hex");
  const leader = await serve(postgres.url, adminToken, providerUrl, providerKey);
  await answers(`${leader.baseUrl}/readyz`, 200);
  const standby = await serve(postgres.url, adminToken, providerUrl, providerKey);
  await answers(`${standby.baseUrl}/readyz`, 503);

  const admin = new Creditd({ baseUrl: leader.baseUrl, apiKey: adminToken });
  const { key } = await admin.createApiKey({ name: "shop", scopes: ["storefront"] });
  const seen = [];
  let notLeader;
  const firstNotLeader = new Promise((resolve) => (notLeader = resolve));
  const recording = async (request) => {
    const response = await fetch(request);
    const body = response.ok ? undefined : await response.clone().json().catch(() => undefined);
    seen.push({ status: response.status, code: body?.error?.code, key: request.headers.get("Idempotency-Key") });
    if (body?.error?.code === "not_leader") notLeader();
    return response;
  };
  const shop = new Creditd({
    baseUrl: standby.baseUrl,
    apiKey: key,
    fetch: recording,
    retry: { attempts: 100, baseDelayMs: 50, maxDelayMs: 250 },
  });
  const purchase = shop.purchase({ userId: "ann", packageId: "starter" });
  await firstNotLeader;
  await leader.stop("SIGKILL");
  const bought = await purchase;

  assert.equal(bought.balance, 10);
  assert.equal(seen[0].code, "not_leader");
  assert.equal(seen.at(-1).status, 200);
  assert.equal(new Set(seen.map((s) => s.key)).size, 1, "one Idempotency-Key for every attempt");
  const newLeader = new Creditd({ baseUrl: standby.baseUrl, apiKey: adminToken });
  assert.equal((await newLeader.wallet("ann")).balance, 10, "credited once");
  const { entries } = await newLeader.ledger({ after: 0, limit: 1000 });
  assert.equal(entries.filter((e) => e.kind === "purchase").length, 1);
  t.diagnostic(`answers seen by the client: ${seen.map((s) => s.code ?? s.status).join(", ")}`);
});
