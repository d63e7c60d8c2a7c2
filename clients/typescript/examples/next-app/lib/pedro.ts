// One client per server instance (module scope): its batches and connections are shared by the
// requests it serves. Server-side only: the token must never reach the browser.
import { PedroClient } from "@pedro-ai/worker-client";

export const pedro = new PedroClient({
  baseUrl: process.env.PEDRO_WORKER_URL ?? "http://127.0.0.1:8080",
  token: process.env.PEDRO_WORKER_TOKEN ?? "",
  retry: { retries: 4, minDelayMs: 100, maxDelayMs: 5_000 },
});
