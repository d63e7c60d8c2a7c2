// app/api/pedro-notifications/route.ts — pedro-worker's notifications (PEDRO_NOTIFY_URL points
// here; PEDRO_NOTIFY_SECRET is the same whsec_… secret). Runs on the edge runtime as well as
// on Node: verifyWebhook needs only Web Crypto.
import { verifyWebhook, WebhookVerificationError, type Notification } from "@pedro-ai/worker-client";

export const runtime = "edge";

const seen = new Set<string>(); // in the app: a unique key in the database (deliveries are at least once)

async function handle(notification: Notification): Promise<void> {
  switch (notification.type) {
    case "credits.low":
      console.log(`${notification.data.clerkUserId} is down to ${notification.data.balance} credits`);
      break;
    case "credits.depleted":
      console.log(`${notification.data.clerkUserId} has no credits left`);
      break;
    case "user.provisioned":
      console.log(`welcome ${notification.data.clerkUserId}: ${notification.data.starterCredits} credits`);
      break;
    default:
      break; // other types: docs/notifications.md
  }
}

export async function POST(request: Request): Promise<Response> {
  const body = await request.text(); // the raw body: the signature is over these exact bytes
  let notification: Notification;
  try {
    notification = await verifyWebhook(process.env.PEDRO_NOTIFY_SECRET ?? "", body, request.headers);
  } catch (error) {
    if (error instanceof WebhookVerificationError) return new Response(error.code, { status: 400 });
    throw error;
  }
  const id = request.headers.get("webhook-id")!;
  if (!seen.has(id)) {
    await handle(notification);
    seen.add(id);
  }
  return new Response(null, { status: 204 }); // any 2xx: delivered; anything else is retried
}
