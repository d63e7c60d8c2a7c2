// app/api/chat/route.ts — an AI call paid for with credits: hold -> work -> capture (or release).
// The hold is taken before the work, under the user's balance lock, so two concurrent requests
// can never spend the same credits; the capture charges what the work really cost.
import { InsufficientCredits, PedroError } from "@pedro-ai/worker-client";

import { pedro } from "../../../lib/pedro";

interface ChatRequest {
  prompt: string;
  /** The browser's id for this message: a retried request reuses it, so the hold is not taken twice. */
  messageId: string;
}

// In the app: Clerk's `auth()` (@clerk/nextjs/server) gives the signed-in user's id.
async function currentUserId(request: Request): Promise<string | null> {
  return request.headers.get("x-demo-user");
}

// The AI call, reporting what it cost in credits.
async function callModel(prompt: string): Promise<{ text: string; credits: number; model: string }> {
  return { text: `echo: ${prompt}`, credits: Math.min(20, 1 + Math.ceil(prompt.length / 100)), model: "gpt" };
}

export async function POST(request: Request): Promise<Response> {
  const userId = await currentUserId(request);
  if (userId === null) return Response.json({ error: "sign in" }, { status: 401 });
  const { prompt, messageId } = (await request.json()) as ChatRequest;
  const holdId = `chat-${messageId}`;

  try {
    await pedro.hold({ id: holdId, clerkUserId: userId, operationType: "AI_TEXT_CHAT", credits: 20, ttlSeconds: 600 });
  } catch (error) {
    if (error instanceof InsufficientCredits) {
      return Response.json({ error: "insufficient_credits", available: error.available }, { status: 402 });
    }
    throw error;
  }

  let answer: Awaited<ReturnType<typeof callModel>>;
  try {
    answer = await callModel(prompt);
  } catch (error) {
    await pedro.release(holdId); // the work did not happen: every held credit comes back
    throw error;
  }
  try {
    const { balance } = await pedro.capture(holdId, { credits: answer.credits, details: { model: answer.model } });
    return Response.json({ text: answer.text, credits: { used: answer.credits, available: balance.available } });
  } catch (error) {
    // hold_expired: the work outlived ttlSeconds and was not charged; log it, the user keeps the answer
    if (error instanceof PedroError && error.code === "hold_expired") return Response.json({ text: answer.text });
    throw error;
  }
}

// GET /api/chat?cursor=… — the user's credit history, newest first.
export async function GET(request: Request): Promise<Response> {
  const userId = await currentUserId(request);
  if (userId === null) return Response.json({ error: "sign in" }, { status: 401 });
  const cursor = new URL(request.url).searchParams.get("cursor");
  const [balance, page] = await Promise.all([pedro.balance(userId), pedro.movements(userId, { cursor, limit: 20 })]);
  return Response.json({ available: balance.available, movements: page.movements, next: page.nextCursor });
}
