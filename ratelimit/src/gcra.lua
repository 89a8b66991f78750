-- One request against all of its limits, in one call: the same decision as decide.rs
-- (src/decide.rs is the model; tests/tests/ratelimit_script.rs checks this script against it).
-- KEYS: one per limit. ARGV[1]: cost; then five per key: emission_us, burst, period_us,
-- shadow (0|1), count_refused (0|1).
-- Time is Redis's own (TIME), so every control-plane replica counts on one clock.
-- Returns {admitted 0|1, now_us, tat_us before this request per key ("" when none)}; numbers
-- as strings because Lua numbers are doubles and replies would truncate them.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local n = #KEYS
local before, new, ok, refusal_tat = {}, {}, {}, {}
local admitted = true
for i = 1, n do
  local a = 1 + (i - 1) * 5
  local emission = tonumber(ARGV[a + 1])
  local burst = tonumber(ARGV[a + 2])
  local period = tonumber(ARGV[a + 3])
  local shadow = ARGV[a + 4] == '1'
  local stored = redis.call('GET', KEYS[i])
  local tat = stored and tonumber(stored)
  if tat and tat <= now then tat = nil end
  before[i] = tat and string.format('%.0f', tat) or ''
  local base = tat or now
  new[i] = base + emission * cost
  local limit_tat = now + emission * burst
  ok[i] = new[i] <= limit_tat
  if ARGV[a + 5] == '1' then
    refusal_tat[i] = math.min(new[i], limit_tat + period)
  end
  if not ok[i] and not shadow then admitted = false end
end
for i = 1, n do
  local write = nil
  if ok[i] and admitted then
    write = new[i]
  elseif not ok[i] then
    write = refusal_tat[i]
  end
  if write and write > now then
    -- The key lives until its bucket is full again: no separate EXPIRE.
    redis.call('SET', KEYS[i], string.format('%.0f', write), 'PX', math.ceil((write - now) / 1000))
  end
end
local reply = {admitted and '1' or '0', string.format('%.0f', now)}
for i = 1, n do reply[#reply + 1] = before[i] end
return reply
