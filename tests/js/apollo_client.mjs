// Apollo Client (core, no React) against a running service, over HTTP.
// Usage: node apollo_client.mjs <scenario> '<json config>'; prints one JSON result line.
import {
  ApolloClient,
  CombinedGraphQLErrors,
  gql,
  HttpLink,
  InMemoryCache,
} from "@apollo/client";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { relayStylePagination } from "@apollo/client/utilities";
import { createHash } from "node:crypto";
import { print } from "graphql";

import { config, finish, waitFor } from "./lib.mjs";

/** A client as an app would build one; `requests` counts what went over the network. */
function apollo(http, token) {
  const requests = [];
  const link = new HttpLink({
    uri: `${http}/graphql`,
    headers: token ? { authorization: `Bearer ${token}` } : {},
    fetch: (url, init) => {
      requests.push(JSON.parse(init.body).operationName ?? null);
      return fetch(url, init);
    },
  });
  const cache = new InMemoryCache({
    typePolicies: { Query: { fields: { tasks: relayStylePagination(["completed"]) } } },
  });
  return { client: new ApolloClient({ link, cache }), requests };
}

/** What Apollo hands the app for a failed operation. */
function surfaced(error) {
  if (CombinedGraphQLErrors.is(error)) {
    return {
      kind: "CombinedGraphQLErrors",
      errors: error.errors.map((e) => ({ message: e.message, code: e.extensions?.code })),
    };
  }
  return { kind: error?.constructor?.name ?? typeof error, message: String(error) };
}

async function outcome(promise) {
  try {
    const result = await promise;
    return result.error ? surfaced(result.error) : { data: result.data };
  } catch (error) {
    return surfaced(error);
  }
}

