// The graphql-http reference implementation's server audits (graphql-http.com's tester).
// Usage: node graphql_http_audit.mjs all '{"url": "http://.../graphql"}'
import { serverAudits } from "graphql-http";

import { config, finish } from "./lib.mjs";

const { url } = config();
const audits = [];
for (const audit of serverAudits({ url, fetchFn: fetch })) {
  const result = await audit.fn();
  audits.push({ id: audit.id, name: audit.name, status: result.status, reason: result.reason ?? null });
}
finish({ audits });
