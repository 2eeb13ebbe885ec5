// Offline x402 v1 reference verifier: the official @x402/evm (pinned in package.json)
// ExactEvmSchemeV1._verify with simulate:false. The stub signer says every address is an
// EOA (getCode -> "0x") and refuses any on-chain call, so nothing leaves this machine.
//
// stdin:  JSON array of cases, each {"header": "<base64 X-PAYMENT>", "requirements": {<one v1 accept>}}
// stdout: JSON array of results in the same order, each {"isValid": bool, "invalidReason"?, "payer"?}
// One node start-up verifies a whole batch; a case that throws reports isValid:false.
import { readFileSync } from "node:fs";
import { ExactEvmSchemeV1 } from "@x402/evm/exact/v1/facilitator";

const offline = async () => { throw new Error("offline verifier: no chain access"); };
const signer = {
  getAddresses: () => [],
  getCode: async () => "0x",
  readContract: offline, verifyTypedData: offline, writeContract: offline,
  sendTransaction: offline, waitForTransactionReceipt: offline,
};
const scheme = new ExactEvmSchemeV1(signer);

const results = [];
for (const { header, requirements } of JSON.parse(readFileSync(0, "utf8"))) {
  try {
    const payload = JSON.parse(Buffer.from(header, "base64").toString("utf8"));
    results.push(await scheme._verify(payload, requirements, { simulate: false }));
  } catch (error) {
    results.push({ isValid: false, invalidReason: "exception", message: String(error) });
  }
}
console.log(JSON.stringify(results));
