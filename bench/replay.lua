-- wrk script: replay pre-signed requests, each exactly once, and stop when they are all answered.
--
-- Environment (set by bench/wrkrun.py):
--   BENCH_REQUESTS  file with one request body per line (JSON, no newline inside)
--   BENCH_METHOD    HTTP method (POST)
--   BENCH_CHECK     "code": a good answer has HTTP 200 and "code":200 in its body (the eHSM envelope);
--                   "status": a good answer has HTTP 200 (the AWS JSON protocol of the peer)
--
-- wrk keeps connections busy until its duration ends; here a connection whose turn comes after the last request
-- was handed out sends nothing and waits, and the answer to the last request stops the thread and wakes wrk's main
-- thread (SIGINT to the main thread, which ends its sleep), so the run lasts exactly as long as the requests take.
-- The run's own clock (first request written to last answer read) gives the throughput; wrk's histogram gives the
-- latencies. One wrk thread only: the stop needs every request of the run to be in this thread's hands.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
int getpid(void);
int tgkill(int tgid, int tid, int sig);
]]

local CLOCK_MONOTONIC = 1
local SIGINT = 2
local clock = ffi.new("bench_timespec")

local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("BENCH_REQUESTS")
  local method = os.getenv("BENCH_METHOD") or "POST"
  check_status = os.getenv("BENCH_CHECK") == "status"
  reqs = {}
  for line in io.lines(path) do
    if #line > 0 then
      reqs[#reqs + 1] = wrk.format(method, nil, nil, line)
    end
  end
  total = #reqs
  nxt, sent, answered, good, bad = 1, 0, 0, 0, 0
  first_error = ""
  t_first, t_last = 0, 0
  -- wrk builds one request on thread 0 before the run to check that it parses; that one is never sent.
  checked = id ~= 0
end

function request()
  if not checked then
    checked = true
    return reqs[1]
  end
  if nxt > total then
    return ""
  end
  local r = reqs[nxt]
  reqs[nxt] = nil
  nxt = nxt + 1
  sent = sent + 1
  if sent == 1 then
    t_first = now()
  end
  return r
end

function response(status, headers, body)
  answered = answered + 1
  local ok
  if check_status then
    ok = status == 200
  else
    ok = status == 200 and string.find(body, '"code":200', 1, true) ~= nil
  end
  if ok then
    good = good + 1
  else
    bad = bad + 1
    if first_error == "" then
      first_error = status .. " " .. string.sub(body, 1, 300)
    end
  end
  if nxt > total and answered >= sent then
    t_last = now()
    wrk.thread:stop()
    local pid = ffi.C.getpid()
    ffi.C.tgkill(pid, pid, SIGINT)
  end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    local err = summary.errors
    io.write(string.format(
      'BENCH_RESULT {"total":%d,"sent":%d,"answered":%d,"good":%d,"bad":%d,"seconds":%.6f,' ..
      '"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"p999_us":%.0f,"mean_us":%.1f,"max_us":%.0f,' ..
      '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,"wrk_duration_us":%d}\n',
      t:get("total"), t:get("sent"), t:get("answered"), t:get("good"), t:get("bad"),
      math.max(t:get("t_last") - t:get("t_first"), 0),
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      latency.mean, latency.max,
      err.connect, err.read, err.write, err.timeout, summary.duration))
    local fe = t:get("first_error")
    if fe ~= "" then
      io.write("BENCH_FIRST_ERROR " .. string.gsub(fe, "[\r\n]", " ") .. "\n")
    end
  end
end
