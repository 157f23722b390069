// Apollo Client (core, no React) against a running service, over HTTP.
// Usage: node apollo_client.mjs <scenario> '<json config>'; prints one JSON result line.
import {
  ApolloClient,
  CombinedGraphQLErrors,
  gql,
  HttpLink,
  InMemoryCache,
} from "@apollo/client";
import { relayStylePagination } from "@apollo/client/utilities";

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
