// Starts the real Python services for the Node contract suite and builds
// gRPC clients from the .proto files in protos/ (mirrors tests/harness.py).
// Both services serve TLS with a development CA made for the run; the device
// service calls the license service's mutual-TLS peer port; the tokens file
// holds hashes only and the tokens come from the credentials file (S5, S6).
//
// Environment:
//   KEYSLOT_PYTHON          the Python with keyslot installed (default: <repo>/.venv/bin/python)
//   KEYSLOT_CONTRACT_VERBOSE=1  copy the services' stderr logs to this process's stderr
//   KEYSLOT_PROTO_INCLUDES  extra proto include dirs, ':'-separated, holding
//                           google/rpc/*.proto and google/protobuf/*.proto; when
//                           unset they are asked from that Python (grpc_tools, googleapis-common-protos).

import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "../../..");
export const PYTHON = process.env.KEYSLOT_PYTHON || path.join(ROOT, ".venv/bin/python");

/** The callers' tokens, filled by startServices from the credentials file it makes. */
export const TOKENS = {};

/** The CA the services' certificates chain to, set by startServices. */
let caPem = null;

/** Creates the run's tokens with the tokens tool: hashes in tokensFile, tokens in credentials. */
function createTokens(tokensFile, credentials) {
  for (const [key, kind, name] of [
    ["provider", "provider", "node-shop"],
    ["portal", "portal", "portal"],
    ["peer", "peer", "device-service"],
  ]) {
    execFileSync(
      PYTHON,
      ["-m", "keyslot_server.tokens", "--file", tokensFile, "create", "--kind", kind,
        "--name", name, "--save-to", credentials, "--as", key],
      { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] },
    );
  }
  Object.assign(TOKENS, JSON.parse(readFileSync(credentials, "utf8")));
}

/** The development PKI (CA, server and peer certificates) under dir, by path name. */
function devPki(dir) {
  const out = execFileSync(PYTHON, ["-m", "keyslot_server.tls", "dev", dir], {
    cwd: ROOT,
    encoding: "utf8",
  });
  return Object.fromEntries(out.trim().split("\n").map((line) => line.split(" ", 2)));
}

/** Include dirs for google/rpc and google/protobuf, from the venv's packages. */
export function protoIncludes() {
  if (process.env.KEYSLOT_PROTO_INCLUDES) {
    return process.env.KEYSLOT_PROTO_INCLUDES.split(path.delimiter).filter(Boolean);
  }
  const script = [
    "import os, google.rpc, grpc_tools",
    "print(os.path.dirname(os.path.dirname(google.rpc.__path__[0])))",
    "print(os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'))",
  ].join("\n");
  return execFileSync(PYTHON, ["-c", script], { encoding: "utf8" }).trim().split("\n");
}

const LOADER_OPTIONS = { keepCase: true, enums: String, longs: String, defaults: true, oneofs: true };

/** grpc-js service constructors and protobufjs types, built from protos/. */
export function loadContracts() {
  const includeDirs = [path.join(ROOT, "protos"), ...protoIncludes()];
  const definition = protoLoader.loadSync(
    ["keyslot/license/v1/license_service.proto", "keyslot/device/v1/device_service.proto"],
    { ...LOADER_OPTIONS, includeDirs },
  );
  const pkg = grpc.loadPackageDefinition(definition);
  // protobufjs decodes the rich status in grpc-status-details-bin.
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    const found = includeDirs.map((dir) => path.join(dir, target)).find((p) => existsSync(p));
    return found ?? target;
  };
  root.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"], { keepCase: true });
  return {
    LicenseService: pkg.keyslot.license.v1.LicenseService,
    DeviceService: pkg.keyslot.device.v1.DeviceService,
    Status: root.lookupType("google.rpc.Status"),
    root,
  };
}

/** Decodes ErrorInfo/BadRequest from a failed call's grpc-status-details-bin trailer. */
export function richError(contracts, err) {
  const raw = err.metadata?.get("grpc-status-details-bin")?.[0];
  if (!raw) return { code: err.code, reason: "", domain: "", metadata: {}, violations: [] };
  const status = contracts.Status.decode(raw);
  const out = { code: err.code, message: status.message, reason: "", domain: "", metadata: {}, violations: [], infos: 0 };
  for (const any of status.details) {
    const typeName = any.type_url.split("/").pop();
    const type = contracts.root.lookupType(typeName);
    const detail = type.decode(any.value);
    if (typeName === "google.rpc.ErrorInfo") {
      out.infos += 1;
      out.reason = detail.reason;
      out.domain = detail.domain;
      out.metadata = { ...detail.metadata };
    } else if (typeName === "google.rpc.BadRequest") {
      out.violations.push(...detail.field_violations.map((v) => v.field));
    }
  }
  return out;
}

