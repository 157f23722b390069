-- One wrk script for every scenario: `wrk ... -s scenario.lua URL -- MODE DATAFILE [RECORDFILE]`.
--
-- DATAFILE has one item per line, tab-separated; what an item is depends on MODE:
--   list, gql_tasks                 token
--   get, update, delete, gql_task   token <TAB> task_id
--   create, gql_create              token
--   login                           email <TAB> password
-- Requests cycle through the items in order (each connection takes the next one), except
-- `delete`, which never reuses an item: the harness seeds more than a round can delete, and an
-- exhausted pool is reported (the extra requests then go to already-deleted ids: 404s).
-- With several wrk threads, thread i takes items i, i+n, i+2n, ...
--
-- The response() hook counts non-2xx responses and, for GraphQL, 200s whose body has
-- "errors"; for `create` with a RECORDFILE it appends "user_id<TAB>task_id" of every created
-- task (used to seed the delete pool). done() prints one line: BENCH_JSON {...}.

local mode, datafile, recordfile
local requests_ = {}
local n, i = 0, 0
local record
-- Globals on purpose: done() reads them from each thread's Lua state with thread:get().
non2xx, gql_errors, responses, exhausted = 0, 0, 0, 0

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

local function split(line)
  local fields = {}
  for field in string.gmatch(line, "[^\t]+") do
    table.insert(fields, field)
  end
  return fields
end

local function auth(token)
  return { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
end

local function json_string(s)
  return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"') .. '"'
end

local GQL_TASKS = '{"query":"{ tasks(first: 20) { edges { node { id title completed createdAt } } } }"}'
local GQL_TASK = '{"query":"query($id: ID!) { task(id: $id) { id title completed createdAt } }","variables":{"id":"%s"}}'
local GQL_CREATE = '{"query":"mutation($input: CreateTaskInput!) { createTask(input: $input) { id title completed createdAt } }","variables":{"input":{"title":"bench task","description":"created by wrk"}}}'
local CREATE_BODY = '{"title":"bench task","description":"created by wrk"}'

local function build(fields)
  if mode == "list" then
    return { wrk.format("GET", "/api/tasks", auth(fields[1])) }
  elseif mode == "get" then
    return { wrk.format("GET", "/api/tasks/" .. fields[2], auth(fields[1])) }
  elseif mode == "update" then
    -- Two requests per item, alternating `completed`, so every update changes the row.
    local path = "/api/tasks/" .. fields[2]
    return {
      wrk.format("PUT", path, auth(fields[1]), '{"title":"bench task updated","completed":true}'),
      wrk.format("PUT", path, auth(fields[1]), '{"title":"bench task updated","completed":false}'),
    }
  elseif mode == "delete" then
    return { wrk.format("DELETE", "/api/tasks/" .. fields[2], auth(fields[1])) }
  elseif mode == "create" then
    return { wrk.format("POST", "/api/tasks", auth(fields[1]), CREATE_BODY) }
  elseif mode == "login" then
    local body = '{"email":' .. json_string(fields[1]) .. ',"password":' .. json_string(fields[2]) .. '}'
    return { wrk.format("POST", "/api/auth/login", { ["Content-Type"] = "application/json" }, body) }
  elseif mode == "gql_tasks" then
    return { wrk.format("POST", "/graphql", auth(fields[1]), GQL_TASKS) }
  elseif mode == "gql_task" then
    return { wrk.format("POST", "/graphql", auth(fields[1]), string.format(GQL_TASK, fields[2])) }
  elseif mode == "gql_create" then
    return { wrk.format("POST", "/graphql", auth(fields[1]), GQL_CREATE) }
  end
  error("unknown mode " .. tostring(mode))
end

function init(args)
  mode, datafile, recordfile = args[1], args[2], args[4]
  local index = thread_index or 0
  local stride = tonumber(args[3] or "1")
  local k = 0
  local items = {}
  for line in io.lines(datafile) do
    if line ~= "" then
      if k % stride == index then
        table.insert(items, split(line))
      end
      k = k + 1
    end
  end
  if #items == 0 then
    error("no items in " .. datafile)
  end
  -- For update, interleave so consecutive requests for one task alternate completed.
  local pass = {}
  for _, fields in ipairs(items) do
    local built = build(fields)
    table.insert(requests_, built[1])
    if built[2] then table.insert(pass, built[2]) end
  end
  for _, r in ipairs(pass) do table.insert(requests_, r) end
  n = #requests_
  if recordfile and mode == "create" then
    record = io.open(recordfile .. "." .. index, "w")
    record:setvbuf("full")
  end
end

function request()
  i = i + 1
  if i > n then
    if mode == "delete" then
      exhausted = exhausted + 1
    end
    i = 1
  end
  return requests_[i]
end

function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif mode == "gql_tasks" or mode == "gql_task" or mode == "gql_create" then
    if body and string.find(body, '"errors"', 1, true) then
      gql_errors = gql_errors + 1
    end
  elseif record and body then
    local task_id = string.match(body, '"id":"([%x%-]+)"')
    local user_id = string.match(body, '"user_id":"([%x%-]+)"')
    if task_id and user_id then
      record:write(user_id, "\t", task_id, "\n")
    end
  end
end

function done(summary, latency, requests)
  local non2xx_total, gql_total, responses_total, exhausted_total = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    non2xx_total = non2xx_total + (thread:get("non2xx") or 0)
    gql_total = gql_total + (thread:get("gql_errors") or 0)
    responses_total = responses_total + (thread:get("responses") or 0)
    exhausted_total = exhausted_total + (thread:get("exhausted") or 0)
  end
  local e = summary.errors
  local parts = {
    string.format('"duration_us":%d', summary.duration),
    string.format('"requests":%d', summary.requests),
    string.format('"bytes":%d', summary.bytes),
    string.format('"responses":%d', responses_total),
    string.format('"non2xx":%d', non2xx_total),
    string.format('"gql_errors":%d', gql_total),
    string.format('"exhausted":%d', exhausted_total),
    string.format('"err_connect":%d', e.connect),
    string.format('"err_read":%d', e.read),
    string.format('"err_write":%d', e.write),
    string.format('"err_status":%d', e.status),
    string.format('"err_timeout":%d', e.timeout),
    string.format('"lat_mean_us":%.1f', latency.mean),
    string.format('"lat_max_us":%d', latency.max),
  }
  for _, p in ipairs({ 50, 90, 95, 99 }) do
    table.insert(parts, string.format('"p%d_us":%d', p, latency:percentile(p)))
  end
  io.write("BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end
