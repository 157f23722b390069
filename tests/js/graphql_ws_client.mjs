// The graphql-ws client (as web apps and GraphiQL use it) against a running service.
// Usage: node graphql_ws_client.mjs <scenario> '<json config>'; prints one JSON result line.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

import { config, finish, graphqlOverHttp, rest, sleep, untilLive, waitFor } from "./lib.mjs";

const EVENTS = "subscription { taskEvents { type taskId task { id title completed } } }";

function connect(url, connectionParams, options = {}) {
  const closes = [];
  let connects = 0;
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams,
    on: {
      connected: () => connects++,
      closed: (event) => closes.push({ code: event.code, reason: event.reason }),
    },
    ...options,
  });
  return { client, closes, connects: () => connects };
}

/** Subscribe to taskEvents; events and errors are collected, not thrown. */
function collect(client, query = EVENTS) {
  const seen = { events: [], errors: [], completed: false };
  client.subscribe(
    { query },
    {
      next: ({ data, errors }) => {
        if (errors) seen.errors.push(errors);
        else seen.events.push(data.taskEvents);
      },
      error: (error) =>
        seen.errors.push(error?.code ? { code: error.code, reason: error.reason } : String(error)),
      complete: () => (seen.completed = true),
    },
  );
  return seen;
}

/** One operation over the socket: its single result. */
async function once(client, query, variables = {}) {
  for await (const result of client.iterate({ query, variables })) return result;
  throw new Error(`no result for ${query}`);
}

const scenarios = {
  // Writes through REST, GraphQL over HTTP and GraphQL over the socket, spread over every
  // instance given; each subscriber must see exactly its owner's events, in order.
  async events({ ws, http, alice, bob }) {
    const withToken = (token) => ({ Authorization: `Bearer ${token}` });
    const a = connect(ws, withToken(alice), { retryAttempts: 0 });
    const b = connect(ws, withToken(bob), { retryAttempts: 0 });
    const aliceSeen = collect(a.client);
    const bobSeen = collect(b.client);
    const markers = new Set();
    await untilLive(http[0], alice, aliceSeen.events, markers, aliceSeen.errors);
    await untilLive(http[0], bob, bobSeen.events, markers, bobSeen.errors);

    const at = (i) => http[i % http.length];
    const first = await rest(at(0), "POST", "/api/tasks", alice, { title: "from REST" });
    const created = await graphqlOverHttp(
      at(1),
      alice,
      "mutation($t: String!) { createTask(input: {title: $t}) { id } }",
      { t: "from GraphQL" },
    );
    const second = created.data.createTask.id;
    await rest(at(2), "PUT", `/api/tasks/${first.body.task.id}`, alice, { completed: true });
    await graphqlOverHttp(
      at(3),
      alice,
      'mutation($id: ID!) { updateTask(id: $id, input: {title: "renamed"}) { id } }',
      { id: second },
    );
    const overSocket = await once(a.client, "mutation($id: ID!) { deleteTask(id: $id) }", {
      id: first.body.task.id,
    });
    await rest(at(5), "DELETE", `/api/tasks/${second}`, alice);
    const bobs = await rest(at(6), "POST", "/api/tasks", bob, { title: "bob's" });

    const real = (seen) => seen.events.filter((event) => !markers.has(event.taskId));
    await waitFor("alice's six events", () => real(aliceSeen).length >= 6);
    await waitFor("bob's event", () => real(bobSeen).length >= 1);
    await sleep(500); // anything extra (another user's event, a duplicate) would arrive now
    return {
      ids: { first: first.body.task.id, second, bob: bobs.body.task.id },
      deletedOverSocket: overSocket,
      alice: real(aliceSeen),
      bob: real(bobSeen),
      errors: [...aliceSeen.errors, ...bobSeen.errors],
      closes: [...a.closes, ...b.closes],
    };
  },

  // A token that expires while subscribed: the server closes with 4403 "Token expired"; the
  // client reconnects by itself, calls connectionParams again (a fresh token) and
  // resubscribes, and events flow again on the same sink.
  async reconnect({ ws, http, expiring, fresh }) {
    let calls = 0;
    const params = async () => {
      calls += 1;
      return { Authorization: `Bearer ${calls === 1 ? expiring : fresh}` };
    };
    const c = connect(ws, params); // the client's default retries, as the README's example
    const seen = collect(c.client);
    const markers = new Set();
    await untilLive(http[0], fresh, seen.events, markers, seen.errors);
    const seenSoFar = () =>
      JSON.stringify({ closes: c.closes, connects: c.connects(), calls, errors: seen.errors });
    await waitFor("the expiry close", () => c.closes.length >= 1, 20000, seenSoFar);
    await waitFor("the reconnect", () => c.connects() >= 2, 20000, seenSoFar);
    await untilLive(http[0], fresh, seen.events, new Set(), seen.errors); // live again
    const after = await rest(http[0], "POST", "/api/tasks", fresh, { title: "after reconnect" });
    await waitFor("the event after the reconnect", () =>
      seen.events.some((event) => event.taskId === after.body.task.id),
    );
    return {
      closes: c.closes,
      connects: c.connects(),
      connectionParamsCalls: calls,
      errors: seen.errors,
      completed: seen.completed,
      event: seen.events.find((event) => event.taskId === after.body.task.id),
    };
  },

  // A bad token: the connection is refused with 4403 and the sink hears why.
  async refused({ ws, token }) {
    const c = connect(ws, { Authorization: `Bearer ${token}` }, { retryAttempts: 0 });
    const seen = collect(c.client);
    await waitFor("the refusal", () => seen.errors.length >= 1 || seen.completed);
    return { errors: seen.errors, events: seen.events, connects: c.connects() };
  },

  // Queries and mutations over the socket give what HTTP gives, aliases included.
  async operations({ ws, http, token }) {
    const c = connect(ws, { Authorization: `Bearer ${token}` }, { retryAttempts: 0 });
    const pages = `{
      a: tasks(first: 2) { totalCount edges { node { title } } pageInfo { hasNextPage } }
      b: tasks(first: 2) { totalCount edges { node { title } } pageInfo { hasNextPage } }
      me { email tasks(first: 1) { edges { node { title } } } }
    }`;
    const created = await once(
      c.client,
      "mutation($t: String!) { createTask(input: {title: $t}) { title completed } }",
      { t: "over the socket" },
    );
    const overSocket = await once(c.client, pages);
    const overHttp = await graphqlOverHttp(http[0], token, pages);
    const missing = await once(c.client, '{ task(id: "00000000-0000-0000-0000-000000000000") { id } }');
    const invalid = await once(c.client, "mutation { createTask(input: {title: \"\"}) { id } }");
    return { created, overSocket, overHttp, missing, invalid, closes: c.closes };
  },
};

const scenario = scenarios[process.argv[2]];
if (!scenario) throw new Error(`unknown scenario ${process.argv[2]}`);
finish(await scenario(config()));
