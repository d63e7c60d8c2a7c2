// Reads rows through the Prisma Client that generate.mjs made (Prisma 7, @prisma/adapter-pg).
//
//   node read.mjs <database-url> [request-json]      (the request is read from stdin when omitted)
//
// A request is one object or a list of them (one Prisma Client, one connection, for all):
//   {"model": "creditBalance", "where": {"clerkUserId": "u1"}, "orderBy": {...}, "include": {...}}
// `model` is the client's delegate name (camelCase: creditBalance, usageHistory, user, ...);
// every other key is passed to `findMany` unchanged.
//
// Prints one JSON line: the rows of a single request, or a list of row lists for a list of
// requests. Values Prisma returns as objects JSON cannot carry are tagged so the reader can
// rebuild them: DateTime -> {"$date": ISO-8601 UTC}, BigInt -> {"$bigint": "…"},
// Decimal -> {"$decimal": "…"}, Bytes -> {"$bytes": base64}. Json fields come back as parsed JSON.
// Errors go to stderr with a non-zero exit status.
//
// Set PRISMA_CLIENT_DIR to use a client generated somewhere else than ./generated/client.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { PrismaPg } from "@prisma/adapter-pg";

const here = path.dirname(fileURLToPath(import.meta.url));
const clientDir = process.env.PRISMA_CLIENT_DIR || path.join(here, "generated", "client");

function tag(value) {
  if (value === null || value === undefined) return value ?? null;
  if (value instanceof Date) return { $date: value.toISOString() };
  if (typeof value === "bigint") return { $bigint: value.toString() };
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString("base64") };
  if (Array.isArray(value)) return value.map(tag);
  if (typeof value === "object") {
    if (typeof value.toFixed === "function" && typeof value.isNaN === "function") {
      return { $decimal: value.toString() }; // Prisma.Decimal (decimal.js)
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, tag(v)]));
  }
  return value;
}

async function main() {
  const [url, argRequest] = process.argv.slice(2);
  if (!url) {
    console.error("usage: node read.mjs <database-url> [request-json]");
    process.exit(2);
  }
  const request = JSON.parse(argRequest ?? fs.readFileSync(0, "utf8"));
  const requests = Array.isArray(request) ? request : [request];

  const { PrismaClient } = await import(pathToFileURL(path.join(clientDir, "client.mjs")).href);
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
  try {
    const results = [];
    for (const { model, ...args } of requests) {
      const delegate = prisma[model];
      if (!model || typeof delegate?.findMany !== "function") {
        throw new Error(`unknown model ${JSON.stringify(model)} (use the client's delegate name, e.g. creditBalance)`);
      }
      results.push(tag(await delegate.findMany(args)));
    }
    process.stdout.write(JSON.stringify(Array.isArray(request) ? results : results[0]) + "\n");
  } finally {
    await prisma.$disconnect();
  }
}

main().catch((error) => {
  console.error(error?.stack || String(error));
  process.exit(1);
});