const TASKS = gql`
  query Tasks($first: Int!, $after: String) {
    tasks(first: $first, after: $after) {
      totalCount
      edges { cursor node { id title completed } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

/** A client with Apollo's persisted-query link in front of its HttpLink, as its docs show;
 * `requests` records what each request carried (method, hash, whether the document). */
function persistedApollo(http, token, { useGET = true } = {}) {
  const requests = [];
  const httpLink = new HttpLink({
    uri: `${http}/graphql`,
    headers: token ? { authorization: `Bearer ${token}` } : {},
    fetch: async (url, init) => {
      const method = init.method ?? "POST";
      const sent = method === "GET"
        ? Object.fromEntries(
            [...new URL(url).searchParams].map(([k, v]) => [
              k,
              k === "variables" || k === "extensions" ? JSON.parse(v) : v,
            ]),
          )
        : JSON.parse(init.body);
      const response = await fetch(url, init);
      requests.push({
        method,
        operationName: sent.operationName ?? null,
        hash: sent.extensions?.persistedQuery?.sha256Hash ?? null,
        withDocument: typeof sent.query === "string",
        status: response.status,
        cacheControl: response.headers.get("cache-control"),
      });
      return response;
    },
  });
  const sha256 = (text) => createHash("sha256").update(text).digest("hex");
  const link = createPersistedQueryLink({ sha256, useGETForHashedQueries: useGET }).concat(
    httpLink,
  );
  return { client: new ApolloClient({ link, cache: new InMemoryCache() }), requests };
}

const scenarios = {
  // Relay-style pagination with fetchMore: every task once, newest first.
  async paginate({ http, token, pageSize }) {
    const { client, requests } = apollo(http, token);
    const watched = client.watchQuery({ query: TASKS, variables: { first: pageSize } });
    const emitted = [];
    const subscription = watched.subscribe((result) => emitted.push(result));
    await waitFor("the first page", () => emitted.some((result) => result.data?.tasks));
    const pages = [];
    for (;;) {
      const { tasks } = client.readQuery({ query: TASKS, variables: { first: pageSize } });
      pages.push(tasks.edges.length);
      if (!tasks.pageInfo.hasNextPage) break;
      if (pages.length > 50) throw new Error("pagination never ends");
      await watched.fetchMore({ variables: { after: tasks.pageInfo.endCursor } });
    }
    const { tasks } = client.readQuery({ query: TASKS, variables: { first: pageSize } });
    subscription.unsubscribe();
    return {
      titles: tasks.edges.map((edge) => edge.node.title),
      totalCount: tasks.totalCount,
      cachedSizes: pages,
      requests,
    };
  },

  // A mutation's result updates the normalized cache: the watched list changes with no
  // refetch (the only request after the list is the mutation itself).
  async cacheUpdate({ http, token }) {
    const { client, requests } = apollo(http, token);
    const created = await client.mutate({
      mutation: gql`mutation Add($t: String!) { createTask(input: {title: $t}) { id title completed } }`,
      variables: { t: "in the cache" },
    });
    const id = created.data.createTask.id;
    const watched = client.watchQuery({ query: TASKS, variables: { first: 10 } });
    const emitted = [];
    const subscription = watched.subscribe((result) => emitted.push(result.data));
    await waitFor("the list", () => emitted.some((data) => data?.tasks));
    const before = requests.length;
    const updated = await client.mutate({
      mutation: gql`mutation Done($id: ID!) {
        updateTask(id: $id, input: {completed: true, title: "done in the cache"}) {
          id title completed
        }
      }`,
      variables: { id },
    });
    await waitFor("the list to show the change", () =>
      emitted.some((data) =>
        data?.tasks?.edges.some((edge) => edge.node.id === id && edge.node.completed),
      ),
    );
    subscription.unsubscribe();
    const last = emitted.at(-1).tasks.edges.find((edge) => edge.node.id === id).node;
    return {
      mutationResult: updated.data.updateTask,
      listShows: { title: last.title, completed: last.completed },
      requestsAfterList: requests.slice(before),
      allRequests: requests,
    };
  },

  // Automatic persisted queries: hash first, then registration, then hash-only (GET) from a
  // new client on `other` (another instance, when there is one).
  async persisted({ http, other, token }) {
    const first = persistedApollo(http, token);
    const page = await first.client.query({ query: TASKS, variables: { first: 5 } });
    const added = await first.client.mutate({
      mutation: gql`mutation Add($t: String!) { createTask(input: {title: $t}) { id title } }`,
      variables: { t: "persisted" },
    });
    const second = persistedApollo(other, token);
    const again = await second.client.query({ query: TASKS, variables: { first: 5 } });
    return {
      hash: createHash("sha256").update(print(TASKS)).digest("hex"),
      firstPage: page.data.tasks.edges.length,
      added: added.data.createTask.title,
      secondPage: again.data.tasks.edges.map((edge) => edge.node.title),
      firstRequests: first.requests,
      secondRequests: second.requests,
    };
  },

  // The manifest a build would extract: the documents as this client sends them (the cache
  // adds __typename), by the SHA-256 of their text, as graphql-codegen's client preset writes.
  async manifest() {
    const cache = new InMemoryCache();
    const text = print(cache.transformDocument(TASKS));
    return { [createHash("sha256").update(text).digest("hex")]: text };
  },

  // Trusted documents: what the manifest holds runs (by hash, as the link sends it); what it
  // does not is refused, and Apollo hands the app the error.
  async trusted({ http, token }) {
    const { client, requests } = persistedApollo(http, token, { useGET: false });
    const allowed = await outcome(client.query({ query: TASKS, variables: { first: 5 } }));
    const refused = await outcome(
      client.query({ query: gql`query Other { me { id email } }` }),
    );
    return { allowed, refused, requests };
  },

  // Errors as Apollo surfaces them, each with the service's extensions.code.
  async errors({ http, token, email }) {
    const anonymous = apollo(http, null).client;
    const caller = apollo(http, token).client;
    return {
      unauthenticated: await outcome(anonymous.query({ query: TASKS, variables: { first: 1 } })),
      badInput: await outcome(
        caller.mutate({ mutation: gql`mutation { createTask(input: {title: ""}) { id } }` }),
      ),
      notFound: await outcome(
        caller.mutate({
          mutation: gql`mutation {
            updateTask(id: "00000000-0000-0000-0000-000000000000", input: {completed: true}) { id }
          }`,
        }),
      ),
      wrongPassword: await outcome(
        anonymous.mutate({
          mutation: gql`mutation($e: String!) { login(email: $e, password: "wrong-password") { token } }`,
          variables: { e: email },
        }),
      ),
      conflict: await outcome(
        anonymous.mutate({
          mutation: gql`mutation($e: String!) { signup(email: $e, password: "password123") { token } }`,
          variables: { e: email },
        }),
      ),
    };
  },
};

const scenario = scenarios[process.argv[2]];
if (!scenario) throw new Error(`unknown scenario ${process.argv[2]}`);
finish(await scenario(config()));
