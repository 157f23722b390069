// What every client script shares: the service over plain fetch, bounded waits, the result.

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The scenario's configuration: one JSON argument from the Python test. */
export function config() {
  return JSON.parse(process.argv[3] ?? "{}");
}

/** Print the scenario's outcome as one JSON line and end the process (sockets included). */
export function finish(result) {
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));
}

/** Every wait is bounded: a missing event fails in seconds, saying what was seen. */
export async function waitFor(what, predicate, timeoutMs = 15000, seen = () => "") {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} ${seen()}`);
    await sleep(20);
  }
}

export async function rest(base, method, path, token, body) {
  const headers = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(base + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

export async function graphqlOverHttp(base, token, query, variables = {}) {
  const response = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  return response.json();
}

/**
 * Returns once `events` (what the subscription under test received) shows that it is live:
 * graphql-transport-ws says nothing when a subscription starts, so marker tasks are created
 * until one's event arrives. Their ids go into `markers`, for the caller to leave out. An
 * entry in `errors` (the subscription's, when the caller collects them) fails at once.
 */
export async function untilLive(base, token, events, markers, errors = []) {
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    if (errors.length) throw new Error(`the subscription failed: ${JSON.stringify(errors)}`);
    const { status, body } = await rest(base, "POST", "/api/tasks", token, { title: "marker" });
    if (status !== 201) throw new Error(`marker task: ${status} ${JSON.stringify(body)}`);
    markers.add(body.task.id);
    const until = Date.now() + 500;
    while (Date.now() < until) {
      if (events.some((event) => markers.has(event.taskId))) return;
      await sleep(20);
    }
  }
  throw new Error("the subscription never delivered a marker event");
}
