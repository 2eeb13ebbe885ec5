// Offline x402 v2 reference verifier: the official @x402/evm (pinned in package.json)
// ExactEvmScheme.verify, the public entry point a facilitator calls. It simulates the
// transfer, so the stub signer pretends: getCode returns bytecode for the asset only
// (payers are EOAs) and readContract resolves, i.e. the simulation "passes" offline. The
// signature, recipient, amount and time checks all run in @x402/evm's own code first.
//
// stdin:  JSON array of cases, each {"header": "<base64 PAYMENT-SIGNATURE>", "requirements": {<one v2 accept>}}
// stdout: JSON array of results in the same order, each {"isValid": bool, "invalidReason"?, "payer"?}
import { readFileSync } from "node:fs";
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";

const offline = async () => { throw new Error("offline verifier: no chain access"); };

const results = [];
for (const { header, requirements } of JSON.parse(readFileSync(0, "utf8"))) {
  try {
    const asset = String(requirements.asset).toLowerCase();
    const signer = {
      getAddresses: () => [],
      getCode: async ({ address }) => (address.toLowerCase() === asset ? "0x6080" : "0x"),
      readContract: async () => undefined,
      verifyTypedData: offline, writeContract: offline,
      sendTransaction: offline, waitForTransactionReceipt: offline,
    };
    const payload = JSON.parse(Buffer.from(header, "base64").toString("utf8"));
    results.push(await new ExactEvmScheme(signer).verify(payload, requirements));
  } catch (error) {
    results.push({ isValid: false, invalidReason: "exception", message: String(error) });
  }
}
console.log(JSON.stringify(results));
