-- wrk script for bench/attack/ratelimit-spray.sh: every request carries an
-- X-Forwarded-For address no other request of the run used.
--
--   wrk ... -s ratelimit-spray.lua URL -- OFFSET THREADS
--
-- Request k of thread t (t = 0 .. THREADS-1) claims address number
-- OFFSET + t + k * THREADS, written as an IPv4 address in 10.0.0.0/8 and on.
-- done() prints "next N": the first number no thread reached, the OFFSET for
-- the next run.

local threads = {}
local count = 0

function setup(thread)
    thread:set("id", count)
    count = count + 1
    table.insert(threads, thread)
end

function init(args)
    offset = tonumber(args[1] or "0")
    nthreads = tonumber(args[2] or "1")
    sent = 0
end

local function dotted(n)
    n = n + 10 * 16777216
    local a = math.floor(n / 16777216) % 256
    local b = math.floor(n / 65536) % 256
    local c = math.floor(n / 256) % 256
    return string.format("%d.%d.%d.%d", a, b, c, n % 256)
end

function request()
    local n = offset + id + sent * nthreads
    sent = sent + 1
    return wrk.format(nil, nil, { ["X-Forwarded-For"] = dotted(n) })
end

function done(summary, latency, requests)
    local most = 0
    for _, t in ipairs(threads) do
        local s = t:get("sent")
        if s > most then most = s end
    end
    -- init() ran in the threads; the main state reads their offset.
    io.write(string.format("next %d\n", threads[1]:get("offset") + most * #threads))
end
