// One Lambda execution environment for a Node.js function: the counterpart of
// lambda_worker.py, speaking the same protocol to the stage's Lambda runtime.
//
//   node node_worker.js CHANNEL_FD CODE_DIR HANDLER
//
// CHANNEL_FD is a Unix socket to the runtime. Every message either way is a 4-byte
// big-endian length, then that many bytes of JSON. First this worker sends
// {"ready": true, "init_ms": ...} (or {"ready": false, "error": ...}); then, for
// each request {"request_id", "deadline_ms", "event", "inject_error"}, one reply:
// {"ok": true, "result": ..., "duration_ms": ...} or
// {"ok": false, "error_type": ..., "error": ..., "duration_ms": ...}.
// The handler's console output is this process's stdout/stderr: the log file.
//
// The handler contract is Lambda's: exports.handler(event, context) returning a
// promise, or (event, context, callback); CODE_DIR is the task root (the working
// directory); HANDLER is "path/file.export" with CommonJS or ES module files.
// Packages the code does not bring itself (the AWS SDK v3, as AWS's Node.js 18+
// runtimes ship it) come from NODE_PATH, for require() and import alike.
"use strict";

const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");
const { pathToFileURL } = require("node:url");
const moduleApi = require("node:module");

const started = process.hrtime.bigint();
const [channelFd, codeDir, handlerName] = process.argv.slice(2);

// ES modules ignore NODE_PATH: resolve a bare specifier that fails from the code's
// own node_modules again from each NODE_PATH entry, as if imported beside it.
const RESOLVE_HOOK = `
let roots = [];
export async function initialize(data) { roots = data.roots; }
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    if (error?.code !== "ERR_MODULE_NOT_FOUND" || /^(\\.|\\/|node:|file:|data:)/.test(specifier)) {
      throw error;
    }
    for (const parentURL of roots) {
      try {
        return await next(specifier, { ...context, parentURL });
      } catch {}
    }
    throw error;
  }
}`;

function nodePathRoots() {
  return (process.env.NODE_PATH || "")
    .split(path.delimiter)
    .filter(Boolean)
    .map((dir) => pathToFileURL(path.join(path.dirname(path.resolve(dir)), "resolve-from.mjs")).href);
}

function splitHandler(name) {
  // "dir/file.export.nested": the module is up to the first dot after the last slash.
  const slash = name.lastIndexOf("/");
  const dot = name.indexOf(".", slash + 1);
  if (dot < 0) throw new Error(`Bad handler ${name}: want file.export`);
  return [name.slice(0, dot), name.slice(dot + 1)];
}

async function loadHandler() {
  const [modulePath, exportPath] = splitHandler(handlerName);
  const base = path.resolve(codeDir, modulePath);
  const file = [".js", ".mjs", ".cjs"].map((ext) => base + ext).find((f) => fs.existsSync(f));
  if (!file) throw new Error(`Cannot find module '${modulePath}' in ${codeDir}`);
  let loaded;
  if (file.endsWith(".mjs")) {
    loaded = await import(pathToFileURL(file).href);
  } else {
    try {
      loaded = require(file);
    } catch (error) {
      if (error?.code !== "ERR_REQUIRE_ESM") throw error;
      loaded = await import(pathToFileURL(file).href);
    }
  }
  let handler = loaded;
  for (const part of exportPath.split(".")) handler = handler?.[part];
  if (typeof handler !== "function") {
    throw new Error(`${modulePath}.${exportPath} is undefined or not exported`);
  }
  return handler;
}

function frame(payload) {
  const body = Buffer.from(JSON.stringify(payload === undefined ? null : payload));
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length);
  return Buffer.concat([header, body]);
}

function context(requestId, deadlineMs) {
  const name = process.env.AWS_LAMBDA_FUNCTION_NAME || "function";
  const region = process.env.AWS_REGION || "us-east-1";
  return {
    awsRequestId: requestId,
    functionName: name,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION || "$LATEST",
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE || "128",
    invokedFunctionArn: `arn:aws:lambda:${region}:000000000000:function:${name}`,
    logGroupName: `/aws/lambda/${name}`,
    logStreamName: "local",
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadlineMs - Date.now()),
  };
}

function invoke(handler, event, ctx) {
  return new Promise((resolve, reject) => {
    const callback = (error, result) => (error ? reject(error) : resolve(result));
    const returned = handler(event, ctx, callback);
    if (returned && typeof returned.then === "function") {
      returned.then(resolve, reject);
    } else if (handler.length < 3) {
      resolve(returned);
    }
  });
}

async function handle(handler, request) {
  const requestId = request.request_id;
  process.stdout.write(`START RequestId: ${requestId} Version: $LATEST\n`);
  const began = process.hrtime.bigint();
  let reply;
  try {
    if (request.inject_error) throw new Error("fanbench injected a Lambda error");
    const result = await invoke(handler, request.event, context(requestId, request.deadline_ms));
    reply = { ok: true, result: result === undefined ? null : result };
  } catch (error) {
    console.error(error);
    const type = error?.name || (error?.constructor && error.constructor.name) || "Error";
    reply = { ok: false, error_type: type, error: String(error?.message ?? error) };
  }
  reply.duration_ms = Number(process.hrtime.bigint() - began) / 1e6;
  process.stdout.write(`END RequestId: ${requestId}\n`);
  process.stdout.write(`REPORT RequestId: ${requestId}\tDuration: ${reply.duration_ms.toFixed(2)} ms\n`);
  return reply;
}

function serve(channel, handler) {
  let buffered = Buffer.alloc(0);
  let queue = Promise.resolve();
  channel.on("data", (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 4 && buffered.length >= 4 + buffered.readUInt32BE(0)) {
      const size = buffered.readUInt32BE(0);
      const request = JSON.parse(buffered.subarray(4, 4 + size).toString("utf8"));
      buffered = buffered.subarray(4 + size);
      // One invocation at a time, as an execution environment runs them.
      queue = queue.then(async () => channel.write(frame(await handle(handler, request))));
    }
  });
  channel.on("end", () => process.exit(0));
  channel.on("error", () => process.exit(0));
}

async function main() {
  const channel = new net.Socket({ fd: Number(channelFd), readable: true, writable: true });
  const coldStartMs = Number(process.env.FANBENCH_COLD_START_MS || 0);
  if (coldStartMs > 0) await new Promise((done) => setTimeout(done, coldStartMs));
  let handler;
  try {
    process.chdir(codeDir);
    if (typeof moduleApi.register === "function") {
      const hook = `data:text/javascript,${encodeURIComponent(RESOLVE_HOOK)}`;
      moduleApi.register(hook, { data: { roots: nodePathRoots() } });
    }
    handler = await loadHandler();
  } catch (error) {
    console.error(error);
    channel.end(frame({ ready: false, error: `${error?.name || "Error"}: ${error?.message}` }));
    return;
  }
  const initMs = Number(process.hrtime.bigint() - started) / 1e6;
  channel.write(frame({ ready: true, init_ms: initMs }));
  serve(channel, handler);
}

main();
