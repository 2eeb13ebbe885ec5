// Drive `nonecap-mcp serve --sandbox` through the official TypeScript SDK client, which checks
// every structuredContent against the tool's outputSchema (callTool throws when it does not match).
//
// Usage: node sdk_client.mjs '{"command": "...", "args": [...], "env": {...}}'
// Prints one JSON report on stdout: every call with its status and how many output
// validations it ran, the progress notifications seen, and a negative control proving the
// validator rejects a malformed solve. Assertions live in tests/test_real_clients.py.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";

const server = JSON.parse(process.argv[2]);

// The SDK's own validator, counting each time it judges a result.
const ajv = new AjvJsonSchemaValidator();
let validations = 0;
const countingValidator = {
  getValidator(schema) {
    const validate = ajv.getValidator(schema);
    return (input) => {
      validations += 1;
      return validate(input);
    };
  },
};

const client = new Client({ name: "nonecap-sdk-check", version: "1.0.0" }, { jsonSchemaValidator: countingValidator });
await client.connect(new StdioClientTransport({ ...server, stderr: "inherit" }));

const report = { calls: [], progress: [] };
const { tools } = await client.listTools(); // also compiles each tool's output validator
report.tools = tools.map((tool) => tool.name);

const solveSchema = tools.find((tool) => tool.name === "create_solve").outputSchema;
report.controlRejected = !ajv.getValidator(solveSchema)({ id: 42, status: "solved" }).valid;

async function call(label, name, args, options = {}) {
  const before = validations;
  const result = await client.callTool({ name, arguments: args }, undefined, options);
  const data = result.structuredContent ?? {};
  report.calls.push({
    label,
    tool: name,
    isError: result.isError === true,
    status: data.status ?? null,
    action: data.guidance?.action ?? null,
    validated: validations - before,
    text: result.isError ? result.content[0].text : undefined,
  });
  return data;
}

const site = { type: "hcaptcha", url: "https://a.example/login" };
await call("pricing", "get_pricing", {});
await call("balance", "get_balance", {});
const solved = await call("solved", "create_solve", { ...site, sitekey: "sandbox-solve-100ms", wait_seconds: 5 });
await call("get solved", "get_solve", { id: solved.id });
await call("report", "report_solve", { id: solved.id, outcome: "accepted" });
await call("failed", "create_solve", { ...site, sitekey: "sandbox-fail-proxy_error", wait_seconds: 5 });
const pending = await call("pending", "create_solve", { ...site, sitekey: "sandbox-solve-30s", wait_seconds: 2 }, {
  onprogress: (progress) => report.progress.push(progress),
});
await call("get pending", "get_solve", { id: pending.id, wait_seconds: 0 });
await call("cancel", "cancel_solve", { id: pending.id });
const paid = await call("x402", "create_solve", { ...site, sitekey: "sandbox-solve-100ms", wait_seconds: 5, rail: "x402" });
await call("get x402", "get_solve", { id: paid.id });
await call("list credits", "list_solves", { limit: 10 });
await call("list x402", "list_solves", { rail: "x402" });
await call("balance after", "get_balance", {});
await call("bad id", "get_solve", { id: "not-an-id" });

await client.close();
process.stdout.write(JSON.stringify(report));
