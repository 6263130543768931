-- wrk script for bench_project_create.py: POST /api/v1/projects with a new slug each time.
--
--   BENCH_TOKEN=<personal access token> wrk -s create_project.lua URL -- <prefix>
--
-- Slugs are "<prefix>-<thread>-<n>": unique across wrk's threads and, with a new prefix per
-- run, across runs. The token, when set, is sent as "Authorization: Bearer ...".

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function init(args)
  prefix = args[1] or "p"
  counter = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local token = os.getenv("BENCH_TOKEN")
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function request()
  counter = counter + 1
  local slug = string.format("%s-%d-%d", prefix, thread_id, counter)
  local body = string.format(
    '{"slug":"%s","name":"Project %s","description":"Created by the benchmark."}', slug, slug)
  return wrk.format(nil, nil, nil, body)
end
