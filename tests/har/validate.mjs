// Checks a HAR document against the HAR 1.2 JSON schema (npm `har-schema`, pinned in the root
// package.json's devDependencies) with Ajv, a maintained JSON Schema validator. Reads the HAR
// from stdin; exits 0 when it is valid, 1 with Ajv's errors on stderr when not, 2 when the
// tools are missing (`npm ci` at the repository root installs them).
//
// Used by tests/tests/api.rs on what `GET /api/rooms/{room}/history?format=har` answers.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(import.meta.url);
let Ajv, addFormats, schemas, draft06;
try {
  Ajv = require("ajv");
  addFormats = require("ajv-formats");
  schemas = require("har-schema");
  draft06 = require("ajv/dist/refs/json-schema-draft-06.json");
} catch (e) {
  console.error(`validate.mjs: ${e.message}\n(run \`npm ci\` at the repository root)`);
  process.exit(2);
}

// har-schema is draft-06 and carries two keywords of its own ("optional", "min"): not strict.
const ajv = new Ajv({ strict: false, allErrors: true });
(addFormats.default ?? addFormats)(ajv);
ajv.addMetaSchema(draft06);
for (const [name, schema] of Object.entries(schemas)) {
  if (name !== "har") ajv.addSchema(schema);
}
const validate = ajv.compile(schemas.har);

let doc;
try {
  doc = JSON.parse(readFileSync(0, "utf8"));
} catch (e) {
  console.error(`not JSON: ${e.message}`);
  process.exit(1);
}
if (!validate(doc)) {
  console.error(JSON.stringify(validate.errors, null, 2));
  process.exit(1);
}
console.log(`valid HAR ${doc.log.version}: ${doc.log.entries.length} entries`);
