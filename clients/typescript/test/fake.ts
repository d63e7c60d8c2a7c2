/** A scripted `fetch` for the tests that need no server: records every request. */
export interface Sent {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
}

export type Reply = Response | Error | ((sent: Sent) => Response | Error | Promise<Response | Error>);

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

/** Answers POST /v1/events as the server does: every event accepted (or per `judge`). */
export function eventsServer(judge: (event: { id: string }) => string | undefined = () => undefined) {
  return (sent: Sent): Response => {
    const events = sent.body as { id: string }[];
    const results = events.map((event, index) => {
      const problem = judge(event);
      return problem === undefined
        ? { index, id: event.id, status: "accepted" }
        : { index, id: event.id, status: "rejected", reason: "validation_error", detail: problem };
    });
    const accepted = results.filter((r) => r.status === "accepted").length;
    const summary = { accepted, rejected: results.length - accepted, results, requestId: "req-1" };
    return accepted > 0 ? json(202, summary)
      : json(422, { error: "validation_error", detail: "invalid", ...summary });
  };
}

export function scripted(...replies: Reply[]): typeof fetch & { sent: Sent[] } {
  const sent: Sent[] = [];
  const fake = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const request: Sent = {
      url: String(input),
      method: init?.method ?? "GET",
      headers: Object.fromEntries(Object.entries((init?.headers ?? {}) as Record<string, string>)),
      body: typeof init?.body === "string" ? JSON.parse(init.body) : undefined,
    };
    sent.push(request);
    const next = replies.length > 1 ? replies.shift()! : replies[0];
    if (next === undefined) throw new Error("no reply scripted");
    const reply = typeof next === "function" ? await next(request) : next;
    if (reply instanceof Error) throw reply;
    return reply.clone();
  };
  return Object.assign(fake as typeof fetch, { sent });
}

export function usage(id: string, credits = 1): {
  type: "usage.recorded"; id: string; clerkUserId: string; operationType: string; credits: number; occurredAt: string;
} {
  return { type: "usage.recorded", id, clerkUserId: "user_a", operationType: "AI_TEXT_CHAT", credits,
    occurredAt: "2026-11-01T12:00:00Z" };
}