function startService(module, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ["-m", module, "--listen", "127.0.0.1:0", ...args], {
      cwd: ROOT,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let log = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${module} did not start:\n${out}\n${log}`));
    }, 30000);
    child.stderr.on("data", (chunk) => {
      log += chunk;
      // KEYSLOT_CONTRACT_VERBOSE=1 shows the services' logs while debugging.
      if (process.env.KEYSLOT_CONTRACT_VERBOSE) process.stderr.write(chunk);
    });
    child.stdout.on("data", (chunk) => {
      out += chunk;
      // The services' log records (JSON lines) are on stdout; stderr has gRPC core's own.
      if (process.env.KEYSLOT_CONTRACT_VERBOSE) process.stderr.write(chunk);
      const found = /serving on port (\d+)(?:, peer port (\d+))?"/.exec(out);
      if (found) {
        clearTimeout(timer);
        const peerAddress = found[2] ? `127.0.0.1:${found[2]}` : null;
        resolve({ child, address: `127.0.0.1:${found[1]}`, peerAddress, log: () => log });
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${module} exited with ${code} at start:\n${out}\n${log}`));
    });
  });
}

function stopService(proc) {
  return new Promise((resolve) => {
    if (proc.child.exitCode !== null) return resolve();
    proc.child.removeAllListeners("exit");
    proc.child.on("exit", () => resolve());
    proc.child.kill("SIGTERM");
    setTimeout(() => proc.child.kill("SIGKILL"), 15000).unref();
  });
}

/** Both services in a temp dir with their own databases and tokens file. */
export async function startServices() {
  const workdir = mkdtempSync(path.join(tmpdir(), "keyslot-node-"));
  const tokensFile = path.join(workdir, "tokens.json");
  const credentials = path.join(workdir, "credentials.json");
  createTokens(tokensFile, credentials);
  const pki = devPki(path.join(workdir, "tls"));
  caPem = readFileSync(pki.ca);
  const serveTls = ["--tls-cert", pki.server_cert, "--tls-key", pki.server_key];
  const env = {
    ...process.env,
    KEYSLOT_TOKENS_FILE: tokensFile,
    KEYSLOT_LICENSE_SWEEP_INTERVAL: "0.2",
    KEYSLOT_DEVICE_SWEEP_INTERVAL: "0.2",
    KEYSLOT_LICENSE_GRACE: "3",
    KEYSLOT_DEVICE_GRACE: "3",
    KEYSLOT_LICENSE_LOG_CALLS: "0",
    KEYSLOT_DEVICE_LOG_CALLS: "0",
    PYTHONUNBUFFERED: "1",
  };
  const license = await startService(
    "license_service",
    ["--db", path.join(workdir, "license.db"), ...serveTls,
      "--peer-listen", "127.0.0.1:0", "--peer-ca", pki.ca],
    env,
  );
  let device;
  try {
    device = await startService(
      "device_service",
      ["--db", path.join(workdir, "device.db"), ...serveTls,
        `--license-address=${license.peerAddress}`, "--license-ca", pki.ca,
        "--license-cert", pki.peer_cert, "--license-key", pki.peer_key,
        "--peer-credentials", credentials],
      env,
    );
  } catch (err) {
    await stopService(license);
    throw err;
  }
  return {
    license,
    device,
    async stop() {
      await stopService(device);
      await stopService(license);
      rmSync(workdir, { recursive: true, force: true });
    },
  };
}

/** Promise-returning unary calls with a bearer token and a deadline on every call. */
export function caller(Service, address, token, timeoutMs = 10000) {
  // TLS trusting the run's development CA (S5).
  const client = new Service(address, grpc.credentials.createSsl(caPem));
  const call = (method, request) =>
    new Promise((resolve, reject) => {
      const metadata = new grpc.Metadata();
      if (token) metadata.set("authorization", `Bearer ${token}`);
      client[method](request, metadata, { deadline: Date.now() + timeoutMs }, (err, reply) =>
        err ? reject(err) : resolve(reply),
      );
    });
  call.close = () => client.close();
  return call;
}

export { grpc };
