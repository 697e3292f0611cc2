// The analysis worker: a child process of `abrupt serve` that computes one
// analysis at a time (src/server/compute.ts), so the server stays responsive
// (live metrics keep flowing) while a checkpoint is analysed. Messages:
// in  { id, req: ComputeRequest }
// out { id, ok: true, file, cached } | { id, ok: false, error, user }
// (user: the error is the request's fault, an AbruptError → HTTP 400/404).

import { AbruptError } from "../errors.js";
import { type ComputeRequest, compute } from "./compute.js";

process.on("message", (msg: { id: number; req: ComputeRequest }) => {
  void (async () => {
    try {
      const r = await compute(msg.req);
      process.send!({ id: msg.id, ok: true, file: r.file, cached: r.cached });
    } catch (e) {
      process.send!({ id: msg.id, ok: false, error: (e as Error).message, user: e instanceof AbruptError });
    }
  })();
});
process.on("disconnect", () => process.exit(0));
