// Generates the client's types from the documents pedro-worker commits (never edit them by hand):
//   ../../docs/openapi.json            -> src/openapi.ts        (openapi-typescript)
//   ../../docs/notifications.schema.json -> src/notifications.ts (json-schema-to-typescript)
// Usage: npm run generate [-- --out DIR]   (DIR defaults to src/; the tests write to a temporary
// directory and compare, so a document changed without regenerating fails them.)
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

import { compileFromFile } from "json-schema-to-typescript";
import openapiTS, { astToString } from "openapi-typescript";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const docs = resolve(root, "..", "..", "docs");
const { values } = parseArgs({ options: { out: { type: "string", default: join(root, "src") } } });
const out = resolve(values.out);

const banner = (source, tool) =>
  `/**\n * Generated from docs/${source} by ${tool} (scripts/generate.mjs): do not edit.\n` +
  ` * Regenerate: \`npm run generate\` in clients/typescript.\n */\n`;

async function openapiTypes() {
  const ast = await openapiTS(pathToFileURL(join(docs, "openapi.json")), {
    // Request bodies keep their optional fields optional (a default means "may be left out");
    // the answers list every field as required already (the server always sends them all).
    defaultNonNullable: false,
    silent: true,
  });
  return banner("openapi.json", "openapi-typescript") + astToString(ast);
}

async function notificationTypes() {
  return compileFromFile(join(docs, "notifications.schema.json"), {
    bannerComment: banner("notifications.schema.json", "json-schema-to-typescript").trimEnd(),
    // The schema leaves objects open so receivers accept fields added later; the types name the
    // fields there are today (an object with more still type-checks where it is read).
    additionalProperties: false,
    unreachableDefinitions: false,
    style: { printWidth: 110 },
  });
}

await mkdir(out, { recursive: true });
await writeFile(join(out, "openapi.ts"), await openapiTypes());
await writeFile(join(out, "notifications.ts"), await notificationTypes());
